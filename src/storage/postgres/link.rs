//! How a server reaches the database: `STORAGE_URL` with the settings
//! the server relies on when the URL does not set them (timeouts,
//! keepalives, the session's bounds on waiting inside the database), and a
//! connection opened when needed ([`Link`]), the committer's and the
//! workers' alike.

use super::error::db;
use crate::logging::{LogLine, RateLimit, StorageEvent};
use crate::storage::error::StorageError;
use ::postgres as pg;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Parses `STORAGE_URL` and sets the timeouts the server relies on when
/// the URL does not: a database that vanishes must turn into an error the
/// agencies retry, not a worker blocked for ever.
pub(super) fn settings(url: &str) -> Result<pg::Config, StorageError> {
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
/// connection's mutex). Not a COMMIT waiting for a synchronous standby:
/// PostgreSQL does not cancel that wait (see docs/HIGH_AVAILABILITY.md).
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
pub(super) fn target(config: &pg::Config) -> String {
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
    format!("{}:{}/{}", hosts.join(","), ports.join(","), config.get_dbname().unwrap_or(""))
}

pub(super) fn connect(config: &pg::Config) -> Result<pg::Client, StorageError> {
    config.connect(pg::NoTls).map_err(db("connect to"))
}

/// A connection opened when needed: the committer's, and the workers'
/// lookup connection. Both of a server share one [`Health`], so a lost
/// primary is reported once for the server, not once per connection.
pub(super) struct Link {
    config: pg::Config,
    /// `None` after an error: the next use connects again.
    session: Option<Session>,
    health: Health,
    /// Whether this link's last use failed for want of a database (no
    /// connection, or one that closed under it), not on an answer of it.
    unreachable: bool,
}

impl Link {
    /// A link to the database of `config`, already `client` if given.
    pub(super) fn new(config: pg::Config, client: Option<pg::Client>, health: Health) -> Link {
        Link { config, session: client.map(Session::new), health, unreachable: false }
    }

    /// Whether a connection is open (as far as this side knows).
    pub(super) fn is_connected(&self) -> bool {
        self.session.is_some()
    }

    /// Whether this link's last use failed for want of a database (its
    /// outage is logged by [`Health`]), not on an answer of it.
    pub(super) fn failed_unreachable(&self) -> bool {
        self.unreachable
    }

    /// Forgets that the last use failed for want of a database: its
    /// failure is to be logged as any other.
    pub(super) fn forget_unreachable(&mut self) {
        self.unreachable = false;
    }

    /// Runs `work` on the connection, opened (again) if there is none or
    /// it closed; on error the connection is dropped and the next use
    /// opens another. A connection that cannot be opened, or that closed
    /// under `work`, is reported to [`Health`]; a success after that says
    /// the database is back.
    pub(super) fn with<T, E: From<StorageError> + fmt::Display>(
        &mut self,
        work: impl FnOnce(&mut Session) -> Result<T, E>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let session = match self.session.take() {
            Some(session) if !session.client.is_closed() => session,
            _ => match connect(&self.config) {
                Ok(client) => {
                    // The database answered: whatever `work` meets now is
                    // its answer, not an outage.
                    self.health.up();
                    Session::new(client)
                }
                Err(e) => {
                    self.unreachable = true;
                    self.health.down(started, &e);
                    return Err(e.into());
                }
            },
        };
        let session = self.session.insert(session);
        let began = Instant::now();
        let result = work(session);
        self.unreachable = result.is_err() && session.client.is_closed();
        match &result {
            Ok(_) => self.health.up(),
            Err(e) if self.unreachable => self.health.down(began, e),
            Err(_) => {}
        }
        if result.is_err() {
            self.session = None;
        }
        result
    }
}

/// An open connection and the statements prepared on it. A statement is
/// prepared at its first use on the connection, then each use is one round
/// trip (a query given as text is prepared again at every use: two).
pub(super) struct Session {
    pub client: pg::Client,
    pub prepared: Prepared,
}

impl Session {
    fn new(client: pg::Client) -> Session {
        Session { client, prepared: Prepared(Vec::new()) }
    }
}

/// Starts a transaction at READ COMMITTED, whatever the database's
/// default: every decision is taken under a row lock, and a row that
/// another server moved is then read as it committed it.
pub(super) fn read_committed(client: &mut pg::Client) -> Result<pg::Transaction<'_>, StorageError> {
    client
        .build_transaction()
        .isolation_level(pg::IsolationLevel::ReadCommitted)
        .start()
        .map_err(db("begin a transaction on"))
}

