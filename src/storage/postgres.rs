//! The PostgreSQL backend: several lottery servers share one database, so
//! any of them can take any agency's batches and give any agency its
//! position, and losing a server loses nothing acknowledged.
//!
//! The database is the truth; each server's memory is only a first check.
//! One commit group is one transaction (see [`PgStorage::commit`]): it
//! locks the row of every agency it touches (`SELECT ... FOR UPDATE`),
//! decides each request against the positions it finds there, copies the
//! new rows in with one `COPY`, moves the positions, and — when it records
//! the last DONE — records the draw. Two servers holding the same agency's
//! batches therefore take turns on that agency's row, and the second finds
//! the batch already stored ([`Verdict::Duplicate`]).
//!
//! The schema (`SCHEMA_V2` and version 3's additions, version in
//! `schema_version`) is created at start if missing; every statement here
//! also runs on CockroachDB and YugabyteDB (see docs/ARCHITECTURE.md for
//! the choices). The database records the lottery's `SERVER_AGENCIES` and
//! `SERVER_AUTH`, and a server that says otherwise refuses to start.
//!
//! Each commit's transaction also writes the commit's id (this server's
//! random id and a counter) in `commits`: a server whose COMMIT was sent
//! but whose answer was lost asks the database, on a new connection,
//! whether that id is there (see [`PgStorage::commit`]).
//!
//! Winners: the draw's transaction also records each winner's rank in its
//! agency (`winners`), so a page of winners is a keyset read of the page
//! ([`PgLookup::draw`]), not a read of every winner. The draw's row says
//! whether it was announced (`sorteo` logged): one server logs it and marks
//! it, under the row's lock ([`announce`]).
//!
//! The `postgres` crate is the synchronous client of rust-postgres: it
//! drives a small tokio runtime of its own inside each connection. That is
//! why this backend is behind the cargo feature `postgres`.

use super::{
    AnnounceDraw, Backend, Committed, DrawState, GroupData, GroupRequest, Lookup, OpenReport,
    Opened, RequestKind, StorageError, Verdict, WinnersPage,
};
use crate::bet::WINNING_NUMBER;
use ::postgres as pg;
use log::{info, warn};
use pg::error::{DbError, Severity};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The schema version this server creates and understands.
pub const SCHEMA_VERSION: i32 = 3;

