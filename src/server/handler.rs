//! What the server does with each request of a connection, without the
//! socket: frames in, encoded answers out, plus whether to close.
//!
//! The connection's worker calls [`Handler::handle`] with every whole frame
//! one read brought in. A BATCH or DONE is handed to the store at once and
//! its answer becomes an [`Awaiting`] part; the worker then blocks once, on
//! the last commit it needs ([`Reply::finish`]), and sends every answer in
//! one write. So the batches of one read — and of every connection reading
//! at the same time — share one commit and one `fsync`. A WINNERS? before
//! the draw is answered NOT_READY at once and the connection closed: a
//! worker never waits for the draw.
//!
//! The handshake lives here too: HELLO → CHALLENGE → AUTH → HELLO_OK (or
//! HELLO → HELLO_OK with `SERVER_AUTH=off`). Until it completes a
//! connection is served ECHO and nothing else; a failed AUTH is answered
//! only after [`AUTH_FAIL_DELAY`] (see [`Reply::delay`]).

use crate::auth::{self, Nonce, ServerAuth};
use crate::framing::{self, MAX_FRAME_LEN, MAX_PAYLOAD_LEN};
use crate::logging::{PEER_FAULT, clean};
use crate::message::{BatchView, ErrorCode, Message, PROTOCOL_VERSION, WINNERS_HEADER_LEN, kind};
use crate::store::{Acked, Store, StoreError, Ticket, WinnersAnswer};
use log::{debug, error, info, log};
use std::net::SocketAddr;
use std::time::Duration;

/// What the server knows about one connection between requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Session {
    /// The agency this connection speaks for, once its handshake has
    /// completed (HELLO_OK sent). `None` until then, so a connection that
    /// said HELLO but has not authenticated is still a stranger (the
    /// connection limit may evict it).
    pub agency: Option<u32>,
    /// Between HELLO and AUTH: the agency claimed and the nonce sent.
    pub challenge: Option<Challenge>,
    /// Whether this connection already sent DONE.
    pub done_sent: bool,
}

/// A CHALLENGE sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    pub agency: u32,
    pub nonce: Nonce,
}

/// How long the answer to a failed AUTH is held back before it is sent and
/// the connection closed. Slows a peer guessing keys one connection after
/// another; an honest agency with the right key never meets it.
pub const AUTH_FAIL_DELAY: Duration = Duration::from_secs(1);

/// The answers to a run of requests, in order.
#[derive(Debug, Default)]
pub struct Reply {
    pub parts: Vec<Part>,
    /// Close the connection once every part is sent.
    pub close: bool,
    /// `Some(d)`: the connection failed authentication. Read nothing more
    /// from it; send `parts` only once `d` has passed since this reply was
    /// returned, then close it. Set only together with `close`, and then
    /// every part is [`Part::Ready`]. The wait must hold no worker thread
    /// (the peer controls how often it happens), and at shutdown the parts
    /// may go at once.
    pub delay: Option<Duration>,
}

impl Reply {
    /// Whether some answer still waits for a commit that is not resolved
    /// (commits resolve in order: the last one tells).
    pub fn waits_for_commit(&self) -> bool {
        self.parts
            .iter()
            .rev()
            .find_map(|p| match p {
                Part::Awaiting(a) => Some(!a.ticket.is_resolved()),
                Part::Ready(_) => None,
            })
            .unwrap_or(false)
    }

    /// Just an ERROR, then close.
    pub fn refusal(code: ErrorCode, message: &str) -> Reply {
        let mut out = Vec::new();
        encode_error(&mut out, code, message.to_owned());
        Reply {
            parts: vec![Part::Ready(out)],
            close: true,
            delay: None,
        }
    }

    /// Appends the answers of later requests (read ahead).
    pub fn append(&mut self, later: Reply) {
        self.parts.extend(later.parts);
        self.close |= later.close;
        self.delay = self.delay.or(later.delay);
    }

