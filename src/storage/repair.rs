//! The operator's way out when a start refuses the files (see
//! [`super::recovery`]): `server storage-check`, `storage-truncate` and
//! `storage-rebuild-journal`. Run them with the server stopped: they assume
//! nobody else writes the files.
//!
//! - [`check`] says what a start would do, and changes nothing.
//! - [`truncate`] keeps the whole commits before the first damage and cuts
//!   the rest, which a start never does on its own: it drops acknowledged
//!   bets. The cut bytes are saved beside the files first
//!   (`bets.csv.cut`, `bets.csv.journal.cut`). Agencies that run again
//!   resume from the positions left (HELLO_OK), so nothing is stored twice.
//! - [`rebuild_journal`] writes a new journal from the rows of `bets.csv`
//!   as they are (for rows from elsewhere, a deleted journal, or a damaged
//!   journal line over intact rows). The old journal is kept as
//!   `bets.csv.journal.old`; an agency's DONE is kept when its rows are as
//!   many as when its DONE was recorded (as the intact lines tell), and
//!   dropped otherwise: that agency must say DONE again.

use super::error::{StorageError, io_err};
use super::file::{journal_path, sync_parent_dir};
use super::journal::JournalRecord;
use super::location::beside as with_suffix;
use super::recovery::{OnDamage, Plan, Recovery, inspect};
use super::rows::LoadBets;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A torn last row (no newline, or cut inside a quoted field) is at most
/// this long: a stored row comes from one frame of at most 8 KiB. More
/// bytes that do not form rows are damage, not a torn row.
const MAX_TORN_ROW: u64 = 64 << 10;

/// What [`check`] found: what a start would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub path: PathBuf,
    /// Commits (journal lines) a start keeps.
    pub commits: u64,
    /// Bets they hold, all agencies.
    pub bets: u64,
    /// Agencies whose DONE they record.
    pub finished: usize,
    /// What a start would cut, and why.
    pub recovery: Recovery,
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "path: {} | commits: {} | apuestas: {} | agencias_finalizadas: {} | dropped_bytes: {} | journal_dropped_bytes: {} | reason: {}",
            clean(self.path.display()),
            self.commits,
            self.bets,
            self.finished,
            self.recovery.dropped_data_bytes,
            self.recovery.dropped_journal_bytes,
            clean(&self.recovery)
        )
    }
}

/// What a start of the server would do with the bets file at `path` and
/// its journal; reads them, writes nothing.
///
/// # Errors
/// As [`super::Storage::open`]: a start would refuse these files.
pub fn check(path: &Path) -> Result<Checked, StorageError> {
    let plan = inspect(path, &journal_path(path), OnDamage::Refuse)?;
    Ok(Checked {
        path: path.to_owned(),
        commits: plan.commits,
        bets: plan.counts.values().sum(),
        finished: plan.done.len(),
        recovery: plan.recovery(),
    })
}

/// What [`truncate`] cut.
#[derive(Debug)]
pub struct Truncated {
    pub path: PathBuf,
    /// Bytes cut from `bets.csv` and from its journal.
    pub data_cut: u64,
    pub journal_cut: u64,
    /// Where the cut bytes were saved.
    pub saved: Vec<PathBuf>,
    /// Why: the first damage, or the torn last commit.
    pub why: String,
    /// Each agency's position (bets kept) and the finished agencies after.
    pub counts: BTreeMap<u32, u64>,
    pub done: BTreeSet<u32>,
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let saved: Vec<String> = self.saved.iter().map(|p| p.display().to_string()).collect();
        let positions: Vec<String> = self.counts.iter().map(|(a, n)| format!("{a}:{n}")).collect();
        write!(
            f,
            "path: {} | cut_bytes: {} | journal_cut_bytes: {} | saved: {} | why: {} | positions: {} | agencias_finalizadas: {}",
            clean(self.path.display()),
            self.data_cut,
            self.journal_cut,
            clean(if saved.is_empty() { "-".to_owned() } else { saved.join(", ") }),
            clean(&self.why),
            if positions.is_empty() { "-".to_owned() } else { positions.join(",") },
            self.done.len()
        )
    }
}

