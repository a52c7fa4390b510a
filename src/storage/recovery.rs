//! What a start of the file backend finds in `bets.csv` and its journal,
//! and what it may cut: only a torn last commit.
//!
//! A commit appends its rows to `bets.csv`, then its journal line, and syncs
//! both files at once; it is acknowledged only after both syncs, and the
//! next commit begins only then. So a crash leaves at most the LAST commit
//! half-written (a torn tail), in one of these shapes ([`Torn`]):
//! - some or all of its rows, without its journal line;
//! - its journal line incomplete or damaged (with none, some or all of its
//!   rows);
//! - its journal line whole, its rows not all on disk (`bets.csv` shorter
//!   than the line says, or the rows not matching the line's checksum).
//!
//! That commit was never acknowledged and is cut whole: a torn first commit
//! leaves an empty store, never part of its rows. Whatever else does not add
//! up is damage no crash explains: a damaged journal line with more lines
//! after it, committed rows that do not match their line's checksum (every
//! commit is checked, in one sequential read) in a commit that is not the
//! last, rows missing under more than the last commit, more bytes past the
//! last commit than one commit holds, rows without a journal. [`inspect`]
//! then refuses, naming the file and the byte offset.
//!
//! [`inspect`] only reads. The caller decides from its [`Plan`] before it
//! writes anything, so a refused start changes nothing on disk; the
//! operator's `server storage-check` is the same call.

use super::journal::JournalRecord;
use super::{StorageError, io_err};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
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

/// What a start cut, and why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of `bets.csv` (the torn commit's rows).
    pub dropped_data_bytes: u64,
    /// Bytes cut from the end of the journal (the torn commit's line).
    pub dropped_journal_bytes: u64,
    /// The shape of the torn last commit; `None`: nothing was cut.
    pub torn: Option<Torn>,
}

/// How the last commit was torn by a crash. Offsets: where each file is cut
/// (both 0: the first commit was torn, and nothing is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Torn {
    /// Rows past the last commit's end and no journal line for them (it
    /// would have started at `line_at`): the line never reached the disk.
    RowsWithoutLine { line_at: u64, rows_at: u64 },
    /// The journal's last line is incomplete or damaged, with nothing after
    /// it; its rows, those that reached the disk, start at `rows_at`.
    TornLine { line_at: u64, rows_at: u64 },
    /// The journal's last line is whole but its rows (from `rows_at`) did
    /// not all reach the disk: `bets.csv` ends before the line's end, or
    /// its rows do not match the line's checksum.
    LineWithoutRows { line_at: u64, rows_at: u64 },
}

impl fmt::Display for Recovery {
    /// The `reason` of the start-up log line: what was cut and why.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = |at: u64| format!("bets.csv bytes {at}..{}", at + self.dropped_data_bytes);
        let which = |line_at: u64| if line_at == 0 { "first" } else { "last" };
        match self.torn {
            None => write!(f, "nothing to cut"),
            Some(Torn::RowsWithoutLine { line_at, rows_at }) => write!(
                f,
                "torn {} commit: its rows were written but not its journal line; cut {}",
                which(line_at),
                rows(rows_at)
            ),
            Some(Torn::TornLine { line_at, rows_at }) => {
                write!(
                    f,
                    "torn {} commit: its journal line is incomplete or damaged; cut journal bytes {line_at}..{}",
                    which(line_at),
                    line_at + self.dropped_journal_bytes
                )?;
                if self.dropped_data_bytes > 0 {
                    write!(f, " and {}", rows(rows_at))?;
                }
                Ok(())
            }
            Some(Torn::LineWithoutRows { line_at, rows_at }) => write!(
                f,
                "torn {} commit: its journal line was written but its rows did not all reach bets.csv; cut journal bytes {line_at}..{} and {}",
                which(line_at),
                line_at + self.dropped_journal_bytes,
                rows(rows_at)
            ),
        }
    }
}

/// What [`inspect`] does on damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnDamage {
    /// Refuse with [`StorageError::Damaged`] (a start; `storage-check`).
    Refuse,
    /// Keep the whole commits before the first damage and plan to cut the
    /// rest (the operator's `storage-truncate`).
    CutBefore,
}

/// What the files hold and what recovery keeps of them.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub data_exists: bool,
    pub journal_exists: bool,
    /// Lengths now (0 for a missing file).
    pub data_len: u64,
    pub journal_len: u64,
    /// Lengths to cut the files to: the end of the last whole commit.
    pub keep_data: u64,
    pub keep_journal: u64,
    /// Journal lines kept.
    pub commits: u64,
    /// Totals per agency and finished agencies, after the kept commits.
    pub counts: BTreeMap<u32, u64>,
    pub done: BTreeSet<u32>,
    /// Why the tail is cut on a start (a crash).
    pub torn: Option<Torn>,
    /// The first damage ([`OnDamage::CutBefore`] only): the cut starts there.
    pub damage: Option<StorageError>,
}

