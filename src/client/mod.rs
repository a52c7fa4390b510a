//! A lottery agency: sends its bets, says it is done, asks for its winners.
//!
//! Resuming is what shapes this code. Every (re)connection starts with
//! HELLO, and the server answers with how many of this agency's bets it
//! already holds; the agency continues from there. Bets are numbered by
//! their position among the valid rows of the file, so a resent batch is
//! recognised and never stored twice. Any broken connection, timeout or
//! "try again" error from the server leads to a reconnect with capped
//! exponential backoff, for at most `retry.timeout` without progress. A
//! server that answers `busy` is alive, so that never counts toward giving
//! up. Before the draw the server answers a winners query with NOT_READY
//! and closes the connection; the agency asks again on a new connection
//! after a short, growing pause (`winners.maxBackoff` at most).
//!
//! Failover: `server.address` may list several servers (comma-separated)
//! that share one database. A refused or lost connection moves the agency
//! to the next one in the list; HELLO_OK there says where to resume, as it
//! does on a reconnect to the same server. So does a server that refuses
//! the agency's key (`unauthorized`: servers in the middle of a key
//! rotation): the agency stops only when every server of the list refused
//! it, one after the other. With one server, a refusal stops it at once.
//!
//! Trust: with `auth: required` (the default) the agency refuses a server
//! that answers HELLO with HELLO_OK instead of a CHALLENGE, and sends it
//! nothing more; only `auth: off` accepts that. `io.timeout` bounds each
//! whole answer (see [`Connection`]), so a server trickling bytes cannot
//! hold the agency. Why it reconnects is logged at INFO, at most once a
//! second per reason (`action: reconnect | result: in_progress | error: …`).

mod connection;
mod reconnect;
pub mod source;
mod swar;

use crate::bet::Bet;
use crate::config::{BetSource, ClientConfig};
use crate::logging::clean;
use crate::message::{self, BatchEncoder, ErrorCode, Message, PROTOCOL_VERSION};
use crate::shutdown::Shutdown;
use connection::{Connection, ConnectionError};
use log::{debug, info, warn};
use reconnect::{Backoff, RateLimit, Reason};
use source::{BetsFile, Row, SourceError};
use std::collections::VecDeque;
use std::fmt;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why the agency stopped before finishing.
#[derive(Debug)]
pub enum ClientError {
    /// The bet given in the environment is not valid.
    InvalidBet(crate::bet::InvalidBet),
    Source(SourceError),
    /// The server refused a request for a reason retrying cannot fix.
    Server {
        code: ErrorCode,
        message: String,
    },
    /// The server answered something the protocol does not allow there.
    Protocol(String),
    /// No progress for `retry.timeout`; the last error.
    GaveUp {
        last: String,
    },
    /// The server answered HELLO with HELLO_OK, without asking for the
    /// agency's key, and the agency's `auth` is `required`.
    Unauthenticated {
        server: String,
    },
    /// The server asked for the agency's key (`auth: off`, no key set).
    NoKey {
        server: String,
    },
    /// Every server of the list refused the agency (or was refused by it),
    /// one after the other: `server: reason` for each.
    AllRefused {
        refusals: Vec<String>,
    },
    /// SIGTERM/SIGINT.
    Shutdown,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidBet(e) => write!(f, "invalid bet: {e}"),
            ClientError::Source(e) => write!(f, "{e}"),
            ClientError::Server { code, message } => {
                write!(f, "server refused ({}): {message}", code.name())
            }
            ClientError::Protocol(what) => write!(f, "protocol error: {what}"),
            ClientError::GaveUp { last } => write!(f, "gave up reconnecting: {last}"),
            ClientError::Unauthenticated { server } => write!(
                f,
                "server {server} answered HELLO with HELLO_OK without asking for this agency's key: refused, nothing more sent to it (an agency with a key never runs unauthenticated; CLI_AUTH=off accepts a server run with SERVER_AUTH=off)"
            ),
            ClientError::NoKey { server } => write!(
                f,
                "server {server} asks for this agency's key and none is set (CLI_AUTH=off): set CLI_KEY or CLI_KEY_FILE"
            ),
            ClientError::AllRefused { refusals } => write!(
                f,
                "every server of the list refused: {}",
                refusals.join("; ")
            ),
            ClientError::Shutdown => write!(f, "stopped by a signal"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What ended one connection.
enum SessionEnd {
    /// Worth reconnecting: the connection broke or the server said "later".
    Retry(Reason),
    /// The server is at its connection limit: alive, so keep trying.
    Busy(Reason),
    /// This server will not do as configured: it refused the agency's key
    /// (`unauthorized`), or the agency refused it (no CHALLENGE, or one it
    /// has no key for). `error` stops the agency if it has no other server.
    Refused {
        kind: &'static str,
        error: ClientError,
    },
    /// The draw has not happened yet (`finished` agencies are done); the
    /// server closed the connection.
    NotReady {
        finished: u32,
        expected: u32,
    },
    Fatal(ClientError),
}

impl From<ConnectionError> for SessionEnd {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Decode(d) => SessionEnd::Fatal(ClientError::Protocol(d.to_string())),
            ConnectionError::Encode(d) => SessionEnd::Fatal(ClientError::Protocol(d.to_string())),
            other => SessionEnd::Retry(Reason::new(other.name(), other.to_string())),
        }
    }
}