/// Cuts the bets file at `path` and its journal back to the last whole
/// commit before the first damage (or before a torn last commit), saving
/// the cut bytes to `<file>.cut` beside each file first.
///
/// # Errors
/// Files that cannot be read, saved or cut; a missing journal (rebuild it
/// instead); a `.cut` file that exists already (it is never overwritten).
pub fn truncate(path: &Path) -> Result<Truncated, StorageError> {
    let journal = journal_path(path);
    let plan = inspect(path, &journal, OnDamage::CutBefore)?;
    let why = match &plan.damage {
        Some(StorageError::Damaged { path, offset, reason }) => {
            format!("{} is damaged at byte {offset}: {reason}", path.display())
        }
        Some(other) => other.to_string(),
        None => plan.recovery().to_string(),
    };
    let cuts = [
        (path, plan.data_len, plan.keep_data),
        (journal.as_path(), plan.journal_len, plan.keep_journal),
    ];
    let mut saved = Vec::new();
    // Decided before writing: refuse while any `.cut` file is in the way.
    for &(file, len, keep) in &cuts {
        let to = cut_path(file);
        if keep < len && to.exists() {
            return Err(in_the_way(&to));
        }
    }
    for (file, len, keep) in cuts {
        if keep < len {
            let to = cut_path(file);
            save_tail(file, keep, &to)?;
            saved.push(to);
        }
    }
    if !saved.is_empty() {
        sync_parent_dir(path)?;
    }
    // Rows first, as a start does: a crash between the cuts leaves a last
    // journal line without its rows, which the next start cuts.
    for (file, len, keep) in cuts {
        if keep < len {
            cut_to(file, keep)?;
        }
    }
    let Plan { data_len, journal_len, keep_data, keep_journal, counts, done, .. } = plan;
    Ok(Truncated {
        path: path.to_owned(),
        data_cut: data_len - keep_data,
        journal_cut: journal_len - keep_journal,
        saved,
        why,
        counts,
        done,
    })
}

/// What [`rebuild_journal`] wrote.
#[derive(Debug)]
pub struct Rebuilt {
    pub path: PathBuf,
    /// Bets per agency found in `bets.csv`.
    pub counts: BTreeMap<u32, u64>,
    /// Agencies whose DONE the new journal keeps.
    pub done: BTreeSet<u32>,
    /// Agencies whose DONE was dropped: their count of rows is not the one
    /// their DONE was recorded with (they must say DONE again).
    pub done_dropped: BTreeSet<u32>,
    /// A torn last row cut from `bets.csv`, and where it was saved.
    pub data_cut: u64,
    pub saved: Option<PathBuf>,
    /// Where the old journal was kept.
    pub old_journal: Option<PathBuf>,
}

impl fmt::Display for Rebuilt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: Vec<String>| {
            if items.is_empty() { "-".to_owned() } else { items.join(",") }
        };
        let path_or_dash =
            |p: &Option<PathBuf>| p.as_ref().map_or_else(|| "-".to_owned(), |p| clean(p.display()));
        write!(
            f,
            "path: {} | apuestas: {} | positions: {} | done: {} | done_dropped: {} | cut_bytes: {} | saved: {} | old_journal: {}",
            clean(self.path.display()),
            self.counts.values().sum::<u64>(),
            list(self.counts.iter().map(|(a, n)| format!("{a}:{n}")).collect()),
            list(self.done.iter().map(u32::to_string).collect()),
            list(self.done_dropped.iter().map(u32::to_string).collect()),
            self.data_cut,
            path_or_dash(&self.saved),
            path_or_dash(&self.old_journal)
        )
    }
}

