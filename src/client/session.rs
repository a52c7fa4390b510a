//! One connection's conversation: HELLO (and AUTH, when the server asks for
//! the agency's key), the bets the server does not hold yet with up to
//! `batch.window` batches in flight, DONE, and the winners query with its
//! paging. How a conversation ended is a [`SessionEnd`]; whether and where
//! to try again is [`reconnect`](super::reconnect)'s to decide.
//!
//! Resuming is what shapes this code. Every conversation starts with HELLO,
//! and the server answers with how many of this agency's bets it already
//! holds; the agency continues from there. Bets are numbered by their
//! position among the valid rows of the file, so a resent batch is
//! recognised and never stored twice. An [`Agency`] is what carries over
//! from one connection to the next: where this run started, which invalid
//! rows were already logged, the counters of the [`Summary`], and when the
//! agency last made progress.

use super::connection::Connection;
use super::error::ClientError;
use super::progress::{PROGRESS_EVERY, ProgressLine};
use super::session_end::{SessionEnd, unexpected};
use super::source::{BetsFile, InvalidRow, Row, SourceError};
use crate::bet::Bet;
use crate::config::{BetSource, ClientConfig};
use crate::logging::{AgencyEvent, LogLine};
use crate::message::{self, BatchEncoder, Message, PROTOCOL_VERSION};
use std::collections::VecDeque;
use std::time::Instant;

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

/// What carries over from one connection to the next.
pub(super) struct Agency<'a> {
    config: &'a ClientConfig,
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
    /// When the server last took something from the agency (an ACK, a page
    /// of winners) or showed it was alive: the agency gives up reconnecting
    /// only `retry.timeout` after it.
    pub(super) last_progress: Instant,
    /// The `progreso` lines of this run's ingest; starts at its first batch.
    ingest: Option<ProgressLine>,
}

/// One connection's bets on their way: the next batch's position, and the
/// batches sent but not yet acknowledged.
struct Window {
    bets: Bets,
    /// Position of the next batch's first bet.
    seq: u64,
    /// A bet that did not fit in the previous frame opens the next one.
    carry: Option<Bet>,
    exhausted: bool,
    /// The position after each batch in flight.
    in_flight: VecDeque<u64>,
}

