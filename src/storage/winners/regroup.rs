//! The draw's regrouping of the winners' log by agency: one pass over
//! `bets.csv.winners-log`, each document sent to its agency's buffer and
//! each full buffer written straight to where its agency's region of
//! `bets.csv.winners` goes (the regions are laid out from the tallies, so
//! nothing is moved twice). The buffers together stay within
//! [`REGROUP_BUDGET`].

use super::grouped::{CHECKPOINT, Region, WinnersFile};
use super::record::{RECORD_HEAD, Tally};
use crate::storage::error::{StorageError, io_err};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The regrouping's write buffers, all agencies together: each agency's
/// documents are gathered in its own buffer and written where its region
/// goes when the buffer is full.
const REGROUP_BUDGET: usize = 4 << 20;

/// Smallest and largest write buffer of one agency while regrouping.
const BUFFER_MIN: usize = 256;
const BUFFER_MAX: usize = 64 << 10;

/// The regrouping at the draw: each agency's region of the winners file
/// (laid out from the tallies, in agency order) and the buffer its
/// documents gather in before they are written where the region goes.
pub(super) struct Regroup {
    out: File,
    path: PathBuf,
    /// In agency order.
    fills: Vec<Fill>,
    /// Bytes of one agency's write buffer.
    cap: usize,
}

impl Regroup {
    /// Lays out every agency's region in `out` (sized to hold them all).
    pub(super) fn lay_out(
        tallies: &BTreeMap<u32, Tally>,
        out: File,
        path: PathBuf,
    ) -> Result<Regroup, StorageError> {
        let mut fills: Vec<Fill> = Vec::with_capacity(tallies.len());
        let mut start = 0u64;
        for (&agency, t) in tallies {
            let checkpoints = Vec::with_capacity(t.count.div_ceil(CHECKPOINT) as usize);
            let region = Region { start, count: t.count, bytes: t.bytes, checkpoints };
            fills.push(Fill { agency, cursor: start, next: 0, buf: Vec::new(), region });
            start += t.bytes;
        }
        out.set_len(start).map_err(io_err(&path, "size"))?;
        let cap = (REGROUP_BUDGET / fills.len().max(1)).clamp(BUFFER_MIN, BUFFER_MAX);
        Ok(Regroup { out, path, fills, cap })
    }

    /// Reads the log at `log_path` once, sending each document to its
    /// agency's buffer.
    pub(super) fn copy_log(&mut self, log_path: &Path) -> Result<(), StorageError> {
        let reader = File::open(log_path).map_err(io_err(log_path, "open"))?;
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let mut head = [0u8; RECORD_HEAD];
        let mut doc = [0u8; u8::MAX as usize];
        // The last agency's place: a batch's winners come together.
        let mut last: Option<(u32, usize)> = None;
        loop {
            match read_full(&mut reader, &mut head).map_err(io_err(log_path, "read"))? {
                0 => return Ok(()),
                RECORD_HEAD => {}
                _ => return Err(corrupt_log(log_path, "a record is cut short".into())),
            }
            let agency = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let doc = &mut doc[..usize::from(head[4])];
            if read_full(&mut reader, doc).map_err(io_err(log_path, "read"))? != doc.len() {
                return Err(corrupt_log(log_path, "a record is cut short".into()));
            }
            let i = match last {
                Some((a, i)) if a == agency => i,
                _ => {
                    let Ok(i) = self.fills.binary_search_by_key(&agency, |f| f.agency) else {
                        let reason = format!("agency {agency} was not counted");
                        return Err(corrupt_log(log_path, reason));
                    };
                    last = Some((agency, i));
                    i
                }
            };
            self.add(i, doc)?;
        }
    }

    /// Adds a document to the buffer of the agency at `i` in `fills`,
    /// keeping a checkpoint every [`CHECKPOINT`] documents, and writes the
    /// buffer out when it is full.
    fn add(&mut self, i: usize, doc: &[u8]) -> Result<(), StorageError> {
        let fill = &mut self.fills[i];
        if fill.next.is_multiple_of(CHECKPOINT) {
            fill.region.checkpoints.push(fill.cursor + fill.buf.len() as u64);
        }
        fill.next += 1;
        if fill.buf.capacity() == 0 {
            fill.buf.reserve_exact(self.cap);
        }
        fill.buf.push(doc.len() as u8);
        fill.buf.extend_from_slice(doc);
        if fill.buf.len() >= self.cap {
            fill.write(&self.out, &self.path)?;
        }
        Ok(())
    }

    /// Writes what the buffers still hold and checks that every agency got
    /// the documents counted for it.
    pub(super) fn finish(self, log_path: &Path) -> Result<WinnersFile, StorageError> {
        let mut total = 0;
        let mut regions = BTreeMap::new();
        for mut fill in self.fills {
            fill.write(&self.out, &self.path)?;
            let region = fill.region;
            if fill.next != region.count || fill.cursor != region.start + region.bytes {
                let reason = format!(
                    "agency {} has {} winners in the log, {} counted",
                    fill.agency, fill.next, region.count
                );
                return Err(corrupt_log(log_path, reason));
            }
            total += region.count;
            regions.insert(fill.agency, region);
        }
        Ok(WinnersFile { file: self.out, path: self.path, regions, total })
    }
}

/// The log at `path` is not what was written.
fn corrupt_log(path: &Path, reason: String) -> StorageError {
    StorageError::Corrupt { path: path.to_owned(), reason }
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// One agency's documents while they are regrouped.
struct Fill {
    agency: u32,
    /// Where the buffer goes in the winners file.
    cursor: u64,
    /// Documents seen so far.
    next: u64,
    buf: Vec<u8>,
    /// Where its region is laid out, and the checkpoints gathered so far.
    region: Region,
}

impl Fill {
    /// Writes the buffer where it goes in `out` (the winners file at
    /// `path`) and empties it.
    fn write(&mut self, out: &File, path: &Path) -> Result<(), StorageError> {
        out.write_all_at(&self.buf, self.cursor).map_err(io_err(path, "write"))?;
        self.cursor += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}