/// Version 2 of the schema (version 1 lacked `lottery.finished`). `bets` has the CSV's columns (so that
/// `\copy (select agency, first_name, last_name, document, birthdate,
/// number from bets) to stdout csv` gives the rows `bets.csv` would hold)
/// plus the position, which with the agency is the primary key: a
/// position is stored at most once whatever the servers do. The partial
/// index holds only winning bets: the draw counts them and each agency's
/// winners query reads them, and it costs the ingest almost nothing.
/// `lottery.finished` counts the agencies whose DONE is recorded: the
/// transactions that record DONEs add to it (see [`PgStorage::commit`]).
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS lottery (
    id INT PRIMARY KEY,
    agencies BIGINT NOT NULL,
    finished BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS agencies (
    agency BIGINT PRIMARY KEY,
    next_position BIGINT NOT NULL,
    done BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS bets (
    agency BIGINT NOT NULL,
    position BIGINT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    document TEXT NOT NULL,
    birthdate DATE NOT NULL,
    number INT NOT NULL,
    PRIMARY KEY (agency, position)
);
CREATE INDEX IF NOT EXISTS bets_winners ON bets (agency, position) WHERE number = 7574;
CREATE TABLE IF NOT EXISTS draw (
    id INT PRIMARY KEY,
    winning_number INT NOT NULL,
    winners BIGINT NOT NULL,
    drawn_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

// ---- winners-draw (schema version 3): winners' ranks and the announcement.

/// Version 3's additions for the winners and the draw's announcement, run
/// after `SCHEMA_V2` (idempotent). `winners`: every winning bet's document
/// with its rank among its agency's winners (0, 1, ... in storage order),
/// filled by the draw's transaction: a WINNERS?(offset) page is then
/// `rank >= offset ORDER BY rank LIMIT n` on the primary key, whatever the
/// offset. `draw.announced`: the `sorteo` line was logged (see
/// [`announce`]).
const SCHEMA_V3_WINNERS: &str = "
CREATE TABLE IF NOT EXISTS winners (
    agency BIGINT NOT NULL,
    rank BIGINT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (agency, rank)
);
ALTER TABLE draw ADD COLUMN IF NOT EXISTS announced BOOLEAN NOT NULL DEFAULT false;
";

/// Records the winners' ranks: run by the transaction that records the
/// draw, so the ranks exist exactly when the draw does.
const RECORD_WINNERS: &str = "
INSERT INTO winners (agency, rank, document)
SELECT agency, row_number() OVER (PARTITION BY agency ORDER BY position) - 1, document
FROM bets WHERE number = 7574
";

/// Version 1 or 2 → 3: a draw recorded by an older server gets its ranks,
/// and counts as announced (that server logged it).
const UPGRADE_TO_V3_WINNERS: &str = "
INSERT INTO winners (agency, rank, document)
SELECT agency, row_number() OVER (PARTITION BY agency ORDER BY position) - 1, document
FROM bets WHERE number = 7574 AND EXISTS (SELECT 1 FROM draw WHERE id = 1)
ON CONFLICT (agency, rank) DO NOTHING;
UPDATE draw SET announced = true;
";

/// How long the draw's transaction may spend recording the winners' ranks
/// (one row per winner: ten million take longer than the usual
/// [`STATEMENT_TIMEOUT`]).
const RECORD_WINNERS_TIMEOUT: Duration = Duration::from_secs(600);

// ---- end of winners-draw's schema

/// Version 1 → 2: the finished-agencies counter on the lottery's row.
const UPGRADE_FROM_V1: &str = "
ALTER TABLE lottery ADD COLUMN IF NOT EXISTS finished BIGINT NOT NULL DEFAULT 0;
UPDATE lottery SET finished = (SELECT count(*) FROM agencies WHERE done) WHERE id = 1;
";

/// Version 3's additions for servers that agree and commits that can be
/// looked up (issue 16, items 7 and 5), run after [`SCHEMA_V2`] on a new
/// database and as the upgrade of a version-2 one. Every statement is
/// idempotent, so servers starting at once may all run them.
///
/// `lottery.auth` is the lottery's `SERVER_AUTH` (`required` or `off`),
/// written with the lottery's row; NULL only in a version-2 database until
/// the first version-3 server records its own (see [`prepare`]).
///
/// `commits` holds one row per server process: its random id and the
/// counter of its last commit, written by that commit's transaction (see
/// [`PgStorage::commit`]). Rows of servers gone for [`COMMITS_KEPT`] are
/// deleted when a server opens the database.
const SCHEMA_V3_AGREE: &str = "
ALTER TABLE lottery ADD COLUMN IF NOT EXISTS auth TEXT CHECK (auth IN ('required', 'off'));
CREATE TABLE IF NOT EXISTS commits (
    server BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// How long a server's row in `commits` outlives its last commit. Only a
/// server whose COMMIT answer was just lost reads its row, within
/// [`LOOKUP_PATIENCE`] of writing it; a day is far beyond that and keeps
/// the table at the servers started in a day.
const COMMITS_KEPT: &str = "1 day";

// The SQL names the winning number as a literal (7574), so that the
// planner matches the partial index `bets_winners`; this keeps them equal.
const _: () = assert!(WINNING_NUMBER == 7574);

/// How long opening waits for the database to answer at start (a compose
/// file may start the servers before the database is ready).
const OPEN_PATIENCE: Duration = Duration::from_secs(15);

/// How long a server whose COMMIT answer was lost keeps asking whether it
/// committed: the session that sent it is gone within a statement timeout
/// or an idle-in-transaction timeout (whichever applies), and with it its
/// lock on the server's `commits` row, which the question waits for.
const LOOKUP_PATIENCE: Duration = Duration::from_secs(20);
const _: () = assert!(
    LOOKUP_PATIENCE.as_secs() >= STATEMENT_TIMEOUT.as_secs()
        && LOOKUP_PATIENCE.as_secs()
            >= IDLE_IN_TRANSACTION_TIMEOUT.as_secs() + LOCK_TIMEOUT.as_secs()
);

/// A lookup answers "no draw yet" from what it saw this recently: every
/// finished agency polls for its winners, and the answer changes once.
const NOT_READY_FRESH: Duration = Duration::from_millis(20);

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

fn out_of_range(what: &str) -> StorageError {
    StorageError::Database {
        action: "read",
        reason: format!("{what} out of range"),
    }
}

/// Parses `STORAGE_URL` and sets the timeouts the server relies on when
/// the URL does not: a database that vanishes must turn into an error the
/// agencies retry, not a worker blocked for ever.
fn settings(url: &str) -> Result<pg::Config, StorageError> {
    let mut config: pg::Config = url.parse().map_err(|e: pg::Error| StorageError::Database {
        action: "parse STORAGE_URL",
        reason: e.to_string(),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(3));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("lottery-server");
    }
    // TCP keepalives: a database host that vanishes without a FIN or RST
    // (power cut, partition) is noticed within about idle + interval x
    // retries = 5 + 2 x 3 = 11 s even on a connection waiting for an
    // answer, as the TCP user timeout does for one with unsent data.
    // A URL that says `keepalives=0`, or sets any of these, is obeyed.
    if config.get_keepalives() {
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVES_RETRIES);
        }
    }
    // The session's bounds on waiting inside the database go first, so an
    // `options` in the URL that sets them too has the last word.
    let ours = session_options();
    let options = match config.get_options() {
        Some(theirs) if !theirs.trim().is_empty() => format!("{ours} {theirs}"),
        _ => ours,
    };
    config.options(&options);
    Ok(config)
}

/// How long a statement waits for a row lock before it fails. A commit
/// that waits on an agency's row held by another server (a paused or
/// stuck one) ends with an error after this long: its requests get ERROR
/// `storage` and the agencies retry, instead of every agency of this
/// server stalling for as long as the other one likes. 5 s is far above a
/// healthy group commit's hold on a row (milliseconds) and below the
/// clients' read timeout and retry budget.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one statement may run at all: the biggest, a group's `COPY`,
/// takes well under a second; 10 s leaves room for a slow disk and still
/// ends a query stuck for any other reason (which also frees the lookup
/// connection's mutex).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a session may sit inside a transaction doing nothing before
/// the database ends it and releases its locks: a server paused or stuck
/// mid-transaction (SIGSTOP, a debugger, a swapped-out host) holds its
/// agencies' rows at most this long. Our transactions never wait on
/// anything but the database between statements, so 10 s is generous.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

const KEEPALIVES_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVES_RETRIES: u32 = 3;

/// The `options` startup parameter: the timeouts above, and `DateStyle`
/// ISO so that dates cross the session as `YYYY-MM-DD` whatever the
/// database's default.
fn session_options() -> String {
    format!(
        "-c lock_timeout={}ms -c statement_timeout={}ms -c idle_in_transaction_session_timeout={}ms -c DateStyle=ISO",
        LOCK_TIMEOUT.as_millis(),
        STATEMENT_TIMEOUT.as_millis(),
        IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
    )
}

/// Host(s), port(s) and database name, for logs: never the password.
fn target(config: &pg::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            pg::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            pg::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "{}:{}/{}",
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("")
    )
}

fn connect(config: &pg::Config) -> Result<pg::Client, StorageError> {
    config.connect(pg::NoTls).map_err(db("connect to"))
}

/// A connection opened when needed: the committer's, and the workers'
/// lookup connection.
struct Link {
    config: pg::Config,
    /// `None` after an error: the next use connects again.
    client: Option<pg::Client>,
}

impl Link {
    /// Runs `work` on the connection, opened (again) if there is none or
    /// it closed; on error the connection is dropped and the next use
    /// opens another.
    fn with<T, E: From<StorageError>>(
        &mut self,
        work: impl FnOnce(&mut pg::Client) -> Result<T, E>,
    ) -> Result<T, E> {
        let client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => connect(&self.config)?,
        };
        let result = work(self.client.insert(client));
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

/// Connects, creates the schema if missing and reads where every agency
/// is. `auth_required` is this server's `SERVER_AUTH`, which the database
/// records for the lottery as it does `SERVER_AGENCIES`.
///
/// # Errors
/// A database that does not answer within [`OPEN_PATIENCE`], one with a
/// newer schema, or one set up for another number of agencies or another
/// `SERVER_AUTH`.
pub(super) fn open(url: &str, agencies: u32, auth_required: bool) -> Result<Opened, StorageError> {
    let config = settings(url)?;
    let target = target(&config);
    let server = getrandom::u64().map_err(|e| StorageError::Database {
        action: "choose this server's commit id for",
        reason: e.to_string(),
    })?;
    // Any 64 bits: the column is a BIGINT.
    let server = i64::from_ne_bytes(server.to_ne_bytes());
    let started = Instant::now();
    let mut client = loop {
        match connect(&config)
            .and_then(|mut c| prepare(&mut c, agencies, auth_required).map(|up| (c, up)))
        {
            Ok((client, upgraded)) => {
                if upgraded {
                    info!(
                        "action: storage_upgrade | result: success | database: {target} | version: {SCHEMA_VERSION} | auth: {}",
                        auth_word(auth_required)
                    );
                }
                break client;
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
    };
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
    Ok(Opened {
        backend: Backend::Postgres(Box::new(PgStorage {
            link: Link {
                config: config.clone(),
                client: Some(client),
            },
            agencies,
            copy: Vec::new(),
            target: target.clone(),
            server,
            seq: 0,
        })),
        lookup: Lookup::Postgres(PgLookup {
            inner: Arc::new(Mutex::new(LookupConn {
                link: Link {
                    config,
                    client: None,
                },
                drawn: false,
                not_ready: None,
            })),
        }),
        counts,
        done,
        report: OpenReport::Postgres {
            target,
            schema: SCHEMA_VERSION,
        },
    })
}

/// Whether `prepare` found a database this server must not use (a newer
/// schema, another number of agencies): waiting will not change that.
fn refuses_us(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::Database {
            action: REFUSED,
            ..
        }
    )
}

/// The action of the errors [`refuses_us`] recognises.
const REFUSED: &str = "use";

/// `SERVER_AUTH`'s word for `auth_required`, as the database records it.
fn auth_word(auth_required: bool) -> &'static str {
    if auth_required { "required" } else { "off" }
}

/// Refuses a database that does not store text as UTF-8, then creates the
/// schema if missing (idempotent: every statement is `IF NOT EXISTS` or
/// `ON CONFLICT DO NOTHING`) or upgrades an older one, refuses a newer
/// one, and makes sure the database is set up for `agencies` agencies,
/// each with its row, and for `auth_required`.
///
/// Returns whether this server recorded its `SERVER_AUTH` in a database
/// that had none (a version-2 one). Version 2 did not record it, so no
/// server can know what the lottery's other servers run with; the first
/// version-3 server's setting is the best claim there is, and from then on
/// every server is held to it. Refusing instead would leave the operator
/// of a lottery under way no way on but SQL by hand. The recording is one
/// `UPDATE ... WHERE auth IS NULL`: of servers upgrading at once, the
/// first to take the row's lock records its setting, the others find it.
fn prepare(
    client: &mut pg::Client,
    agencies: u32,
    auth_required: bool,
) -> Result<bool, StorageError> {
    // Names are any UTF-8: a database in another encoding (LATIN1,
    // SQL_ASCII...) would refuse some of them mid-ingest, or store bytes
    // that `\copy` does not give back as `bets.csv` holds them.
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .map_err(db("read the encoding of"))?
        .get(0);
    if !encoding.eq_ignore_ascii_case("UTF8") {
        return Err(StorageError::Database {
            action: REFUSED,
            reason: format!(
                "its encoding is {encoding}, not UTF8: create the database with ENCODING 'UTF8' (names are UTF-8)"
            ),
        });
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version INT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .map_err(db("create the schema_version table in"))?;
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_version", &[])
        .map_err(db("read the schema version of"))?
        .get(0);
    match version {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StorageError::Database {
                action: REFUSED,
                reason: format!(
                    "its schema is version {v}, newer than this server's {SCHEMA_VERSION}"
                ),
            });
        }
        Some(v) if v == SCHEMA_VERSION => {}
        previous => {
            client
                .batch_execute(SCHEMA_V2)
                .map_err(db("create the schema in"))?;
            if previous == Some(1) {
                // From version 1: the counter starts at what the agencies'
                // rows say (upgrade with every version-1 server stopped).
                client
                    .batch_execute(UPGRADE_FROM_V1)
                    .map_err(db("upgrade the schema of"))?;
            }
            // New, or from version 1 or 2 (servers of version 2 may still
            // be running: nothing here changes what they read or write).
            client
                .batch_execute(SCHEMA_V3_AGREE)
                .map_err(db("upgrade the schema of"))?;
            // Version 3's winners and announcement.
            client
                .batch_execute(SCHEMA_V3_WINNERS)
                .map_err(db("create the winners' table in"))?;
            if matches!(previous, Some(1 | 2)) {
                client
                    .batch_execute(UPGRADE_TO_V3_WINNERS)
                    .map_err(db("upgrade the schema of"))?;
            }
            client
                .execute(
                    "INSERT INTO schema_version (version) VALUES ($1) ON CONFLICT (version) DO NOTHING",
                    &[&SCHEMA_VERSION],
                )
                .map_err(db("record the schema version in"))?;
        }
    }
    let wanted = i64::from(agencies);
    let auth = auth_word(auth_required);
    client
        .execute(
            "INSERT INTO lottery (id, agencies, auth) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
            &[&wanted, &auth],
        )
        .map_err(db("set up the lottery in"))?;
    let recorded = client
        .execute(
            "UPDATE lottery SET auth = $1 WHERE id = 1 AND auth IS NULL",
            &[&auth],
        )
        .map_err(db("record SERVER_AUTH in"))?
        > 0;
    let row = client
        .query_one("SELECT agencies, auth FROM lottery WHERE id = 1", &[])
        .map_err(db("read the lottery from"))?;
    let (set_up, set_auth): (i64, Option<String>) = (row.get(0), row.get(1));
    if set_up != wanted {
        return Err(StorageError::Database {
            action: REFUSED,
            reason: format!(
                "it was set up for {set_up} agencies and SERVER_AGENCIES is {agencies}: every server of one lottery must say the same"
            ),
        });
    }
    if set_auth.as_deref() != Some(auth) {
        return Err(StorageError::Database {
            action: REFUSED,
            reason: format!(
                "SERVER_AUTH: this server has {auth}, the database's lottery has {}: every server of one lottery must say the same",
                set_auth.as_deref().unwrap_or("none recorded")
            ),
        });
    }
    client
        .execute(
            "INSERT INTO agencies (agency, next_position, done)
             SELECT g.a, 0, false FROM generate_series(1, $1::BIGINT) AS g(a)
             ON CONFLICT (agency) DO NOTHING",
            &[&wanted],
        )
        .map_err(db("create the agencies' rows in"))?;
    Ok(recorded)
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

/// One commit of one server, as `commits` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CommitId {
    server: i64,
    seq: i64,
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}.{}", self.server, self.seq)
    }
}

