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
//! through a [`Lookup`]: for the file backend the store's memory holds the
//! positions, and the draw's [`WinnersFile`] the winners.
//!
//! The draw is announced (the `sorteo` line logged) exactly once per
//! lottery, across crashes: [`Backend::announce`] logs a durable draw that
//! is not marked as announced, then marks it (see [`announce`] for the
//! file backend's mark and the order chosen).

mod announce;
mod file;
mod journal;
#[cfg(feature = "postgres")]
mod postgres;
mod recovery;
mod repair;
mod rows;
mod winners;

pub use announce::mark_path;
pub use file::{Storage, journal_path};
pub use recovery::{MAX_TORN_ROWS, Recovery, Torn};
pub use repair::{Checked, Rebuilt, Truncated, check, rebuild_journal, truncate};
pub(crate) use rows::push_csv_field;
pub use rows::{LoadBets, encode_row, encode_row_at, load_bets};
use winners::Winners;
pub use winners::{CHECKPOINT, WinnersFile, WinnersLog, push_record};

use std::collections::{BTreeMap, BTreeSet};
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

/// The backend the committer writes through.
#[derive(Debug)]
pub enum Backend {
    File(Box<FileBackend>),
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::PgStorage>),
}

/// The file backend: the bets file and its journal, the winners beside
/// them, and how many agencies must finish (it decides the draw: the
/// commit that records the last DONE regroups the winners).
#[derive(Debug)]
pub struct FileBackend {
    storage: Storage,
    agencies: u32,
    sync: SyncMode,
    winners: Winners,
}

/// Whether every agency's DONE is recorded (asked after every commit: the
/// count first, so the check is one comparison until the last DONEs).
fn all_done(done: &BTreeSet<u32>, agencies: u32) -> bool {
    done.len() >= agencies as usize && (1..=agencies).all(|a| done.contains(&a))
}

