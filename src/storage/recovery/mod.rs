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
//!
//! - `inspect.rs`: [`inspect`], the lengths of both files;
//! - `walk.rs`: its walk over both files, commit by commit, and the limits
//!   past which bytes are damage ([`MAX_TORN_ROWS`]);
//! - `plan.rs`: what it decides ([`Plan`]), and what it does on damage
//!   ([`OnDamage`]);
//! - `report.rs`: what a start cut and why ([`Recovery`], [`Torn`]).

mod inspect;
mod plan;
mod report;
mod walk;

pub(super) use inspect::inspect;
pub(super) use plan::{OnDamage, Plan};
pub use report::{Recovery, Torn};
pub use walk::MAX_TORN_ROWS;
