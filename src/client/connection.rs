//! A blocking, framed connection to the server: the only place where the
//! client reads or writes its socket.
//!
//! Sends and receives whole [`Message`]s over a `TcpStream`. `io.timeout`
//! is a deadline for a whole answer (and for a whole write of the queued
//! frames), not for each `read`: a server that trickles a byte at a time
//! cannot hold an agency longer than that. The client treats a timeout as
//! a broken connection and reconnects.

use crate::framing::{FrameError, FrameReader};
use crate::message::{DecodeError, EncodeError, Message};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Queued frames are written once they reach this many bytes.
const FLUSH_AT: usize = 64 * 1024;

/// Errors of the client's connection layer.
#[derive(Debug)]
pub enum ConnectionError {
    Connect {
        address: String,
        source: io::Error,
    },
    Frame(FrameError),
    Decode(DecodeError),
    Encode(EncodeError),
    /// The server closed the connection between frames.
    Closed,
    /// An answer did not arrive whole (`reading`), or the server did not
    /// take the queued frames whole, within `limit` (`io.timeout`).
    TimedOut {
        limit: Duration,
        reading: bool,
    },
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Connect { address, source } => {
                write!(f, "cannot connect to {address}: {source}")
            }
            ConnectionError::Frame(e) => write!(f, "{e}"),
            ConnectionError::Decode(e) => write!(f, "bad answer from server: {e}"),
            ConnectionError::Encode(e) => write!(f, "cannot encode request: {e}"),
            ConnectionError::Closed => write!(f, "server closed the connection"),
            ConnectionError::TimedOut { limit, reading: true } => {
                write!(f, "no whole answer from the server within {limit:?}")
            }
            ConnectionError::TimedOut { limit, reading: false } => {
                write!(f, "the server did not take the request within {limit:?}")
            }
        }
    }
}

impl std::error::Error for ConnectionError {}

impl ConnectionError {
    /// A short, stable name for logs (`io_timeout`, `closed`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ConnectionError::Connect { .. } => "connect",
            ConnectionError::Frame(FrameError::TooLarge { .. }) => "frame_too_large",
            ConnectionError::Frame(FrameError::Truncated { .. }) | ConnectionError::Closed => {
                "closed"
            }
            ConnectionError::Frame(FrameError::Io(_)) => "io",
            ConnectionError::Decode(_) => "bad_answer",
            ConnectionError::Encode(_) => "encode",
            ConnectionError::TimedOut { .. } => "io_timeout",
        }
    }
}

impl From<FrameError> for ConnectionError {
    fn from(e: FrameError) -> Self {
        ConnectionError::Frame(e)
    }
}

/// A socket's deadline is re-set only when it is off by more than this:
/// the common read, the first of an answer, then costs no system call.
const DEADLINE_SLACK: Duration = Duration::from_millis(10);

/// One direction of a socket whose reads (or writes) must all end by one
/// deadline. The socket's timeout bounds one `read`; this lowers it before
/// each to what is left of the deadline, so that many slow reads cannot add
/// up to more than the deadline.
#[derive(Debug)]
struct Deadlined {
    stream: TcpStream,
    deadline: Option<Instant>,
    /// The timeout set on the socket now, for this direction.
    timeout: Option<Duration>,
}

impl Deadlined {
    /// Sets the socket's timeout to what is left before the deadline, or
    /// fails with `TimedOut` if nothing is left.
    fn bound(&mut self, set: fn(&TcpStream, Option<Duration>) -> io::Result<()>) -> io::Result<()> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"));
        }
        let current = self.timeout.unwrap_or(Duration::MAX);
        if left > current || current - left > DEADLINE_SLACK {
            set(&self.stream, Some(left))?;
            self.timeout = Some(left);
        }
        Ok(())
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bound(TcpStream::set_read_timeout)?;
        self.stream.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bound(TcpStream::set_write_timeout)?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Whether an I/O error is a socket timeout (Unix says `WouldBlock`).
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One connection to the server.
#[derive(Debug)]
pub struct Connection {
    reader: FrameReader<Deadlined>,
    writer: Deadlined,
    /// How long an answer (or a write) may take in all; zero: no limit.
    io_timeout: Duration,
    /// Frames queued by `send`, written together: an agency that sends
    /// one batch per ACK received still writes once per group of ACKs
    /// (the server acknowledges a group commit's batches at once), which
    /// cut the packets, syscalls and wakeups on both sides.
    out: Vec<u8>,
    sent: u64,
}

