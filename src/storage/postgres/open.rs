//! Opening the database at start ([`open`]): connect, waiting for a
//! database not ready yet; create or upgrade the schema, refusing one this
//! server must not use; read where every agency is; prune the commit ids
//! of servers long gone.

use super::commit::agency_row;
use super::error::db;
use super::link::{Health, Link, connect, settings, target};
use super::lookup::PgLookup;
use super::schema::{COMMITS_KEPT, SCHEMA_VERSION, auth_word, prepare, refuses_us};
use super::storage::PgStorage;
use crate::logging::{LogLine, RateLimit, StorageEvent};
use crate::storage::error::StorageError;
use ::postgres as pg;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A database just opened: the committer's connection, the workers' one,
/// and what the store starts from.
pub(in crate::storage) struct PgOpened {
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
/// A database that does not answer within `wait` (`STORAGE_WAIT`: a
/// compose file may start the servers before the database, and a manager
/// may be promoting a standby), one with a
/// newer schema, or one set up for another number of agencies or another
/// `SERVER_AUTH`.
pub(in crate::storage) fn open(
    url: &str,
    agencies: u32,
    auth_required: bool,
    wait: Duration,
) -> Result<PgOpened, StorageError> {
    let config = settings(url)?;
    let target = target(&config);
    let server = server_id()?;
    let (client, (counts, done)) =
        connect_prepared(&config, &target, agencies, auth_required, wait)?;
    StorageEvent::DatabaseReady { database: &target, version: SCHEMA_VERSION }.info();
    let health = Health::new(&target);
    Ok(PgOpened {
        storage: PgStorage {
            link: Link::new(config.clone(), Some(client), health.clone()),
            agencies,
            copy: Vec::new(),
            target,
            server,
            seq: 0,
        },
        lookup: PgLookup::new(config, health),
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

/// Every agency's durable positions and the agencies whose DONE is
/// recorded, as a start reads them.
type Positions = (BTreeMap<u32, u64>, BTreeSet<u32>);

/// Connects, prepares the schema ([`prepare`]), reads where every agency
/// is and prunes the commit ids of servers long gone, trying it all again
/// for `wait` while the database cannot be reached (a failover may cut a
/// start anywhere), saying so at most once a second. A database that
/// refuses this server ([`refuses_us`]) is not waited for; one that
/// refuses its login is, as a node being set up may not have the role yet.
fn connect_prepared(
    config: &pg::Config,
    target: &str,
    agencies: u32,
    auth_required: bool,
    wait: Duration,
) -> Result<(pg::Client, Positions), StorageError> {
    let started = Instant::now();
    let mut lines = RateLimit::new(Duration::from_secs(1));
    loop {
        let opened = connect(config).and_then(|mut c| {
            let upgraded = prepare(&mut c, agencies, auth_required)?;
            let positions = positions(&mut c)?;
            // The rows of servers long gone (see COMMITS_KEPT).
            let prune = format!("DELETE FROM commits WHERE at < now() - interval '{COMMITS_KEPT}'");
            c.execute(&prune, &[]).map_err(db("prune the commits of"))?;
            Ok((c, upgraded, positions))
        });
        match opened {
            Ok((client, upgraded, positions)) => {
                if upgraded {
                    StorageEvent::DatabaseUpgraded {
                        database: &target,
                        version: SCHEMA_VERSION,
                        auth: auth_word(auth_required),
                    }
                    .info();
                }
                return Ok((client, positions));
            }
            // A database that cannot be reached yet, or two servers
            // creating the schema at once, is worth waiting for; a database
            // this server must not use is not.
            Err(e) if !refuses_us(&e) && started.elapsed() < wait => {
                if lines.allow("waiting", Instant::now()).is_some() {
                    StorageEvent::DatabaseWaiting { database: &target, error: &e }.warn();
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every agency's durable position (those with bets) and the agencies
/// whose DONE is recorded.
fn positions(client: &mut pg::Client) -> Result<Positions, StorageError> {
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