    /// Waits for every commit the answers need (blocking the calling
    /// worker) and appends the encoded answers to `out`, in request order.
    /// Returns whether the connection must close.
    pub fn finish(self, out: &mut Vec<u8>) -> bool {
        let mut close = self.close;
        for part in self.parts {
            match part {
                Part::Ready(bytes) => out.extend_from_slice(&bytes),
                Part::Awaiting(awaiting) => {
                    if awaiting.wait(out) {
                        // A failed commit answers ERROR; nothing after it.
                        close = true;
                        break;
                    }
                }
            }
        }
        close
    }
}

/// One piece of a reply: bytes ready to send, or an answer that waits for
/// the commit holding a request.
#[derive(Debug)]
pub enum Part {
    Ready(Vec<u8>),
    Awaiting(Awaiting),
}

/// A BATCH or DONE handed to the store, whose answer waits for the commit
/// that holds it.
#[derive(Debug)]
pub struct Awaiting {
    agency: u32,
    ticket: Ticket,
    what: Request,
}

#[derive(Debug)]
enum Request {
    /// A batch of `len` bets; `single` is (document, number) of a one-bet batch.
    Batch {
        len: usize,
        single: Option<(String, u16)>,
    },
    Done,
}

impl Awaiting {
    /// Blocks until the commit holding the request is durable (or failed),
    /// logs the outcome and appends the encoded answer to `out`. Returns
    /// whether the connection must close (a failed commit).
    fn wait(self, out: &mut Vec<u8>) -> bool {
        let agency = self.agency;
        match (&self.what, self.ticket.wait()) {
            (
                Request::Batch { len, single },
                Ok(Acked {
                    next_seq,
                    duplicate,
                }),
            ) => {
                if duplicate {
                    info!(
                        "action: apuesta_duplicada | result: success | cantidad: {len} | agencia: {agency}"
                    );
                } else {
                    info!(
                        "action: apuesta_recibida | result: success | cantidad: {len} | agencia: {agency}"
                    );
                    if let Some((dni, numero)) = single {
                        info!(
                            "action: apuesta_almacenada | result: success | dni: {dni} | numero: {numero}"
                        );
                    }
                }
                encode(out, &Message::Ack { next_seq });
                false
            }
            // A DONE's ticket resolves to the agency's total.
            (
                Request::Done,
                Ok(Acked {
                    next_seq: total, ..
                }),
            ) => {
                info!(
                    "action: agencia_finalizada | result: success | agencia: {agency} | apuestas: {total}"
                );
                encode(out, &Message::Ack { next_seq: total });
                false
            }
            (what, Err(e)) => {
                let code = store_error_code(&e);
                match what {
                    Request::Batch { len, .. } => error!(
                        "action: apuesta_recibida | result: fail | cantidad: {len} | agencia: {agency} | code: {} | error: {}",
                        code.name(),
                        clean(&e)
                    ),
                    Request::Done => error!(
                        "action: agencia_finalizada | result: fail | agencia: {agency} | code: {} | error: {}",
                        code.name(),
                        clean(&e)
                    ),
                }
                encode_error(out, code, e.to_string());
                true
            }
        }
    }
}

/// Bytes of a WINNERS frame left for documents: a page holds as many of
/// the agency's winners as fit (the agency asks again from where it ends).
pub const WINNERS_ROOM: usize = MAX_PAYLOAD_LEN - WINNERS_HEADER_LEN;

/// The answer to WINNERS? at `offset`: NOT_READY before the draw, else the
/// page the store read from there (at most [`WINNERS_ROOM`] bytes of
/// documents). `Err`: an offset beyond the list.
fn winners_answer(agency: u32, offset: u32, answer: WinnersAnswer) -> Result<Message, String> {
    let page = match answer {
        WinnersAnswer::NotReady { finished, expected } => {
            return Ok(Message::NotReady { finished, expected });
        }
        WinnersAnswer::Ready(page) => page,
    };
    if offset > page.total {
        return Err(format!("offset {offset} beyond {} winners", page.total));
    }
    if offset == 0 {
        info!(
            "action: ganadores_enviados | result: success | agencia: {agency} | cant_ganadores: {}",
            page.total
        );
    }
    Ok(Message::Winners {
        total: page.total,
        offset,
        documents: page.documents,
    })
}

