//! How a server reaches the database: `STORAGE_URL` with the settings
//! the server relies on when the URL does not set them (timeouts,
//! keepalives, the session's bounds on waiting inside the database), and a
//! connection opened when needed ([`Link`]), the committer's and the
//! workers' alike.

use super::error::db;
use crate::storage::error::StorageError;
use ::postgres as pg;
use std::time::Duration;

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
/// lookup connection.
pub(super) struct Link {
    config: pg::Config,
    /// `None` after an error: the next use connects again.
    client: Option<pg::Client>,
}

impl Link {
    /// A link to the database of `config`, already `client` if given.
    pub(super) fn new(config: pg::Config, client: Option<pg::Client>) -> Link {
        Link { config, client }
    }

    /// Whether a connection is open (as far as this side knows).
    pub(super) fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    /// Runs `work` on the connection, opened (again) if there is none or
    /// it closed; on error the connection is dropped and the next use
    /// opens another.
    pub(super) fn with<T, E: From<StorageError>>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_url_is_a_clear_error() {
        let err = settings("postgresql://[::1").unwrap_err();
        assert!(err.to_string().contains("STORAGE_URL"), "{err}");
    }
}