impl From<SourceError> for SessionEnd {
    fn from(e: SourceError) -> Self {
        SessionEnd::Fatal(ClientError::Source(e))
    }
}

/// What the agency did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Bets the server stored during this run.
    pub sent: u64,
    /// Rows of the file that were not valid bets.
    pub skipped: u64,
    /// Batches sent (resends included).
    pub batches: u64,
    /// Bytes sent to the server, all connections and frames included.
    pub bytes_sent: u64,
    /// This agency's winners' documents.
    pub winners: Vec<String>,
    pub seconds: f64,
}

/// Runs the agency until it knows its winners.
///
/// # Errors
/// See [`ClientError`]; `Shutdown` when a signal stopped it.
pub fn run(config: &ClientConfig, shutdown: &Shutdown) -> Result<Summary, ClientError> {
    let mut agency = Agency::new(config, shutdown)?;
    agency.run()
}

struct Agency<'a> {
    config: &'a ClientConfig,
    shutdown: &'a Shutdown,
    /// The single bet of env mode, validated.
    single: Option<Bet>,
    /// Position of this run's first bet (0 for a file; where the server
    /// was at the first HELLO for a single bet).
    base: Option<u64>,
    /// Position reported by this run's first HELLO.
    start: Option<u64>,
    /// The highest file line whose invalidity was already logged.
    logged_line: u64,
    skipped: u64,
    batches: u64,
    bytes_sent: u64,
    last_progress: Instant,
    /// The `progreso` lines of this run's ingest; starts at its first batch.
    ingest: Option<Progress>,
    /// The socket in use, so a signal can shut it and unblock a read.
    current: Arc<Mutex<Option<TcpStream>>>,
}