impl Plan {
    /// Whether following the plan writes anything.
    pub fn cuts(&self) -> bool {
        self.keep_data < self.data_len || self.keep_journal < self.journal_len
    }

    /// What a start following this plan reports.
    pub fn recovery(&self) -> Recovery {
        Recovery {
            dropped_data_bytes: self.data_len - self.keep_data,
            dropped_journal_bytes: self.journal_len - self.keep_journal,
            torn: self.torn,
        }
    }
}

/// Reads `bets.csv` at `data_path` and its journal and decides what a start
/// keeps; writes nothing.
///
/// # Errors
/// A file that cannot be read; with [`OnDamage::Refuse`], damage a crash
/// cannot explain ([`StorageError::Damaged`], naming the file and offset),
/// and rows without a journal ([`StorageError::Corrupt`]).
pub(super) fn inspect(
    data_path: &Path,
    journal_path: &Path,
    on_damage: OnDamage,
) -> Result<Plan, StorageError> {
    let data_len = file_len(data_path)?;
    let Some(journal_len) = file_len(journal_path)? else {
        return match data_len {
            Some(len) if len > 0 => Err(StorageError::Corrupt {
                path: journal_path.to_owned(),
                reason: format!(
                    "it is missing while {} holds {len} bytes (a journal deleted, or rows from \
                     elsewhere): no checksum vouches for those rows, and which agencies finished \
                     is unknown; refusing to start, nothing was changed (if the rows are to be \
                     trusted, `server storage-rebuild-journal {}` writes a journal for them)",
                    data_path.display(),
                    data_path.display()
                ),
            }),
            _ => Ok(Plan {
                data_exists: data_len.is_some(),
                ..Plan::default()
            }),
        };
    };
    let walk = Walk {
        data: Rows::open(data_path, data_len.unwrap_or(0))?,
        data_path,
        journal_path,
        kept: Plan {
            data_exists: data_len.is_some(),
            journal_exists: true,
            data_len: data_len.unwrap_or(0),
            journal_len,
            ..Plan::default()
        },
        pending: None,
        on_damage,
    };
    walk.run()
}

/// A file's length, `None` if it does not exist.
fn file_len(path: &Path) -> Result<Option<u64>, StorageError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "stat")(e)),
    }
}

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
struct Pending {
    rec: JournalRecord,
    line_at: u64,
    line_end: u64,
    rows: RowsState,
}

struct Walk<'a> {
    data: Rows,
    data_path: &'a Path,
    journal_path: &'a Path,
    /// The commits kept so far (`keep_*` are their ends).
    kept: Plan,
    pending: Option<Pending>,
    on_damage: OnDamage,
}

impl Walk<'_> {
    fn run(mut self) -> Result<Plan, StorageError> {
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
                break;
            }
            let line_at = at;
            at += n as u64;
            // A line follows: the pending commit is not the last one, so
            // its rows were synced before this line was written.
            if let Some(damage) = self.pending.take().and_then(|p| self.settle(p)) {
                return self.damaged(damage);
            }
            let Some(rec) = line.strip_suffix(b"\n").and_then(JournalRecord::parse) else {
                if n > MAX_LINE {
                    let damage = self.at_journal(
                        line_at,
                        format!("a journal line longer than {MAX_LINE} bytes"),
                    );
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
                // The last line, torn: its commit is cut with its rows.
                self.kept.torn = Some(Torn::TornLine {
                    line_at,
                    rows_at: self.kept.keep_data,
                });
                return self.tail();
            };
            if rec.end < self.kept.keep_data {
                let damage = self.at_journal(
                    line_at,
                    format!(
                        "this journal line says bets.csv ends at byte {}, before the end of the \
                         commit before it ({})",
                        rec.end, self.kept.keep_data
                    ),
                );
                return self.damaged(damage);
            }
            let rows = self
                .data
                .check(rec.end, rec.data_crc)
                .map_err(io_err(self.data_path, "read"))?;
            self.pending = Some(Pending {
                rec,
                line_at,
                line_end: at,
                rows,
            });
        }
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
            let damage = StorageError::Damaged {
                path: self.data_path.to_owned(),
                offset: at,
                reason,
            };
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
    fn settle(&mut self, p: Pending) -> Option<StorageError> {
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

    fn keep(&mut self, p: Pending) {
        let kept = &mut self.kept;
        kept.keep_data = p.rec.end;
        kept.keep_journal = p.line_end;
        kept.commits += 1;
        kept.counts.extend(p.rec.counts.iter().copied());
        kept.done.extend(p.rec.done.iter().copied());
    }

    fn rows_damage(&self, p: &Pending, why_not_torn: &str) -> StorageError {
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
        StorageError::Damaged {
            path: self.journal_path.to_owned(),
            offset,
            reason,
        }
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
        Ok(Rows {
            reader,
            pos: 0,
            len,
        })
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
