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
//! journal line is the commit point. On start, [`Storage::open`] first reads
//! both files and decides (see [`super::recovery`]): a commit torn by a
//! crash, which can only be the last one, is cut whole; damage no crash
//! explains (a damaged journal line with more after it, committed rows that
//! do not match their checksum) refuses the start with the file and the
//! byte offset, and nothing on disk is changed. So commits are atomic, and
//! nothing acknowledged is dropped in silence.
//!
//! The winners' files and the draw's mark beside these two are kept by
//! [`super::winners`] and [`super::announce`]. [`Storage`] is
//! single-threaded: the committer thread owns it, inside the file backend
//! (see [`super::Backend`]).

use super::error::{StorageError, io_err};
use super::journal::JournalRecord;
use super::location::SyncMode;
use super::recovery::{OnDamage, Recovery, inspect};
use super::rows::encode_row;
use crate::bet::Bet;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

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

/// A long-lived thread that fsyncs one file when asked: spawning a thread
/// per commit for the same job costs CPU on every commit (figures in
/// docs/PERFORMANCE.md).
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
        let thread = std::thread::Builder::new().name("journal-sync".into()).spawn(move || {
            for () in asked {
                if answer.send(file.sync_data()).is_err() {
                    break;
                }
            }
        })?;
        Ok(SyncThread { ask: Some(ask), answers, thread: Some(thread) })
    }

    /// Starts a sync; `false` if the thread is gone (sync inline then).
    fn ask(&self) -> bool {
        self.ask.as_ref().is_some_and(|ask| ask.send(()).is_ok())
    }

    /// The result of the sync started by `ask`.
    fn answer(&self) -> io::Result<()> {
        self.answers.recv().unwrap_or_else(|_| Err(io::Error::other("journal sync thread ended")))
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
    super::location::beside(data_path, ".journal")
}