impl<'a> Agency<'a> {
    fn new(config: &'a ClientConfig, shutdown: &'a Shutdown) -> Result<Self, ClientError> {
        let single = match &config.bets {
            BetSource::Single(env) => {
                let bet = Bet::parse(
                    config.id,
                    &env.first_name,
                    &env.last_name,
                    &env.document,
                    &env.birthdate,
                    &env.number,
                )
                .map_err(|e| {
                    warn!(
                        "action: apuesta_enviada | result: fail | error: {}",
                        clean(&e)
                    );
                    ClientError::InvalidBet(e)
                })?;
                Some(bet)
            }
            BetSource::File(path) => {
                // Fail now, not after connecting, if the file is missing.
                std::fs::File::open(path).map_err(|source| {
                    ClientError::Source(SourceError {
                        path: path.clone(),
                        source,
                    })
                })?;
                None
            }
        };
        let current: Arc<Mutex<Option<TcpStream>>> = Arc::default();
        let hook = Arc::clone(&current);
        shutdown.on_trigger(move || {
            if let Some(s) = hook.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        });
        Ok(Agency {
            config,
            shutdown,
            base: if single.is_some() { None } else { Some(0) },
            single,
            start: None,
            logged_line: 0,
            skipped: 0,
            batches: 0,
            bytes_sent: 0,
            last_progress: Instant::now(),
            ingest: None,
            current,
        })
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    fn run(&mut self) -> Result<Summary, ClientError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), self.config.retry_max_backoff);
        let servers = self.config.server_addresses();
        // The server in use: the next one in the list after a failure.
        let mut at = 0;
        // Failures in a row since the last progress: the agency gives up
        // only once every server in the list failed after the deadline. A
        // server that goes silent costs a whole `io.timeout`, as long as
        // `retry.timeout` by default, and must not make the agency give up
        // before it has tried the others.
        let (mut failures, mut progress_mark) = (0_usize, self.last_progress);
        // Refusals in a row, `server: reason`: one per server of the list
        // (it is walked round robin), so a whole round of them is fatal.
        let mut refusals: Vec<String> = Vec::new();
        let mut reasons = RateLimit::new(REASON_EVERY);
        loop {
            if self.shutdown.is_triggered() {
                return Err(ClientError::Shutdown);
            }
            let address = servers
                .get(at % servers.len().max(1))
                .copied()
                .unwrap_or(self.config.server_address.as_str());
            let reason = match Connection::connect(address, self.config.io_timeout) {
                Ok(conn) => {
                    debug!("action: connect | result: success | server_address: {address}");
                    if let Ok(handle) = conn.shutdown_handle() {
                        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
                    }
                    if self.shutdown.is_triggered() {
                        return Err(ClientError::Shutdown);
                    }
                    let before = self.last_progress;
                    let end = self.session(conn, address);
                    self.current
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    if let Err(SessionEnd::NotReady { .. }) = end {
                        // A poll for the draw: routine, not worth a line.
                        debug!("action: close_socket | result: success");
                    } else {
                        info!("action: close_socket | result: success");
                        if matches!(self.config.bets, BetSource::File(_)) {
                            info!("action: close_file | result: success");
                        }
                    }
                    match end {
                        Ok(mut summary) => {
                            summary.seconds = started.elapsed().as_secs_f64();
                            return Ok(summary);
                        }
                        Err(_) if self.shutdown.is_triggered() => {
                            return Err(ClientError::Shutdown);
                        }
                        Err(SessionEnd::Fatal(e)) => return Err(e),
                        Err(SessionEnd::NotReady { finished, expected }) => {
                            refusals.clear();
                            self.progress();
                            backoff.reset();
                            self.report(
                                &mut reasons,
                                address,
                                &Reason::new(
                                    "not_ready",
                                    format!(
                                        "no draw yet: {finished} of {expected} agencies finished"
                                    ),
                                ),
                            );
                            let pause = poll_pause(finished, self.config.winners_max_backoff);
                            if !self.shutdown.sleep(pause) {
                                return Err(ClientError::Shutdown);
                            }
                            continue;
                        }
                        Err(SessionEnd::Busy(reason)) => {
                            // Alive and at its limit: not a reason to
                            // give up; another server may have room.
                            refusals.clear();
                            self.progress();
                            at += 1;
                            reason
                        }
                        Err(SessionEnd::Retry(reason)) => {
                            refusals.clear();
                            if self.last_progress != before {
                                backoff.reset();
                            }
                            at += 1;
                            reason
                        }
                        Err(SessionEnd::Refused { kind, error }) => {
                            if servers.len() <= 1 {
                                return Err(error);
                            }
                            refusals.push(format!("{address}: {error}"));
                            if refusals.len() >= servers.len() {
                                return Err(ClientError::AllRefused { refusals });
                            }
                            at += 1;
                            Reason::new(kind, error.to_string())
                        }
                    }
                }
                Err(e) => {
                    refusals.clear();
                    at += 1;
                    Reason::new(e.name(), e.to_string())
                }
            };
            self.report(&mut reasons, address, &reason);
            if self.last_progress != progress_mark {
                (failures, progress_mark) = (0, self.last_progress);
            }
            failures += 1;
            if self.last_progress.elapsed() >= self.config.retry_timeout
                && failures >= servers.len().max(1)
            {
                warn!(
                    "action: connect | result: fail | server_address: {} | error: {}",
                    self.config.server_address,
                    clean(&reason.detail)
                );
                return Err(ClientError::GaveUp {
                    last: reason.detail,
                });
            }
            if !self.shutdown.sleep(backoff.next_delay()) {
                return Err(ClientError::Shutdown);
            }
        }
    }

    /// Says why the agency tries again: at INFO, at most once per
    /// [`REASON_EVERY`] per reason (with how often it came back in
    /// between); every time at DEBUG.
    fn report(&self, limit: &mut RateLimit, server: &str, reason: &Reason) {
        let line = format!(
            "action: reconnect | result: in_progress | error: {} | server_address: {server} | detail: {}",
            reason.kind,
            clean(&reason.detail)
        );
        match limit.allow(reason.kind, Instant::now()) {
            Some(0) => info!("{line}"),
            Some(held) => info!("{line} | repeated: {held}"),
            None => debug!("{line}"),
        }
    }

    /// One connection: HELLO, the bets not yet stored, DONE, winners.
    fn session(&mut self, mut conn: Connection, server: &str) -> Result<Summary, SessionEnd> {
        let result = self.converse(&mut conn, server);
        self.bytes_sent += conn.bytes_sent();
        let mut summary = result?;
        conn.close();
        summary.bytes_sent = self.bytes_sent;
        Ok(summary)
    }

    fn converse(&mut self, conn: &mut Connection, server: &str) -> Result<Summary, SessionEnd> {
        let (next_seq, done) = self.handshake(conn, server)?;
        // Not progress: a server that greets but cannot store (a full
        // disk) must not keep the agency retrying forever.
        let base = *self.base.get_or_insert(next_seq);
        let start = *self.start.get_or_insert(next_seq);
        if next_seq < base {
            return Err(SessionEnd::Fatal(ClientError::Protocol(format!(
                "server holds {next_seq} bets for this agency, fewer than the {base} it held before"
            ))));
        }
        let total = if done {
            next_seq
        } else {
            let total = self.send_bets(conn, base, next_seq)?;
            conn.send(&Message::Done { total })?;
            match conn.recv()? {
                Message::Ack { next_seq } if next_seq == total => {}
                other => return Err(unexpected(other, "ACK of DONE")),
            }
            self.progress();
            total
        };
        let winners = self.winners(conn)?;
        info!(
            "action: consulta_ganadores | result: success | cant_ganadores: {}",
            winners.len()
        );
        Ok(Summary {
            sent: total.saturating_sub(start),
            skipped: self.skipped,
            batches: self.batches,
            bytes_sent: 0,
            winners,
            seconds: 0.0,
        })
    }

    /// HELLO, then AUTH with this agency's key when the server sends a
    /// CHALLENGE: the agency's position and whether its DONE is recorded.
    /// A HELLO_OK in place of the CHALLENGE is accepted with `auth: off`
    /// only; otherwise the agency sends that server nothing more.
    fn handshake(
        &mut self,
        conn: &mut Connection,
        server: &str,
    ) -> Result<(u64, bool), SessionEnd> {
        let agency = self.config.id;
        conn.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            agency,
        })?;
        let mut answer = conn.recv()?;
        match answer {
            Message::Challenge { nonce } => {
                let Some(key) = self.config.auth.key() else {
                    return Err(refuse_server(
                        "no_key",
                        server,
                        ClientError::NoKey {
                            server: server.to_owned(),
                        },
                    ));
                };
                let tag = key.tag(&nonce, agency, PROTOCOL_VERSION);
                conn.send(&Message::Auth { tag })?;
                answer = conn.recv()?;
            }
            Message::HelloOk { .. } if self.config.auth.is_required() => {
                return Err(refuse_server(
                    "no_challenge",
                    server,
                    ClientError::Unauthenticated {
                        server: server.to_owned(),
                    },
                ));
            }
            Message::HelloOk { .. } => {
                debug!("action: auth | result: success | mode: off (the server asked for no key)");
            }
            _ => {}
        }
        match answer {
            Message::HelloOk { next_seq, done } => Ok((next_seq, done)),
            other => Err(unexpected(other, "CHALLENGE or HELLO_OK")),
        }
    }

    /// Sends every bet from position `from`, keeping up to `batch.window`
    /// batches in flight. Returns the agency's total.
    fn send_bets(
        &mut self,
        conn: &mut Connection,
        base: u64,
        from: u64,
    ) -> Result<u64, SessionEnd> {
        let mut bets = self.open_at(from - base)?;
        let mut seq = from;
        // Counted from this run's first position, so a resumed run reports
        // what it sent, not what an earlier run did.
        let start = self.start.unwrap_or(from);
        self.ingest
            .get_or_insert_with(|| Progress::new(Instant::now(), PROGRESS_EVERY));
        // A bet that did not fit in the previous frame opens the next one.
        let mut carry: Option<Bet> = None;
        let mut exhausted = false;
        // The position after each batch in flight.
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        loop {
            while !exhausted && in_flight.len() < self.config.batch_window {
                let mut enc = BatchEncoder::new(self.config.id, seq);
                if let Some(bet) = carry.take() {
                    enc.push(&bet).map_err(encode_failure)?;
                }
                while enc.count() < self.config.batch_max_amount {
                    let bet = match bets.next_row()? {
                        None => {
                            exhausted = true;
                            break;
                        }
                        Some(Row::Invalid(row)) => {
                            self.report_invalid(row);
                            continue;
                        }
                        Some(Row::Bet(bet)) => bet,
                    };
                    if !enc.push(bet).map_err(encode_failure)? {
                        carry = Some(bet.to_bet());
                        break;
                    }
                }
                if enc.is_empty() {
                    break;
                }
                let n = enc.count() as u64;
                conn.send_frame(message::kind::BATCH, &enc.into_payload())?;
                self.batches += 1;
                seq += n;
                in_flight.push_back(seq);
            }
            // One ACK (waiting for it), then those that came with it: the
            // window is refilled once per group, in one write.
            let Some(first) = in_flight.pop_front() else {
                return Ok(seq);
            };
            let mut next = Some(first);
            while let Some(expected) = next {
                match conn.recv()? {
                    Message::Ack { next_seq } if next_seq == expected => {
                        self.progress();
                        debug!("action: batch_enviado | result: success | next_seq: {next_seq}");
                        if let Some(line) = self.ingest.as_mut().and_then(|p| {
                            // A server restarted after a crash may resume this agency
                            // below where its first session began (what it had accepted
                            // was not yet durable): count from there, never below 0.
                            p.line(
                                Instant::now(),
                                seq.saturating_sub(start),
                                next_seq.saturating_sub(start),
                            )
                        }) {
                            info!("{line}");
                        }
                        if let Some(bet) = &self.single {
                            info!(
                                "action: apuesta_enviada | result: success | dni: {} | numero: {}",
                                bet.document, bet.number
                            );
                        }
                    }
                    other => return Err(unexpected(other, "ACK")),
                }
                next = if conn.has_message() {
                    in_flight.pop_front()
                } else {
                    None
                };
            }
        }
    }

    /// The agency's bets, skipping the first `skip` (already stored).
    fn open_at(&mut self, skip: u64) -> Result<Bets, SessionEnd> {
        match (&self.single, &self.config.bets) {
            (Some(bet), _) => Ok(Bets::Single {
                bet: bet.clone(),
                sent: skip > 0,
            }),
            (None, BetSource::File(path)) => {
                let mut bets = Bets::File(BetsFile::open(path, self.config.id)?);
                let mut skipped = 0;
                while skipped < skip {
                    match bets.next_row()? {
                        Some(Row::Bet(_)) => skipped += 1,
                        Some(Row::Invalid(row)) => self.report_invalid(row),
                        None => {
                            return Err(SessionEnd::Fatal(ClientError::Protocol(format!(
                                "server holds more bets for this agency than its file has ({skip})"
                            ))));
                        }
                    }
                }
                Ok(bets)
            }
            (None, BetSource::Single(_)) => Err(SessionEnd::Fatal(ClientError::Protocol(
                "no bet to send".into(),
            ))),
        }
    }

    /// Logs an invalid row of the file, once per run (a resumed session
    /// reads the rows before its position again).
    fn report_invalid(&mut self, row: source::InvalidRow) {
        if row.line > self.logged_line {
            self.logged_line = row.line;
            self.skipped += 1;
            warn!(
                "action: apuesta_invalida | result: fail | linea: {} | error: {}",
                row.line,
                clean(&row.reason)
            );
        }
    }

    /// Asks for the winners, paging through long lists. Before the draw
    /// the server answers NOT_READY and closes the connection: the session
    /// ends with [`SessionEnd::NotReady`] and the agency asks again later.
    fn winners(&mut self, conn: &mut Connection) -> Result<Vec<String>, SessionEnd> {
        let mut docs: Vec<String> = Vec::new();
        loop {
            let offset = u32::try_from(docs.len()).unwrap_or(u32::MAX);
            conn.send(&Message::WinnersQuery { offset })?;
            match conn.recv()? {
                Message::NotReady { finished, expected } => {
                    debug!(
                        "action: consulta_ganadores | result: in_progress | finalizadas: {finished} | esperadas: {expected}"
                    );
                    return Err(SessionEnd::NotReady { finished, expected });
                }
                Message::Winners {
                    total,
                    offset: got,
                    documents,
                } if got == offset => {
                    self.progress();
                    let empty_page = documents.is_empty();
                    docs.extend(documents);
                    if docs.len() >= total as usize {
                        return Ok(docs);
                    }
                    if empty_page {
                        return Err(SessionEnd::Fatal(ClientError::Protocol(
                            "server sent an empty page of winners".into(),
                        )));
                    }
                }
                other => return Err(unexpected(other, "WINNERS or NOT_READY")),
            }
        }
    }
}

