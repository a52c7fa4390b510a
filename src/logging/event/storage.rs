//! The storage: the file backend's recovery, the database (opening it,
//! its schema, commits whose answer was lost), and the draw.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{LogLine, Text, line};
use std::fmt::{self, Display, Formatter};

/// See the module doc.
#[derive(Clone, Copy)]
pub enum StorageEvent<'a> {
    /// The file backend's recovery at start.
    Recovered {
        path: Text<'a>,
        dropped_bytes: u64,
        journal_dropped_bytes: u64,
        reason: Text<'a>,
        finished: u32,
    },
    /// The database cannot be reached yet: the server waits.
    DatabaseWaiting {
        database: Text<'a>,
        error: Text<'a>,
    },
    DatabaseUpgraded {
        database: Text<'a>,
        version: i32,
        auth: &'a str,
    },
    DatabaseReady {
        database: Text<'a>,
        version: i32,
    },
    DatabaseOpened {
        database: Text<'a>,
        schema_version: i32,
        finished: u32,
    },
    /// The database (no primary of it) cannot be reached; logged at most
    /// once a second, `repeated`: the failures held back since the last.
    Unreachable {
        database: Text<'a>,
        error: Text<'a>,
        repeated: Option<u64>,
    },
    /// Reachable again after `seconds` without it.
    Reachable {
        database: Text<'a>,
        seconds: f64,
    },
    /// COMMIT was sent and its answer lost: the server asks the database.
    CommitAnswerLost {
        commit: Text<'a>,
        error: Text<'a>,
    },
    CommitLookupRetry {
        commit: Text<'a>,
        error: Text<'a>,
    },
    CommitFound {
        commit: Text<'a>,
        committed: bool,
    },
    Draw {
        winners: u64,
    },
    /// The draw is durable, its winners cannot be read back.
    WinnersUnavailable {
        error: Text<'a>,
    },
}

impl LogLine for StorageEvent<'_> {}

impl Display for StorageEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Action::*;
        use Outcome::{Fail, InProgress, Success};
        let line = match *self {
            Self::Recovered { path, dropped_bytes, journal_dropped_bytes, reason, finished } => {
                line(f, Recovery, Success)
                    .field("path", path)
                    .field("dropped_bytes", dropped_bytes)
                    .field("journal_dropped_bytes", journal_dropped_bytes)
                    .field("reason", reason)
                    .field("agencias_finalizadas", finished)
            }
            Self::DatabaseWaiting { database, error } => {
                line(f, StorageOpen, InProgress).field("database", database).field("error", error)
            }
            Self::DatabaseUpgraded { database, version, auth } => line(f, StorageUpgrade, Success)
                .field("database", database)
                .field("version", version)
                .field("auth", auth),
            Self::DatabaseReady { database, version } => line(f, StorageSchema, Success)
                .field("database", database)
                .field("version", version),
            Self::DatabaseOpened { database, schema_version, finished } => {
                line(f, StorageOpen, Success)
                    .field("backend", "postgres")
                    .field("database", database)
                    .field("schema_version", schema_version)
                    .field("agencias_finalizadas", finished)
            }
            // No primary: once a second at most (the storage's `Health`).
            Self::Unreachable { database, error, repeated } => {
                let started = line(f, Storage, InProgress).field("database", database);
                started.field("error", error).field_if("repeated", repeated)
            }
            Self::Reachable { database, seconds } => line(f, Storage, Success)
                .field("database", database)
                .field("after_s", format_args!("{seconds:.1}")),
            Self::CommitAnswerLost { commit, error } => line(f, CommitLookup, InProgress)
                .field("commit", commit)
                .field("error", format_args!("COMMIT was sent and its answer lost: {error}")),
            Self::CommitLookupRetry { commit, error } => {
                line(f, CommitLookup, InProgress).field("commit", commit).field("error", error)
            }
            Self::CommitFound { commit, committed } => {
                line(f, CommitLookup, Success).field("commit", commit).field("committed", committed)
            }
            Self::Draw { winners } => line(f, Sorteo, Success).field("ganadores", winners),
            Self::WinnersUnavailable { error } => line(f, Ganadores, Fail).field(
                "error",
                format_args!("the draw's winners cannot be served until a restart: {error}"),
            ),
        };
        line.end()
    }
}
