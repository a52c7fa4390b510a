//! The file backend: the bets file (`bets.csv`) and its commit journal.
//!
//! `bets.csv` holds one CSV row per bet, `agency,first_name,last_name,
//! document,birthdate,number`, minimally quoted, readable by any CSV tool
//! (see [`super::rows`]). Beside it, `bets.csv.journal` holds one text
//! line per commit (see [`super::journal`]).
//!
//! A commit appends rows to `bets.csv` and a journal line saying where the
//! file now ends, a checksum of the rows it added, the new totals of the
//! agencies it touched and the agencies that finished; then it syncs both
//! files (at the same time) and only then is anything acknowledged. The
//! journal line is the commit point: on start, [`Storage::open`] keeps the
//! intact journal lines (each has its own checksum), forgets the last one
//! if its rows did not all reach the disk, and truncates `bets.csv` to the
//! end the last kept line names. So a crash in the middle of a commit
//! leaves none of it behind (commits are atomic), and everything that was
//! acknowledged is kept.
//!
//! This type is single-threaded; `store::StoreManager` shares it.

use super::journal::JournalRecord;
use super::rows::{LoadBets, encode_row};
use super::{StorageError, SyncMode, io_err};
use crate::bet::Bet;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// What [`Storage::open`] found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of `bets.csv` (an unfinished commit or a torn row).
    pub dropped_data_bytes: u64,
    /// Bytes cut from the end of the journal (a torn journal line).
    pub dropped_journal_bytes: u64,
    /// The journal was missing or empty and was rebuilt by reading `bets.csv`.
    pub rebuilt_journal: bool,
}

/// The bets file and its journal, open for appending.
#[derive(Debug)]
pub struct Storage {
    data: File,
    data_path: PathBuf,
    journal: File,
    journal_path: PathBuf,
    /// Length of `bets.csv` covered by the journal.
    committed_len: u64,
    journal_len: u64,
    counts: BTreeMap<u32, u64>,
    done: BTreeSet<u32>,
    /// Syncs the journal while the commit syncs `bets.csv`; `None` in
    /// `SyncMode::None`, where nothing is synced.
    journal_sync: Option<SyncThread>,
    broken: Option<String>,
    /// Tests: make the next sync fail, as a disk reporting EIO at fsync does.
    #[cfg(test)]
    fail_next_sync: bool,
}