/// Writes a new journal for the bets file at `path` from its rows: one
/// line holding every agency's count and a checksum of all the rows. A torn
/// last row is cut (saved to `<path>.cut`); the old journal, if any, is
/// kept as `<journal>.old` and replaced in one rename.
///
/// # Errors
/// A missing bets file; a row that is not a bet before the last one (its
/// offset named: the rows cannot be trusted as they are); files that cannot
/// be read or written; a `.cut` or `.old` file that exists already.
pub fn rebuild_journal(path: &Path) -> Result<Rebuilt, StorageError> {
    let journal = journal_path(path);
    let len = std::fs::metadata(path).map_err(io_err(path, "stat"))?.len();
    let (good, counts) = scan_rows(path, len)?;
    // A DONE stands if the agency's rows are as many as when it was
    // recorded (a damaged line may hide that count: then it is dropped).
    let (mut done, mut done_dropped) = (BTreeSet::new(), BTreeSet::new());
    for (agency, total) in done_in_intact_lines(&journal)? {
        if counts.get(&agency).copied().unwrap_or(0) == total {
            done.insert(agency);
        } else {
            done_dropped.insert(agency);
        }
    }
    let old = journal.exists().then(|| with_suffix(&journal, ".old"));
    let cut = cut_path(path);
    if let Some(old) = old.as_ref().filter(|p| p.exists()) {
        return Err(in_the_way(old));
    }
    if good < len && cut.exists() {
        return Err(in_the_way(&cut));
    }
    let crc = crc_of(path, good)?;
    // Decided; now the writes.
    let saved = if good < len {
        save_tail(path, good, &cut)?;
        cut_to(path, good)?;
        Some(cut)
    } else {
        None
    };
    let line = JournalRecord {
        end: good,
        data_crc: Some(crc),
        counts: counts.iter().map(|(&a, &n)| (a, n)).collect(),
        done: done.iter().copied().collect(),
    }
    .to_line();
    let new = with_suffix(&journal, ".new");
    let mut file = File::create(&new).map_err(io_err(&new, "create"))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(&new, "write"))?;
    if let Some(old) = &old {
        std::fs::hard_link(&journal, old).map_err(io_err(old, "keep the old journal as"))?;
    }
    std::fs::rename(&new, &journal).map_err(io_err(&journal, "replace"))?;
    sync_parent_dir(path)?;
    Ok(Rebuilt {
        path: path.to_owned(),
        counts,
        done,
        done_dropped,
        data_cut: len - good,
        saved,
        old_journal: old,
    })
}

/// Reads every row of a bets file: the length of its intact part (a torn
/// last row is left out) and the count per agency.
fn scan_rows(path: &Path, len: u64) -> Result<(u64, BTreeMap<u32, u64>), StorageError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    let ends_with_newline = last_byte(path, len)? == Some(b'\n');
    let mut rows = LoadBets::new(path, file, len);
    let mut counts = BTreeMap::new();
    let mut good = 0u64;
    while let Some(item) = rows.next() {
        let end = rows.position();
        // Only a row that ends with its newline is whole.
        let whole = end < len || ends_with_newline;
        match item {
            Ok(bet) if whole => {
                *counts.entry(bet.agency).or_insert(0) += 1;
                good = end;
            }
            Ok(_) => break,
            Err(_) if end >= len => break, // a torn last row
            Err(e) => {
                return Err(StorageError::Damaged {
                    path: path.to_owned(),
                    offset: good,
                    reason: format!("the row at byte {good} is not a bet ({e})"),
                });
            }
        }
    }
    if len - good > MAX_TORN_ROW {
        return Err(StorageError::Damaged {
            path: path.to_owned(),
            offset: good,
            reason: format!(
                "the {} bytes from byte {good} on do not form rows, more than a torn last row",
                len - good
            ),
        });
    }
    Ok((good, counts))
}

/// The finished agencies of the journal's intact lines (damaged ones
/// skipped), each with its total when its DONE was recorded as far as
/// those lines tell; nothing if there is no journal.
fn done_in_intact_lines(journal: &Path) -> Result<BTreeMap<u32, u64>, StorageError> {
    let mut counts = BTreeMap::new();
    let mut done = BTreeMap::new();
    let file = match File::open(journal) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(io_err(journal, "open")(e)),
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(io_err(journal, "read"))?;
        if let Some(rec) = JournalRecord::parse(&line) {
            counts.extend(rec.counts);
            for agency in rec.done {
                let total = counts.get(&agency).copied().unwrap_or(0);
                done.entry(agency).or_insert(total);
            }
        }
    }
    Ok(done)
}