/// How a commit's transaction failed.
#[derive(Debug)]
enum TxFailure {
    /// Before COMMIT was sent, or COMMIT was refused: nothing is stored.
    RolledBack(StorageError),
    /// COMMIT was sent and no answer came (or one that may have come after
    /// the commit): stored or not, only the database knows. `outcome` is
    /// what the transaction made durable if it committed.
    AnswerLost {
        error: StorageError,
        outcome: Committed,
    },
}

impl From<StorageError> for TxFailure {
    fn from(e: StorageError) -> TxFailure {
        TxFailure::RolledBack(e)
    }
}

/// Whether a COMMIT that failed with an answer of `severity` (`None`: no
/// answer, the connection broke) may have committed. Only an ERROR answer
/// says the transaction rolled back; no answer says nothing, and a FATAL
/// or PANIC ends the session, which may happen after the commit was
/// recorded (its answer then never reaches us).
fn may_have_committed(severity: Option<Severity>) -> bool {
    severity != Some(Severity::Error)
}

impl fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStorage")
            .field("target", &self.target)
            .field("connected", &self.link.client.is_some())
            .finish()
    }
}

/// An agency's row as one transaction sees and moves it.
#[derive(Debug, Clone, Copy)]
struct AgencyRow {
    next: u64,
    done: bool,
    changed: bool,
}