/// A long-lived thread that fsyncs one file when asked. A thread spawned
/// per commit for the same job cost ~2% of the server's CPU at 10x.
#[derive(Debug)]
struct SyncThread {
    ask: Option<mpsc::SyncSender<()>>,
    answers: mpsc::Receiver<io::Result<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyncThread {
    fn start(file: File) -> io::Result<SyncThread> {
        let (ask, asked) = mpsc::sync_channel::<()>(1);
        let (answer, answers) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || {
                for () in asked {
                    if answer.send(file.sync_data()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(SyncThread {
            ask: Some(ask),
            answers,
            thread: Some(thread),
        })
    }

    /// Starts a sync; `false` if the thread is gone (sync inline then).
    fn ask(&self) -> bool {
        self.ask.as_ref().is_some_and(|ask| ask.send(()).is_ok())
    }

    /// The result of the sync started by `ask`.
    fn answer(&self) -> io::Result<()> {
        self.answers
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("journal sync thread ended")))
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.ask = None; // ends the thread's loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The journal's path for a given bets file: the same name plus `.journal`.
pub fn journal_path(data_path: &Path) -> PathBuf {
    let mut name = data_path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

impl Storage {
    /// Opens (creating if needed) the bets file at `path` and its journal,
    /// and recovers from an interrupted commit.
    ///
    /// # Errors
    /// Files that cannot be opened, read or repaired, and a bets file
    /// shorter than its journal says (data lost outside this program).
    pub fn open(path: &Path, sync: SyncMode) -> Result<(Storage, Recovery), StorageError> {
        let data_path = path.to_owned();
        let journal_path = journal_path(path);
        let created = !data_path.exists() || !journal_path.exists();
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(p)
                .map_err(io_err(p, "open"))
        };
        let data = open(&data_path)?;
        let journal = open(&journal_path)?;
        if created && sync == SyncMode::Always {
            sync_parent_dir(&data_path)?;
        }
        let journal_sync = match sync {
            SyncMode::Always => Some(
                journal
                    .try_clone()
                    .and_then(SyncThread::start)
                    .map_err(io_err(&journal_path, "start the sync thread of"))?,
            ),
            SyncMode::None => None,
        };
        let mut storage = Storage {
            data,
            data_path,
            journal,
            journal_path,
            journal_sync,
            committed_len: 0,
            journal_len: 0,
            counts: BTreeMap::new(),
            done: BTreeSet::new(),
            broken: None,
            #[cfg(test)]
            fail_next_sync: false,
        };
        let recovery = storage.recover()?;
        Ok((storage, recovery))
    }

    fn recover(&mut self) -> Result<Recovery, StorageError> {
        let mut recovery = Recovery::default();
        let mut text = Vec::new();
        (&self.journal)
            .read_to_end(&mut text)
            .map_err(io_err(&self.journal_path, "read"))?;
        // Intact lines, each with where it ends in the journal.
        let mut records: Vec<(JournalRecord, usize)> = Vec::new();
        let mut at = 0usize;
        for line in text.split_inclusive(|b| *b == b'\n') {
            let Some(rec) = line.strip_suffix(b"\n").and_then(JournalRecord::parse) else {
                break;
            };
            at += line.len();
            records.push((rec, at));
        }
        let data_len = self
            .data
            .metadata()
            .map_err(io_err(&self.data_path, "stat"))?
            .len();
        // Both files are synced together, so only the last commit can have
        // its journal line on disk without all of its rows: check its rows
        // against the line's checksum, and forget the commit if they differ.
        if let Some((last, _)) = records.last() {
            let start = records.len().checked_sub(2).map_or(0, |i| records[i].0.end);
            if !self.chunk_matches(start, last, data_len)? {
                records.pop();
            }
        }
        let good = records.last().map_or(0, |(_, at)| *at);
        if good < text.len() {
            recovery.dropped_journal_bytes = (text.len() - good) as u64;
            self.journal
                .set_len(good as u64)
                .map_err(io_err(&self.journal_path, "truncate"))?;
        }
        self.journal_len = good as u64;
        for (rec, _) in &records {
            self.committed_len = rec.end;
            self.counts.extend(rec.counts.iter().copied());
            self.done.extend(rec.done.iter().copied());
        }

        if records.is_empty() {
            if data_len > 0 {
                // No journal (deleted, or a file from elsewhere): trust the
                // rows, drop a torn last one, and write a fresh journal.
                let (good_len, counts) = scan_rows(&self.data_path)?;
                recovery.dropped_data_bytes = data_len - good_len;
                self.truncate_data(good_len)?;
                let all: Vec<(u32, u64)> = counts.into_iter().collect();
                let line_len = self.write_journal(good_len, None, &all, &[])?;
                self.sync(false)?;
                self.journal_len += line_len;
                self.counts.extend(all);
                recovery.rebuilt_journal = true;
            }
            return Ok(recovery);
        }
        if data_len < self.committed_len {
            return Err(StorageError::Corrupt {
                path: self.data_path.clone(),
                reason: format!(
                    "it has {data_len} bytes but its journal says {} were committed \
                     (data lost outside this program); refusing to start",
                    self.committed_len
                ),
            });
        }
        recovery.dropped_data_bytes = data_len - self.committed_len;
        self.truncate_data(self.committed_len)?;
        Ok(recovery)
    }

    /// Whether the rows `start..rec.end` of the bets file are the ones the
    /// journal line `rec` was written for.
    fn chunk_matches(
        &self,
        start: u64,
        rec: &JournalRecord,
        data_len: u64,
    ) -> Result<bool, StorageError> {
        use std::io::{Seek, SeekFrom};
        let Some(want) = rec.data_crc else {
            return Ok(true);
        };
        if data_len < rec.end || rec.end < start {
            return Ok(false);
        }
        let mut file = File::open(&self.data_path).map_err(io_err(&self.data_path, "open"))?;
        file.seek(SeekFrom::Start(start))
            .map_err(io_err(&self.data_path, "seek"))?;
        let mut hasher = crc32fast::Hasher::new();
        let mut left = rec.end - start;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            let n = buf.len().min(left as usize);
            file.read_exact(&mut buf[..n])
                .map_err(io_err(&self.data_path, "read"))?;
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(hasher.finalize() == want)
    }

    fn truncate_data(&mut self, len: u64) -> Result<(), StorageError> {
        let current = self
            .data
            .metadata()
            .map_err(io_err(&self.data_path, "stat"))?
            .len();
        if current != len {
            self.data
                .set_len(len)
                .map_err(io_err(&self.data_path, "truncate"))?;
            if self.journal_sync.is_some() {
                self.data
                    .sync_all()
                    .map_err(io_err(&self.data_path, "sync"))?;
            }
        }
        self.committed_len = len;
        Ok(())
    }

    /// Bets stored per agency (agencies with none are absent).
    pub fn counts(&self) -> &BTreeMap<u32, u64> {
        &self.counts
    }

    /// Agencies whose DONE is recorded.
    pub fn done(&self) -> &BTreeSet<u32> {
        &self.done
    }

    /// Path of the bets file.
    pub fn path(&self) -> &Path {
        &self.data_path
    }

    /// Bytes of the bets file that are committed.
    pub fn committed_len(&self) -> u64 {
        self.committed_len
    }

    /// Appends `bets` as one commit. The simple, single-threaded way in;
    /// the server batches many callers into one [`Storage::commit`].
    ///
    /// # Errors
    /// As [`Storage::commit`].
    pub fn store_bets(&mut self, bets: &[Bet]) -> Result<(), StorageError> {
        let mut rows = Vec::new();
        let mut added: BTreeMap<u32, u64> = BTreeMap::new();
        for bet in bets {
            encode_row(&mut rows, bet);
            *added.entry(bet.agency).or_default() += 1;
        }
        let added: Vec<(u32, u64)> = added.into_iter().collect();
        self.commit(&rows, &added, &[])
    }

    /// Appends already encoded `rows` (see [`encode_row`]) holding `added`
    /// new bets per agency, records `done` agencies, and makes it all
    /// durable as one unit.
    ///
    /// On failure nothing of this commit remains: the files are cut back to
    /// the previous commit. If even that fails, the storage refuses every
    /// further commit until the process restarts and recovers.
    ///
    /// # Errors
    /// Any write, sync or truncate error, with the file it concerns.
    pub fn commit(
        &mut self,
        rows: &[u8],
        added: &[(u32, u64)],
        done: &[u32],
    ) -> Result<(), StorageError> {
        if let Some(reason) = &self.broken {
            return Err(StorageError::Broken {
                reason: reason.clone(),
            });
        }
        let end = self.committed_len + rows.len() as u64;
        let totals: Vec<(u32, u64)> = added
            .iter()
            .map(|&(agency, n)| (agency, self.counts.get(&agency).copied().unwrap_or(0) + n))
            .collect();
        let result = self
            .append_data(rows)
            .and_then(|()| self.write_journal(end, Some(crc32fast::hash(rows)), &totals, done))
            .and_then(|line_len| self.sync(!rows.is_empty()).map(|()| line_len));
        match result {
            Ok(line_len) => {
                // Only now: a failed commit is cut back to the lengths of
                // the previous one, its journal line included.
                self.journal_len += line_len;
                self.committed_len = end;
                self.counts.extend(totals);
                self.done.extend(done.iter().copied());
                Ok(())
            }
            Err(e) => {
                self.roll_back();
                Err(e)
            }
        }
    }

    fn append_data(&mut self, rows: &[u8]) -> Result<(), StorageError> {
        self.data
            .write_all(rows)
            .map_err(io_err(&self.data_path, "append to"))
    }

    /// Appends one journal line and returns its length; the caller counts
    /// it in `journal_len` once the line is durable.
    fn write_journal(
        &mut self,
        end: u64,
        data_crc: Option<u32>,
        totals: &[(u32, u64)],
        done: &[u32],
    ) -> Result<u64, StorageError> {
        let line = JournalRecord {
            end,
            data_crc,
            counts: totals.to_vec(),
            done: done.to_vec(),
        }
        .to_line();
        self.journal
            .write_all(line.as_bytes())
            .map_err(io_err(&self.journal_path, "append to"))?;
        Ok(line.len() as u64)
    }

    /// Makes what was written durable (in `SyncMode::Always`). The two
    /// files are synced at the same time, the journal on its own thread: a
    /// commit then waits for one disk flush instead of two in a row
    /// (recovery checks the last commit's rows against its journal line, so
    /// the order in which they reach the disk does not matter).
    fn sync(&mut self, data_too: bool) -> Result<(), StorageError> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(io_err(&self.data_path, "sync")(io::Error::other(
                "injected EIO",
            )));
        }
        let Some(journal_sync) = &self.journal_sync else {
            return Ok(());
        };
        let asked = journal_sync.ask();
        let data_result = if data_too {
            self.data.sync_data()
        } else {
            Ok(())
        };
        let journal_result = if asked {
            journal_sync.answer()
        } else {
            self.journal.sync_data()
        };
        data_result.map_err(io_err(&self.data_path, "sync"))?;
        journal_result.map_err(io_err(&self.journal_path, "sync"))
    }

    /// Cuts both files back to the last commit after a failed one.
    fn roll_back(&mut self) {
        let data = self.data.set_len(self.committed_len);
        let journal = self.journal.set_len(self.journal_len);
        if let Err(e) = data.and(journal) {
            self.broken = Some(format!("could not roll back a failed commit: {e}"));
        }
    }
}

/// Makes a newly created file's directory entry durable.
fn sync_parent_dir(path: &Path) -> Result<(), StorageError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "sync directory"))
}