/// CRC-32 of the first `len` bytes of the file at `path`.
fn crc_of(path: &Path, len: u64) -> Result<u32, StorageError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file.take(len));
    let mut hasher = crc32fast::Hasher::new();
    loop {
        let buf = reader.fill_buf().map_err(io_err(path, "read"))?;
        if buf.is_empty() {
            break;
        }
        hasher.update(buf);
        let n = buf.len();
        reader.consume(n);
    }
    Ok(hasher.finalize())
}

fn last_byte(path: &Path, len: u64) -> Result<Option<u8>, StorageError> {
    if len == 0 {
        return Ok(None);
    }
    let mut f = File::open(path).map_err(io_err(path, "open"))?;
    f.seek(SeekFrom::Start(len - 1)).map_err(io_err(path, "seek"))?;
    let mut last = [0u8];
    f.read_exact(&mut last).map_err(io_err(path, "read"))?;
    Ok(Some(last[0]))
}

/// Copies the bytes of `from` past `at` to a new file `to`, durably.
fn save_tail(from: &Path, at: u64, to: &Path) -> Result<(), StorageError> {
    let mut src = File::open(from).map_err(io_err(from, "open"))?;
    src.seek(SeekFrom::Start(at)).map_err(io_err(from, "seek"))?;
    let mut dst =
        OpenOptions::new().write(true).create_new(true).open(to).map_err(io_err(to, "create"))?;
    io::copy(&mut src, &mut dst).map_err(io_err(to, "write"))?;
    dst.sync_all().map_err(io_err(to, "sync"))
}

/// Cuts the file at `path` to `len` bytes, durably.
fn cut_to(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io_err(path, "open"))?;
    file.set_len(len).map_err(io_err(path, "truncate"))?;
    file.sync_all().map_err(io_err(path, "sync"))
}

fn cut_path(path: &Path) -> PathBuf {
    with_suffix(path, ".cut")
}

fn in_the_way(path: &Path) -> StorageError {
    io_err(path, "write")(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "it exists already (from an earlier repair?): move it away first",
    ))
}

fn clean(value: impl fmt::Display) -> String {
    crate::logging::clean(value)
}

#[cfg(test)]
mod tests {
    use super::super::Storage;
    use super::super::SyncMode;
    use super::super::file::tests::{change, set_len, snapshot, store_of, temp_dir};
    use super::*;

    /// The way out of a damaged journal line in the middle, when the rows
    /// are what matters: a new journal from the rows keeps every bet and
    /// the DONEs whose counts still hold.
    #[test]
    fn rebuilding_the_journal_keeps_every_row_and_the_done_that_still_holds() {
        let dir = temp_dir("repair-rebuild");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 5);
        // Every agency finishes; then agency 1 gets one more row (which
        // only a hand-made commit can do), and agency 3's only line of
        // rows is damaged, so its count at DONE is unknown.
        {
            let (mut s, _) = Storage::open(&path, SyncMode::None).unwrap();
            s.commit(&[], &[], &[1, 2, 3]).unwrap();
            let mut row = Vec::new();
            encode_row_for(&mut row, 1);
            s.commit(&row, &[(1, 1)], &[]).unwrap();
        }
        let journal = journal_path(&path);
        let old = std::fs::read(&journal).unwrap();
        change(&journal, commits[2].line.start + 4, |_| b'x');
        let damaged = std::fs::read(&journal).unwrap();
        assert!(check(&path).is_err());

