//! What a start cut, and why ([`Recovery`]): the shapes a crash can leave
//! the last commit in ([`Torn`]), as the start-up log line tells them.

use std::fmt;

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
