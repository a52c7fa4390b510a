//! A connection on a pool worker: the job the accept loop hands the pool
//! ([`run_job`]), and one connection's turn on it.
//!
//! The worker reads with a blocking `read` whose timeout is the nearest
//! deadline (first frame, frame completion, idle), cuts every whole frame
//! that the read brought in out of its buffer, hands them all to the
//! [`Handler`](super::handler::Handler), waits once for the last commit the
//! answers need, and writes every answer in one `write_all`. Bytes of a
//! frame not yet complete stay in the buffer across reads and timeouts.
//!
//! Before it waits, the worker reads ahead without blocking: frames that
//! arrived while it was handling the first ones are handled too and join
//! the *next* commit. So while the committer writes and syncs one group,
//! the workers are already gathering the next one — the overlap the agency's
//! window of batches in flight is there for.
//!
//! A worker is lent, not given: a connection that has nothing to read for
//! [`YIELD_SLICE`], or has held its worker for [`SERVE_SLICE`], gives it
//! back when another connection has a whole frame waiting in the lobby, and
//! goes back there itself with what it carries ([`Carried`]: its session,
//! the bytes of a frame not yet complete, its timers). So however many
//! connections one agency's key opens or keeps busy, the workers go round
//! every connection that has something to say, and no agency waits for
//! another to finish.
//!
//! The worker learns that it must stop from its socket: at teardown (or
//! when the connection is evicted, or replaced by a newer session of its
//! agency) the registry shuts down the reading side of its clone of the
//! socket, the blocked read returns, and the worker answers what it has,
//! logs the close and leaves.

use super::close::{Close, log_close};
use super::context::Context;
use super::handler::Reply;
use super::lobby::{Accepted, Carried, Expiry, deadline};
use super::penalty::HeldAnswer;
use crate::framing::{self, FrameError};
use crate::logging::{ConnectionEvent, LogLine};
use crate::message::{ErrorCode, encode_error};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// Bytes read from the socket at most at a time: with a window of batches
/// in flight, one read brings in many frames, and all of them join the
/// same commit. Each worker keeps one such buffer.
const READ_BUF: usize = 128 * 1024;

/// Answers a worker gathers by reading ahead before it waits for their
/// commit and sends them: as many as an agency's default window of
/// batches in flight.
const READ_AHEAD: usize = 128;

/// How often a worker holding a connection with nothing to read asks
/// whether another connection has a whole frame waiting.
const YIELD_SLICE: Duration = Duration::from_millis(50);

/// How long a busy connection keeps its worker while another connection
/// has a whole frame waiting: each agency's turn, when there are more
/// connections with work than workers.
const SERVE_SLICE: Duration = Duration::from_millis(100);

/// One pool job: serves the connection the lobby says is the best next
/// one (see [`Connections::take_next`](super::registry::Connections::take_next)).
/// A bug in a request ends that connection only.
pub(super) fn run_job(ctx: &Context) {
    while let Some(conn) = ctx.connections.take_next(&ctx.limits) {
        let (id, peer) = (conn.id, conn.peer);
        match catch_unwind(AssertUnwindSafe(|| serve(conn, ctx))) {
            Ok(None) => return,
            // A connection that has said nothing gave way to one that has:
            // back to the lobby with it, and serve the better one.
            Ok(Some(silent)) => ctx.connections.requeue(silent),
            Err(_) => {
                ConnectionEvent::RequestPanicked { peer }.error();
                ctx.connections.remove(id);
                return;
            }
        }
    }
}

/// How a worker's time with a connection ended.
enum Turn {
    Closed(Close),
    /// Another connection has a whole frame waiting, and this one had
    /// nothing to read or had its slice: back to the lobby with it.
    Yielded(Carried),
    /// The connection failed AUTH: its answer goes out after `delay`, from
    /// the penalty box, not from this worker.
    Penalized {
        answer: Vec<u8>,
        delay: Duration,
    },
}

