//! A lottery agency: sends its bets, says it is done, asks for its winners.
//!
//! [`run`] takes the agency's config and returns its [`Summary`]. It
//! connects, lets a session talk to the server, and when a connection ends
//! before the agency knows its winners, asks the failover where and when to
//! try again. A bet the server already holds is never sent twice: each new
//! connection resumes where the server says it is.
//!
//! - `session.rs`: one connection's conversation: HELLO (and AUTH), the
//!   window of batches in flight, DONE, the winners query and its paging;
//!   what carries over between connections.
//! - `session_end.rs`: how a connection ended (retry, busy, refused, no
//!   draw yet, fatal), the vocabulary between the session and the failover.
//! - `reconnect.rs`: the failover: the server list walked round robin,
//!   refusals, the backoff, giving up after `retry.timeout` without
//!   progress, the `action: reconnect` lines (at most once a second per
//!   reason).
//! - `connection.rs`: the only code that reads and writes the socket;
//!   `io.timeout` bounds each whole answer, so a server trickling bytes
//!   cannot hold the agency.
//! - [`source`] (with `swar.rs`): the agency's CSV file, read as a stream of
//!   valid bets; `progress.rs`: the ingest's `progreso` line; `error.rs`:
//!   [`ClientError`], why the agency stopped.
//!
//! Trust: with `auth: required` (the default) the agency refuses a server
//! that answers HELLO with HELLO_OK instead of a CHALLENGE, and sends it
//! nothing more; only `auth: off` accepts that.

mod connection;
mod error;
mod progress;
mod reconnect;
mod session;
mod session_end;
pub mod source;
mod swar;

pub use error::ClientError;
pub use session::Summary;

use crate::bet::Bet;
use crate::config::{BetSource, ClientConfig};
use crate::logging::{Action, ActionEvent, AgencyEvent, LogLine};
use crate::shutdown::Shutdown;
use connection::Connection;
use reconnect::Failover;
use session::Agency;
use session_end::SessionEnd;
use source::SourceError;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Runs the agency until it knows its winners.
///
/// # Errors
/// See [`ClientError`]; `Shutdown` when a signal stopped it.
pub fn run(config: &ClientConfig, shutdown: &Shutdown) -> Result<Summary, ClientError> {
    let started = Instant::now();
    let mut agency = Agency::new(config, bet_to_send(config)?);
    let socket = SocketInUse::new(shutdown);
    let mut failover = Failover::new(config, agency.last_progress);
    loop {
        if shutdown.is_triggered() {
            return Err(ClientError::Shutdown);
        }
        let server = failover.server();
        let end = match Connection::connect(server, config.io_timeout) {
            Ok(conn) => {
                AgencyEvent::Connected { server }.debug();
                socket.set(&conn);
                if shutdown.is_triggered() {
                    return Err(ClientError::Shutdown);
                }
                let end = agency.session(conn, server);
                socket.clear();
                log_close(config, &end);
                match end {
                    Ok(mut summary) => {
                        summary.seconds = started.elapsed().as_secs_f64();
                        return Ok(summary);
                    }
                    Err(_) if shutdown.is_triggered() => return Err(ClientError::Shutdown),
                    Err(end) => end,
                }
            }
            Err(e) => SessionEnd::from(e),
        };
        let pause = failover.after(end, server, &mut agency.last_progress)?;
        if !shutdown.sleep(pause) {
            return Err(ClientError::Shutdown);
        }
    }
}

/// Checks the bets before connecting: the single bet of env mode,
/// validated (logged when it is not valid), or `None` for a file, which
/// must open now rather than after connecting.
fn bet_to_send(config: &ClientConfig) -> Result<Option<Bet>, ClientError> {
    match &config.bets {
        BetSource::Single(env) => Bet::parse(
            config.id,
            &env.first_name,
            &env.last_name,
            &env.document,
            &env.birthdate,
            &env.number,
        )
        .map(Some)
        .map_err(|e| {
            ActionEvent::Failed { action: Action::ApuestaEnviada, error: &e }.warn();
            ClientError::InvalidBet(e)
        }),
        BetSource::File(path) => match std::fs::File::open(path) {
            Ok(_) => Ok(None),
            Err(source) => Err(ClientError::Source(SourceError { path: path.clone(), source })),
        },
    }
}

/// Logs that a connection closed: at INFO, but for a poll for the draw,
/// which is routine.
fn log_close(config: &ClientConfig, end: &Result<Summary, SessionEnd>) {
    if let Err(SessionEnd::NotReady { .. }) = end {
        ActionEvent::Succeeded(Action::CloseSocket).debug();
    } else {
        ActionEvent::Succeeded(Action::CloseSocket).info();
        if matches!(config.bets, BetSource::File(_)) {
            ActionEvent::Succeeded(Action::CloseFile).info();
        }
    }
}

/// The socket in use, so that a signal can shut it down and unblock a read
/// that would otherwise wait up to `io.timeout`.
struct SocketInUse(Arc<Mutex<Option<TcpStream>>>);

impl SocketInUse {
    fn new(shutdown: &Shutdown) -> Self {
        let current: Arc<Mutex<Option<TcpStream>>> = Arc::default();
        let hook = Arc::clone(&current);
        shutdown.on_trigger(move || {
            if let Some(s) = hook.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        });
        SocketInUse(current)
    }

    fn set(&self, conn: &Connection) {
        if let Ok(handle) = conn.shutdown_handle() {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        }
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
