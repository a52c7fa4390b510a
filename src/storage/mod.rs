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

mod announce;
mod backend;
mod file;
mod journal;
mod lookup;
#[cfg(feature = "postgres")]
mod postgres;
mod recovery;
mod repair;
mod rows;
mod winners;

pub use announce::mark_path;
pub use backend::{Backend, FileBackend, OpenReport, Opened};
pub use file::{Storage, journal_path};
pub use lookup::Lookup;
pub use recovery::{MAX_TORN_ROWS, Recovery, Torn};
pub use repair::{Checked, Rebuilt, Truncated, check, rebuild_journal, truncate};
pub(crate) use rows::push_csv_field;
pub use rows::{LoadBets, encode_row, encode_row_at, load_bets};
pub use winners::{CHECKPOINT, WinnersFile, WinnersLog, push_record};

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// When the file backend calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Every commit is synced before it is acknowledged (the default).
    Always,
    /// Never sync: faster, but a power loss may lose acknowledged bets.
    /// A killed process loses nothing (the kernel still has the data).
    None,
}

impl SyncMode {
    /// Parses `always` or `none` (any case).
    pub fn parse(s: &str) -> Option<SyncMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "always" => Some(SyncMode::Always),
            "none" => Some(SyncMode::None),
            _ => None,
        }
    }
}

/// Where the bets are kept (from `STORAGE_BACKEND` and its settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `bets.csv` at `path` and its journal beside it.
    File { path: PathBuf, sync: SyncMode },
    /// A PostgreSQL database: a `postgresql://` URL or a libpq-style
    /// `key=value` string. Durability is the database's
    /// (`synchronous_commit`). `auth_required` is the server's
    /// `SERVER_AUTH`: the database records it for the lottery, and a server
    /// that disagrees refuses to start (one with `off` would open every
    /// agency to anyone).
    Postgres { url: String, auth_required: bool },
}

/// Errors of the storage layer, each with the file or database it concerns.
#[derive(Debug)]
pub enum StorageError {
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The file's content cannot be what this program wrote.
    Corrupt { path: PathBuf, reason: String },
    /// Damage no crash explains, at byte `offset` of `path` (a damaged
    /// journal line with more after it, committed rows that do not match
    /// their checksum): a start refuses and changes nothing.
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An earlier failure left the files in a state this process cannot
    /// repair; a restart recovers them.
    Broken { reason: String },
    /// The database refused or could not be reached; the next commit
    /// connects again.
    Database {
        action: &'static str,
        reason: String,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            StorageError::Corrupt { path, reason } => {
                write!(f, "{} is corrupt: {reason}", path.display())
            }
            StorageError::Damaged {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{} is damaged at byte {offset}: {reason}; refusing to start, nothing was changed",
                path.display()
            ),
            StorageError::Broken { reason } => {
                write!(f, "storage unusable until restart: {reason}")
            }
            StorageError::Database { action, reason } => {
                write!(f, "database: cannot {action}: {reason}")
            }
        }
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    /// The error as the fields of a log line: `file: … | offset: … |
    /// error: …` for damage, so an operator sees where to look.
    pub fn log_fields(&self) -> String {
        use crate::logging::clean;
        match self {
            StorageError::Damaged {
                path,
                offset,
                reason,
            } => format!(
                "file: {} | offset: {offset} | error: {}; refusing to start, nothing was changed",
                clean(path.display()),
                clean(reason)
            ),
            StorageError::Io { path, .. } | StorageError::Corrupt { path, .. } => {
                format!("file: {} | error: {}", clean(path.display()), clean(self))
            }
            _ => format!("error: {}", clean(self)),
        }
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// One request of a commit group, in the order it was handed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRequest {
    pub agency: u32,
    pub kind: RequestKind,
}

/// What a request asks to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// `count` bets at positions `first..first + count`, encoded in
    /// `rows` (a range of the group's row bytes).
    Batch {
        first: u64,
        count: u64,
        rows: Range<usize>,
    },
    /// The agency says it sent `total` bets.
    Done { total: u64 },
}

/// A commit group as the committer hands it to the backend.
#[derive(Debug, Clone, Copy)]
pub struct GroupData<'a> {
    /// Every batch's rows, in request order.
    pub rows: &'a [u8],
    /// New bets per agency (the file backend's journal wants totals).
    pub added: &'a [(u32, u64)],
    /// Agencies whose DONE the group holds.
    pub done: &'a [u32],
    /// The requests, in order (indexes of [`Committed::verdicts`]).
    pub requests: &'a [GroupRequest],
}

/// Why a request of a committed group was not stored as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Already stored (by another server, or an earlier resend): acknowledge.
    Duplicate,
    /// The batch does not continue the agency's sequence, which is at `expected`.
    Sequence { expected: u64 },
    /// The agency's DONE is recorded: no more bets.
    AlreadyDone,
    /// DONE says `total`, the database holds `stored`.
    DoneMismatch { stored: u64 },
}

/// What a successful commit made durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Each touched agency: (agency, durable position, DONE recorded).
    pub agencies: Vec<(u32, u64, bool)>,
    /// Requests (by index in [`GroupData::requests`]) not stored as asked;
    /// every other request of the group is stored.
    pub verdicts: BTreeMap<usize, Verdict>,
    /// `Some(winners)` when this commit recorded the draw: it recorded
    /// the last agency's DONE.
    pub drew: Option<u64>,
}

/// One page of an agency's winners, as the WINNERS message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinnersPage {
    /// The agency's winners in all.
    pub total: u32,
    /// Documents from the offset asked, in storage order, as many as fit.
    pub documents: Vec<String>,
    /// Bytes the documents take on the wire (`str8` each).
    used: usize,
}

impl WinnersPage {
    /// An empty page of an agency with `total` winners.
    pub fn new(total: u32) -> WinnersPage {
        WinnersPage {
            total,
            documents: Vec::new(),
            used: 0,
        }
    }

    /// Whether one more document of `len` bytes fits in `room` bytes of
    /// documents (and in the message's `u16` count).
    pub fn fits(&self, len: usize, room: usize) -> bool {
        self.documents.len() < usize::from(u16::MAX) && self.used + 1 + len <= room
    }

    /// Adds a document (the caller checked [`WinnersPage::fits`]).
    pub fn push(&mut self, document: String) {
        self.used += 1 + document.len();
        self.documents.push(document);
    }
}

/// The draw as a [`Lookup`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrawState {
    /// No draw yet: `finished` agencies have their DONE recorded.
    NotReady { finished: u32 },
    /// A page of the agency's winners.
    Ready(WinnersPage),
}

/// The file backend's draw as the store serves it: the winners file, or
/// why it could not be built (a restart builds it again).
pub type DrawnWinners = Result<Arc<WinnersFile>, String>;

/// Logs the draw's line (`sorteo`) with its number of winners.
pub type AnnounceDraw<'a> = &'a dyn Fn(u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_mode_parses() {
        assert_eq!(SyncMode::parse("ALWAYS"), Some(SyncMode::Always));
        assert_eq!(SyncMode::parse(" none"), Some(SyncMode::None));
        assert_eq!(SyncMode::parse("sometimes"), None);
    }
}