/// Serves one connection until it ends, then closes it and logs why; or
/// hands it back (`Some`) if it yielded its worker.
fn serve(mut conn: Accepted, ctx: &Context) -> Option<Accepted> {
    let mut agency = conn.carried.session.agency;
    // In the lobby the socket was non-blocking; a worker blocks on it.
    // (Every write sets its own timeout: one deadline per answer.)
    let turn = match conn.stream.set_nonblocking(false) {
        Ok(()) => take_turn(ctx, &mut conn, &mut agency),
        Err(_) => Turn::Closed(Close::Normal("cannot set socket options")),
    };
    let how = match turn {
        Turn::Closed(how) => how,
        Turn::Penalized { answer, delay } => {
            let held = HeldAnswer {
                due: Instant::now() + delay,
                id: conn.id,
                stream: conn.stream,
                peer: conn.peer,
                answer,
            };
            ctx.penalty.hold(held, &ctx.connections);
            return None;
        }
        Turn::Yielded(carried) => match conn.stream.set_nonblocking(true) {
            Ok(()) => {
                conn.carried = carried;
                return Some(conn);
            }
            Err(_) => Close::Normal("cannot set socket options"),
        },
    };
    close(ctx, conn, agency, how);
    None
}

/// Serves the connection from this worker's read buffer until its turn
/// ends; `agency` follows the agency its session speaks for.
fn take_turn(ctx: &Context, conn: &mut Accepted, agency: &mut Option<u32>) -> Turn {
    BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < READ_BUF {
            // Zeroed by the allocator (`calloc`, fresh pages from the
            // kernel): a page counts in the server's memory only once a
            // read fills it, so a worker that only ever served short
            // winners polls does not hold a whole buffer.
            *buf = vec![0; READ_BUF];
        }
        let partial = std::mem::take(&mut conn.carried.partial);
        buf[..partial.len()].copy_from_slice(&partial);
        ServedConnection {
            ctx,
            id: conn.id,
            peer: conn.peer,
            accepted: conn.accepted,
            state: conn.carried.clone(),
            stream: &mut conn.stream,
            buf: &mut buf,
            filled: partial.len(),
            out: Vec::new(),
            too_large: None,
            read_timeout: None,
        }
        .run(agency)
    })
}

/// Closes a connection whose turn ended it: logs why, sends its last
/// ERROR if it has one, and forgets it.
fn close(ctx: &Context, conn: Accepted, agency: Option<u32>, how: Close) {
    log_close(conn.peer, agency, &how);
    let mut last = Vec::new();
    if let Close::Fault(code, reason) = how {
        encode_error(&mut last, code, &reason);
    }
    ctx.connections.hang_up(conn.id, conn.stream, &last);
}

thread_local! {
    /// The worker's read buffer, kept across connections: a fresh one per
    /// connection cost page faults and zeroing.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A connection being served: its socket, the worker's buffer, and its
/// state for this turn.
struct ServedConnection<'a> {
    ctx: &'a Context,
    id: u64,
    stream: &'a mut TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    buf: &'a mut Vec<u8>,
    /// Bytes of `buf` holding data (an incomplete frame between reads).
    filled: usize,
    /// Its session and timers (its bytes not yet handled are in `buf`,
    /// not in `state.partial`).
    state: Carried,
    out: Vec<u8>,
    /// An oversize frame header came after whole frames in one read: those
    /// are answered first, then the connection closes with this reason.
    too_large: Option<String>,
    /// The socket's read timeout as last set this turn: set again only
    /// when it changes (the last slice before a deadline), not per read.
    read_timeout: Option<Duration>,
}

