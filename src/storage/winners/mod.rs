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
//! [`CHECKPOINT`] winners; while regrouping at the draw, at most the
//! regrouping's budget of write buffers (`REGROUP_BUDGET` in `regroup.rs`,
//! or 256 bytes per agency with winners, if more). Nothing per winner.
//!
//! Both files are derived from `bets.csv`: they are never synced, and every
//! start rebuilds them from it with one streaming pass, so a crash leaves
//! nothing to repair and no format to keep compatible.
//!
//! - `record.rs`: a winner's record in the log ([`push_record`]) and the
//!   tally of each agency's winners;
//! - `gathering.rs`: the log while bets arrive ([`WinnersLog`]);
//! - `regroup.rs`: the draw's regrouping of the log into the winners file;
//! - `grouped.rs`: the winners file and its page reads ([`WinnersFile`]);
//! - `phase.rs`: which of the two the file backend holds ([`Winners`]).

mod gathering;
mod grouped;
mod phase;
mod record;
mod regroup;

pub use gathering::WinnersLog;
pub use grouped::{CHECKPOINT, WinnersFile};
pub use phase::{DrawnWinners, Winners};
pub use record::push_record;

#[cfg(test)]
mod tests;