impl Connection {
    /// Connects to `address` (`host:port`), trying each address it resolves to.
    ///
    /// # Errors
    /// Resolution failure, or the last connect error.
    pub fn connect(address: &str, io_timeout: Duration) -> Result<Connection, ConnectionError> {
        let err = |source| ConnectionError::Connect { address: address.to_owned(), source };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
        for addr in address.to_socket_addrs().map_err(err)? {
            // `connect_timeout` refuses a zero timeout; 0 means none.
            let connected = if io_timeout.is_zero() {
                TcpStream::connect(addr)
            } else {
                TcpStream::connect_timeout(&addr, io_timeout)
            };
            match connected {
                Ok(stream) => return Self::from_stream(stream, io_timeout).map_err(err),
                Err(e) => last = e,
            }
        }
        Err(err(last))
    }

    /// Wraps a connected stream, setting timeouts and TCP_NODELAY.
    /// `io_timeout` bounds each whole answer and each whole write; zero
    /// means no limit.
    ///
    /// # Errors
    /// Socket option failures.
    pub fn from_stream(stream: TcpStream, io_timeout: Duration) -> io::Result<Connection> {
        let timeout = (!io_timeout.is_zero()).then_some(io_timeout);
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let direction = |stream| Deadlined { stream, deadline: None, timeout };
        Ok(Connection {
            reader: FrameReader::new(direction(stream)),
            writer: direction(writer),
            io_timeout,
            out: Vec::with_capacity(FLUSH_AT + crate::framing::MAX_FRAME_LEN),
            sent: 0,
        })
    }

    /// The deadline of an answer or a write that starts now.
    fn deadline(&self) -> Option<Instant> {
        (!self.io_timeout.is_zero()).then(|| Instant::now() + self.io_timeout)
    }

    /// A frame error while `reading` (or writing), with a timeout named
    /// as such.
    fn failure(&self, e: FrameError, reading: bool) -> ConnectionError {
        match e {
            FrameError::Io(io) if is_timeout(&io) => {
                ConnectionError::TimedOut { limit: self.io_timeout, reading }
            }
            other => ConnectionError::Frame(other),
        }
    }

    /// A handle that can shut the socket down from another thread (to
    /// unblock a read at shutdown).
    ///
    /// # Errors
    /// If the socket cannot be duplicated.
    pub fn shutdown_handle(&self) -> io::Result<TcpStream> {
        self.writer.stream.try_clone()
    }

    /// Queues one message; it is written at the latest before the next
    /// [`recv`](Self::recv) that has to wait for the server.
    ///
    /// # Errors
    /// Encoding or write failures (the connection is then unusable).
    pub fn send(&mut self, msg: &Message) -> Result<(), ConnectionError> {
        let before = self.out.len();
        msg.encode_into(&mut self.out).map_err(ConnectionError::Encode)?;
        self.queued(before)
    }