/// The statements prepared on one connection, by their text.
pub(super) struct Prepared(Vec<(&'static str, pg::Statement)>);

impl Prepared {
    /// `sql` prepared on this connection (through `client`: the
    /// connection itself or a transaction on it), at its first use.
    ///
    /// # Errors
    /// The database refused the statement or cannot be reached.
    pub(super) fn get(
        &mut self,
        client: &mut impl pg::GenericClient,
        sql: &'static str,
    ) -> Result<pg::Statement, StorageError> {
        if let Some((_, statement)) = self.0.iter().find(|(text, _)| *text == sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql).map_err(db("prepare a statement on"))?;
        self.0.push((sql, statement.clone()));
        Ok(statement)
    }
}

/// Whether a server reaches its database, shared by its connections: while
/// it does not (no primary: a failover, a restart), one `storage |
/// in_progress` line a second at most; when it does again, one `storage |
/// success` line with how long it took.
#[derive(Clone)]
pub(super) struct Health {
    target: Arc<str>,
    state: Arc<Mutex<HealthState>>,
}

struct HealthState {
    /// Since when no connection reached the database, while none has.
    down_since: Option<Instant>,
    /// When a connection last reached it.
    up_at: Option<Instant>,
    lines: RateLimit,
}

impl Health {
    pub(super) fn new(target: &str) -> Health {
        let lines = RateLimit::new(Duration::from_secs(1));
        let state = HealthState { down_since: None, up_at: None, lines };
        Health { target: target.into(), state: Arc::new(Mutex::new(state)) }
    }

    /// The state, its lock held while a line is logged, so that the lines
    /// of two connections come out in the order of what they say.
    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An attempt begun at `started` found no database: logged at most once
    /// a second. An attempt begun before another connection reached the
    /// database says nothing new (a connect that timed out meanwhile).
    pub(super) fn down(&self, started: Instant, error: &dyn fmt::Display) {
        let now = Instant::now();
        let mut state = self.state();
        if state.up_at.is_some_and(|up| started < up) {
            return;
        }
        state.down_since.get_or_insert(now);
        if let Some(held) = state.lines.allow("unreachable", now) {
            let repeated = (held > 0).then_some(held);
            StorageEvent::Unreachable { database: &&*self.target, error, repeated }.warn();
        }
    }

    /// A connection reached the database: if it was unreachable, it is
    /// back.
    fn up(&self) {
        let mut state = self.state();
        state.up_at = Some(Instant::now());
        if let Some(since) = state.down_since.take() {
            state.lines = RateLimit::new(Duration::from_secs(1));
            let seconds = since.elapsed().as_secs_f64();
            StorageEvent::Reachable { database: &&*self.target, seconds }.info();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_begun_before_the_database_answered_again_is_no_outage() {
        let health = Health::new("db:5432/lottery");
        let before = Instant::now();
        health.up();
        // A connect that timed out while another connection got through.
        health.down(before, &"timed out");
        assert!(health.state().down_since.is_none());
        health.down(Instant::now(), &"connection refused");
        assert!(health.state().down_since.is_some());
        health.up();
        assert!(health.state().down_since.is_none());
    }

    #[test]
    fn a_malformed_url_is_a_clear_error() {
        let err = settings("postgresql://[::1").unwrap_err();
        assert!(err.to_string().contains("STORAGE_URL"), "{err}");
    }
}
