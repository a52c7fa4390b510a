//! The PostgreSQL backend: several lottery servers share one database, so
//! any of them can take any agency's batches and give any agency its
//! position, and losing a server loses nothing acknowledged.
//!
//! The database is the truth; each server's memory is only a first check.
//!
//! - [`link`]: `STORAGE_URL`, the timeouts a server relies on, and a
//!   connection opened when needed;
//! - [`schema`]: the tables, created at start if missing or upgraded, and
//!   the checks that refuse a database this server must not use (the
//!   database records the lottery's `SERVER_AGENCIES` and `SERVER_AUTH`,
//!   and a server that says otherwise refuses to start);
//! - [`commit`]: one commit group, one transaction ([`PgStorage::commit`]),
//!   and what a server whose COMMIT answer was lost learns from the
//!   database;
//! - [`lookup`]: what the workers ask directly: positions and pages of
//!   winners ([`PgLookup`]).
//!
//! Every statement here also runs on CockroachDB and YugabyteDB (see
//! docs/ARCHITECTURE.md for the choices). The draw's row says whether it
//! was announced (`sorteo` logged): one server logs it and marks it, under
//! the row's lock ([`announce`]).
//!
//! The `postgres` crate is the synchronous client of rust-postgres: it
//! drives a small tokio runtime of its own inside each connection. That is
//! why this backend is behind the cargo feature `postgres`.

mod commit;
mod link;
mod lookup;
mod schema;

pub use lookup::PgLookup;

use super::{AnnounceDraw, StorageError};
use ::postgres as pg;
use commit::agency_row;
use link::{Link, connect, settings, target};
use log::{info, warn};
use schema::{COMMITS_KEPT, SCHEMA_VERSION, auth_word, prepare, refuses_us};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

/// How long opening waits for the database to answer at start (a compose
/// file may start the servers before the database is ready).
const OPEN_PATIENCE: Duration = Duration::from_secs(15);

/// Turns the error of a statement into the storage's error, saying what
/// it was doing (`action`).
fn db(action: &'static str) -> impl FnOnce(pg::Error) -> StorageError {
    move |e| StorageError::Database {
        action,
        reason: error_text(&e),
    }
}

/// The error with the server's message, when there is one.
fn error_text(e: &pg::Error) -> String {
    match e.as_db_error() {
        Some(dbe) => format!("{}: {}", dbe.severity(), dbe.message()),
        None => e.to_string(),
    }
}

/// A value read from the database that does not fit the server's type.
fn out_of_range(what: &str) -> StorageError {
    StorageError::Database {
        action: "read",
        reason: format!("{what} out of range"),
    }
}

/// A database just opened: the committer's connection, the workers' one,
/// and what the store starts from.
pub(super) struct PgOpened {
    pub storage: PgStorage,
    pub lookup: PgLookup,
    /// Durable bets per agency.
    pub counts: BTreeMap<u32, u64>,
    /// Agencies whose DONE is recorded.
    pub done: BTreeSet<u32>,
    /// The schema's version.
    pub schema: i32,
}

/// Connects, creates the schema if missing and reads where every agency
/// is. `auth_required` is this server's `SERVER_AUTH`, which the database
/// records for the lottery as it does `SERVER_AGENCIES`.
///
/// # Errors
/// A database that does not answer within [`OPEN_PATIENCE`], one with a
/// newer schema, or one set up for another number of agencies or another
/// `SERVER_AUTH`.
pub(super) fn open(
    url: &str,
    agencies: u32,
    auth_required: bool,
) -> Result<PgOpened, StorageError> {
    let config = settings(url)?;
    let target = target(&config);
    let server = server_id()?;
    let mut client = connect_prepared(&config, &target, agencies, auth_required)?;
    let (counts, done) = positions(&mut client)?;
    // The rows of servers long gone (see COMMITS_KEPT).
    client
        .execute(
            &format!("DELETE FROM commits WHERE at < now() - interval '{COMMITS_KEPT}'"),
            &[],
        )
        .map_err(db("prune the commits of"))?;
    info!(
        "action: storage_schema | result: success | database: {target} | version: {SCHEMA_VERSION}"
    );
    Ok(PgOpened {
        storage: PgStorage {
            link: Link::new(config.clone(), Some(client)),
            agencies,
            copy: Vec::new(),
            target,
            server,
            seq: 0,
        },
        lookup: PgLookup::new(config),
        counts,
        done,
        schema: SCHEMA_VERSION,
    })
}