/// Encodes an ERROR answer (which closes the connection).
pub fn encode_error(out: &mut Vec<u8>, code: ErrorCode, message: String) {
    encode(out, &Message::Error { code, message });
}

/// Encodes an answer the server built itself (always encodable).
fn encode(out: &mut Vec<u8>, msg: &Message) {
    if let Err(e) = msg.encode_into(out) {
        error!("action: encode | result: fail | error: {}", clean(e));
    }
}

fn store_error_code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::Sequence { .. } => ErrorCode::Sequence,
        StoreError::AlreadyDone => ErrorCode::AlreadyDone,
        StoreError::DoneMismatch { .. } => ErrorCode::DoneMismatch,
        StoreError::Storage(_) => ErrorCode::Storage,
        StoreError::Closed => ErrorCode::ShuttingDown,
    }
}

/// Handles requests against the shared store.
#[derive(Debug, Clone)]
pub struct Handler {
    store: Store,
    auth: ServerAuth,
}

impl Handler {
    /// A handler for `store`; `auth` says whether agencies must prove
    /// their key (HELLO → CHALLENGE → AUTH) or not (`ServerAuth::Off`).
    pub fn new(store: Store, auth: ServerAuth) -> Self {
        Handler { store, auth }
    }

    /// Handles the whole frames in `frames` (as the connection's worker cut
    /// them out of its buffer), in order, for the connection whose state is
    /// `session`. Stops at the first request that closes the connection.
    /// Does not wait for commits (the caller does, once, through
    /// [`Reply::finish`]); blocks only while the store's pending group is
    /// full.
    pub fn handle(&self, session: &mut Session, peer: SocketAddr, mut frames: &[u8]) -> Reply {
        let mut run = Run {
            handler: self,
            session,
            peer,
            reply: Reply::default(),
        };
        while let Ok(Some(frame)) = framing::decode(frames, MAX_FRAME_LEN) {
            frames = &frames[frame.len..];
            // Batches are decoded in place (no copy of each bet's strings).
            let decoded = if frame.kind == kind::BATCH {
                BatchView::decode(frame.payload).map(|view| run.batch(&view))
            } else {
                Message::decode(frame.kind, frame.payload).map(|msg| run.other(msg))
            };
            if let Err(e) = decoded {
                run.refuse("decode", e.code(), &e.to_string());
            }
            if run.reply.close {
                break;
            }
        }
        run.reply
    }
}

/// One call of [`Handler::handle`].
struct Run<'a> {
    handler: &'a Handler,
    session: &'a mut Session,
    peer: SocketAddr,
    reply: Reply,
}