/// A row of `SELECT agency, next_position, done FROM agencies`.
fn agency_row(row: &pg::Row) -> Result<(u32, AgencyRow), StorageError> {
    let agency = u32::try_from(row.get::<_, i64>(0)).map_err(|_| out_of_range("agency"))?;
    let next = u64::try_from(row.get::<_, i64>(1)).map_err(|_| out_of_range("position"))?;
    let row = AgencyRow {
        next,
        done: row.get(2),
        changed: false,
    };
    Ok((agency, row))
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

    /// Stores the group in one transaction (see the module doc). On any
    /// error the connection is dropped, and the next commit opens another.
    ///
    /// The transaction writes its [`CommitId`] in `commits`. If COMMIT was
    /// sent and its answer lost, [`PgStorage::learn`] asks the database on
    /// a new connection whether that id is there: if so, the group is
    /// stored, and this returns what the transaction decided (its verdicts,
    /// and the draw if it recorded it) as if the answer had come.
    ///
    /// # Errors
    /// The database cannot be reached or refused the transaction; nothing
    /// of it is stored (unless COMMIT's answer was lost and the database
    /// could not be asked within [`LOOKUP_PATIENCE`]).
    pub fn commit(&mut self, group: &GroupData<'_>) -> Result<Committed, StorageError> {
        self.seq += 1;
        let id = CommitId {
            server: self.server,
            seq: self.seq,
        };
        let (agencies, copy) = (self.agencies, &mut self.copy);
        match self
            .link
            .with(|client| Self::transaction(client, agencies, copy, group, id))
        {
            Ok(committed) => Ok(committed),
            Err(TxFailure::RolledBack(e)) => Err(e),
            Err(TxFailure::AnswerLost { error, outcome }) => self.learn(id, error, outcome),
        }
    }

    /// After COMMIT's answer was lost: whether commit `id` is stored, asked
    /// again (on a new connection) until the database answers or
    /// [`LOOKUP_PATIENCE`] has passed. `outcome` if it is, the lost
    /// answer's error if it is not.
    fn learn(
        &mut self,
        id: CommitId,
        lost: StorageError,
        outcome: Committed,
    ) -> Result<Committed, StorageError> {
        warn!(
            "action: commit_lookup | result: in_progress | commit: {id} | error: COMMIT was sent and its answer lost: {}",
            crate::logging::clean(&lost)
        );
        let started = Instant::now();
        loop {
            match self.link.with(|client| landed(client, id)) {
                Ok(committed) => {
                    info!(
                        "action: commit_lookup | result: success | commit: {id} | committed: {committed}"
                    );
                    return if committed {
                        Ok(outcome)
                    } else {
                        Err(StorageError::Database {
                            action: "commit to",
                            reason: format!(
                                "{} (its answer was lost; the database says it did not commit)",
                                lost_reason(&lost)
                            ),
                        })
                    };
                }
                Err(e) if started.elapsed() < LOOKUP_PATIENCE => {
                    warn!(
                        "action: commit_lookup | result: in_progress | commit: {id} | error: {}",
                        crate::logging::clean(&e)
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(StorageError::Database {
                        action: "learn whether a commit is stored in",
                        reason: format!(
                            "COMMIT's answer was lost ({}) and the database did not say within {} s whether it committed: {e}",
                            lost_reason(&lost),
                            LOOKUP_PATIENCE.as_secs()
                        ),
                    });
                }
            }
        }
    }

    fn transaction(
        client: &mut pg::Client,
        agencies: u32,
        copy: &mut Vec<u8>,
        group: &GroupData<'_>,
        id: CommitId,
    ) -> Result<Committed, TxFailure> {
        // READ COMMITTED whatever the database's default: every decision
        // is taken under a row lock, and a row that another transaction
        // moved is then read as it committed it. (Stricter levels are
        // still correct — see the `lottery` row's counter below — but
        // would turn every such wait into a serialization error.)
        let mut tx = client
            .build_transaction()
            .isolation_level(pg::IsolationLevel::ReadCommitted)
            .start()
            .map_err(db("begin a transaction on"))?;
        let touched: Vec<i64> = group
            .requests
            .iter()
            .map(|r| i64::from(r.agency))
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .collect();
        // Locked in agency order, so two servers' transactions never wait
        // for each other in a circle. The same statement writes this
        // commit's id (no extra round trip), and so holds this server's
        // `commits` row until the transaction ends: a look-up after a lost
        // answer waits for it (see `landed`).
        let mut rows = tx
            .query(
                "WITH this_commit AS (
                     INSERT INTO commits (server, seq) VALUES ($2, $3)
                     ON CONFLICT (server) DO UPDATE SET seq = EXCLUDED.seq, at = now()
                 )
                 SELECT agency, next_position, done FROM agencies
                 WHERE agency = ANY($1) ORDER BY agency FOR UPDATE",
                &[&touched, &id.server, &id.seq],
            )
            .map_err(db("lock the agencies' rows in"))?
            .iter()
            .map(agency_row)
            .collect::<Result<BTreeMap<u32, AgencyRow>, StorageError>>()?;
        copy.clear();
        let (verdicts, newly_done) = decide(group, &mut rows, copy)?;
        if !copy.is_empty() {
            let mut writer = tx
                .copy_in(
                    "COPY bets (agency, position, first_name, last_name, document, birthdate, number) FROM STDIN WITH (FORMAT csv)",
                )
                .map_err(db("start copying bets into"))?;
            writer.write_all(copy).map_err(|e| StorageError::Database {
                action: "copy bets into",
                reason: e.to_string(),
            })?;
            writer.finish().map_err(db("copy bets into"))?;
        }
        for (agency, row) in rows.iter().filter(|(_, r)| r.changed) {
            let next = i64::try_from(row.next).map_err(|_| out_of_range("position"))?;
            tx.execute(
                "UPDATE agencies SET next_position = $2, done = $3 WHERE agency = $1",
                &[&i64::from(*agency), &next, &row.done],
            )
            .map_err(db("move the agencies' positions in"))?;
        }
        let mut drew = None;
        if newly_done > 0 {
            // The finished count lives on the lottery's one row, and this
            // transaction adds the DONEs it flipped to it: DONEs take turns
            // on that row, and the one that brings it to every agency
            // records the draw. Under READ COMMITTED the UPDATE waits for
            // the row and adds to the committed count; under REPEATABLE
            // READ or SERIALIZABLE (another engine's default) a concurrent
            // update makes this transaction fail with a serialization
            // error, which the agencies retry. Counting `agencies WHERE
            // done` instead would, under a snapshot, miss a DONE committed
            // meanwhile, and then no transaction would ever draw.
            let added = i64::try_from(newly_done).map_err(|_| out_of_range("agencies"))?;
            let finished: i64 = tx
                .query_one(
                    "UPDATE lottery SET finished = finished + $1 WHERE id = 1 RETURNING finished",
                    &[&added],
                )
                .map_err(db("count the finished agencies in"))?
                .get(0);
            if finished >= i64::from(agencies) {
                let winning = i32::from(WINNING_NUMBER);
                let row = tx
                    .query_opt(
                        "INSERT INTO draw (id, winning_number, winners)
                         SELECT 1, $1, count(*) FROM bets WHERE number = 7574
                         ON CONFLICT (id) DO NOTHING RETURNING winners",
                        &[&winning],
                    )
                    .map_err(db("record the draw in"))?;
                if let Some(row) = row {
                    let winners: i64 = row.get(0);
                    drew = Some(u64::try_from(winners).map_err(|_| out_of_range("winners"))?);
                    // ---- winners-draw: the winners' ranks, in the draw's
                    // own transaction (see RECORD_WINNERS); one row per
                    // winner, so it gets a longer statement timeout.
                    tx.batch_execute(&format!(
                        "SET LOCAL statement_timeout = {}",
                        RECORD_WINNERS_TIMEOUT.as_millis()
                    ))
                    .map_err(db("record the winners in"))?;
                    tx.execute(RECORD_WINNERS, &[])
                        .map_err(db("record the winners in"))?;
                    tx.batch_execute(&format!(
                        "SET LOCAL statement_timeout = {}",
                        STATEMENT_TIMEOUT.as_millis()
                    ))
                    .map_err(db("record the winners in"))?;
                    // ---- end of winners-draw
                }
            }
        }
        let outcome = Committed {
            agencies: rows
                .iter()
                .map(|(agency, row)| (*agency, row.next, row.done))
                .collect(),
            verdicts,
            drew,
        };
        match tx.commit() {
            Ok(()) => Ok(outcome),
            Err(e) => {
                let unknown =
                    may_have_committed(e.as_db_error().and_then(DbError::parsed_severity));
                let error = db("commit to")(e);
                Err(if unknown {
                    TxFailure::AnswerLost { error, outcome }
                } else {
                    TxFailure::RolledBack(error)
                })
            }
        }
    }
}