        let rebuilt = rebuild_journal(&path).unwrap();
        assert_eq!(rebuilt.counts, BTreeMap::from([(1, 5), (2, 4), (3, 2)]));
        assert_eq!(rebuilt.done, BTreeSet::from([2]));
        assert_eq!(rebuilt.done_dropped, BTreeSet::from([1, 3]));
        assert_eq!(rebuilt.data_cut, 0);
        let kept = with_suffix(&journal, ".old");
        assert_eq!(rebuilt.old_journal.as_ref(), Some(&kept));
        assert_eq!(std::fs::read(&kept).unwrap(), damaged);
        assert_ne!(damaged, old);
        assert!(rebuilt.to_string().contains("done_dropped: 1,3"), "{rebuilt}");

        let checked = check(&path).unwrap();
        assert_eq!((checked.commits, checked.bets, checked.finished), (1, 11, 1));
        let (s, rec) = Storage::open(&path, SyncMode::Always).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(s.counts(), &rebuilt.counts);
        assert_eq!(s.done(), &BTreeSet::from([2]));
        // A second rebuild would overwrite the kept journal: refused.
        assert!(rebuild_journal(&path).unwrap_err().to_string().contains(".old"));
    }

    /// The other way out: back to the last whole commit before the damage,
    /// the rest saved beside the files; positions go back, and agencies
    /// that run again send the rest.
    #[test]
    fn truncating_keeps_the_commits_before_the_damage_and_saves_the_rest() {
        let dir = temp_dir("repair-truncate");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 5);
        let (data, journal_bytes) = snapshot(&path);
        let journal = journal_path(&path);
        change(&path, commits[3].rows.start + 2, |b| b ^ 0x20);
        let err = check(&path).unwrap_err();
        assert!(
            err.log_fields().contains(&format!("offset: {}", commits[3].rows.start)),
            "{}",
            err.log_fields()
        );

        let cut = truncate(&path).unwrap();
        assert_eq!(cut.data_cut, commits[4].rows.end - commits[3].rows.start);
        assert_eq!(cut.journal_cut, commits[4].line.end - commits[3].line.start);
        assert_eq!(cut.counts, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        assert!(cut.why.contains("do not match"), "{}", cut.why);
        let (d, j) = snapshot(&path);
        assert_eq!(d, data[..commits[3].rows.start as usize]);
        assert_eq!(j, journal_bytes[..commits[3].line.start as usize]);
        let saved = std::fs::read(cut_path(&path)).unwrap();
        assert_eq!(saved.len() as u64, cut.data_cut);
        assert_eq!(saved[3..], data[commits[3].rows.start as usize + 3..]);
        assert_eq!(
            std::fs::read(cut_path(&journal)).unwrap(),
            journal_bytes[commits[3].line.start as usize..]
        );

        let (s, rec) = Storage::open(&path, SyncMode::Always).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(s.counts(), &cut.counts);
        drop(s);
        // Nothing left to cut, and the saved bytes are never overwritten.
        let again = truncate(&path).unwrap();
        assert_eq!((again.data_cut, again.journal_cut), (0, 0));
        set_len(&path, commits[3].rows.start + 1);
        assert!(truncate(&path).unwrap_err().to_string().contains(".cut"));
    }

    /// A rebuild cannot trust rows that are not bets: it names the first.
    #[test]
    fn rebuilding_refuses_rows_that_are_not_bets() {
        let dir = temp_dir("repair-bad-row");
        let path = dir.join("bets.csv");
        let commits = store_of(&path, 3);
        change(&path, commits[1].rows.start, |_| b'x');
        let before = snapshot(&path);
        let err = rebuild_journal(&path).unwrap_err();
        assert!(
            err.log_fields().contains(&format!("offset: {}", commits[1].rows.start)),
            "{}",
            err.log_fields()
        );
        assert_eq!(snapshot(&path), before);
    }

    fn encode_row_for(out: &mut Vec<u8>, agency: u32) {
        let bet = crate::bet::Bet {
            agency,
            first_name: "Eva".into(),
            last_name: "Paz".into(),
            document: "1".into(),
            birthdate: chrono::NaiveDate::from_ymd_opt(1990, 1, 2).unwrap(),
            number: 3,
        };
        super::super::encode_row(out, &bet);
    }
}
