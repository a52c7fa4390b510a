//! The walk of a start's [`inspect`](super::inspect): the journal read
//! line by line, each commit's rows checked against its line's checksum in
//! one sequential read of `bets.csv`, and a commit kept only once the next
//! line shows it was not the last (or, being the last, its rows are
//! whole). What does not add up becomes a torn last commit, or damage.
//! Its limits say when bytes cannot be a torn commit: more past the last
//! commit than one commit holds ([`MAX_TORN_ROWS`]), a journal line longer
//! than any this program writes (`MAX_LINE`).

use super::plan::{OnDamage, Plan};
use super::report::Torn;
use crate::storage::error::{StorageError, io_err};
use crate::storage::journal::JournalRecord;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// More bytes than this past the last commit, with no journal line, cannot
/// be one torn commit: the server's commits hold at most a few MiB of rows
/// (the store's pending group is capped at 6 MiB, plus one batch), so such
/// bytes mean a journal cut short or replaced by an older copy, and cutting
/// them would drop acknowledged bets.
pub const MAX_TORN_ROWS: u64 = 64 << 20;

/// A journal line longer than this is damage, not a line this program wrote
/// (a line names the agencies one commit touched).
const MAX_LINE: usize = 8 << 20;

/// Whether a commit's rows are on disk as its line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowsState {
    Whole,
    /// `bets.csv` ends before the line's end.
    Short,
    /// The rows do not match the line's checksum.
    Mismatch,
}

/// A journal line read, whose rows are checked but which is kept only once
/// it is known not to be the last (or, being the last, its rows are whole).
struct UnsettledCommit {
    rec: JournalRecord,
    line_at: u64,
    line_end: u64,
    rows: RowsState,
}

pub(super) struct Walk<'a> {
    data: Rows,
    data_path: &'a Path,
    journal_path: &'a Path,
    /// The commits kept so far (`keep_*` are their ends).
    kept: Plan,
    pending: Option<UnsettledCommit>,
    on_damage: OnDamage,
}