impl FileBackend {
    /// The winners of a durable commit go to the log; if it recorded the
    /// last DONE, the log is regrouped and the draw's winners returned.
    fn gather(&mut self, winners: &[u8]) -> Option<u64> {
        let Winners::Gathering(log) = &mut self.winners else {
            return None;
        };
        log.append(winners);
        if !all_done(self.storage.done(), self.agencies) {
            return None;
        }
        let logged = log.total();
        let (total, file) = match log.finish(self.storage.committed_len()) {
            Ok(file) => (file.total(), Ok(Arc::new(file))),
            Err(e) => (logged, Err(e.to_string())),
        };
        self.winners = Winners::Drawn { total, file };
        Some(total)
    }
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
                // The winners are found again in the stored bets, with one
                // streaming pass; if the draw had happened, it is rebuilt.
                let len = storage.committed_len();
                let mut log = WinnersLog::rebuild(storage.path(), len)?;
                let winners = if all_done(storage.done(), agencies) {
                    let file = log.finish(len)?;
                    Winners::Drawn {
                        total: file.total(),
                        file: Ok(Arc::new(file)),
                    }
                } else {
                    Winners::Gathering(log)
                };
                Ok(Opened {
                    counts: storage.counts().clone(),
                    done: storage.done().clone(),
                    report: OpenReport::File {
                        path: path.clone(),
                        recovery,
                    },
                    backend: Backend::File(Box::new(FileBackend {
                        storage,
                        agencies,
                        sync: *sync,
                        winners,
                    })),
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

    /// Makes the group durable as one unit, or nothing of it. `winners`:
    /// the winning bets among the group's rows, as [`push_record`] writes
    /// them (the file backend keeps them on disk for the draw; a database
    /// finds them itself).
    ///
    /// # Errors
    /// Any write, sync or database error; nothing of the group is stored
    /// (a database whose COMMIT answer was lost is asked whether it
    /// committed; only if it cannot say may the group be stored after all:
    /// a resumed agency then learns its position from the database).
    pub fn commit(
        &mut self,
        group: &GroupData<'_>,
        winners: &[u8],
    ) -> Result<Committed, StorageError> {
        match self {
            Backend::File(file) => {
                let storage = &mut file.storage;
                storage.commit(group.rows, group.added, group.done)?;
                let touched: BTreeSet<u32> = group.requests.iter().map(|r| r.agency).collect();
                let agencies = touched
                    .into_iter()
                    .map(|a| {
                        let count = storage.counts().get(&a).copied().unwrap_or(0);
                        (a, count, storage.done().contains(&a))
                    })
                    .collect();
                let drew = file.gather(winners);
                Ok(Committed {
                    agencies,
                    drew,
                    ..Committed::default()
                })
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => {
                let _ = winners;
                db.commit(group)
            }
        }
    }

    /// The file backend's draw, once it has happened (a database serves
    /// winners through its [`Lookup`]).
    pub fn drawn_winners(&self) -> Option<DrawnWinners> {
        match self {
            Backend::File(file) => match &file.winners {
                Winners::Drawn { file, .. } => Some(file.clone()),
                Winners::Gathering(_) => None,
            },
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => None,
        }
    }

    /// Announces the draw if it is durable and not yet marked as announced:
    /// `log` writes the `sorteo` line, then the mark is made durable.
    /// Returns the winners it announced, `None` if there was nothing to
    /// announce (no draw, or already announced, here or by another server).
    ///
    /// # Errors
    /// The mark cannot be read or written (the line may have been logged:
    /// the next start logs it again), the database cannot be reached.
    pub fn announce(&mut self, log: AnnounceDraw<'_>) -> Result<Option<u64>, StorageError> {
        match self {
            Backend::File(file) => {
                let Winners::Drawn { total, .. } = file.winners else {
                    return Ok(None);
                };
                let (data, end) = (file.storage.path(), file.storage.committed_len());
                if announce::is_marked(data, end, total)? {
                    return Ok(None);
                }
                log(total);
                announce::mark(data, end, total, file.sync)?;
                Ok(Some(total))
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.announce(log),
        }
    }

    /// What the close log line names: the file's path or the database.
    pub fn describe(&self) -> String {
        match self {
            Backend::File(file) => format!("path: {}", file.storage.path().display()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => format!("database: {}", db.target()),
        }
    }
}

/// What workers ask the storage directly, outside the committer.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The store knows (file backend: one server owns the data, so its
    /// memory is the truth for positions, and the draw's winners file,
    /// which the store holds, for winners).
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

    /// The draw and a page of the agency's winners from `offset`, as many
    /// as fit in `room` bytes of documents; `None`: the store knows. A
    /// server that finds a draw nobody announced announces it (`log`).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn draw(
        &self,
        agency: u32,
        offset: u32,
        room: usize,
        log: AnnounceDraw<'_>,
    ) -> Result<Option<DrawState>, StorageError> {
        match self {
            Lookup::InMemory => {
                let _ = (agency, offset, room, log);
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            Lookup::Postgres(db) => db.draw(agency, offset, room, log).map(Some),
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

    /// A draw made durable without being announced (the server died
    /// between the two) is announced by the next backend opened on it,
    /// once: the mark survives, and a later open announces nothing.
    #[test]
    fn a_durable_draw_is_announced_once_across_opens() {
        use crate::bet::Bet;
        use std::cell::Cell;
        let dir = std::env::temp_dir().join(format!("lottery-announce-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bets.csv");
        let location = Location::File {
            path: path.clone(),
            sync: SyncMode::Always,
        };
        let bet = |agency, number| Bet {
            agency,
            first_name: "Ana".into(),
            last_name: "Paz".into(),
            document: "42".into(),
            birthdate: chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
            number,
        };
        let (mut storage, _) = Storage::open(&path, SyncMode::Always).unwrap();
        storage
            .store_bets(&[bet(1, 7574), bet(2, 1), bet(2, 7574), bet(1, 7574)])
            .unwrap();
        storage.commit(&[], &[], &[1]).unwrap();
        drop(storage);
        let logged = Cell::new(Vec::new());
        let log = |n: u64| {
            let mut v = logged.take();
            v.push(n);
            logged.set(v);
        };
        // Not every agency is done: nothing to announce.
        let mut backend = Backend::open(&location, 2).unwrap().backend;
        assert_eq!(backend.announce(&log).unwrap(), None);
        assert!(backend.drawn_winners().is_none());
        // The last DONE commits: the draw is durable, and announced once.
        let group = GroupData {
            rows: &[],
            added: &[],
            done: &[2],
            requests: &[GroupRequest {
                agency: 2,
                kind: RequestKind::Done { total: 2 },
            }],
        };
        assert_eq!(backend.commit(&group, &[]).unwrap().drew, Some(3));
        drop(backend); // died before announcing
        for _ in 0..2 {
            let mut backend = Backend::open(&location, 2).unwrap().backend;
            let Some(Ok(file)) = backend.drawn_winners() else {
                panic!("the draw is rebuilt")
            };
            assert_eq!(file.page(1, 0, 100).unwrap().documents, ["42", "42"]);
            backend.announce(&log).unwrap();
            assert_eq!(backend.announce(&log).unwrap(), None);
        }
        assert_eq!(logged.take(), vec![3], "announced once over two opens");
        std::fs::remove_dir_all(dir).unwrap();
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
