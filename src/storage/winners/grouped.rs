//! The draw's winners grouped by agency (`bets.csv.winners`,
//! [`WinnersFile`]): where each agency's documents are, with a checkpoint
//! every [`CHECKPOINT`] of them, and the page reads the workers make.

use crate::bet::MAX_DOCUMENT_DIGITS;
use crate::storage::draw::WinnersPage;
use crate::storage::error::{StorageError, io_err};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Every this many winners of an agency, the winners file's offset is kept:
/// a page read starts at most this many documents before its first one.
pub const CHECKPOINT: u64 = 256;

/// Largest document as stored in the winners file (length byte + digits).
const MAX_STR8: u64 = 1 + MAX_DOCUMENT_DIGITS as u64;

/// Where one agency's documents are in the winners file.
#[derive(Debug)]
pub(super) struct Region {
    pub(super) start: u64,
    pub(super) count: u64,
    pub(super) bytes: u64,
    /// The offset of document `i * CHECKPOINT`, for every `i`.
    pub(super) checkpoints: Vec<u64>,
}

/// The draw's winners, grouped by agency on disk (see the module doc).
/// After the draw nothing changes it; workers read pages of it at once,
/// each with positioned reads on the shared handle.
#[derive(Debug)]
pub struct WinnersFile {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) regions: BTreeMap<u32, Region>,
    pub(super) total: u64,
}

impl WinnersFile {
    /// Winners of every agency.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Heap bytes this index holds: what the winners cost the server's
    /// memory after the draw.
    pub fn index_bytes(&self) -> usize {
        self.regions
            .values()
            .map(|r| std::mem::size_of::<(u32, Region)>() + r.checkpoints.capacity() * 8)
            .sum()
    }

    /// The agency's winners from `offset` on, as many as fit in `room`
    /// bytes of `str8` documents (a WINNERS frame's room). An offset past
    /// the last winner gives an empty page (its `total` says why).
    ///
    /// # Errors
    /// The winners file cannot be read or is not what was written.
    pub fn page(&self, agency: u32, offset: u32, room: usize) -> Result<WinnersPage, StorageError> {
        let Some(region) = self.regions.get(&agency) else {
            return Ok(WinnersPage::new(0));
        };
        let total = u32::try_from(region.count).unwrap_or(u32::MAX);
        let mut page = WinnersPage::new(total);
        if offset >= total {
            return Ok(page);
        }
        let corrupt = |reason: &str| StorageError::Corrupt {
            path: self.path.clone(),
            reason: format!("agency {agency}'s winners: {reason}"),
        };
        let ordinal = u64::from(offset);
        let Some(&from) = region.checkpoints.get((ordinal / CHECKPOINT) as usize) else {
            return Err(corrupt("no checkpoint"));
        };
        let end = region.start + region.bytes;
        let mut skip = ordinal % CHECKPOINT;
        // The documents skipped to reach `offset`, then at most a page.
        let want = (end.saturating_sub(from)).min(skip * MAX_STR8 + room as u64);
        let mut buf = vec![0u8; want as usize];
        self.file.read_exact_at(&mut buf, from).map_err(io_err(&self.path, "read"))?;
        let mut rest = &buf[..];
        let mut next = ordinal - skip;
        while next < u64::from(total) {
            let Some((&len, tail)) = rest.split_first() else {
                break;
            };
            let len = usize::from(len);
            let Some((doc, tail)) = tail.split_at_checked(len) else {
                // Cut by the read: it would not fit in the page either.
                if from + want < end {
                    break;
                }
                return Err(corrupt("a document runs past the region"));
            };
            rest = tail;
            next += 1;
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if !page.fits(len, room) {
                break;
            }
            let doc = std::str::from_utf8(doc).map_err(|_| corrupt("a document is not text"))?;
            page.push(doc.to_owned());
        }
        Ok(page)
    }
}