    /// Queues a frame whose payload is already encoded, like
    /// [`send`](Self::send).
    ///
    /// # Errors
    /// Oversize payloads and write failures.
    pub fn send_frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), ConnectionError> {
        let before = self.out.len();
        crate::framing::encode_into(&mut self.out, kind, payload)?;
        self.queued(before)
    }

    fn queued(&mut self, before: usize) -> Result<(), ConnectionError> {
        self.sent += (self.out.len() - before) as u64;
        if self.out.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the queued frames, all within `io.timeout`.
    ///
    /// # Errors
    /// Write failures, and a server that does not take them in time.
    pub fn flush(&mut self) -> Result<(), ConnectionError> {
        self.writer.deadline = self.deadline();
        let written = self.writer.write_all(&self.out);
        self.out.clear();
        written.map_err(|e| self.failure(FrameError::Io(e), false))
    }

    /// Whether a whole message has arrived already: [`recv`](Self::recv)
    /// would return without waiting.
    pub fn has_message(&self) -> bool {
        self.reader.has_frame()
    }

    /// Bytes sent (or queued) on this connection so far, frame headers
    /// included.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Waits for the next message, at most `io.timeout` for all of it
    /// (counted once the queued frames are written).
    ///
    /// # Errors
    /// Timeouts, resets, a closed connection, or an undecodable answer.
    pub fn recv(&mut self) -> Result<Message, ConnectionError> {
        if !self.reader.has_frame() {
            if !self.out.is_empty() {
                self.flush()?;
            }
            let deadline = self.deadline();
            self.reader.get_mut().deadline = deadline;
        }
        match self.reader.read_frame() {
            Ok(Some(frame)) => Message::from_frame(&frame).map_err(ConnectionError::Decode),
            Ok(None) => Err(ConnectionError::Closed),
            Err(e) => Err(self.failure(e, true)),
        }
    }

    /// Says BYE (best effort) and closes both directions.
    pub fn close(mut self) {
        if self.send(&Message::Bye).is_ok() {
            let _ = self.flush();
        }
        let _ = self.writer.stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// `io.timeout: 0` means no timeout, also for connecting.
    #[test]
    fn a_zero_timeout_connects_without_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut conn = Connection::connect(&addr, Duration::ZERO).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        conn.send(&Message::Echo(b"x".to_vec())).unwrap();
        conn.flush().unwrap();
        let mut got = [0_u8; 4];
        peer.read_exact(&mut got).unwrap();
    }

    /// A peer that sends `bytes` one at a time, `gap` apart, then keeps
    /// the connection open until the test ends.
    fn trickle(peer: std::net::TcpStream, bytes: Vec<u8>, gap: Duration) {
        std::thread::spawn(move || {
            let mut peer = peer;
            for b in bytes {
                std::thread::sleep(gap);
                if peer.write_all(&[b]).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_secs(10));
        });
    }

    fn echo_frame(len: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        crate::framing::encode_into(&mut bytes, crate::message::kind::ECHO, &vec![7; len]).unwrap();
        bytes
    }

    /// `io.timeout` bounds each whole answer: answers that come in pieces
    /// each within it arrive, however long the conversation, but bytes
    /// coming well within the timeout of each other cannot stretch one
    /// answer past it.
    #[test]
    fn each_answer_must_arrive_whole_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let timeout = Duration::from_millis(600);
        let mut conn = Connection::connect(&addr, timeout).unwrap();
        let (peer, _) = listener.accept().unwrap();
        // A byte every 30 ms: three answers of 8 bytes (240 ms each, 720 ms
        // in all, more than the timeout), then one of 103 bytes (3 s).
        let bytes = [echo_frame(5), echo_frame(5), echo_frame(5), echo_frame(100)].concat();
        trickle(peer, bytes, Duration::from_millis(30));
        for _ in 0..3 {
            assert_eq!(conn.recv().unwrap(), Message::Echo(vec![7; 5]));
        }
        // Had each read its own timeout, this answer would arrive whole.
        let asked = Instant::now();
        let err = conn.recv().unwrap_err();
        println!("gave up after {:?}", asked.elapsed());
        assert!(
            matches!(err, ConnectionError::TimedOut { limit, reading: true } if limit == timeout),
            "{err}"
        );
        assert_eq!(err.name(), "io_timeout");
    }

    /// A server that takes what the agency sends only slowly (1 KiB every
    /// 50 ms, through small socket buffers, so each `write` makes some
    /// progress well within the timeout) cannot stretch one write of the
    /// queued frames past `io.timeout` either.
    #[test]
    fn a_write_the_server_takes_slowly_times_out_as_a_whole() {
        use socket2::{Domain, Socket, Type};
        let small = 4096;
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener.set_recv_buffer_size(small).unwrap();
        listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        listener.listen(1).unwrap();
        let listener: TcpListener = listener.into();
        let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        client.set_send_buffer_size(small).unwrap();
        client.connect(&listener.local_addr().unwrap().into()).unwrap();
        let timeout = Duration::from_millis(600);
        let mut conn = Connection::from_stream(client.into(), timeout).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0_u8; 1024];
            loop {
                std::thread::sleep(Duration::from_millis(50));
                if !matches!(peer.read(&mut buf), Ok(n) if n > 0) {
                    return;
                }
            }
        });
        let started = Instant::now();
        let err = loop {
            assert!(started.elapsed() < Duration::from_secs(20), "20 s of writes and no timeout");
            if let Err(e) = conn.send(&Message::Echo(vec![1; 8000])) {
                break e;
            }
        };
        println!("gave up after {:?}", started.elapsed());
        assert!(
            matches!(err, ConnectionError::TimedOut { limit, reading: false } if limit == timeout),
            "{err}"
        );
    }

    #[test]
    fn frames_are_written_together_before_waiting_for_an_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut conn = Connection::connect(&addr, Duration::from_secs(5)).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        conn.send(&Message::Echo(b"one".to_vec())).unwrap();
        conn.send(&Message::Echo(b"two".to_vec())).unwrap();
        peer.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert!(peer.read(&mut buf).is_err(), "queued, not written yet");
        peer.set_nonblocking(false).unwrap();
        let answer = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut reader = FrameReader::new(&mut peer);
            for _ in 0..2 {
                got.push(reader.read_frame().unwrap().unwrap());
            }
            drop(reader);
            crate::framing::write_frame(&mut peer, crate::message::kind::BYE, &[]).unwrap();
            got
        });
        // Waiting for an answer writes what is queued first.
        assert_eq!(conn.recv().unwrap(), Message::Bye);
        let got = answer.join().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(conn.bytes_sent(), 2 * (crate::framing::HEADER_LEN as u64 + 3));
    }
}