/// Reads every row of a bets file with no journal: returns the length of
/// the intact part (a torn last row is left out) and the count per agency.
fn scan_rows(path: &Path) -> Result<(u64, BTreeMap<u32, u64>), StorageError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    let mut rows = LoadBets::new(path, file, len);
    let mut counts = BTreeMap::new();
    let mut good = 0u64;
    while let Some(item) = rows.next() {
        let end = rows.position();
        // Only a row that ends with its newline is whole.
        let whole = end < len || ends_with_newline(path, len)?;
        match item {
            Ok(bet) if whole => {
                *counts.entry(bet.agency).or_insert(0) += 1;
                good = end;
            }
            Ok(_) => break,
            Err(_) if end >= len => break, // a torn last row
            Err(e) => return Err(e),
        }
    }
    Ok((good, counts))
}

fn ends_with_newline(path: &Path, len: u64) -> Result<bool, StorageError> {
    use std::io::{Seek, SeekFrom};
    if len == 0 {
        return Ok(false);
    }
    let mut f = File::open(path).map_err(io_err(path, "open"))?;
    f.seek(SeekFrom::Start(len - 1))
        .map_err(io_err(path, "seek"))?;
    let mut last = [0u8];
    f.read_exact(&mut last).map_err(io_err(path, "read"))?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::super::WinnersLog;
    use super::super::rows::load_bets;
    use super::*;
    use chrono::NaiveDate;

    /// A commit whose sync fails leaves nothing behind, its journal line
    /// included: the next commit and a restart see only acknowledged ones.
    #[test]
    fn a_commit_whose_sync_fails_leaves_no_journal_line() {
        let dir = temp_dir("failed-sync");
        let path = dir.join("bets.csv");
        let rows = |bets: &[Bet]| {
            let mut out = Vec::new();
            for b in bets {
                encode_row(&mut out, b);
            }
            out
        };
        let a = rows(&[bet(1, "Ana", "Paz", 1), bet(1, "Bea", "Paz", 2)]);
        let b = rows(&[
            bet(2, "Ciro", "Gil", 3),
            bet(2, "Dora", "Gil", 4),
            bet(2, "Eva", "Gil", 5),
        ]);
        let long: Vec<Bet> = (0..6)
            .map(|i| bet(3, "Fermín Ezequiel", "Rodríguez Peña", i))
            .collect();
        let c = rows(&long);
        assert!(
            c.len() > b.len(),
            "the bug showed when the next commit is longer"
        );
        {
            let (mut s, _) = Storage::open(&path, SyncMode::Always).unwrap();
            s.commit(&a, &[(1, 2)], &[]).unwrap();
            s.fail_next_sync = true;
            assert!(s.commit(&b, &[(2, 3)], &[2]).is_err());
            s.commit(&c, &[(3, 6)], &[]).unwrap();
            assert_eq!(s.counts(), &BTreeMap::from([(1, 2), (3, 6)]));
            assert!(s.done().is_empty());
        }
        let (s, recovery) = Storage::open(&path, SyncMode::Always).unwrap();
        assert_eq!(recovery, Recovery::default());
        assert_eq!(s.counts(), &BTreeMap::from([(1, 2), (3, 6)]));
        assert!(
            s.done().is_empty(),
            "agency 2's DONE was never acknowledged"
        );
        assert_eq!(std::fs::read(&path).unwrap(), [a, c].concat());
        std::fs::remove_dir_all(dir).unwrap();
    }

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lottery-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn bet(agency: u32, first: &str, last: &str, number: u16) -> Bet {
        Bet {
            agency,
            first_name: first.into(),
            last_name: last.into(),
            document: "0123".into(),
            birthdate: NaiveDate::from_ymd_opt(1980, 2, 29).unwrap(),
            number,
        }
    }

    fn hostile() -> Vec<Bet> {
        vec![
            bet(1, "José, \"Pepe\"", "Núñez", 7574),
            bet(2, "Ana\nMaría", "O'Brien\r\n", 1),
            bet(1, " leading", "trailing ", 2),
            bet(3, "a|b", "\"", 3),
            bet(1, "Ñandú", "Çelik", 7574),
        ]
    }

    #[test]
    fn hostile_names_round_trip_through_the_csv() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("bets.csv");
        let (mut s, _) = Storage::open(&path, SyncMode::Always).unwrap();
        s.store_bets(&hostile()).unwrap();
        let back: Vec<Bet> = load_bets(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(back, hostile());
        // And the csv crate (any CSV tool) reads the same six fields.
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(&path)
            .unwrap();
        let first = r.records().next().unwrap().unwrap();
        assert_eq!(
            first.iter().collect::<Vec<_>>(),
            ["1", "José, \"Pepe\"", "Núñez", "0123", "1980-02-29", "7574"]
        );
        assert_eq!(s.counts(), &BTreeMap::from([(1, 3), (2, 1), (3, 1)]));
    }

    #[test]
    fn reopening_keeps_counts_and_done() {
        let dir = temp_dir("reopen");
        let path = dir.join("bets.csv");
        let (mut s, _) = Storage::open(&path, SyncMode::Always).unwrap();
        s.store_bets(&hostile()).unwrap();
        s.commit(&[], &[], &[2]).unwrap();
        drop(s);
        let (s, rec) = Storage::open(&path, SyncMode::Always).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(s.counts(), &BTreeMap::from([(1, 3), (2, 1), (3, 1)]));
        assert_eq!(s.done(), &BTreeSet::from([2]));
    }

    #[test]
    fn an_unfinished_commit_is_cut_off_whole() {
        let dir = temp_dir("torn");
        let path = dir.join("bets.csv");
        let (mut s, _) = Storage::open(&path, SyncMode::Always).unwrap();
        s.store_bets(&hostile()[..2]).unwrap();
        let committed = s.committed_len();
        drop(s);
        // A crash after writing rows of the next commit but before its
        // journal line: two whole rows and half a third.
        let mut extra = Vec::new();
        for b in &hostile()[2..] {
            encode_row(&mut extra, b);
        }
        extra.truncate(extra.len() - 5);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&extra).unwrap();
        // ... and a torn journal line.
        let mut j = OpenOptions::new()
            .append(true)
            .open(journal_path(&path))
            .unwrap();
        j.write_all(b"end=99999 counts=1:9").unwrap();
        drop((f, j));

        let (s, rec) = Storage::open(&path, SyncMode::Always).unwrap();
        assert_eq!(rec.dropped_data_bytes, extra.len() as u64);
        assert_eq!(rec.dropped_journal_bytes, 20);
        assert_eq!(s.committed_len(), committed);
        let back: Vec<Bet> = load_bets(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(back, hostile()[..2]);
    }

    #[test]
    fn a_journal_line_whose_rows_never_reached_the_disk_is_forgotten() {
        let dir = temp_dir("lost-rows");
        let path = dir.join("bets.csv");
        let (mut s, _) = Storage::open(&path, SyncMode::Always).unwrap();
        s.store_bets(&hostile()[..2]).unwrap();
        let first_commit = s.committed_len();
        s.store_bets(&hostile()[2..]).unwrap();
        drop(s);
        // The second commit's journal line survived a crash, but its rows
        // came back damaged (same length, different bytes).
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let (s, rec) = Storage::open(&path, SyncMode::Always).unwrap();
        assert!(rec.dropped_journal_bytes > 0);
        assert_eq!(s.committed_len(), first_commit);
        assert_eq!(s.counts(), &BTreeMap::from([(1, 1), (2, 1)]));
        let back: Vec<Bet> = load_bets(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(back, hostile()[..2]);
    }

    #[test]
    fn a_file_without_journal_is_rebuilt_dropping_a_torn_row() {
        let dir = temp_dir("nojournal");
        let path = dir.join("bets.csv");
        let mut rows = Vec::new();
        for b in hostile() {
            encode_row(&mut rows, &b);
        }
        // The last row ends inside an open quote: torn.
        rows.extend_from_slice(b"1,\"Ana\n");
        std::fs::write(&path, &rows).unwrap();
        let (s, rec) = Storage::open(&path, SyncMode::Always).unwrap();
        assert!(rec.rebuilt_journal);
        assert_eq!(rec.dropped_data_bytes, 7);
        assert_eq!(s.counts(), &BTreeMap::from([(1, 3), (2, 1), (3, 1)]));
        // The rebuilt journal is used on the next open.
        drop(s);
        let (s, rec) = Storage::open(&path, SyncMode::None).unwrap();
        assert!(!rec.rebuilt_journal);
        assert_eq!(s.counts().get(&1), Some(&3));
    }

    #[test]
    fn a_data_file_shorter_than_its_journal_refuses_to_open() {
        let dir = temp_dir("short");
        let path = dir.join("bets.csv");
        let (mut s, _) = Storage::open(&path, SyncMode::None).unwrap();
        s.store_bets(&hostile()[..2]).unwrap();
        s.store_bets(&hostile()[2..]).unwrap();
        drop(s);
        // Shorter than even the first commit: not a crash, data loss.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(10).unwrap();
        let err = Storage::open(&path, SyncMode::None).unwrap_err();
        assert!(err.to_string().contains("refusing to start"), "{err}");
    }

    #[test]
    fn winners_are_found_in_one_pass() {
        let dir = temp_dir("winners");
        let path = dir.join("bets.csv");
        let (mut s, _) = Storage::open(&path, SyncMode::None).unwrap();
        s.store_bets(&hostile()).unwrap();
        let w = WinnersLog::rebuild(&path, s.committed_len())
            .unwrap()
            .finish(s.committed_len())
            .unwrap();
        assert_eq!(w.total(), 2);
        assert_eq!(w.page(1, 0, 100).unwrap().documents, ["0123", "0123"]);
        assert_eq!(w.page(2, 0, 100).unwrap().total, 0);
    }
}
