//! Storage: where the bets live, behind one interface with two backends.
//!
//! - The file backend (the default): `bets.csv` and its commit journal
//!   `bets.csv.journal` on this machine's disk, which one server owns.
//!   [`file`] appends and syncs commits, [`journal`] holds the journal's
//!   line format, [`rows`] the CSV rows, [`recovery`] what a start keeps of
//!   the files (only a torn last commit is cut; other damage refuses the
//!   start), [`repair`] the operator's commands for files a start refuses.
//!   Beside them, [`winners`] keeps the winners on disk
//!   (`bets.csv.winners-log`, regrouped into `bets.csv.winners` at the
//!   draw), and [`announce`] the mark that the draw was logged
//!   (`bets.csv.draw`).
//! - `postgres` (cargo feature `postgres`): a PostgreSQL database that
//!   several servers share; each server is then stateless in front of it.
//!
//! The committer thread owns exactly one [`Backend`] ([`backend`]) and
//! hands it whole commit groups ([`GroupData`]). A backend answers with
//! [`Committed`]: the durable position of every agency the group touched,
//! and a [`Verdict`] for each request it did not store as asked (only a
//! shared database can find that another server stored it first).
//!
//! Workers never touch the committer's backend. What they must ask the
//! database directly (the position to resume from, the winners) goes
//! through a [`Lookup`] ([`lookup`]): for the file backend the store's
//! memory holds the positions, and the draw's [`WinnersFile`] the winners.
//!
//! The draw is announced (the `sorteo` line logged) exactly once per
//! lottery, across crashes: [`Backend::announce`] logs a durable draw that
//! is not marked as announced, then marks it (see [`announce`] for the
//! file backend's mark and the order chosen).
//!
//! What the backends and their callers share has a file of its own:
//! [`location`] (where the bets are kept, [`SyncMode`]), [`group`] (a commit
//! group and what a backend answers), [`draw`] (the draw as workers ask
//! for it: [`DrawState`], [`WinnersPage`]) and [`error`] ([`StorageError`]).

mod announce;
mod backend;
mod draw;
mod error;
mod file;
mod group;
mod journal;
mod location;
mod lookup;
#[cfg(feature = "postgres")]
mod postgres;
mod recovery;
mod repair;
mod rows;
mod winners;

pub use announce::mark_path;
pub use backend::{Backend, FileBackend, OpenReport, Opened};
pub use draw::{AnnounceDraw, DrawState, WinnersPage};
pub use error::StorageError;
pub use file::{Storage, journal_path};
pub use group::{Committed, GroupData, GroupRequest, RequestKind, Verdict};
pub use location::{Location, SyncMode};
pub use lookup::Lookup;
pub use recovery::{MAX_TORN_ROWS, Recovery, Torn};
pub use repair::{Checked, Rebuilt, Truncated, check, rebuild_journal, truncate};
pub(crate) use rows::push_csv_field;
pub use rows::{COPY_HEADER, COPY_TRAILER, LoadBets, encode_copy_row, encode_row, load_bets};
pub use winners::{CHECKPOINT, DrawnWinners, WinnersFile, WinnersLog, push_record};