impl<'a> Agency<'a> {
    /// An agency about to send its bets: the file of `config`, or `single`,
    /// the bet of env mode, already validated.
    pub(super) fn new(config: &'a ClientConfig, single: Option<Bet>) -> Self {
        Agency {
            config,
            base: if single.is_some() { None } else { Some(0) },
            single,
            start: None,
            logged_line: 0,
            skipped: 0,
            batches: 0,
            bytes_sent: 0,
            last_progress: Instant::now(),
            ingest: None,
        }
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// One connection to `server`: HELLO, the bets not yet stored, DONE,
    /// winners; then BYE. `seconds` of the summary is the caller's to fill.
    pub(super) fn session(
        &mut self,
        mut conn: Connection,
        server: &str,
    ) -> Result<Summary, SessionEnd> {
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
            let total = self.send_bets(conn, base, next_seq, start)?;
            conn.send(&Message::Done { total })?;
            match conn.recv()? {
                Message::Ack { next_seq } if next_seq == total => {}
                other => return Err(unexpected(other, "ACK of DONE")),
            }
            self.progress();
            total
        };
        let winners = self.winners(conn)?;
        AgencyEvent::WinnersReceived { winners: winners.len() }.info();
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
        conn.send(&Message::Hello { version: PROTOCOL_VERSION, agency })?;
        let mut answer = conn.recv()?;
        match answer {
            Message::Challenge { nonce } => {
                let Some(key) = self.config.auth.key() else {
                    return Err(refuse_server(
                        "no_key",
                        server,
                        ClientError::NoKey { server: server.to_owned() },
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
                    ClientError::Unauthenticated { server: server.to_owned() },
                ));
            }
            Message::HelloOk { .. } => {
                AgencyEvent::AuthSkipped.debug();
            }
            _ => {}
        }
        match answer {
            Message::HelloOk { next_seq, done } => Ok((next_seq, done)),
            other => Err(unexpected(other, "CHALLENGE or HELLO_OK")),
        }
    }

    /// Sends every bet from position `from`, keeping up to `batch.window`
    /// batches in flight. Returns the agency's total. `start` is where this
    /// run's first session began: progress is counted from there, so a
    /// resumed run reports what it sent, not what an earlier run did.
    fn send_bets(
        &mut self,
        conn: &mut Connection,
        base: u64,
        from: u64,
        start: u64,
    ) -> Result<u64, SessionEnd> {
        let mut window = Window {
            bets: self.open_at(from - base)?,
            seq: from,
            carry: None,
            exhausted: false,
            in_flight: VecDeque::new(),
        };
        self.ingest.get_or_insert_with(|| ProgressLine::new(Instant::now(), PROGRESS_EVERY));
        loop {
            while !window.exhausted && window.in_flight.len() < self.config.batch_window {
                let Some(batch) = self.next_batch(&mut window)? else {
                    break;
                };
                let n = batch.count() as u64;
                conn.send_frame(message::kind::BATCH, &batch.into_payload())?;
                self.batches += 1;
                window.seq += n;
                window.in_flight.push_back(window.seq);
            }
            if window.in_flight.is_empty() {
                return Ok(window.seq);
            }
            self.take_acks(conn, &mut window, start)?;
        }
    }

    /// The next batch of the window's bets (invalid rows are logged and
    /// skipped); `None` once there are none left.
    fn next_batch(&mut self, window: &mut Window) -> Result<Option<BatchEncoder>, SessionEnd> {
        let mut enc = BatchEncoder::new(self.config.id, window.seq);
        if let Some(bet) = window.carry.take() {
            enc.push(&bet)?;
        }
        while enc.count() < self.config.batch_max_amount {
            let bet = match window.bets.next_row()? {
                None => {
                    window.exhausted = true;
                    break;
                }
                Some(Row::Invalid(row)) => {
                    self.report_invalid(row);
                    continue;
                }
                Some(Row::Bet(bet)) => bet,
            };
            if !enc.push(bet)? {
                window.carry = Some(bet.to_bet());
                break;
            }
        }
        Ok((!enc.is_empty()).then_some(enc))
    }

    /// One ACK (waiting for it), then those that came with it: the window
    /// is refilled once per group of ACKs, in one write.
    fn take_acks(
        &mut self,
        conn: &mut Connection,
        window: &mut Window,
        start: u64,
    ) -> Result<(), SessionEnd> {
        let mut next = window.in_flight.pop_front();
        while let Some(expected) = next {
            match conn.recv()? {
                Message::Ack { next_seq } if next_seq == expected => {
                    self.acked(window.seq, next_seq, start);
                }
                other => return Err(unexpected(other, "ACK")),
            }
            next = if conn.has_message() { window.in_flight.pop_front() } else { None };
        }
        Ok(())
    }

    /// The server acknowledged the bets before `next_seq`; `seq` is where
    /// the bets sent so far end, `start` where this run's first session
    /// began.
    fn acked(&mut self, seq: u64, next_seq: u64, start: u64) {
        let now = Instant::now();
        self.last_progress = now;
        AgencyEvent::BatchSent { next_seq }.debug();
        if let Some(line) = self.ingest.as_mut().and_then(|p| {
            // A server restarted after a crash may resume this agency
            // below where its first session began (what it had accepted
            // was not yet durable): count from there, never below 0.
            p.line(now, seq.saturating_sub(start), next_seq.saturating_sub(start))
        }) {
            line.info();
        }
        if let Some(bet) = &self.single {
            AgencyEvent::BetSent { document: &bet.document, number: bet.number }.info();
        }
    }

    /// The agency's bets, skipping the first `skip` (already stored).
    fn open_at(&mut self, skip: u64) -> Result<Bets, SessionEnd> {
        match (&self.single, &self.config.bets) {
            (Some(bet), _) => Ok(Bets::Single { bet: bet.clone(), sent: skip > 0 }),
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
            (None, BetSource::Single(_)) => {
                Err(SessionEnd::Fatal(ClientError::Protocol("no bet to send".into())))
            }
        }
    }

    /// Logs an invalid row of the file, once per run (a resumed session
    /// reads the rows before its position again).
    fn report_invalid(&mut self, row: InvalidRow) {
        if row.line > self.logged_line {
            self.logged_line = row.line;
            self.skipped += 1;
            AgencyEvent::BetInvalid { line: row.line, error: &row.reason }.warn();
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
                    AgencyEvent::WinnersPending { finished, expected }.debug();
                    return Err(SessionEnd::NotReady { finished, expected });
                }
                Message::Winners { total, offset: got, documents } if got == offset => {
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

/// The agency refuses `server` (`kind` names why): logged as a failed
/// handshake at WARN, every time (a server that skips authentication is
/// either misconfigured or not the agency's server).
fn refuse_server(kind: &'static str, server: &str, error: ClientError) -> SessionEnd {
    AgencyEvent::ServerRefused { reason: kind, server, detail: &error }.warn();
    SessionEnd::Refused { kind, error }
}
