//! The backend the committer writes through: the [`Backend`] enum, and the
//! file backend behind it ([`FileBackend`]: `bets.csv` with its journal,
//! the winners on disk beside it, the draw's mark).
//!
//! An enum rather than a trait object: the committer thread owns exactly
//! one backend and calls [`Backend::commit`] with a whole commit group; a
//! `match` shows in one place what each backend does with it.

use super::announce;
use super::draw::AnnounceDraw;
use super::error::StorageError;
use super::file::Storage;
use super::group::{Committed, GroupData};
use super::location::{Location, SyncMode};
use super::lookup::Lookup;
use super::recovery::Recovery;
use super::winners::{DrawnWinners, Winners, WinnersLog};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The backend the committer writes through.
#[derive(Debug)]
pub enum Backend {
    File(Box<FileBackend>),
    #[cfg(feature = "postgres")]
    Postgres(Box<super::postgres::PgStorage>),
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

/// Whether every agency's DONE is recorded (asked after every commit: the
/// count first, so the check is one comparison until the last DONEs). A
/// lottery of no agencies (`SERVER_AGENCIES=0`, an echo-only server) has
/// no draw: there is nothing to draw from.
fn all_done(done: &BTreeSet<u32>, agencies: u32) -> bool {
    agencies > 0 && done.len() >= agencies as usize && (1..=agencies).all(|a| done.contains(&a))
}

impl FileBackend {
    /// Recovers `bets.csv` at `path` and its journal, and finds the
    /// winners again in the stored bets with one streaming pass; if every
    /// one of the `agencies` had finished, the draw is rebuilt.
    fn open(path: &Path, sync: SyncMode, agencies: u32) -> Result<Opened, StorageError> {
        let (storage, recovery) = Storage::open(path, sync)?;
        let len = storage.committed_len();
        let mut log = WinnersLog::rebuild(storage.path(), len)?;
        let winners = if all_done(storage.done(), agencies) {
            let file = log.finish(len)?;
            Winners::Drawn { total: file.total(), file: Ok(Arc::new(file)) }
        } else {
            Winners::Gathering(log)
        };
        Ok(Opened {
            counts: storage.counts().clone(),
            done: storage.done().clone(),
            report: OpenReport::File { path: path.to_owned(), recovery },
            backend: Backend::File(Box::new(FileBackend { storage, agencies, sync, winners })),
            lookup: Lookup::InMemory,
        })
    }

    /// Appends and syncs the group; its winners go to the winners' log
    /// once it is durable.
    fn commit(&mut self, group: &GroupData<'_>, winners: &[u8]) -> Result<Committed, StorageError> {
        let storage = &mut self.storage;
        storage.commit(group.rows, group.added, group.done)?;
        let touched: BTreeSet<u32> = group.requests.iter().map(|r| r.agency).collect();
        let agencies = touched
            .into_iter()
            .map(|a| {
                let count = storage.counts().get(&a).copied().unwrap_or(0);
                (a, count, storage.done().contains(&a))
            })
            .collect();
        let drew = self.gather(winners);
        Ok(Committed { agencies, drew, ..Committed::default() })
    }

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

    /// Logs a drawn, unmarked draw, then marks it (`bets.csv.draw`; see
    /// [`announce`] for the order chosen).
    fn announce(&mut self, log: AnnounceDraw<'_>) -> Result<Option<u64>, StorageError> {
        let Winners::Drawn { total, .. } = self.winners else {
            return Ok(None);
        };
        let (data, end) = (self.storage.path(), self.storage.committed_len());
        if announce::is_marked(data, end, total)? {
            return Ok(None);
        }
        log(total);
        announce::mark(data, end, total, self.sync)?;
        Ok(Some(total))
    }
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
            Location::File { path, sync } => FileBackend::open(path, *sync, agencies),
            #[cfg(feature = "postgres")]
            Location::Postgres { url, auth_required, wait } => {
                let db = super::postgres::open(url, agencies, *auth_required, *wait)?;
                Ok(Opened {
                    report: OpenReport::Postgres {
                        target: db.storage.target().to_owned(),
                        schema: db.schema,
                    },
                    backend: Backend::Postgres(Box::new(db.storage)),
                    lookup: Lookup::Postgres(db.lookup),
                    counts: db.counts,
                    done: db.done,
                })
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
    /// the winning bets among the group's rows, as
    /// [`push_record`](super::push_record) writes them (the file backend
    /// keeps them on disk for the draw; a database finds them itself).
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
            Backend::File(file) => file.commit(group, winners),
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
            Backend::File(file) => file.announce(log),
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.announce(log),
        }
    }

    /// Whether the last commit failed for want of a database: its outage
    /// is logged once a second by the storage, not at each failed commit.
    pub fn failed_unreachable(&self) -> bool {
        match self {
            Backend::File(_) => false,
            #[cfg(feature = "postgres")]
            Backend::Postgres(db) => db.failed_unreachable(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{GroupRequest, RequestKind};

    /// A draw made durable without being announced (the server died
    /// between the two) is announced by the next backend opened on it,
    /// once: the mark survives, and a later open announces nothing.
    #[test]
    fn a_durable_draw_is_announced_once_across_opens() {
        use crate::bet::Bet;
        use std::cell::Cell;
        let dir = crate::testing::temp_dir("announce");
        let path = dir.join("bets.csv");
        let location = Location::File { path: path.clone(), sync: SyncMode::Always };
        let bet = |agency, number| Bet {
            agency,
            first_name: "Ana".into(),
            last_name: "Paz".into(),
            document: "42".into(),
            birthdate: chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
            number,
        };
        let (mut storage, _) = Storage::open(&path, SyncMode::Always).unwrap();
        storage.store_bets(&[bet(1, 7574), bet(2, 1), bet(2, 7574), bet(1, 7574)]).unwrap();
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
            requests: &[GroupRequest { agency: 2, kind: RequestKind::Done { total: 2 } }],
        };
        assert_eq!(backend.commit(&group, &[]).unwrap().drew, Some(3));
        drop(backend); // died before announcing
        for _ in 0..2 {
            let mut backend = Backend::open(&location, 2).unwrap().backend;
            let Some(Ok(file)) = backend.drawn_winners() else { panic!("the draw is rebuilt") };
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
                wait: std::time::Duration::from_secs(1),
            },
            5,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cargo feature `postgres`"), "{err}");
    }

    /// No agencies, nothing to draw: a lottery of none never has a draw,
    /// nor announces one.
    #[test]
    fn a_lottery_of_no_agencies_has_no_draw() {
        let dir = crate::testing::temp_dir("no-agencies");
        let location = Location::File { path: dir.join("bets.csv"), sync: SyncMode::Always };
        for _ in 0..2 {
            let mut backend = Backend::open(&location, 0).unwrap().backend;
            assert!(backend.drawn_winners().is_none());
            assert_eq!(backend.announce(&|_| panic!("announced")).unwrap(), None);
        }
        assert!(!announce::mark_path(&dir.join("bets.csv")).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