/// How often, at most, an ingest logs its `progreso` line.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The ingest's `progreso` line: at most once per `every`, the first one
/// `every` after the start, so an ingest shorter than that logs none.
#[derive(Debug)]
struct Progress {
    started: Instant,
    every: Duration,
    next: Instant,
}

impl Progress {
    fn new(started: Instant, every: Duration) -> Self {
        Progress {
            started,
            every,
            next: started + every,
        }
    }

    /// The line to log at `now`, if one is due: `sent` bets sent and
    /// `acked` acknowledged so far; the rate is acknowledged bets per second
    /// since the start.
    fn line(&mut self, now: Instant, sent: u64, acked: u64) -> Option<String> {
        if now < self.next {
            return None;
        }
        self.next = now + self.every;
        let seconds = now.duration_since(self.started).as_secs_f64();
        let rate = if seconds > 0.0 {
            acked as f64 / seconds
        } else {
            0.0
        };
        Some(format!(
            "action: progreso | result: in_progress | enviadas: {sent} | confirmadas: {acked} | por_segundo: {rate:.0}"
        ))
    }
}

/// Where bets come from during one connection.
enum Bets {
    File(BetsFile),
    Single { bet: Bet, sent: bool },
}

impl Bets {
    /// The next row: for a file, read from it; for the single bet, the bet
    /// once.
    fn next_row(&mut self) -> Result<Option<Row<'_>>, SourceError> {
        match self {
            Bets::File(file) => file.next_row(),
            Bets::Single { bet, sent } => {
                Ok((!std::mem::replace(sent, true)).then(|| Row::Bet(bet.as_ref())))
            }
        }
    }
}