/// This server's id in `commits`: random, any 64 bits (the column is a
/// BIGINT).
fn server_id() -> Result<i64, StorageError> {
    let server = getrandom::u64().map_err(|e| StorageError::Database {
        action: "choose this server's commit id for",
        reason: e.to_string(),
    })?;
    Ok(i64::from_ne_bytes(server.to_ne_bytes()))
}

/// Connects and prepares the schema ([`prepare`]), trying again for
/// [`OPEN_PATIENCE`] while the database cannot be reached.
fn connect_prepared(
    config: &pg::Config,
    target: &str,
    agencies: u32,
    auth_required: bool,
) -> Result<pg::Client, StorageError> {
    let started = Instant::now();
    loop {
        match connect(config)
            .and_then(|mut c| prepare(&mut c, agencies, auth_required).map(|up| (c, up)))
        {
            Ok((client, upgraded)) => {
                if upgraded {
                    info!(
                        "action: storage_upgrade | result: success | database: {target} | version: {SCHEMA_VERSION} | auth: {}",
                        auth_word(auth_required)
                    );
                }
                return Ok(client);
            }
            // A database that cannot be reached yet, or two servers
            // creating the schema at once, is worth waiting for; a database
            // this server must not use is not.
            Err(e) if !refuses_us(&e) && started.elapsed() < OPEN_PATIENCE => {
                warn!(
                    "action: storage_open | result: in_progress | database: {target} | error: {}",
                    crate::logging::clean(&e)
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every agency's durable position (those with bets) and the agencies
/// whose DONE is recorded.
fn positions(client: &mut pg::Client) -> Result<(BTreeMap<u32, u64>, BTreeSet<u32>), StorageError> {
    let mut counts = BTreeMap::new();
    let mut done = BTreeSet::new();
    for row in client
        .query("SELECT agency, next_position, done FROM agencies", &[])
        .map_err(db("read the agencies from"))?
    {
        let (agency, row) = agency_row(&row)?;
        if row.next > 0 {
            counts.insert(agency, row.next);
        }
        if row.done {
            done.insert(agency);
        }
    }
    Ok((counts, done))
}

/// The committer's connection and what one commit needs.
pub struct PgStorage {
    link: Link,
    agencies: u32,
    /// The rows of one COPY, reused from commit to commit.
    copy: Vec<u8>,
    target: String,
    /// This server's id in `commits`: random, chosen at open.
    server: i64,
    /// The counter of this server's last commit (attempted or made).
    seq: i64,
}

impl fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStorage")
            .field("target", &self.target)
            .field("connected", &self.link.is_connected())
            .finish()
    }
}

impl PgStorage {
    /// Host, port and database, for logs.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Announces the draw if it is recorded and not yet announced (see
    /// [`announce`]).
    ///
    /// # Errors
    /// The database cannot be reached, or another server holds the draw's
    /// row past the lock timeout (it is announcing it).
    pub fn announce(&mut self, log: AnnounceDraw<'_>) -> Result<Option<u64>, StorageError> {
        self.link.with(|client| announce(client, log))
    }
}

/// Logs the draw if it is recorded and not yet announced, then marks it,
/// in one transaction that holds the draw's row (`FOR UPDATE`): of several
/// servers announcing at once, the first logs and marks it, and the others
/// then find it marked. The line is logged before the mark commits, so a
/// server that dies between the two leaves the draw unmarked and the next
/// server to look logs it again: a crash there logs it twice, never zero
/// times. Returns the winners it announced.
fn announce(client: &mut pg::Client, log: AnnounceDraw<'_>) -> Result<Option<u64>, StorageError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(pg::IsolationLevel::ReadCommitted)
        .start()
        .map_err(db("begin a transaction on"))?;
    let row = tx
        .query_opt(
            "SELECT winners FROM draw WHERE id = 1 AND NOT announced FOR UPDATE",
            &[],
        )
        .map_err(db("read the draw from"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let winners = u64::try_from(row.get::<_, i64>(0)).map_err(|_| out_of_range("winners"))?;
    log(winners);
    tx.execute("UPDATE draw SET announced = true WHERE id = 1", &[])
        .map_err(db("mark the draw as announced in"))?;
    tx.commit().map_err(db("mark the draw as announced in"))?;
    Ok(Some(winners))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_names_the_database_but_never_the_password() {
        let config = settings("postgresql://lottery:s3cret@db.example:5433/bets").unwrap();
        let shown = target(&config);
        assert_eq!(shown, "db.example:5433/bets");
        assert!(
            !format!(
                "{:?}",
                PgStorage {
                    link: Link::new(config, None),
                    agencies: 1,
                    copy: Vec::new(),
                    target: shown,
                    server: 1,
                    seq: 0,
                }
            )
            .contains("s3cret")
        );
    }
}
