//! The file backend's winners, kept on disk so that the server's memory
//! does not grow with them.
//!
//! While bets arrive, the committer appends every durable winning bet to a
//! log beside `bets.csv` (`bets.csv.winners-log`: one record per winner,
//! agency and document, in storage order) and counts each agency's
//! winners. At the draw the log is regrouped by agency into
//! `bets.csv.winners`: each agency's documents back to back, in storage
//! order, each as the WINNERS message carries it (`str8`: a length byte,
//! then the digits). What stays in memory is, per agency with winners,
//! where its documents start, how many there are and where every
//! [`CHECKPOINT`]-th one is: a page of winners is then one read of the
//! page plus at most [`CHECKPOINT`] documents before it, whoever asks and
//! however the agencies' bets were interleaved in `bets.csv`.
//!
//! Memory: about 64 bytes per agency with winners, plus 8 bytes per
//! [`CHECKPOINT`] winners; while regrouping at the draw ([`regroup`]), at
//! most [`REGROUP_BUDGET`] of write buffers (or 256 bytes per agency with
//! winners, if more). Nothing per winner.
//!
//! Both files are derived from `bets.csv`: they are never synced, and every
//! start rebuilds them from it with one streaming pass, so a crash leaves
//! nothing to repair and no format to keep compatible.

mod regroup;

use super::rows::for_each_winner;
use super::{StorageError, WinnersPage, io_err};
use crate::bet::MAX_DOCUMENT_DIGITS;
use regroup::Regroup;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every this many winners of an agency, the winners file's offset is kept:
/// a page read starts at most this many documents before its first one.
pub const CHECKPOINT: u64 = 256;

/// The regrouping's write buffers, all agencies together: each agency's
/// documents are gathered in its own buffer and written where its region
/// goes when the buffer is full.
pub const REGROUP_BUDGET: usize = 4 << 20;

/// Bytes of a record's head in the log: agency (u32 LE), document length.
const RECORD_HEAD: usize = 5;

/// Largest document as stored in the winners file (length byte + digits).
const MAX_STR8: u64 = 1 + MAX_DOCUMENT_DIGITS as u64;

/// Appends the record of one winning bet (agency, document) to `out`, the
/// form the committer hands in and the log holds. A document is at most
/// [`MAX_DOCUMENT_DIGITS`] digits (validated before it gets here).
pub fn push_record(out: &mut Vec<u8>, agency: u32, document: &str) {
    let doc = &document.as_bytes()[..document.len().min(usize::from(u8::MAX))];
    out.extend_from_slice(&agency.to_le_bytes());
    out.push(doc.len() as u8);
    out.extend_from_slice(doc);
}

/// The records of `bytes` (as [`push_record`] wrote them): (agency, document).
fn records(mut bytes: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    std::iter::from_fn(move || {
        let (head, rest) = bytes.split_first_chunk::<RECORD_HEAD>()?;
        let agency = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (doc, rest) = rest.split_at_checked(usize::from(head[4]))?;
        bytes = rest;
        Some((agency, doc))
    })
}

/// The log's path for a bets file: `bets.csv.winners-log`.
fn log_path(data: &Path) -> PathBuf {
    with_suffix(data, ".winners-log")
}

/// The regrouped winners' path for a bets file: `bets.csv.winners`.
fn grouped_path(data: &Path) -> PathBuf {
    with_suffix(data, ".winners")
}

fn with_suffix(data: &Path, suffix: &str) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// How many winners an agency has, and the bytes their documents take as
/// `str8`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    count: u64,
    bytes: u64,
}

/// Adds the records of `bytes` to `tallies`, one map update per run of
/// one agency's records (a batch's winners come together).
fn tally(tallies: &mut BTreeMap<u32, Tally>, bytes: &[u8]) {
    let mut run: Option<(u32, Tally)> = None;
    for (agency, doc) in records(bytes) {
        let add = 1 + doc.len() as u64;
        match &mut run {
            Some((a, t)) if *a == agency => {
                t.count += 1;
                t.bytes += add;
            }
            _ => {
                if let Some((a, t)) = run.take() {
                    let entry = tallies.entry(a).or_default();
                    entry.count += t.count;
                    entry.bytes += t.bytes;
                }
                run = Some((
                    agency,
                    Tally {
                        count: 1,
                        bytes: add,
                    },
                ));
            }
        }
    }
    if let Some((a, t)) = run {
        let entry = tallies.entry(a).or_default();
        entry.count += t.count;
        entry.bytes += t.bytes;
    }
}

/// The winners of the stored bets while bets still arrive: the log on disk
/// and each agency's count in memory.
#[derive(Debug)]
pub struct WinnersLog {
    data: PathBuf,
    path: PathBuf,
    file: File,
    tallies: BTreeMap<u32, Tally>,
    /// A write failed: the log is incomplete and is rebuilt from `bets.csv`
    /// at the draw.
    broken: Option<String>,
}