/// The reason of a storage error, without its action (for an error that
/// says it again in its own words).
fn lost_reason(e: &StorageError) -> String {
    match e {
        StorageError::Database { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Whether commit `id` is stored. The look-up is an upsert of the
/// server's `commits` row (rolled back: it changes nothing), because an
/// upsert waits for whatever transaction holds that row or is inserting
/// it — the one whose answer was lost, if its session still lives — and
/// then reads the row as that transaction left it. A plain `SELECT` would
/// not wait, and could read "not committed" just before the COMMIT lands.
fn landed(client: &mut pg::Client, id: CommitId) -> Result<bool, StorageError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(pg::IsolationLevel::ReadCommitted)
        .start()
        .map_err(db("begin a transaction on"))?;
    let seq: i64 = tx
        .query_one(
            "INSERT INTO commits (server, seq) VALUES ($1, 0)
             ON CONFLICT (server) DO UPDATE SET seq = commits.seq RETURNING seq",
            &[&id.server],
        )
        .map_err(db("look up a commit in"))?
        .get(0);
    // What it wrote is not meant to last (the row is the commit's).
    let _ = tx.rollback();
    Ok(seq == id.seq)
}

/// Decides each request of the group against the agencies' rows (locked
/// by the caller), in order: the rows of the batches to store go to
/// `copy`, and the rows move. Returns the requests not stored as asked and
/// how many agencies' DONEs this group newly records.
fn decide(
    group: &GroupData<'_>,
    rows: &mut BTreeMap<u32, AgencyRow>,
    copy: &mut Vec<u8>,
) -> Result<(BTreeMap<usize, Verdict>, u64), StorageError> {
    let mut verdicts = BTreeMap::new();
    let mut newly_done = 0;
    for (i, GroupRequest { agency, kind }) in group.requests.iter().enumerate() {
        let Some(row) = rows.get_mut(agency) else {
            return Err(StorageError::Database {
                action: "store bets in",
                reason: format!("agency {agency} has no row (not one of the lottery's agencies)"),
            });
        };
        let verdict = match kind {
            RequestKind::Batch { first, count, rows } => {
                if first.checked_add(*count).is_some_and(|end| end <= row.next) {
                    Some(Verdict::Duplicate)
                } else if row.done {
                    Some(Verdict::AlreadyDone)
                } else if *first == row.next {
                    let Some(bytes) = group.rows.get(rows.clone()) else {
                        return Err(StorageError::Database {
                            action: "store bets in",
                            reason: "a batch's rows are outside its group".into(),
                        });
                    };
                    copy.extend_from_slice(bytes);
                    row.next += count;
                    row.changed = true;
                    None
                } else {
                    Some(Verdict::Sequence { expected: row.next })
                }
            }
            RequestKind::Done { total } => {
                // A repeated DONE is acknowledged only with the total that
                // was recorded, as the file backend does: a different one
                // means the agency and the database disagree.
                if *total != row.next {
                    Some(Verdict::DoneMismatch { stored: row.next })
                } else if row.done {
                    Some(Verdict::Duplicate)
                } else {
                    row.done = true;
                    row.changed = true;
                    newly_done += 1;
                    None
                }
            }
        };
        if let Some(verdict) = verdict {
            verdicts.insert(i, verdict);
        }
    }
    Ok((verdicts, newly_done))
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

/// The workers' connection, for what they ask the database directly.
/// Shared by the workers of one server behind its own mutex (never the
/// store's): a query holds it, not the lottery's state.
#[derive(Clone)]
pub struct PgLookup {
    inner: Arc<Mutex<LookupConn>>,
}

impl fmt::Debug for PgLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgLookup")
    }
}

struct LookupConn {
    link: Link,
    /// The draw row exists (it never goes away).
    drawn: bool,
    /// When "no draw yet" was last read, and how many agencies were done.
    not_ready: Option<(Instant, u32)>,
}

impl PgLookup {
    fn conn(&self) -> Result<std::sync::MutexGuard<'_, LookupConn>, StorageError> {
        self.inner.lock().map_err(|_| StorageError::Database {
            action: "query",
            reason: "lookup connection poisoned".into(),
        })
    }

    /// The agency's durable position and whether its DONE is recorded.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn position(&self, agency: u32) -> Result<(u64, bool), StorageError> {
        self.conn()?.link.with(|client| {
            let row = client
                .query_opt(
                    "SELECT next_position, done FROM agencies WHERE agency = $1",
                    &[&i64::from(agency)],
                )
                .map_err(db("read the agency's position from"))?;
            match row {
                Some(row) => Ok((
                    u64::try_from(row.get::<_, i64>(0)).map_err(|_| out_of_range("position"))?,
                    row.get(1),
                )),
                None => Ok((0, false)),
            }
        })
    }

    /// The draw: how many agencies are done while there is none; once
    /// there is, a page of the agency's winners from `offset`, as many as
    /// fit in `room` bytes of documents, read by rank (a keyset read of the
    /// page on `winners`' primary key). The first time this server sees
    /// the draw, it announces it if nobody has (`log`: a server whose
    /// commit recorded the draw but died, or lost COMMIT's answer, before
    /// announcing it).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn draw(
        &self,
        agency: u32,
        offset: u32,
        room: usize,
        log: AnnounceDraw<'_>,
    ) -> Result<DrawState, StorageError> {
        let mut conn = self.conn()?;
        if !conn.drawn {
            if let Some((at, finished)) = conn.not_ready
                && at.elapsed() < NOT_READY_FRESH
            {
                return Ok(DrawState::NotReady { finished });
            }
            let (finished, drawn) = conn.link.with(|client| {
                let row = client
                    .query_one(
                        "SELECT finished, EXISTS (SELECT 1 FROM draw WHERE id = 1)
                         FROM lottery WHERE id = 1",
                        &[],
                    )
                    .map_err(db("read the draw from"))?;
                let finished =
                    u32::try_from(row.get::<_, i64>(0)).map_err(|_| out_of_range("agencies"))?;
                Ok((finished, row.get::<_, bool>(1)))
            })?;
            if !drawn {
                conn.not_ready = Some((Instant::now(), finished));
                return Ok(DrawState::NotReady { finished });
            }
            conn.drawn = true;
            if let Err(e) = conn.link.with(|client| announce(client, log)) {
                warn!(
                    "action: sorteo | result: fail | error: {}",
                    crate::logging::clean(&e)
                );
            }
        }
        // Every document takes at least 2 bytes: no page holds more.
        let limit = i64::try_from((room / 2).min(usize::from(u16::MAX))).unwrap_or(i64::MAX);
        conn.link.with(|client| {
            let row = client
                .query_one(
                    "SELECT (SELECT COALESCE(max(rank) + 1, 0) FROM winners WHERE agency = $1),
                            ARRAY(SELECT document FROM winners WHERE agency = $1 AND rank >= $2
                                  ORDER BY rank LIMIT $3)",
                    &[&i64::from(agency), &i64::from(offset), &limit],
                )
                .map_err(db("read the winners from"))?;
            let total = u32::try_from(row.get::<_, i64>(0).min(i64::from(u32::MAX)))
                .map_err(|_| out_of_range("winners"))?;
            let mut page = WinnersPage::new(total);
            for document in row.get::<_, Vec<String>>(1) {
                if !page.fits(document.len(), room) {
                    break;
                }
                page.push(document);
            }
            Ok(DrawState::Ready(page))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(agency: u32, first: u64, count: u64, rows: std::ops::Range<usize>) -> GroupRequest {
        GroupRequest {
            agency,
            kind: RequestKind::Batch { first, count, rows },
        }
    }

    #[test]
    fn each_request_is_decided_against_the_locked_rows_in_order() {
        let bytes = b"a\nb\nc\nd\n";
        let requests = vec![
            batch(1, 0, 1, 0..2), // stored elsewhere already
            batch(1, 1, 2, 2..6), // half stored: a gap now
            batch(2, 5, 1, 6..8), // continues agency 2
            GroupRequest {
                agency: 2,
                kind: RequestKind::Done { total: 6 },
            },
            batch(2, 6, 1, 6..8), // after DONE
            GroupRequest {
                agency: 3,
                kind: RequestKind::Done { total: 1 },
            },
            GroupRequest {
                agency: 2,
                kind: RequestKind::Done { total: 6 },
            }, // repeated, same total
            GroupRequest {
                agency: 2,
                kind: RequestKind::Done { total: 7 },
            }, // repeated, another total
            GroupRequest {
                agency: 4,
                kind: RequestKind::Done { total: 3 },
            }, // done elsewhere, same total
            GroupRequest {
                agency: 4,
                kind: RequestKind::Done { total: 0 },
            }, // done elsewhere, another total
        ];
        let group = GroupData {
            rows: bytes,
            added: &[],
            done: &[],
            requests: &requests,
        };
        let row = |next, done| AgencyRow {
            next,
            done,
            changed: false,
        };
        let mut rows = BTreeMap::from([
            (1, row(2, false)),
            (2, row(5, false)),
            (3, row(0, false)),
            (4, row(3, true)),
        ]);
        let mut copy = Vec::new();
        let (verdicts, newly_done) = decide(&group, &mut rows, &mut copy).unwrap();
        assert_eq!(copy, b"d\n");
        assert_eq!(newly_done, 1);
        assert_eq!(
            verdicts,
            BTreeMap::from([
                (0, Verdict::Duplicate),
                (1, Verdict::Sequence { expected: 2 }),
                (4, Verdict::AlreadyDone),
                (5, Verdict::DoneMismatch { stored: 0 }),
                (6, Verdict::Duplicate),
                (7, Verdict::DoneMismatch { stored: 6 }),
                (8, Verdict::Duplicate),
                (9, Verdict::DoneMismatch { stored: 3 }),
            ])
        );
        assert_eq!(
            (rows[&2].next, rows[&2].done, rows[&2].changed),
            (6, true, true)
        );
        assert!(!rows[&1].changed);
        assert!(!rows[&4].changed);
    }

    #[test]
    fn the_log_names_the_database_but_never_the_password() {
        let config = settings("postgresql://lottery:s3cret@db.example:5433/bets").unwrap();
        let shown = target(&config);
        assert_eq!(shown, "db.example:5433/bets");
        assert!(
            !format!(
                "{:?}",
                PgStorage {
                    link: Link {
                        config,
                        client: None,
                    },
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

    #[test]
    fn only_an_error_answer_to_commit_says_it_rolled_back() {
        // No answer at all (the connection broke after COMMIT was sent).
        assert!(may_have_committed(None));
        // The session ended, possibly after the commit was recorded.
        assert!(may_have_committed(Some(Severity::Fatal)));
        assert!(may_have_committed(Some(Severity::Panic)));
        // The database refused the COMMIT: the transaction rolled back.
        assert!(!may_have_committed(Some(Severity::Error)));
    }

    #[test]
    fn a_malformed_url_is_a_clear_error() {
        let err = settings("postgresql://[::1").unwrap_err();
        assert!(err.to_string().contains("STORAGE_URL"), "{err}");
    }
}