impl Storage {
    /// Opens (creating if needed) the bets file at `path` and its journal,
    /// and cuts a commit a crash left half-written.
    ///
    /// # Errors
    /// Files that cannot be opened, read or cut; damage a crash cannot
    /// explain ([`StorageError::Damaged`], naming the file and the offset)
    /// and rows without a journal: then nothing on disk was changed.
    pub fn open(path: &Path, sync: SyncMode) -> Result<(Storage, Recovery), StorageError> {
        let data_path = path.to_owned();
        let journal_path = journal_path(path);
        // Decided before anything is written: a refused start changes nothing.
        let plan = inspect(&data_path, &journal_path, OnDamage::Refuse)?;
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
        // The journal exists (its directory entry durable) before the first
        // commit, so rows beside an empty journal are a torn first commit.
        if (!plan.data_exists || !plan.journal_exists) && sync == SyncMode::Always {
            sync_parent_dir(&data_path)?;
        }
        if plan.cuts() {
            // Rows first: a crash between the two cuts leaves a last
            // journal line without its rows, which the next start cuts.
            cut(&data, &data_path, plan.data_len, plan.keep_data, sync)?;
            cut(&journal, &journal_path, plan.journal_len, plan.keep_journal, sync)?;
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
        let recovery = plan.recovery();
        let storage = Storage {
            data,
            data_path,
            journal,
            journal_path,
            journal_sync,
            committed_len: plan.keep_data,
            journal_len: plan.keep_journal,
            counts: plan.counts,
            done: plan.done,
            broken: None,
            #[cfg(test)]
            fail_next_sync: false,
        };
        Ok((storage, recovery))
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
            return Err(StorageError::Broken { reason: reason.clone() });
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
        self.data.write_all(rows).map_err(io_err(&self.data_path, "append to"))
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
        let line =
            JournalRecord { end, data_crc, counts: totals.to_vec(), done: done.to_vec() }.to_line();
        self.journal.write_all(line.as_bytes()).map_err(io_err(&self.journal_path, "append to"))?;
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
            return Err(io_err(&self.data_path, "sync")(io::Error::other("injected EIO")));
        }
        let Some(journal_sync) = &self.journal_sync else {
            return Ok(());
        };
        let asked = journal_sync.ask();
        let data_result = if data_too { self.data.sync_data() } else { Ok(()) };
        let journal_result = if asked { journal_sync.answer() } else { self.journal.sync_data() };
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

/// Cuts the file at `path` from `len` bytes back to `keep`, durably.
fn cut(file: &File, path: &Path, len: u64, keep: u64, sync: SyncMode) -> Result<(), StorageError> {
    if keep < len {
        file.set_len(keep).map_err(io_err(path, "truncate"))?;
        if sync == SyncMode::Always {
            file.sync_data().map_err(io_err(path, "sync"))?;
        }
    }
    Ok(())
}

/// Makes a newly created file's directory entry durable.
pub(super) fn sync_parent_dir(path: &Path) -> Result<(), StorageError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir, "sync directory"))
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::rows::load_bets;
    use super::super::{Torn, WinnersLog};
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
        let b =
            rows(&[bet(2, "Ciro", "Gil", 3), bet(2, "Dora", "Gil", 4), bet(2, "Eva", "Gil", 5)]);
        let long: Vec<Bet> =
            (0..6).map(|i| bet(3, "Fermín Ezequiel", "Rodríguez Peña", i)).collect();
        let c = rows(&long);
        assert!(c.len() > b.len(), "the bug showed when the next commit is longer");
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
        assert!(s.done().is_empty(), "agency 2's DONE was never acknowledged");
        assert_eq!(std::fs::read(&path).unwrap(), [a, c].concat());
        std::fs::remove_dir_all(dir).unwrap();
    }

    pub(crate) use crate::testing::temp_dir;

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
        let mut r = csv::ReaderBuilder::new().has_headers(false).from_path(&path).unwrap();
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
        let mut j = OpenOptions::new().append(true).open(journal_path(&path)).unwrap();
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

    /// Rows without a journal (a journal deleted, or rows from elsewhere)
    /// are not trusted at start: no checksum vouches for them and which
    /// agencies finished is unknown. The operator rebuilds the journal,
    /// which drops a torn last row, and the next start uses it.
    #[test]
    fn a_file_without_journal_refuses_to_start_until_the_journal_is_rebuilt() {
        let dir = temp_dir("nojournal");
        let path = dir.join("bets.csv");
        let mut rows = Vec::new();
        for b in hostile() {
            encode_row(&mut rows, &b);
        }
        // The last row ends inside an open quote: torn.
        rows.extend_from_slice(b"1,\"Ana\n");
        std::fs::write(&path, &rows).unwrap();
        let err = Storage::open(&path, SyncMode::Always).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&journal_path(&path).display().to_string())
                && text.contains("storage-rebuild-journal"),
            "{text}"
        );
        assert!(!journal_path(&path).exists(), "nothing was created");
        assert_eq!(std::fs::read(&path).unwrap(), rows, "nothing was changed");

        let rebuilt = super::super::rebuild_journal(&path).unwrap();
        assert_eq!(rebuilt.data_cut, 7);
        assert_eq!(rebuilt.counts, BTreeMap::from([(1, 3), (2, 1), (3, 1)]));
        let (s, rec) = Storage::open(&path, SyncMode::None).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(s.counts(), &BTreeMap::from([(1, 3), (2, 1), (3, 1)]));
        assert_eq!(std::fs::read(&path).unwrap(), rows[..rows.len() - 7]);
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

    /// Where one commit's rows and journal line lie.
    #[derive(Debug, Clone)]
    pub(crate) struct CommitSpan {
        pub rows: std::ops::Range<u64>,
        pub line: std::ops::Range<u64>,
    }

    /// A store of `n` commits of two plain bets each (commit `i` from
    /// agency `i % 3 + 1`), and where each commit lies.
    pub(crate) fn store_of(path: &Path, n: usize) -> Vec<CommitSpan> {
        let (mut s, _) = Storage::open(path, SyncMode::None).unwrap();
        let mut commits = Vec::new();
        for i in 0..n {
            let agency = (i % 3 + 1) as u32;
            let (rows_at, line_at) = (s.committed_len(), s.journal_len);
            s.store_bets(&[bet(agency, "Ana", "Paz", i as u16), bet(agency, "Bruno", "Gil", 7574)])
                .unwrap();
            commits.push(CommitSpan {
                rows: rows_at..s.committed_len(),
                line: line_at..s.journal_len,
            });
        }
        commits
    }

    pub(crate) fn snapshot(path: &Path) -> (Vec<u8>, Vec<u8>) {
        (std::fs::read(path).unwrap(), std::fs::read(journal_path(path)).unwrap())
    }

    pub(crate) fn change(path: &Path, at: u64, f: impl FnOnce(u8) -> u8) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at as usize] = f(bytes[at as usize]);
        std::fs::write(path, bytes).unwrap();
    }

    pub(crate) fn set_len(path: &Path, len: u64) {
        OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
    }

    /// Opens (both sync modes) and expects a refusal naming `file` and
    /// `offset`, with both files exactly as they were.
    fn assert_refused(path: &Path, file: &Path, offset: u64) {
        let before = snapshot(path);
        for sync in [SyncMode::Always, SyncMode::None] {
            let err = Storage::open(path, sync).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&file.display().to_string())
                    && text.contains(&format!("at byte {offset}:")),
                "the error names {} and byte {offset}: {text}",
                file.display()
            );
            assert_eq!(snapshot(path), before, "nothing on disk changed");
        }
    }

    /// The reproduction: one digit changed in a journal line in the
    /// middle used to drop that commit and every later one in silence.
    #[test]
    fn a_digit_changed_in_a_middle_journal_line_refuses_to_start() {
        let dir = temp_dir("flip-journal");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 5);
        let journal = journal_path(&path);
        // `end=N…`: the first digit of N.
        let at = commits[2].line.start + 4;
        change(&journal, at, |d| if d == b'9' { b'0' } else { d + 1 });
        assert_refused(&path, &journal, commits[2].line.start);
    }

    #[test]
    fn a_byte_flipped_in_the_rows_of_a_middle_commit_refuses_to_start() {
        let dir = temp_dir("flip-rows");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 5);
        // `1,Ana,…`: the A of Ana, in the second commit's first row.
        change(&path, commits[1].rows.start + 2, |b| b ^ 0x20);
        assert_refused(&path, &path, commits[1].rows.start);
    }

    /// Only the last commit can be torn: the one before a torn journal line
    /// was synced whole, so its rows must match.
    #[test]
    fn damaged_rows_before_a_torn_journal_line_refuse_to_start() {
        let dir = temp_dir("flip-before-torn");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 4);
        let last = &commits[3];
        change(&path, commits[2].rows.start + 2, |b| b ^ 0x20);
        set_len(&journal_path(&path), last.line.start + 10);
        assert_refused(&path, &path, commits[2].rows.start);
    }

    /// Rows that do not match the last line's checksum are a torn commit
    /// only if the file ends within them.
    #[test]
    fn damaged_last_rows_with_more_bytes_after_them_refuse_to_start() {
        let dir = temp_dir("flip-last-more");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 3);
        change(&path, commits[2].rows.start + 2, |b| b ^ 0x20);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"1,Ana,Paz,0123,1980-02-29,7\n")
            .unwrap();
        assert_refused(&path, &path, commits[2].rows.start);
    }

    /// A crash writes one journal line at most: two damaged lines at the
    /// end are damage.
    #[test]
    fn two_damaged_journal_lines_at_the_end_refuse_to_start() {
        let dir = temp_dir("two-bad-lines");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 4);
        let journal = journal_path(&path);
        change(&journal, commits[2].line.start + 4, |_| b'x');
        change(&journal, commits[3].line.start + 4, |_| b'x');
        assert_refused(&path, &journal, commits[2].line.start);
    }

    /// More bytes past the last journal line than one commit can hold are
    /// not a torn commit (a journal cut short, or an older copy of it).
    #[test]
    fn more_rows_past_the_journal_than_one_commit_holds_refuse_to_start() {
        let dir = temp_dir("journal-behind");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 2);
        let end = commits[1].rows.end;
        set_len(&path, end + (64 << 20) + 1); // sparse: nothing is written
        assert_refused(&path, &path, end);
        // One commit's worth is a torn commit, cut.
        set_len(&path, end + (64 << 20));
        let (s, rec) = Storage::open(&path, SyncMode::None).unwrap();
        assert_eq!(rec.dropped_data_bytes, 64 << 20);
        assert_eq!(s.committed_len(), end);
    }

    /// What a crash does to a commit's rows or to its journal line.
    type Shape = fn(&Path, &CommitSpan);

    /// The torn shape a start must report for a commit.
    type Expect = fn(&CommitSpan) -> Torn;

    /// Stores `n` commits, tears the last one (its rows, then its line, as
    /// `shape` says) and checks that a start cuts it whole, reports it as
    /// `torn`, and keeps every commit before it.
    fn assert_cut_whole(name: &str, n: usize, shape: (Shape, Shape), torn: Expect) {
        let dir = temp_dir("crash-shape");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, n);
        let last = commits.last().unwrap();
        let before_last = {
            let (d, j) = snapshot(&path);
            (d[..last.rows.start as usize].to_vec(), j[..last.line.start as usize].to_vec())
        };
        let counts_before = {
            let mut c = BTreeMap::new();
            for (i, _) in commits[..n - 1].iter().enumerate() {
                *c.entry((i % 3 + 1) as u32).or_insert(0) += 2;
            }
            c
        };
        (shape.0)(&path, last);
        (shape.1)(&path, last);
        let (data_len, journal_len) = {
            let (d, j) = snapshot(&path);
            (d.len() as u64, j.len() as u64)
        };
        let (s, rec) = Storage::open(&path, SyncMode::Always)
            .unwrap_or_else(|e| panic!("{name}, {n} commits: {e}"));
        assert_eq!(rec.torn, Some(torn(last)), "{name}, {n} commits");
        assert_eq!(rec.dropped_data_bytes, data_len - last.rows.start, "{name}");
        assert_eq!(rec.dropped_journal_bytes, journal_len - last.line.start, "{name}");
        assert_eq!(snapshot(&path), before_last, "{name}: cut back to the commit before");
        assert_eq!(s.counts(), &counts_before, "{name}");
        assert!(!rec.to_string().contains("nothing"), "{rec}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Every shape a crash can leave the last commit in (rows and journal
    /// line are synced at once, so either may be missing or partial) is cut
    /// whole, and the start says which.
    #[test]
    fn every_crash_shape_of_the_last_commit_is_cut_whole() {
        let rows_part: Shape = |p, c| set_len(p, c.rows.start + 9);
        let no_rows: Shape = |p, c| set_len(p, c.rows.start);
        let no_line: Shape = |p, c| set_len(&journal_path(p), c.line.start);
        let line_part: Shape = |p, c| set_len(&journal_path(p), c.line.start + 12);
        // A page never written reads as zeros, the rest made it.
        let line_zeroed: Shape = |p, c| {
            let j = journal_path(p);
            for at in c.line.start + 3..c.line.end - 8 {
                change(&j, at, |_| 0);
            }
        };
        let rows_zeroed: Shape = |p, c| {
            for at in c.rows.start + 5..c.rows.end {
                change(p, at, |_| 0);
            }
        };
        let keep: Shape = |_, _| {};
        let rows_without_line: Expect =
            |c| Torn::RowsWithoutLine { line_at: c.line.start, rows_at: c.rows.start };
        let torn_line: Expect = |c| Torn::TornLine { line_at: c.line.start, rows_at: c.rows.start };
        let line_without_rows: Expect =
            |c| Torn::LineWithoutRows { line_at: c.line.start, rows_at: c.rows.start };
        let cases: Vec<(&str, Shape, Shape, Expect)> = vec![
            ("part of the rows, no line", rows_part, no_line, rows_without_line),
            ("all the rows, no line", keep, no_line, rows_without_line),
            ("part of the rows, part of the line", rows_part, line_part, torn_line),
            ("all the rows, part of the line", keep, line_part, torn_line),
            ("no rows, part of the line", no_rows, line_part, torn_line),
            ("all the rows, the line with a zeroed page", keep, line_zeroed, torn_line),
            ("part of the rows, the whole line", rows_part, keep, line_without_rows),
            ("no rows, the whole line", no_rows, keep, line_without_rows),
            ("rows with a zeroed page, the whole line", rows_zeroed, keep, line_without_rows),
        ];
        for (name, rows, line, torn) in cases {
            for n in [1, 4] {
                assert_cut_whole(name, n, (rows, line), torn);
            }
        }
    }

    /// A first commit torn by a crash leaves nothing, never part of its
    /// rows: the journal exists (and is durable) before the first commit,
    /// so rows beside an empty journal are that commit's.
    #[test]
    fn a_torn_first_commit_is_dropped_whole() {
        let line_len = |path: &Path| std::fs::metadata(journal_path(path)).unwrap().len();
        type Tear = fn(&Path, u64);
        let cases: [(&str, Tear); 3] = [
            ("empty journal", |p, _| set_len(&journal_path(p), 0)),
            ("its only line torn", |p, line| set_len(&journal_path(p), line - 5)),
            ("its only line whole", |_, _| {}),
        ];
        for (name, tear) in cases {
            let dir = temp_dir("torn-first");
            let path = dir.join("bets.csv");
            let (mut s, _) = Storage::open(&path, SyncMode::None).unwrap();
            let three =
                [bet(1, "Ana", "Paz", 1), bet(1, "Bea", "Paz", 2), bet(2, "Ciro", "Gil", 3)];
            s.store_bets(&three).unwrap();
            drop(s);
            // Two whole rows of the three and part of the third made it.
            let mut two = Vec::new();
            encode_row(&mut two, &three[0]);
            encode_row(&mut two, &three[1]);
            let whole_rows = two.len() as u64;
            tear(&path, line_len(&path));
            set_len(&path, whole_rows + 4);
            let (data_len, journal_len) = (whole_rows + 4, line_len(&path));
            let (s, rec) = Storage::open(&path, SyncMode::Always).unwrap();
            assert_eq!(
                (rec.dropped_data_bytes, rec.dropped_journal_bytes),
                (data_len, journal_len),
                "{name}"
            );
            assert!(rec.to_string().contains("torn first commit"), "{name}: {rec}");
            assert!(s.counts().is_empty(), "{name}");
            assert_eq!(snapshot(&path), (Vec::new(), Vec::new()), "{name}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