impl ServedConnection<'_> {
    /// Reads, handles and answers until the connection ends (or gives its
    /// worker back); says how.
    fn run(mut self, agency: &mut Option<u32>) -> Turn {
        let taken = Instant::now();
        // The last read was the one allowed past the deadline.
        let mut overdue = false;
        loop {
            let deadline = self.deadline();
            // Past the deadline, one last short read: the frame may have
            // arrived with the deadline, only not yet read.
            let left = deadline.0.saturating_duration_since(Instant::now());
            let timeout = match (left.is_zero(), overdue) {
                (false, _) => left,
                (true, false) => Duration::from_millis(1),
                (true, true) => {
                    let reason = deadline.1.reason(&self.ctx.limits);
                    return Turn::Closed(Close::Fault(ErrorCode::Timeout, reason));
                }
            };
            overdue = left.is_zero();
            // A connection with nothing to read gives its worker to one
            // with a whole frame waiting: it is asked every YIELD_SLICE, so
            // connections holding every worker without a word delay an
            // agency by that much, not by a deadline.
            let wanted = Some(timeout.min(YIELD_SLICE));
            if self.read_timeout != wanted {
                if self.stream.set_read_timeout(wanted).is_err() {
                    return Turn::Closed(Close::Normal("cannot set a read timeout"));
                }
                self.read_timeout = wanted;
            }
            let used = match self.read() {
                Ok(Some(used)) => used,
                Ok(None) if self.ctx.connections.whole_waiting() => {
                    return Turn::Yielded(self.carried());
                }
                Ok(None) => continue,
                Err(how) => return Turn::Closed(how),
            };
            if used == 0 {
                continue;
            }
            self.state.first_frame = false;
            overdue = false;
            // This round's log lines (one per batch) go out in one write.
            let _lines = crate::logging::hold();
            let reply = self.handle(used, agency);
            if let Some(delay) = reply.delay {
                // Nothing more is read from a connection that failed AUTH.
                let mut answer = Vec::new();
                reply.finish(&mut answer);
                return Turn::Penalized { answer, delay };
            }
            let reply = match self.read_ahead(reply, agency) {
                Ok(reply) => reply,
                Err(how) => return Turn::Closed(how),
            };
            if let Some(how) = self.answer(reply) {
                return Turn::Closed(how);
            }
            if let Some(reason) = self.too_large.take() {
                return Turn::Closed(Close::Fault(ErrorCode::FrameTooLarge, reason));
            }
            // Its slice is over and another connection waits: its turn.
            if taken.elapsed() >= SERVE_SLICE && self.ctx.connections.whole_waiting() {
                return Turn::Yielded(self.carried());
            }
        }
    }

    /// Reads ahead: while the commit these answers wait for is being
    /// written, serves the frames that arrived meanwhile (the agency keeps
    /// a window of batches in flight); they join the next commit, so
    /// writing one commit overlaps gathering the next. `Err`: the
    /// connection ended (what it sent before is answered first).
    fn read_ahead(&mut self, mut reply: Reply, agency: &mut Option<u32>) -> Result<Reply, Close> {
        let more = |reply: &Reply, this: &Self| {
            reply.waits_for_commit()
                && !reply.close
                && this.too_large.is_none()
                && reply.parts.len() < READ_AHEAD
        };
        if !more(&reply, self) {
            return Ok(reply);
        }
        // Non-blocking for the whole read-ahead, not per read: reads that
        // find nothing end it.
        if self.stream.set_nonblocking(true).is_err() {
            return Err(Close::Normal("cannot make the socket non-blocking"));
        }
        let mut ended = None;
        while more(&reply, self) {
            match self.read() {
                Ok(Some(used)) if used > 0 => reply.append(self.handle(used, agency)),
                Ok(_) => break,
                Err(how) => {
                    ended = Some(how);
                    break;
                }
            }
        }
        if self.stream.set_nonblocking(false).is_err() {
            return Err(Close::Normal("cannot make the socket blocking"));
        }
        match ended {
            Some(how) => {
                // Answer what was accepted before leaving.
                let _ = self.answer(reply);
                Err(how)
            }
            None => Ok(reply),
        }
    }

    /// The nearest deadline, and what passing it means (see [`deadline`]).
    fn deadline(&self) -> (Instant, Expiry) {
        deadline(self.accepted, &self.state, self.filled > 0, &self.ctx.limits)
    }

    /// What the connection takes back to the lobby.
    fn carried(&self) -> Carried {
        Carried { partial: self.buf[..self.filled].to_vec(), ..self.state.clone() }
    }

    /// One blocking read (the caller set its timeout); then the whole
    /// frames at the front of the buffer. `Ok(Some(bytes))`: that many
    /// bytes of whole frames are ready; `Ok(None)`: the read timed out.
    fn read(&mut self) -> Result<Option<usize>, Close> {
        let n = match self.stream.read(&mut self.buf[self.filled..]) {
            Ok(0) => return Err(self.ended()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(self.stopped().unwrap_or_else(|| {
                    Close::Fault(ErrorCode::Truncated, format!("read failed: {e}"))
                }));
            }
        };
        self.filled += n;
        self.state.last_activity = Instant::now();
        // Cut out the whole frames at the front of the buffer.
        let mut used = 0;
        loop {
            match framing::decode(&self.buf[used..self.filled], self.ctx.limits.max_frame) {
                Ok(Some(found)) => used += found.len,
                Ok(None) => break,
                // Frames before an oversize header are still served.
                Err(e @ FrameError::TooLarge { .. }) if used == 0 => {
                    return Err(Close::Fault(ErrorCode::FrameTooLarge, e.to_string()));
                }
                Err(e @ FrameError::TooLarge { .. }) => {
                    self.too_large = Some(e.to_string());
                    break;
                }
                Err(e) => return Err(Close::Fault(ErrorCode::Truncated, e.to_string())),
            }
        }
        self.state.frame_started = match (used == self.filled, used) {
            (true, _) => None,
            (false, 0) => self.state.frame_started.or(Some(self.state.last_activity)),
            (false, _) => Some(self.state.last_activity),
        };
        Ok(Some(used))
    }

    /// Handles the first `used` bytes of the buffer (whole frames) and
    /// drops them from it.
    fn handle(&mut self, used: usize, agency: &mut Option<u32>) -> Reply {
        let (handler, peer) = (&self.ctx.handler, self.peer);
        let (session, frames) = (&mut self.state.session, &self.buf[..used]);
        // A bug in one request must not leave its agency without an answer:
        // it gets ERROR and the connection closes; the worker lives on.
        let reply = catch_unwind(AssertUnwindSafe(|| handler.handle(session, peer, frames)))
            .unwrap_or_else(|_| {
                ConnectionEvent::RequestPanicked { peer }.error();
                Reply::refusal(ErrorCode::Storage, "internal error")
            });
        self.buf.copy_within(used..self.filled, 0);
        self.filled -= used;
        if self.state.session.agency != *agency {
            *agency = self.state.session.agency;
            if let Some(a) = *agency {
                self.ctx.connections.set_agency(self.id, a);
            }
        }
        reply
    }

    /// Waits for the commits the reply needs and writes it; `Some` if the
    /// connection ends here.
    fn answer(&mut self, reply: Reply) -> Option<Close> {
        self.out.clear();
        let close = reply.finish(&mut self.out);
        let deadline = Instant::now() + self.ctx.limits.write_timeout;
        if let Err(e) = write_all_by(self.stream, &self.out, deadline) {
            return Some(if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                let limit = self.ctx.limits.write_timeout;
                Close::Fault(ErrorCode::Timeout, format!("peer read nothing for {limit:?}"))
            } else {
                self.stopped().unwrap_or(Close::Normal("peer reset while we wrote"))
            });
        }
        close.then_some(Close::Normal("closed after answer"))
    }

    /// The read side reached its end: the peer closed, or the server shut
    /// it down (teardown, eviction).
    fn ended(&self) -> Close {
        if let Some(how) = self.stopped() {
            return how;
        }
        if self.filled > 0 {
            let n = self.filled;
            return Close::Fault(
                ErrorCode::Truncated,
                format!("stream ended inside a frame ({n} bytes)"),
            );
        }
        Close::Normal("peer closed")
    }

    /// Whether the server itself ended this connection, and how.
    fn stopped(&self) -> Option<Close> {
        if let Some(how) = self.ctx.connections.ended_by_server(self.id) {
            return Some(how);
        }
        self.ctx.shutdown.is_triggered().then_some(Close::Shutdown)
    }
}

/// `write_all` with one deadline for the whole answer. The socket's write
/// timeout bounds each `write(2)`, so a peer reading one segment at a time
/// could keep a worker for as many timeouts as the answer has segments.
fn write_all_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
