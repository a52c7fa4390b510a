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
//! does on a reconnect to the same server.

pub mod source;

use crate::bet::Bet;
use crate::config::{BetSource, ClientConfig};
use crate::connection::{Connection, ConnectionError};
use crate::logging::clean;
use crate::message::{self, BatchEncoder, ErrorCode, Message, PROTOCOL_VERSION};
use crate::shutdown::Shutdown;
use log::{debug, info, warn};
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
            ClientError::Shutdown => write!(f, "stopped by a signal"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What ended one connection.
enum SessionEnd {
    /// Worth reconnecting: the connection broke or the server said "later".
    Retry(String),
    /// The server is at its connection limit: alive, so keep trying.
    Busy(String),
    /// The draw has not happened yet (`finished` agencies are done); the
    /// server closed the connection.
    NotReady {
        finished: u32,
    },
    Fatal(ClientError),
}

impl From<ConnectionError> for SessionEnd {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Decode(d) => SessionEnd::Fatal(ClientError::Protocol(d.to_string())),
            ConnectionError::Encode(d) => SessionEnd::Fatal(ClientError::Protocol(d.to_string())),
            other => SessionEnd::Retry(other.to_string()),
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

/// Exponential backoff between `first` and `max`.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            next: first.min(max),
            first,
            max,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
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
        loop {
            if self.shutdown.is_triggered() {
                return Err(ClientError::Shutdown);
            }
            let address = servers
                .get(at % servers.len().max(1))
                .copied()
                .unwrap_or(self.config.server_address.as_str());
            let last = match Connection::connect(address, self.config.io_timeout) {
                Ok(conn) => {
                    debug!("action: connect | result: success | server_address: {address}");
                    if let Ok(handle) = conn.shutdown_handle() {
                        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
                    }
                    if self.shutdown.is_triggered() {
                        return Err(ClientError::Shutdown);
                    }
                    let before = self.last_progress;
                    let end = self.session(conn);
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
                        Err(SessionEnd::NotReady { finished }) => {
                            self.progress();
                            backoff.reset();
                            let pause = poll_pause(finished, self.config.winners_max_backoff);
                            if !self.shutdown.sleep(pause) {
                                return Err(ClientError::Shutdown);
                            }
                            continue;
                        }
                        Err(SessionEnd::Busy(reason)) => {
                            // Alive and at its limit: not a reason to
                            // give up; another server may have room.
                            self.progress();
                            at += 1;
                            debug!(
                                "action: reconnect | result: in_progress | error: {}",
                                clean(&reason)
                            );
                            reason
                        }
                        Err(SessionEnd::Retry(reason)) => {
                            if self.last_progress != before {
                                backoff.reset();
                            }
                            at += 1;
                            warn!(
                                "action: reconnect | result: in_progress | server_address: {address} | error: {}",
                                clean(&reason)
                            );
                            reason
                        }
                    }
                }
                Err(e) => {
                    debug!(
                        "action: connect | result: in_progress | server_address: {address} | error: {}",
                        clean(&e)
                    );
                    at += 1;
                    e.to_string()
                }
            };
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
                    clean(&last)
                );
                return Err(ClientError::GaveUp { last });
            }
            if !self.shutdown.sleep(backoff.next_delay()) {
                return Err(ClientError::Shutdown);
            }
        }
    }

    /// One connection: HELLO, the bets not yet stored, DONE, winners.
    fn session(&mut self, mut conn: Connection) -> Result<Summary, SessionEnd> {
        let result = self.converse(&mut conn);
        self.bytes_sent += conn.bytes_sent();
        let mut summary = result?;
        conn.close();
        summary.bytes_sent = self.bytes_sent;
        Ok(summary)
    }

    fn converse(&mut self, conn: &mut Connection) -> Result<Summary, SessionEnd> {
        let (next_seq, done) = self.handshake(conn)?;
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

    /// HELLO, then AUTH with this agency's key if the server sends a
    /// CHALLENGE: the agency's position and whether its DONE is recorded.
    fn handshake(&mut self, conn: &mut Connection) -> Result<(u64, bool), SessionEnd> {
        let agency = self.config.id;
        conn.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            agency,
        })?;
        let mut answer = conn.recv()?;
        if let Message::Challenge { nonce } = answer {
            let tag = self.config.key.tag(&nonce, agency, PROTOCOL_VERSION);
            conn.send(&Message::Auth { tag })?;
            answer = conn.recv()?;
        } else if matches!(answer, Message::HelloOk { .. }) {
            debug!("action: auth | result: success | mode: off (the server asked for no key)");
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
                    return Err(SessionEnd::NotReady { finished });
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

fn encode_failure(e: message::EncodeError) -> SessionEnd {
    SessionEnd::Fatal(ClientError::Protocol(e.to_string()))
}

fn unexpected(msg: Message, wanted: &str) -> SessionEnd {
    match msg {
        Message::Error {
            code: ErrorCode::Busy,
            message,
        } => SessionEnd::Busy(format!("server: busy ({message})")),
        Message::Error { code, message } if code.is_retryable() => {
            SessionEnd::Retry(format!("server: {} ({message})", code.name()))
        }
        Message::Error { code, message } => {
            SessionEnd::Fatal(ClientError::Server { code, message })
        }
        Message::Ack { next_seq } => SessionEnd::Retry(format!(
            "ACK for position {next_seq} out of order; resyncing"
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
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
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
}
