//! The event loop: the only code that touches the server's sockets.
//!
//! It accepts connections, reads into each connection's own buffer, cuts
//! whole frames out of it, and hands them to the pool; a connection has at
//! most one job in the pool at a time, so its requests are answered in
//! order. Workers send their answers back over a channel and wake the loop,
//! which writes them out without blocking. Timeouts (idle, slow frame, peer
//! not reading) are checked on every tick, and the connection limit is
//! enforced at accept time.

use super::ServerError;
use super::handler::{Handler, Part, Reply, Session, encode_error};
use crate::auth::ServerAuth;
use crate::config::ServerConfig;
use crate::framing::{self, FrameError};
use crate::logging::{PEER_FAULT, clean};
use crate::message::ErrorCode;
use crate::shutdown::Shutdown;
use crate::store::StoreManager;
use log::{debug, error, info, log};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};
use threadpool::ThreadPool;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// How often timeouts are checked when nothing else happens.
const TICK: Duration = Duration::from_millis(100);
/// Bytes buffered per connection before the loop stops reading from it
/// (TCP then slows the peer down): a few full frames.
const MAX_INBUF: usize = 8 * framing::MAX_FRAME_LEN;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Input buffers kept for reuse (one per job in the pool is enough).
const MAX_SPARE_BUFFERS: usize = 16;
/// Answers waiting to be written before the loop stops serving requests
/// of that connection until the peer reads them.
const MAX_OUTBUF: usize = 8 * framing::MAX_FRAME_LEN;
/// Answers waiting for commits, per connection, before the loop stops
/// serving more of its requests: bounds memory and keeps one agency from
/// filling a commit alone. As large as the agencies' default window.
const MAX_AWAITING: usize = 128;
/// Rows waiting for the next commit beyond which no more requests are
/// handed to the pool until that commit is taken: with 100 agencies and
/// their windows in flight, the server's memory stays bounded (and flat)
/// instead of following the backlog. Below the store's 8 MiB row buffers,
/// which must not grow (30 MiB peak at 10 M bets with 4 MiB, 36 with 6; 6
/// keeps agencies busy through slower fsyncs).
const MAX_PENDING_COMMIT: usize = 6 << 20;
/// How long shutdown waits for requests already in the pool.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Resource limits of connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub write_timeout: Duration,
    pub max_frame: usize,
}

impl Limits {
    pub fn from_config(c: &ServerConfig) -> Limits {
        Limits {
            max_connections: c.max_connections,
            idle_timeout: c.idle_timeout,
            frame_timeout: c.frame_timeout,
            write_timeout: c.write_timeout,
            max_frame: c.max_frame_size,
        }
    }
}

/// A worker's answer for one connection.
struct Completion {
    token: Token,
    session: Session,
    reply: Reply,
    /// The job's frames, back for reuse (and counted out of the pool).
    buffer: Vec<u8>,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Bytes of `outbuf` already written.
    out_pos: usize,
    session: Session,
    /// A job of this connection is in the pool.
    busy: bool,
    /// Answers in request order; the first may wait for a commit.
    pending: VecDeque<Part>,
    /// The peer closed its side; serve what is buffered, then close.
    read_closed: bool,
    /// Close once `outbuf` is written (after an ERROR, a BYE...).
    closing: bool,
    writable_interest: bool,
    last_activity: Instant,
    /// When the incomplete frame at the front of `inbuf` started arriving.
    frame_started: Option<Instant>,
    /// Since when answers have been waiting for the peer to read them.
    write_blocked_since: Option<Instant>,
    /// A failed AUTH: its answer is held until then (see `Reply::delay`);
    /// `closing` is set, so nothing more is read.
    release_at: Option<Instant>,
}

impl Conn {
    fn pending_out(&self) -> usize {
        self.outbuf.len() - self.out_pos
    }
}

