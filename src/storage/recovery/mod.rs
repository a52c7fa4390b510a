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
//! [`inspect`] only reads (the walk over both files is [`walk`]). The
//! caller decides from its [`Plan`] before it writes anything, so a refused
//! start changes nothing on disk; the operator's `server storage-check` is
//! the same call.

mod walk;

use super::{StorageError, io_err};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::Path;
use walk::Walk;

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
    let start = Plan {
        data_exists: data_len.is_some(),
        journal_exists: true,
        data_len: data_len.unwrap_or(0),
        journal_len,
        ..Plan::default()
    };
    Walk::new(data_path, journal_path, start, on_damage)?.run()
}

/// A file's length, `None` if it does not exist.
fn file_len(path: &Path) -> Result<Option<u64>, StorageError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "stat")(e)),
    }
}
