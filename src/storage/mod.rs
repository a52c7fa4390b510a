//! Storage: where the bets live, behind one interface with two backends.
//!
//! - [`file`] (the default): `bets.csv` plus its commit journal on this
//!   machine's disk ([`journal`] holds the journal's line format, [`rows`]
//!   the CSV rows, [`recovery`] what a start keeps of them, [`repair`] the
//!   operator's commands for files a start refuses). One server owns the
//!   files.
//! - `postgres` (cargo feature `postgres`): a PostgreSQL database that
//!   several servers share; each server is then stateless in front of it.
//!
//! The interface is the [`Backend`] enum rather than a trait object: the
//! committer thread owns exactly one backend and calls [`Backend::commit`]
//! with a whole commit group ([`GroupData`]); a `match` shows in one place
//! what each backend does with it. A backend answers with [`Committed`]:
//! the durable position of every agency the group touched, and a
//! [`Verdict`] for each request it did not store as asked (only a shared
//! database can find that another server stored it first).
//!
//! Workers never touch the committer's backend. What they must ask the
//! database directly (the position to resume from, the winners) goes
//! through a [`Lookup`]: for the file backend the store's memory already
//! holds the answer.

mod file;
mod journal;
#[cfg(feature = "postgres")]
mod postgres;
mod recovery;
mod repair;
mod rows;

pub use file::{Storage, journal_path};
pub use recovery::{MAX_TORN_ROWS, Recovery, Torn};
pub use repair::{Checked, Rebuilt, Truncated, check, rebuild_journal, truncate};
pub(crate) use rows::push_csv_field;
pub use rows::{LoadBets, encode_row, encode_row_at, load_bets, winners_by_agency};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

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
pub struct Entry {
    pub agency: u32,
    pub kind: EntryKind,
}

/// What a request asks to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
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
    pub entries: &'a [Entry],
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
    /// Requests (by index in [`GroupData::entries`]) not stored as asked;
    /// every other request of the group is stored.
    pub verdicts: BTreeMap<usize, Verdict>,
    /// `Some(winners)` when this commit recorded the draw (a shared
    /// database decides it inside the commit; the file backend leaves the
    /// draw to the store).
    pub drew: Option<u64>,
}

/// The draw as a [`Lookup`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrawState {
    /// No draw yet: `finished` agencies have their DONE recorded.
    NotReady { finished: u32 },
    /// The agency's winners' documents, in storage order.
    Ready(Vec<String>),
}

/// The backend the committer writes through.
#[derive(Debug)]
pub enum Backend {
    File(Storage),
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::PgStorage>),
}

/// A backend just opened, and what the store starts from.
#[derive(Debug)]
pub struct Opened {
    pub backend: Backend,
    pub lookup: Lookup,
    /// Durable bets per agency.
    pub counts: BTreeMap<u32, u64>,
    /// Agencies whose DONE is recorded.
    pub done: BTreeSet<u32>,
    /// Winners among the stored bets, per agency (file backend only: a
    /// database answers winners with a query).
    pub winners: BTreeMap<u32, Vec<String>>,
    /// What opening found, for the start-up log line.
    pub report: OpenReport,
}

/// What opening a backend found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenReport {
    /// The file backend's recovery.
    File { path: PathBuf, recovery: Recovery },
    /// The database (host and name, never the password) and its schema.
    Postgres { target: String, schema: i32 },
}

impl Backend {
    /// Opens the storage at `location` for a lottery of `agencies`
    /// agencies: recovers the files, or connects to the database and
    /// creates its schema if missing.
    ///
    /// # Errors
    /// Files that cannot be opened or recovered; a database that cannot be
    /// reached, has a newer schema, or was set up for another number of
    /// agencies or another `SERVER_AUTH`; PostgreSQL asked of a build
    /// without the `postgres` feature.
    pub fn open(location: &Location, agencies: u32) -> Result<Opened, StorageError> {
        match location {
            Location::File { path, sync } => {
                let (storage, recovery) = Storage::open(path, *sync)?;
                let winners = if storage.committed_len() > 0 {
                    winners_by_agency(storage.path())?
                } else {
                    BTreeMap::new()
                };
                Ok(Opened {
                    counts: storage.counts().clone(),
                    done: storage.done().clone(),
                    winners,
                    report: OpenReport::File {
                        path: path.clone(),
                        recovery,
                    },
                    backend: Backend::File(storage),
                    lookup: Lookup::InMemory,
                })
            }
            #[cfg(feature = "postgres")]
            Location::Postgres { url, auth_required } => {
                postgres::open(url, agencies, *auth_required)
            }
            #[cfg(not(feature = "postgres"))]
            Location::Postgres { .. } => {
                let _ = agencies;
                Err(StorageError::Database {
                    action: "open",
                    reason: "this server was built without PostgreSQL support (cargo feature `postgres`)".into(),
                })
            }
        }
    }

    /// Makes the group durable as one unit, or nothing of it.
    ///
    /// # Errors
    /// Any write, sync or database error; nothing of the group is stored
    /// (a database whose COMMIT answer was lost is asked whether it
    /// committed; only if it cannot say may the group be stored after all:
    /// a resumed agency then learns its position from the database).
    pub fn commit(&mut self, group: &GroupData<'_>) -> Result<Committed, StorageError> {
        match self {
            Backend::File(storage) => {
                storage.commit(group.rows, group.added, group.done)?;
                let touched: BTreeSet<u32> = group.entries.iter().map(|e| e.agency).collect();
                let agencies = touched
                    .into_iter()
                    .map(|a| {
                        let count = storage.counts().get(&a).copied().unwrap_or(0);
                        (a, count, storage.done().contains(&a))
                    })
                    .collect();
                Ok(Committed {
                    agencies,
                    ..Committed::default()
                })
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.commit(group),
        }
    }

    /// What the close log line names: the file's path or the database.
    pub fn describe(&self) -> String {
        match self {
            Backend::File(storage) => format!("path: {}", storage.path().display()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => format!("database: {}", db.target()),
        }
    }
}

/// What workers ask the storage directly, outside the committer.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Positions and winners are in the store's memory (file backend: one
    /// server owns the data, so its memory is the truth).
    InMemory,
    /// Several servers share the database: ask it.
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgLookup),
}

impl Lookup {
    /// Whether the truth lives in a database other servers also write.
    pub fn is_shared(&self) -> bool {
        !matches!(self, Lookup::InMemory)
    }

    /// The agency's durable position and whether its DONE is recorded;
    /// `None`: the store's memory knows.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn position(&self, agency: u32) -> Result<Option<(u64, bool)>, StorageError> {
        match self {
            Lookup::InMemory => {
                let _ = agency;
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            Lookup::Postgres(db) => db.position(agency).map(Some),
        }
    }

    /// The draw and the agency's winners; `None`: the store's memory knows.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn draw(&self, agency: u32) -> Result<Option<DrawState>, StorageError> {
        match self {
            Lookup::InMemory => {
                let _ = agency;
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            Lookup::Postgres(db) => db.draw(agency).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_mode_parses() {
        assert_eq!(SyncMode::parse("ALWAYS"), Some(SyncMode::Always));
        assert_eq!(SyncMode::parse(" none"), Some(SyncMode::None));
        assert_eq!(SyncMode::parse("sometimes"), None);
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn postgres_in_a_build_without_it_is_a_clear_error() {
        let err = Backend::open(
            &Location::Postgres {
                url: "postgresql://localhost/lottery".into(),
                auth_required: true,
            },
            5,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("cargo feature `postgres`"),
            "{err}"
        );
    }
}