/// The pause before asking for the winners again: a quarter of a
/// millisecond per agency already waiting for the draw (every finished
/// agency polls), so the server sees about four thousand polls a second
/// however many agencies wait, and an agency learns its winners at most
/// that long after the draw (1 ms with 5 agencies, 25 ms with 100); at
/// least 1 ms, at most `max` (`winners.maxBackoff`).
fn poll_pause(finished: u32, max: Duration) -> Duration {
    (Duration::from_micros(250) * finished)
        .max(Duration::from_millis(1))
        .min(max)
}

/// How often, at most, one reason to reconnect is logged at INFO.
const REASON_EVERY: Duration = Duration::from_secs(1);

/// The agency refuses `server` (`kind` names why): logged as a failed
/// handshake at WARN, every time (a server that skips authentication is
/// either misconfigured or not the agency's server).
fn refuse_server(kind: &'static str, server: &str, error: ClientError) -> SessionEnd {
    warn!(
        "action: auth | result: fail | error: {kind} | server_address: {server} | detail: {}",
        clean(&error)
    );
    SessionEnd::Refused { kind, error }
}

fn encode_failure(e: message::EncodeError) -> SessionEnd {
    SessionEnd::Fatal(ClientError::Protocol(e.to_string()))
}

fn unexpected(msg: Message, wanted: &str) -> SessionEnd {
    match msg {
        Message::Error {
            code: ErrorCode::Busy,
            message,
        } => SessionEnd::Busy(Reason::new("busy", format!("server: busy ({message})"))),
        Message::Error { code, message } if code.is_retryable() => SessionEnd::Retry(Reason::new(
            code.name(),
            format!("server: {} ({message})", code.name()),
        )),
        Message::Error {
            code: ErrorCode::Unauthorized,
            message,
        } => SessionEnd::Refused {
            kind: "unauthorized",
            error: ClientError::Server {
                code: ErrorCode::Unauthorized,
                message,
            },
        },
        Message::Error { code, message } => {
            SessionEnd::Fatal(ClientError::Server { code, message })
        }
        Message::Ack { next_seq } => SessionEnd::Retry(Reason::new(
            "out_of_order",
            format!("ACK for position {next_seq} out of order; resyncing"),
        )),
        other => SessionEnd::Fatal(ClientError::Protocol(format!(
            "expected {wanted}, got message type 0x{:02x}",
            other.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winners_polls_are_spaced_by_the_agencies_waiting() {
        let max = Duration::from_secs(1);
        assert_eq!(poll_pause(0, max), Duration::from_millis(1));
        assert_eq!(poll_pause(4, max), Duration::from_millis(1));
        assert_eq!(poll_pause(100, max), Duration::from_millis(25));
        assert_eq!(poll_pause(999, max), Duration::from_micros(249_750));
        assert_eq!(poll_pause(5000, max), max);
        assert_eq!(
            poll_pause(500, Duration::from_millis(25)),
            Duration::from_millis(25)
        );
    }

    #[test]
    fn progress_waits_its_interval_and_then_reports_at_most_once_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut p = Progress::new(t0, s);
        assert_eq!(p.line(t0, 10, 5), None);
        assert_eq!(
            p.line(t0 + s / 2, 20, 10),
            None,
            "a short ingest says nothing"
        );
        assert_eq!(
            p.line(t0 + s * 2, 4_000, 3_000).as_deref(),
            Some(
                "action: progreso | result: in_progress | enviadas: 4000 | confirmadas: 3000 | por_segundo: 1500"
            )
        );
        assert_eq!(p.line(t0 + s * 2 + s / 2, 5_000, 4_000), None);
        assert!(p.line(t0 + s * 3, 6_000, 6_000).is_some());
    }

    #[test]
    fn retryable_server_errors_reconnect_and_others_stop() {
        let retry = unexpected(
            Message::Error {
                code: ErrorCode::Storage,
                message: "disk full".into(),
            },
            "ACK",
        );
        assert!(matches!(retry, SessionEnd::Retry(_)));
        let fatal = unexpected(
            Message::Error {
                code: ErrorCode::UnknownAgency,
                message: "no".into(),
            },
            "ACK",
        );
        assert!(matches!(
            fatal,
            SessionEnd::Fatal(ClientError::Server { .. })
        ));
        assert!(matches!(
            unexpected(Message::Bye, "ACK"),
            SessionEnd::Fatal(ClientError::Protocol(_))
        ));
    }

    /// `unauthorized` is not fatal by itself: another server of the list
    /// (in the middle of a key rotation) may take the key.
    #[test]
    fn unauthorized_is_a_refusal_and_busy_a_reason_named_busy() {
        let refused = unexpected(
            Message::Error {
                code: ErrorCode::Unauthorized,
                message: "bad key".into(),
            },
            "HELLO_OK",
        );
        let SessionEnd::Refused { kind, error } = refused else {
            panic!("not a refusal")
        };
        assert_eq!(kind, "unauthorized");
        assert!(error.to_string().contains("unauthorized"), "{error}");
        let busy = unexpected(
            Message::Error {
                code: ErrorCode::Busy,
                message: "full".into(),
            },
            "HELLO_OK",
        );
        assert!(matches!(
            busy,
            SessionEnd::Busy(Reason { kind: "busy", .. })
        ));
    }
}