impl WinnersLog {
    /// A fresh log of the winners among the first `len` bytes of the bets
    /// file at `data` (its committed part), read in one streaming pass.
    ///
    /// # Errors
    /// The bets file cannot be read or holds a row that is not a bet; the
    /// log cannot be written.
    pub fn rebuild(data: &Path, len: u64) -> Result<WinnersLog, StorageError> {
        let path = log_path(data);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        let mut log = WinnersLog {
            data: data.to_owned(),
            path,
            file,
            tallies: BTreeMap::new(),
            broken: None,
        };
        if len == 0 {
            return Ok(log);
        }
        let mut chunk = Vec::with_capacity(1 << 16);
        for_each_winner(data, len, |agency, document| {
            push_record(&mut chunk, agency, document);
            if chunk.len() >= 1 << 16 {
                log.write(&chunk)?;
                chunk.clear();
            }
            Ok(())
        })?;
        log.write(&chunk)?;
        Ok(log)
    }

    fn write(&mut self, records: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all(records)
            .map_err(io_err(&self.path, "append to"))?;
        tally(&mut self.tallies, records);
        Ok(())
    }

    /// Appends the winners of a durable commit (records of
    /// [`push_record`]). A failed write is not the commit's failure (the
    /// bets are durable): the log is marked broken and rebuilt at the draw.
    pub fn append(&mut self, records: &[u8]) {
        if records.is_empty() || self.broken.is_some() {
            return;
        }
        if let Err(e) = self.write(records) {
            self.broken = Some(e.to_string());
        }
    }

    /// Why the log is incomplete, if it is.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Winners logged so far, all agencies.
    pub fn total(&self) -> u64 {
        self.tallies.values().map(|t| t.count).sum()
    }

    /// Regroups the log by agency into the winners file and removes the
    /// log (after rebuilding it from `bets.csv` if a write had failed).
    /// `len`: the committed length of the bets file.
    ///
    /// # Errors
    /// Reading the log or the bets file, writing the winners file.
    /// The log is left empty: it has served its purpose.
    pub fn finish(&mut self, len: u64) -> Result<WinnersFile, StorageError> {
        if self.broken.is_some() {
            *self = WinnersLog::rebuild(&self.data, len)?;
        }
        self.regroup()
    }

    fn regroup(&mut self) -> Result<WinnersFile, StorageError> {
        let tallies = std::mem::take(&mut self.tallies);
        let path = grouped_path(&self.data);
        let out = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        let mut regroup = Regroup::lay_out(&tallies, out, path)?;
        regroup.copy_log(&self.path)?;
        let file = regroup.finish(&self.path)?;
        // The log has served its purpose; a restart rebuilds everything.
        let _ = std::fs::remove_file(&self.path);
        Ok(file)
    }
}

/// Where one agency's documents are in the winners file.
#[derive(Debug)]
struct Region {
    start: u64,
    count: u64,
    bytes: u64,
    /// The offset of document `i * CHECKPOINT`, for every `i`.
    checkpoints: Vec<u64>,
}

/// The draw's winners, grouped by agency on disk (see the module doc).
/// After the draw nothing changes it; workers read pages of it at once,
/// each with positioned reads on the shared handle.
#[derive(Debug)]
pub struct WinnersFile {
    file: File,
    path: PathBuf,
    regions: BTreeMap<u32, Region>,
    total: u64,
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
        let Some(&from) = self.regions[&agency]
            .checkpoints
            .get((ordinal / CHECKPOINT) as usize)
        else {
            return Err(corrupt("no checkpoint"));
        };
        let end = region.start + region.bytes;
        let mut skip = ordinal % CHECKPOINT;
        // The documents skipped to reach `offset`, then at most a page.
        let want = (end.saturating_sub(from)).min(skip * MAX_STR8 + room as u64);
        let mut buf = vec![0u8; want as usize];
        self.file
            .read_exact_at(&mut buf, from)
            .map_err(io_err(&self.path, "read"))?;
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

/// The file backend's winners: gathered while bets arrive, regrouped at
/// the draw.
#[derive(Debug)]
pub enum Winners {
    Gathering(WinnersLog),
    /// The draw happened: `total` winners, and the file that serves them
    /// (or why it could not be built: a restart builds it again).
    Drawn {
        total: u64,
        file: Result<Arc<WinnersFile>, String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bet::Bet;
    use crate::storage::{Storage, SyncMode, encode_row};
    use chrono::NaiveDate;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lottery-winners-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Agency `agency`'s `i`-th bet; every `win_every`-th wins. Documents
    /// vary in length (1 to 10 digits), so pages cut at the byte budget.
    fn bet(agency: u32, i: u64, win_every: u64) -> Bet {
        let digits = 1 + (i % 10) as usize;
        let document: String = format!("{agency}{i:010}")
            .chars()
            .rev()
            .take(digits)
            .collect();
        Bet {
            agency,
            first_name: "Ana".into(),
            last_name: "Paz, \"la\"".into(),
            document,
            birthdate: NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
            number: if i.is_multiple_of(win_every) { 7574 } else { 1 },
        }
    }

    /// Every page an agency reads from `file`, joined, with a page of at
    /// most `room` bytes; checks each page's total and budget.
    fn read_all(file: &WinnersFile, agency: u32, room: usize) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let offset = all.len() as u32;
            let page = file.page(agency, offset, room).unwrap();
            let used: usize = page.documents.iter().map(|d| 1 + d.len()).sum();
            assert!(used <= room, "a page of {used} bytes for a room of {room}");
            if page.documents.is_empty() {
                assert_eq!(offset, page.total, "an empty page before the end");
                return all;
            }
            all.extend(page.documents);
        }
    }