impl<'a> Walk<'a> {
    /// A walk over `bets.csv` at `data_path` and its journal, from `start`
    /// (what the files are, nothing kept yet).
    pub(super) fn new(
        data_path: &'a Path,
        journal_path: &'a Path,
        start: Plan,
        on_damage: OnDamage,
    ) -> Result<Walk<'a>, StorageError> {
        Ok(Walk {
            data: Rows::open(data_path, start.data_len)?,
            data_path,
            journal_path,
            kept: start,
            pending: None,
            on_damage,
        })
    }

    /// Reads the journal line by line, checking each commit's rows, and
    /// decides what the start keeps.
    pub(super) fn run(mut self) -> Result<Plan, StorageError> {
        let file = File::open(self.journal_path).map_err(io_err(self.journal_path, "open"))?;
        let mut journal = BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::new();
        let mut at = 0u64;
        loop {
            line.clear();
            let n = (&mut journal)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(io_err(self.journal_path, "read"))?;
            if n == 0 {
                return self.end();
            }
            let line_at = at;
            at += n as u64;
            // A line follows: the pending commit is not the last one, so
            // its rows were synced before this line was written.
            if let Some(damage) = self.pending.take().and_then(|p| self.settle(p)) {
                return self.damaged(damage);
            }
            let Some(rec) = line.strip_suffix(b"\n").and_then(JournalRecord::parse) else {
                return self.unreadable(line_at, at, n);
            };
            if let Some(damage) = self.check(rec, line_at, at)? {
                return self.damaged(damage);
            }
        }
    }

    /// A journal line that does not parse, from `line_at` to `at`: the
    /// last line torn by a crash (its commit is cut with its rows), or
    /// damage.
    fn unreadable(mut self, line_at: u64, at: u64, n: usize) -> Result<Plan, StorageError> {
        if n > MAX_LINE {
            let damage =
                self.at_journal(line_at, format!("a journal line longer than {MAX_LINE} bytes"));
            return self.damaged(damage);
        }
        if at < self.kept.journal_len {
            let damage = self.at_journal(
                line_at,
                "this journal line is damaged (it does not match its checksum) and more \
                 lines follow it, so it is not a commit torn by a crash"
                    .into(),
            );
            return self.damaged(damage);
        }
        self.kept.torn = Some(Torn::TornLine { line_at, rows_at: self.kept.keep_data });
        self.tail()
    }

    /// Checks the rows of the commit whose line is `rec` (from `line_at`
    /// to `line_end`) and holds it as pending until the next line says
    /// whether it is the last. `Some`: damage.
    fn check(
        &mut self,
        rec: JournalRecord,
        line_at: u64,
        line_end: u64,
    ) -> Result<Option<StorageError>, StorageError> {
        if rec.end < self.kept.keep_data {
            return Ok(Some(self.at_journal(
                line_at,
                format!(
                    "this journal line says bets.csv ends at byte {}, before the end of the \
                     commit before it ({})",
                    rec.end, self.kept.keep_data
                ),
            )));
        }
        let rows =
            self.data.check(rec.end, rec.data_crc).map_err(io_err(self.data_path, "read"))?;
        self.pending = Some(UnsettledCommit { rec, line_at, line_end, rows });
        Ok(None)
    }

    /// The journal ended: the last commit is kept if its rows are whole,
    /// cut if they did not all reach the disk, and anything past it is
    /// looked at by [`Walk::tail`].
    fn end(mut self) -> Result<Plan, StorageError> {
        match self.pending.take() {
            Some(p) if p.rows != RowsState::Whole => {
                if self.kept.data_len > p.rec.end {
                    let damage = self.rows_damage(&p, "and bets.csv goes on past them");
                    return self.damaged(damage);
                }
                // The last line's rows did not all reach the disk.
                self.kept.torn = Some(Torn::LineWithoutRows {
                    line_at: p.line_at,
                    rows_at: self.kept.keep_data,
                });
                Ok(self.kept)
            }
            Some(p) => {
                self.keep(p);
                self.tail()
            }
            None => self.tail(),
        }
    }

    /// Rows past the last kept commit belong to the torn commit, if they
    /// can be one commit's.
    fn tail(mut self) -> Result<Plan, StorageError> {
        let extra = self.kept.data_len - self.kept.keep_data;
        if extra > MAX_TORN_ROWS {
            let at = self.kept.keep_data;
            let reason = format!(
                "{extra} bytes from byte {at} on have no journal line: more than one commit \
                 holds ({MAX_TORN_ROWS} bytes at most), so they are not a commit torn by a \
                 crash (was the journal cut short or replaced by an older copy?)"
            );
            let damage =
                StorageError::Damaged { path: self.data_path.to_owned(), offset: at, reason };
            return self.damaged(damage);
        }
        if extra > 0 && self.kept.torn.is_none() {
            self.kept.torn = Some(Torn::RowsWithoutLine {
                line_at: self.kept.keep_journal,
                rows_at: self.kept.keep_data,
            });
        }
        Ok(self.kept)
    }

    /// Keeps a commit that turned out not to be the last one, or refuses
    /// if its rows are not whole.
    fn settle(&mut self, p: UnsettledCommit) -> Option<StorageError> {
        match p.rows {
            RowsState::Whole => {
                self.keep(p);
                None
            }
            RowsState::Short | RowsState::Mismatch => {
                Some(self.rows_damage(&p, "and more commits follow it"))
            }
        }
    }

    fn keep(&mut self, p: UnsettledCommit) {
        let kept = &mut self.kept;
        kept.keep_data = p.rec.end;
        kept.keep_journal = p.line_end;
        kept.commits += 1;
        kept.counts.extend(p.rec.counts.iter().copied());
        kept.done.extend(p.rec.done.iter().copied());
    }

    fn rows_damage(&self, p: &UnsettledCommit, why_not_torn: &str) -> StorageError {
        let start = self.kept.keep_data;
        let (offset, what) = match p.rows {
            RowsState::Short => (
                self.kept.data_len,
                format!(
                    "bets.csv ends at byte {}, but the commit of the journal line at byte {} of {} \
                     ends at {}",
                    self.kept.data_len,
                    p.line_at,
                    self.journal_path.display(),
                    p.rec.end
                ),
            ),
            _ => (
                start,
                format!(
                    "the rows at bytes {start}..{} do not match the checksum of their journal line \
                     (byte {} of {})",
                    p.rec.end,
                    p.line_at,
                    self.journal_path.display()
                ),
            ),
        };
        StorageError::Damaged {
            path: self.data_path.to_owned(),
            offset,
            reason: format!("{what}, {why_not_torn}: committed rows lost or damaged"),
        }
    }

    fn at_journal(&self, offset: u64, reason: String) -> StorageError {
        StorageError::Damaged { path: self.journal_path.to_owned(), offset, reason }
    }

    /// Refuses, or plans to keep what came before the damage.
    fn damaged(mut self, damage: StorageError) -> Result<Plan, StorageError> {
        match self.on_damage {
            OnDamage::Refuse => Err(damage),
            OnDamage::CutBefore => {
                self.kept.torn = None;
                self.kept.damage = Some(damage);
                Ok(self.kept)
            }
        }
    }
}

/// `bets.csv` read once from the start, a commit's rows at a time.
struct Rows {
    reader: Option<BufReader<File>>,
    pos: u64,
    len: u64,
}

impl Rows {
    fn open(path: &Path, len: u64) -> Result<Rows, StorageError> {
        let reader = if len > 0 {
            let file = File::open(path).map_err(io_err(path, "open"))?;
            Some(BufReader::with_capacity(1 << 20, file))
        } else {
            None
        };
        Ok(Rows { reader, pos: 0, len })
    }

    /// Checks the rows from where the last call ended up to `end` against
    /// `want` (`None`: a journal line without a checksum, trusted).
    fn check(&mut self, end: u64, want: Option<u32>) -> io::Result<RowsState> {
        if end > self.len {
            return Ok(RowsState::Short);
        }
        let mut hasher = crc32fast::Hasher::new();
        while self.pos < end {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(RowsState::Short);
            };
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file got shorter while it was read",
                ));
            }
            let n = buf.len().min((end - self.pos) as usize);
            hasher.update(&buf[..n]);
            reader.consume(n);
            self.pos += n as u64;
        }
        Ok(match want {
            Some(crc) if crc != hasher.finalize() => RowsState::Mismatch,
            _ => RowsState::Whole,
        })
    }
}
