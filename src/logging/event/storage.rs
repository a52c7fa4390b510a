//! The storage: the file backend's recovery, the database (opening it,
//! its schema, commits whose answer was lost), and the draw.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{Line, LogLine};
use std::fmt::{self, Display, Formatter};

/// See the module doc.
#[derive(Clone, Copy)]
pub enum StorageEvent<'a> {
    /// The file backend's recovery at start.
    Recovered {
        path: &'a dyn Display,
        dropped_bytes: u64,
        journal_dropped_bytes: u64,
        reason: &'a dyn Display,
        finished: u32,
    },
    /// The database cannot be reached yet: the server waits.
    DatabaseWaiting {
        database: &'a dyn Display,
        error: &'a dyn Display,
    },
    DatabaseUpgraded {
        database: &'a dyn Display,
        version: i32,
        auth: &'a str,
    },
    DatabaseReady {
        database: &'a dyn Display,
        version: i32,
    },
    DatabaseOpened {
        database: &'a dyn Display,
        schema_version: i32,
        finished: u32,
    },
    /// COMMIT was sent and its answer lost: the server asks the database.
    CommitAnswerLost {
        commit: &'a dyn Display,
        error: &'a dyn Display,
    },
    CommitLookupRetry {
        commit: &'a dyn Display,
        error: &'a dyn Display,
    },
    CommitFound {
        commit: &'a dyn Display,
        committed: bool,
    },
    Draw {
        winners: u64,
    },
    /// The draw is durable, its winners cannot be read back.
    WinnersUnavailable {
        error: &'a dyn Display,
    },
}

impl LogLine for StorageEvent<'_> {}

impl Display for StorageEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Action::*;
        use Outcome::{Fail, InProgress, Success};
        match *self {
            StorageEvent::Recovered {
                path,
                dropped_bytes,
                journal_dropped_bytes,
                reason,
                finished,
            } => Line::new(f, Recovery, Success)
                .field("path", path)
                .field("dropped_bytes", dropped_bytes)
                .field("journal_dropped_bytes", journal_dropped_bytes)
                .field("reason", reason)
                .field("agencias_finalizadas", finished)
                .end(),
            StorageEvent::DatabaseWaiting { database, error } => {
                Line::new(f, StorageOpen, InProgress)
                    .field("database", database)
                    .field("error", error)
                    .end()
            }
            StorageEvent::DatabaseUpgraded { database, version, auth } => {
                Line::new(f, StorageUpgrade, Success)
                    .field("database", database)
                    .field("version", version)
                    .field("auth", auth)
                    .end()
            }
            StorageEvent::DatabaseReady { database, version } => {
                Line::new(f, StorageSchema, Success)
                    .field("database", database)
                    .field("version", version)
                    .end()
            }
            StorageEvent::DatabaseOpened { database, schema_version, finished } => {
                Line::new(f, StorageOpen, Success)
                    .field("backend", "postgres")
                    .field("database", database)
                    .field("schema_version", schema_version)
                    .field("agencias_finalizadas", finished)
                    .end()
            }
            StorageEvent::CommitAnswerLost { commit, error } => {
                Line::new(f, CommitLookup, InProgress)
                    .field("commit", commit)
                    .field("error", format_args!("COMMIT was sent and its answer lost: {error}"))
                    .end()
            }
            StorageEvent::CommitLookupRetry { commit, error } => {
                Line::new(f, CommitLookup, InProgress)
                    .field("commit", commit)
                    .field("error", error)
                    .end()
            }
            StorageEvent::CommitFound { commit, committed } => Line::new(f, CommitLookup, Success)
                .field("commit", commit)
                .field("committed", committed)
                .end(),
            StorageEvent::Draw { winners } => {
                Line::new(f, Sorteo, Success).field("ganadores", winners).end()
            }
            StorageEvent::WinnersUnavailable { error } => Line::new(f, Ganadores, Fail)
                .field(
                    "error",
                    format_args!("the draw's winners cannot be served until a restart: {error}"),
                )
                .end(),
        }
    }
}