/// How a connection should end.
enum Close {
    /// The peer or the protocol ended it (logged at debug: routine).
    Normal(&'static str),
    /// The server is stopping (logged at info: every close is reported).
    Shutdown,
    Fault(ErrorCode, String),
}

pub(super) struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    waker: Arc<Waker>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    handler: Arc<Handler>,
    pool: ThreadPool,
    done_tx: Sender<Completion>,
    done_rx: Receiver<Completion>,
    /// Connections whose next answer waits for a commit.
    awaiting: HashSet<Token>,
    /// Connections with requests held back while the next commit is full.
    stalled: HashSet<Token>,
    /// Bytes of frames handed to the pool and not yet answered.
    in_pool_bytes: usize,
    /// Input buffers back from the pool, reused: a fresh 80 KiB buffer per
    /// job cost page faults and zeroing (4% of the server's CPU at 10x).
    spare_buffers: Vec<Vec<u8>>,
    /// Set by the committer after each commit: only then (or as time
    /// passes, for a held WINNERS?) can a waiting answer become ready.
    committed: Arc<AtomicBool>,
    store: StoreManager,
    limits: Limits,
    shutdown: Shutdown,
}

impl Reactor {
    pub(super) fn new(
        listener: std::net::TcpListener,
        store: StoreManager,
        pool: ThreadPool,
        limits: Limits,
        auth: ServerAuth,
        shutdown: Shutdown,
    ) -> Result<Reactor, ServerError> {
        let io = |action| move |source| ServerError::Io { action, source };
        listener
            .set_nonblocking(true)
            .map_err(io("make the listener non-blocking"))?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new().map_err(io("create the poller"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io("register the listener"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io("create the waker"))?);
        let w = Arc::clone(&waker);
        shutdown.on_trigger(move || {
            // Nothing to do if the loop is already gone.
            let _ = w.wake();
        });
        let w = Arc::clone(&waker);
        let committed = Arc::new(AtomicBool::new(false));
        let c = Arc::clone(&committed);
        store.on_commit(move || {
            c.store(true, Ordering::Release);
            let _ = w.wake();
        });
        let (done_tx, done_rx) = mpsc::channel();
        Ok(Reactor {
            poll,
            listener: Some(listener),
            waker,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            handler: Arc::new(Handler::new(store.clone(), auth)),
            pool,
            done_tx,
            done_rx,
            awaiting: HashSet::new(),
            stalled: HashSet::new(),
            in_pool_bytes: 0,
            spare_buffers: Vec::new(),
            committed,
            store,
            limits,
            shutdown,
        })
    }

    /// Serves until shutdown, then closes the listener and every connection.
    pub(super) fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        while !self.shutdown.is_triggered() {
            if let Err(e) = self.poll.poll(&mut events, Some(TICK)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Io {
                    action: "poll sockets",
                    source: e,
                });
            }
            // This turn's log lines (one per batch answered) go out in one write.
            let _lines = crate::logging::hold();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    token => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(token);
                        }
                        if event.is_writable() {
                            self.flush(token);
                        }
                    }
                }
            }
            self.take_completions();
            let tick = last_sweep.elapsed() >= TICK;
            if self.committed.swap(false, Ordering::AcqRel) || tick {
                self.settle_awaiting();
            }
            self.retry_stalled();
            if tick {
                self.sweep_timeouts();
                last_sweep = Instant::now();
            }
        }
        self.close_all();
        Ok(())
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, or the peer gave up while queued:
                    // log and carry on; the listener itself is fine.
                    error!("action: accept | result: fail | error: {}", clean(e));
                    return;
                }
            };
            if self.conns.len() >= self.limits.max_connections && !self.evict_one() {
                refuse_busy(stream, peer, self.limits.max_connections);
                continue;
            }
            self.add(stream, peer);
        }
    }

    /// Makes room by closing the oldest connection that has not said HELLO
    /// and has nothing in the pool: a flood of silent connections evicts
    /// itself, never an agency at work.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| c.session.agency.is_none() && !c.busy)
            .min_by_key(|(_, c)| c.last_activity)
            .map(|(t, _)| *t);
        match victim {
            Some(token) => {
                self.close(
                    token,
                    Close::Fault(
                        ErrorCode::Busy,
                        "evicted: connection limit reached and this connection never said HELLO"
                            .into(),
                    ),
                );
                true
            }
            None => false,
        }
    }

    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        // ACKs are small and awaited: don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            error!(
                "action: accept | result: fail | peer: {peer} | error: {}",
                clean(e)
            );
            return;
        }
        debug!("action: accept | result: success | peer: {peer}");
        self.conns.insert(
            token,
            Conn {
                stream,
                peer,
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                out_pos: 0,
                session: Session::default(),
                busy: false,
                pending: VecDeque::new(),
                read_closed: false,
                closing: false,
                writable_interest: false,
                last_activity: Instant::now(),
                frame_started: None,
                write_blocked_since: None,
                release_at: None,
            },
        );
    }

    /// Reads what the socket has (up to the buffer limit), then serves.
    fn on_readable(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        while !conn.read_closed && conn.inbuf.len() < MAX_INBUF {
            // Read straight into the buffer's free space (no bounce copy).
            let filled = conn.inbuf.len();
            conn.inbuf.resize(filled + READ_CHUNK, 0);
            let result = conn.stream.read(&mut conn.inbuf[filled..]);
            conn.inbuf
                .truncate(filled + result.as_ref().map_or(0, |n| *n));
            match result {
                Ok(0) => conn.read_closed = true,
                Ok(_) => conn.last_activity = Instant::now(),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason = format!("read failed: {e}");
                    return self.close(token, Close::Fault(ErrorCode::Truncated, reason));
                }
            }
        }
        self.dispatch(token);
    }

    /// Hands every whole frame of the connection to the pool, if it has no
    /// job there already; closes it when it is finished.
    fn dispatch(&mut self, token: Token) {
        let full = self.commit_is_full();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.busy
            || conn.closing
            || conn.pending_out() > MAX_OUTBUF
            || conn.pending.len() >= MAX_AWAITING
        {
            return;
        }
        if full {
            self.stalled.insert(token);
            return;
        }
        // Find the whole frames at the front of the buffer.
        let mut used = 0;
        loop {
            match framing::decode(&conn.inbuf[used..], self.limits.max_frame) {
                Ok(Some(found)) => used += found.len,
                Ok(None) => break,
                Err(e @ FrameError::TooLarge { .. }) => {
                    // Everything before the oversize header is still served.
                    if used == 0 {
                        conn.inbuf.clear();
                        return self
                            .close(token, Close::Fault(ErrorCode::FrameTooLarge, e.to_string()));
                    }
                    break;
                }
                Err(e) => {
                    return self.close(token, Close::Fault(ErrorCode::Truncated, e.to_string()));
                }
            }
        }
        conn.frame_started = match (conn.inbuf.len() == used, conn.frame_started, used) {
            (true, _, _) => None,
            (false, Some(t), 0) => Some(t),
            (false, _, _) => Some(Instant::now()),
        };
        if used == 0 {
            if conn.read_closed {
                if conn.inbuf.is_empty() {
                    self.close_when_flushed(token, "peer closed");
                } else {
                    let n = conn.inbuf.len();
                    let reason = format!("stream ended inside a frame ({n} bytes)");
                    self.close(token, Close::Fault(ErrorCode::Truncated, reason));
                }
            }
            return;
        }
        // The whole frames go to the worker as they are; only the partial
        // frame after them (if any) is copied, into a reused buffer.
        let mut rest = self
            .spare_buffers
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MAX_INBUF + READ_CHUNK));
        rest.extend_from_slice(&conn.inbuf[used..]);
        conn.inbuf.truncate(used);
        let frames = std::mem::replace(&mut conn.inbuf, rest);
        self.in_pool_bytes += frames.len();
        conn.busy = true;
        let mut session = conn.session;
        let peer = conn.peer;
        let handler = Arc::clone(&self.handler);
        let tx = self.done_tx.clone();
        let waker = Arc::clone(&self.waker);
        self.pool.execute(move || {
            // A bug in one request must not leave its connection hanging
            // forever: answer and close it instead.
            let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handler.handle(&mut session, peer, &frames)
            }))
            .unwrap_or_else(|_| {
                error!(
                    "action: request | result: fail | peer: {peer} | error: internal error (panic)"
                );
                let mut out = Vec::new();
                encode_error(&mut out, ErrorCode::Storage, "internal error".into());
                Reply {
                    parts: vec![Part::Ready(out)],
                    close: true,
                    delay: None,
                }
            });
            // The loop may be gone at shutdown; then nobody needs the answer.
            if tx
                .send(Completion {
                    token,
                    session,
                    reply,
                    buffer: frames,
                })
                .is_ok()
            {
                let _ = waker.wake();
            }
        });
    }

    fn take_completions(&mut self) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.complete(done);
        }
    }

    fn complete(&mut self, mut done: Completion) {
        self.in_pool_bytes -= done.buffer.len();
        if self.spare_buffers.len() < MAX_SPARE_BUFFERS {
            done.buffer.clear();
            self.spare_buffers.push(std::mem::take(&mut done.buffer));
        }
        let Some(conn) = self.conns.get_mut(&done.token) else {
            return;
        };
        conn.busy = false;
        conn.session = done.session;
        conn.pending.extend(done.reply.parts);
        conn.last_activity = Instant::now();
        if done.reply.close {
            conn.closing = true;
        }
        conn.release_at = done.reply.delay.map(|d| Instant::now() + d);
        self.settle(done.token, true);
    }

    /// Moves the answers that are ready, in order, to the output buffer,
    /// writes them, and serves more requests if there is room.
    /// `always`: write and read on even if no answer became ready (the
    /// connection just got new parts); otherwise a connection whose next
    /// answer still waits is left alone, which saves a `recv` per waiting
    /// connection per turn of the loop.
    fn settle(&mut self, token: Token, always: bool) {
        let closing = self.shutdown.is_triggered();
        let Some(conn) = self.conns.get_mut(&token) else {
            self.awaiting.remove(&token);
            return;
        };
        // A held answer goes out on the first tick after its time.
        if !closing && conn.release_at.is_some_and(|t| Instant::now() < t) {
            self.awaiting.insert(token);
            return;
        }
        let waiting = conn.pending.len();
        while let Some(part) = conn.pending.front() {
            match part {
                Part::Ready(bytes) => conn.outbuf.extend_from_slice(bytes),
                Part::Awaiting(waiting) => {
                    let Some((bytes, close)) = waiting.resolve(closing) else {
                        break;
                    };
                    conn.outbuf.extend_from_slice(&bytes);
                    if close {
                        conn.closing = true;
                        conn.pending.clear();
                        break;
                    }
                }
            }
            conn.pending.pop_front();
        }
        if conn.pending.is_empty() {
            self.awaiting.remove(&token);
        } else {
            self.awaiting.insert(token);
        }
        if !always && conn.pending.len() == waiting {
            return;
        }
        self.flush(token);
        // Frames may have queued up meanwhile, and reading may have
        // stopped at the buffer limit: continue.
        self.on_readable(token);
    }

    /// Whether the next commit already holds (or the pool is preparing)
    /// enough rows: then no more requests are handed out until it is taken.
    fn commit_is_full(&self) -> bool {
        self.store.pending_bytes() + self.in_pool_bytes > MAX_PENDING_COMMIT
    }

    /// Serves the connections held back while the next commit was full,
    /// once it has been taken.
    fn retry_stalled(&mut self) {
        if self.stalled.is_empty() || self.commit_is_full() {
            return;
        }
        let tokens: Vec<Token> = self.stalled.drain().collect();
        for token in tokens {
            self.on_readable(token);
        }
    }

    /// After a commit (or a tick, for held WINNERS?): settles every
    /// connection with a waiting answer.
    fn settle_awaiting(&mut self) {
        if self.awaiting.is_empty() {
            return;
        }
        let tokens: Vec<Token> = self.awaiting.iter().copied().collect();
        for token in tokens {
            self.settle(token, false);
        }
    }

    /// Writes what the connection has to send, without blocking.
    fn flush(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        while conn.out_pos < conn.outbuf.len() {
            match conn.stream.write(&conn.outbuf[conn.out_pos..]) {
                Ok(0) => {
                    return self.close(token, Close::Normal("peer stopped reading"));
                }
                Ok(n) => {
                    conn.out_pos += n;
                    conn.write_blocked_since = None;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(token, Close::Normal("peer reset while we wrote")),
            }
        }
        let done = conn.out_pos == conn.outbuf.len();
        if done {
            conn.outbuf.clear();
            conn.out_pos = 0;
            conn.write_blocked_since = None;
        } else if conn.write_blocked_since.is_none() {
            conn.write_blocked_since = Some(Instant::now());
        }
        if done == conn.writable_interest {
            let interest = if done {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, interest)
                .is_err()
            {
                return self.close(token, Close::Normal("cannot watch socket"));
            }
            conn.writable_interest = !done;
        }
        if done && conn.closing && !conn.busy && conn.pending.is_empty() {
            self.close(token, Close::Normal("closed after answer"));
        } else if done && !conn.busy && !conn.inbuf.is_empty() {
            // Serving had paused on a full output buffer.
            self.dispatch(token);
        }
    }

    fn close_when_flushed(&mut self, token: Token, why: &'static str) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.pending_out() == 0 && !conn.busy && conn.pending.is_empty() {
            self.close(token, Close::Normal(why));
        } else {
            conn.closing = true;
        }
    }

    fn sweep_timeouts(&mut self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        for (token, c) in &self.conns {
            if c.busy || !c.pending.is_empty() {
                continue;
            }
            let reason = if c
                .write_blocked_since
                .is_some_and(|t| now - t > self.limits.write_timeout)
            {
                Some(format!(
                    "peer read nothing for {:?}",
                    self.limits.write_timeout
                ))
            } else if c
                .frame_started
                .is_some_and(|t| now - t > self.limits.frame_timeout)
            {
                Some(format!(
                    "frame incomplete after {:?}",
                    self.limits.frame_timeout
                ))
            } else if c.pending_out() == 0 && now - c.last_activity > self.limits.idle_timeout {
                Some(format!("idle for {:?}", self.limits.idle_timeout))
            } else {
                None
            };
            if let Some(reason) = reason {
                expired.push((*token, reason));
            }
        }
        for (token, reason) in expired {
            self.close(token, Close::Fault(ErrorCode::Timeout, reason));
        }
    }

    /// Closes a connection now, with a best-effort ERROR for faults.
    fn close(&mut self, token: Token, how: Close) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let peer = conn.peer;
        let agency = conn
            .session
            .agency
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        match how {
            Close::Normal(why) => {
                debug!(
                    "action: close_connection | result: success | peer: {peer} | agencia: {agency} | reason: {why}"
                );
            }
            Close::Shutdown => {
                info!(
                    "action: close_connection | result: success | peer: {peer} | agencia: {agency}"
                );
            }
            Close::Fault(code, reason) => {
                log!(
                    PEER_FAULT,
                    "action: close_connection | result: fail | peer: {peer} | agencia: {agency} | code: {} | error: {}",
                    code.name(),
                    clean(&reason)
                );
                let mut out = Vec::new();
                encode_error(&mut out, code, reason);
                // One try: the socket is non-blocking and we are leaving.
                let _ = conn.stream.write(&out);
            }
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Shutdown: stop accepting, let requests in the pool finish (briefly),
    /// send their answers, close every connection.
    fn close_all(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
            drop(listener);
            info!("action: close_listener | result: success");
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while self.conns.values().any(|c| c.busy || !c.pending.is_empty()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Ok(done) = self
                .done_rx
                .recv_timeout(left.min(Duration::from_millis(5)))
            {
                self.complete(done);
            }
            self.settle_awaiting();
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        let count = tokens.len();
        for token in tokens {
            if let Some(conn) = self.conns.get_mut(&token) {
                // Best effort: answers already computed go out if the
                // socket takes them now.
                let _ = write_now(&mut conn.stream, &conn.outbuf[conn.out_pos..]);
                self.close(token, Close::Shutdown);
            }
        }
        info!("action: close_connections | result: success | count: {count}");
    }
}

fn write_now(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = stream.write(bytes)?;
        if n == 0 {
            break;
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Answers a connection over the limit with ERROR(busy) and drops it.
fn refuse_busy(mut stream: TcpStream, peer: SocketAddr, limit: usize) {
    let reason = format!("too many connections (limit {limit}); try again later");
    log!(
        PEER_FAULT,
        "action: accept | result: fail | peer: {peer} | code: busy | error: {reason}"
    );
    let mut out = Vec::new();
    encode_error(&mut out, ErrorCode::Busy, reason);
    let _ = stream.write(&out);
}