impl Run<'_> {
    fn send(&mut self, msg: &Message) {
        if let Some(Part::Ready(bytes)) = self.reply.parts.last_mut() {
            encode(bytes, msg);
        } else {
            let mut bytes = Vec::new();
            encode(&mut bytes, msg);
            self.reply.parts.push(Part::Ready(bytes));
        }
    }

    fn wait_for(&mut self, ticket: Ticket, agency: u32, what: Request) {
        self.reply.parts.push(Part::Awaiting(Awaiting {
            agency,
            ticket,
            what,
        }));
    }

    /// Answers ERROR, logs why, and closes the connection.
    fn refuse(&mut self, action: &str, code: ErrorCode, reason: &str) {
        log!(
            PEER_FAULT,
            "action: {action} | result: fail | peer: {} | code: {} | error: {}",
            self.peer,
            code.name(),
            clean(reason)
        );
        self.fail(code, reason.to_owned());
    }

    /// Answers ERROR and closes the connection (the caller logged why).
    fn fail(&mut self, code: ErrorCode, message: String) {
        self.send(&Message::Error { code, message });
        self.reply.close = true;
    }

    fn refuse_store(&mut self, action: &str, e: &StoreError) {
        self.refuse(action, store_error_code(e), &e.to_string());
    }

    /// The agency of this connection, or an ERROR if it has not completed
    /// the handshake.
    fn agency(&mut self) -> Option<u32> {
        if self.session.agency.is_none() {
            if self.session.challenge.is_some() {
                self.refuse(
                    "request",
                    ErrorCode::Unauthorized,
                    "AUTH must succeed before any other request",
                );
            } else {
                self.refuse("request", ErrorCode::HelloRequired, "HELLO must come first");
            }
        }
        self.session.agency
    }

    fn batch(&mut self, batch: &BatchView<'_>) {
        let Some(agency) = self.agency() else { return };
        let n = batch.bets.len();
        if batch.agency != agency {
            let reason = format!(
                "batch for agency {} on agency {agency}'s connection",
                batch.agency
            );
            return self.refuse("apuesta_recibida", ErrorCode::AgencyMismatch, &reason);
        }
        if self.session.done_sent {
            return self.refuse_store("apuesta_recibida", &StoreError::AlreadyDone);
        }
        if let Err((i, e)) = batch.validate() {
            log!(
                PEER_FAULT,
                "action: apuesta_recibida | result: fail | cantidad: {n} | agencia: {agency} | error: bet {i}: {}",
                clean(&e)
            );
            let message = format!("bet {i} of the batch: {e}; nothing of the batch was stored");
            return self.fail(ErrorCode::InvalidBet, message);
        }
        match self
            .handler
            .store
            .submit_batch(agency, batch.first_seq, &batch.bets)
        {
            Ok(ticket) => {
                let single = match batch.bets.as_slice() {
                    [bet] => Some((bet.document.to_owned(), bet.number)),
                    _ => None,
                };
                self.wait_for(ticket, agency, Request::Batch { len: n, single });
            }
            Err(e) => {
                let code = store_error_code(&e);
                log!(
                    PEER_FAULT,
                    "action: apuesta_recibida | result: fail | cantidad: {n} | agencia: {agency} | code: {} | error: {}",
                    code.name(),
                    clean(&e)
                );
                self.fail(code, e.to_string());
            }
        }
    }

    fn other(&mut self, msg: Message) {
        match msg {
            Message::Echo(bytes) => self.send(&Message::Echo(bytes)),
            Message::Bye => {
                debug!("action: bye | result: success | peer: {}", self.peer);
                self.reply.close = true;
            }
            Message::Hello { version, agency } => self.hello(version, agency),
            Message::Done { total } => self.done(total),
            Message::WinnersQuery { offset } => self.winners(offset),
            Message::Batch(batch) => self.batch(&batch.view()),
            Message::Auth { tag } => self.auth(&tag),
            Message::HelloOk { .. }
            | Message::Challenge { .. }
            | Message::Ack { .. }
            | Message::Error { .. }
            | Message::Winners { .. }
            | Message::NotReady { .. } => {
                let reason = format!(
                    "message type 0x{:02x} is only sent by the server",
                    msg.kind()
                );
                self.refuse("request", ErrorCode::UnexpectedMessage, &reason);
            }
        }
    }

    fn hello(&mut self, version: u8, agency: u32) {
        if let Some(current) = self
            .session
            .agency
            .or(self.session.challenge.map(|c| c.agency))
        {
            let reason = format!("this connection already said HELLO as agency {current}");
            return self.refuse("hello", ErrorCode::DuplicateHello, &reason);
        }
        if version != PROTOCOL_VERSION {
            let reason = format!(
                "protocol version {version} not supported (this server speaks {PROTOCOL_VERSION})"
            );
            return self.refuse("hello", ErrorCode::UnsupportedVersion, &reason);
        }
        let agencies = self.handler.store.agencies();
        if agency == 0 || agency > agencies {
            let reason = format!("agency {agency} is outside 1..={agencies}");
            return self.refuse("hello", ErrorCode::UnknownAgency, &reason);
        }
        if self.handler.auth == ServerAuth::Off {
            return self.welcome(agency);
        }
        match auth::nonce() {
            Ok(nonce) => {
                self.session.challenge = Some(Challenge { agency, nonce });
                debug!(
                    "action: challenge | result: success | agencia: {agency} | peer: {}",
                    self.peer
                );
                self.send(&Message::Challenge { nonce });
            }
            Err(e) => {
                error!(
                    "action: challenge | result: fail | agencia: {agency} | peer: {} | error: {}",
                    self.peer,
                    clean(e)
                );
                self.fail(
                    ErrorCode::Busy,
                    "no randomness for a challenge; try again".into(),
                );
            }
        }
    }

    /// AUTH: the answer to this connection's CHALLENGE.
    fn auth(&mut self, tag: &[u8]) {
        let Some(Challenge { agency, nonce }) = self.session.challenge.take() else {
            return match self.session.agency {
                Some(current) => {
                    let reason = format!(
                        "this connection already speaks for agency {current}; no CHALLENGE to answer"
                    );
                    self.refuse("auth", ErrorCode::DuplicateHello, &reason)
                }
                None => self.refuse("auth", ErrorCode::HelloRequired, "HELLO must come first"),
            };
        };
        let ServerAuth::Required(secret) = &self.handler.auth else {
            // A challenge is only ever sent when authentication is required.
            return self.refuse(
                "auth",
                ErrorCode::UnexpectedMessage,
                "no CHALLENGE to answer",
            );
        };
        if secret
            .agency_key(agency)
            .verify(&nonce, agency, PROTOCOL_VERSION, tag)
        {
            return self.welcome(agency);
        }
        log!(
            PEER_FAULT,
            "action: auth | result: fail | agencia: {agency} | peer: {} | error: the answer does not prove agency {agency}'s key",
            self.peer
        );
        self.fail(
            ErrorCode::Unauthorized,
            format!("AUTH does not prove agency {agency}'s key"),
        );
        self.reply.delay = Some(AUTH_FAIL_DELAY);
    }

    /// The handshake is complete: this connection speaks for `agency`.
    fn welcome(&mut self, agency: u32) {
        match self.handler.store.position(agency) {
            Ok((next_seq, done)) => {
                self.session.agency = Some(agency);
                info!(
                    "action: hello | result: success | agencia: {agency} | peer: {} | next_seq: {next_seq} | done: {done}",
                    self.peer
                );
                self.send(&Message::HelloOk { next_seq, done });
            }
            Err(e) => self.refuse_store("hello", &e),
        }
    }

    fn done(&mut self, total: u64) {
        let Some(agency) = self.agency() else { return };
        if self.session.done_sent {
            return self.refuse(
                "agencia_finalizada",
                ErrorCode::DoneTwice,
                "DONE already sent on this connection",
            );
        }
        self.session.done_sent = true;
        match self.handler.store.submit_done(agency, total) {
            Ok(ticket) => self.wait_for(ticket, agency, Request::Done),
            Err(e) => self.refuse_store("agencia_finalizada", &e),
        }
    }

    fn winners(&mut self, offset: u32) {
        let Some(agency) = self.agency() else { return };
        match self.handler.store.winners(agency, offset, WINNERS_ROOM) {
            Ok(answer @ WinnersAnswer::NotReady { finished, .. }) => {
                debug!(
                    "action: consulta_ganadores | result: in_progress | agencia: {agency} | finalizadas: {finished}"
                );
                // The agency asks again later on a new connection: this
                // worker and this connection are released now.
                if let Ok(msg) = winners_answer(agency, offset, answer) {
                    self.send(&msg);
                }
                self.reply.close = true;
            }
            Ok(answer) => match winners_answer(agency, offset, answer) {
                Ok(msg) => self.send(&msg),
                Err(reason) => self.refuse("consulta_ganadores", ErrorCode::BadOffset, &reason),
            },
            Err(e) => self.refuse_store("consulta_ganadores", &e),
        }
    }
}