    /// The winners of agencies whose bets are interleaved in the file,
    /// across many commits, come back per agency in storage order, page by
    /// page, from any offset; the same after a rebuild from `bets.csv`.
    #[test]
    fn pages_give_each_agency_its_winners_in_storage_order() {
        let dir = temp_dir("pages");
        let data = dir.join("bets.csv");
        let (mut storage, _) = Storage::open(&data, SyncMode::None).unwrap();
        let mut log = WinnersLog::rebuild(&data, 0).unwrap();
        let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        // 3 agencies, commits of a few batches each, interleaved; agency 3
        // wins every bet, agency 1 every third, agency 2 never.
        let win_every = |agency: u32| match agency {
            1 => 3,
            2 => u64::MAX,
            _ => 1,
        };
        let mut next = [0u64; 4];
        for commit in 0..40u64 {
            let (mut rows, mut records) = (Vec::new(), Vec::new());
            let mut added = BTreeMap::new();
            for agency in [1 + (commit % 3) as u32, 3, 1, 2] {
                for _ in 0..(17 + commit % 5) {
                    let b = bet(agency, next[agency as usize], win_every(agency));
                    next[agency as usize] += 1;
                    encode_row(&mut rows, &b);
                    *added.entry(agency).or_insert(0u64) += 1;
                    if b.as_ref().has_won() {
                        push_record(&mut records, agency, &b.document);
                        expected.entry(agency).or_default().push(b.document);
                    }
                }
            }
            let added: Vec<(u32, u64)> = added.into_iter().collect();
            storage.commit(&rows, &added, &[]).unwrap();
            log.append(&records);
        }
        let len = storage.committed_len();
        let total: u64 = expected.values().map(|w| w.len() as u64).sum();
        assert_eq!(log.total(), total);
        let file = log.finish(len).unwrap();
        assert!(!dir.join("bets.csv.winners-log").exists());
        let rebuilt = WinnersLog::rebuild(&data, len)
            .unwrap()
            .finish(len)
            .unwrap();
        assert_eq!(log.total(), 0, "the log is left empty");
        for file in [&file, &rebuilt] {
            assert_eq!(file.total(), total);
            for agency in 1..=4 {
                let want = expected.get(&agency).cloned().unwrap_or_default();
                for room in [11, 64, 1000, 8179] {
                    assert_eq!(read_all(file, agency, room), want, "agency {agency}");
                }
                // Any offset, also between checkpoints.
                for offset in [0, 1, 255, 256, 257, 300, want.len()] {
                    let page = file.page(agency, offset as u32, 8179).unwrap();
                    assert_eq!(page.total as usize, want.len());
                    assert!(want[offset.min(want.len())..].starts_with(&page.documents));
                }
            }
        }
        assert!(
            expected[&3].len() > 3 * CHECKPOINT as usize,
            "several checkpoints"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The memory bound: what the index keeps grows with the agencies and
    /// by 8 bytes per CHECKPOINT winners, not with the winners.
    #[test]
    fn the_index_keeps_nothing_per_winner() {
        let dir = temp_dir("index");
        let data = dir.join("bets.csv");
        let mut log = WinnersLog::rebuild(&data, 0).unwrap();
        let mut records = Vec::new();
        for i in 0..200_000u64 {
            push_record(&mut records, 1 + (i % 2) as u32, "12345678");
            if records.len() > 1 << 16 {
                log.append(&records);
                records.clear();
            }
        }
        log.append(&records);
        let file = log.finish(0).unwrap();
        assert_eq!(file.total(), 200_000);
        // 2 agencies: 2 regions and 200,000 / 256 checkpoints of 8 bytes.
        let bound = 2 * 64 + (200_000 / CHECKPOINT as usize + 2) * 8;
        assert!(
            file.index_bytes() <= bound,
            "{} bytes of index for 200,000 winners (bound {bound})",
            file.index_bytes()
        );
        let page = file.page(2, 99_990, 8179).unwrap();
        assert_eq!(page.documents, vec!["12345678"; 10]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        push_record(&mut out, 7, "0123");
        push_record(&mut out, 70_000, "9");
        let back: Vec<(u32, &[u8])> = records(&out).collect();
        assert_eq!(back, vec![(7, &b"0123"[..]), (70_000, &b"9"[..])]);
        let mut t = BTreeMap::new();
        tally(&mut t, &out);
        assert_eq!(t[&7], Tally { count: 1, bytes: 5 });
    }
}
