//! A blocking, framed connection to the server: the only place where the
//! client reads or writes its socket.
//!
//! Sends and receives whole [`Message`]s over a `TcpStream` with read and
//! write timeouts; a read timeout in the middle of a frame loses nothing
//! (see [`FrameReader`]), but the client treats any timeout as a broken
//! connection and reconnects.

use crate::framing::{FrameError, FrameReader};
use crate::message::{DecodeError, EncodeError, Message};
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

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
        }
    }
}

impl std::error::Error for ConnectionError {}

impl From<FrameError> for ConnectionError {
    fn from(e: FrameError) -> Self {
        ConnectionError::Frame(e)
    }
}

/// One connection to the server.
#[derive(Debug)]
pub struct Connection {
    reader: FrameReader<TcpStream>,
    writer: TcpStream,
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
        let err = |source| ConnectionError::Connect {
            address: address.to_owned(),
            source,
        };
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
    ///
    /// # Errors
    /// Socket option failures.
    pub fn from_stream(stream: TcpStream, io_timeout: Duration) -> io::Result<Connection> {
        let timeout = (!io_timeout.is_zero()).then_some(io_timeout);
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Connection {
            reader: FrameReader::new(stream),
            writer,
            out: Vec::with_capacity(FLUSH_AT + crate::framing::MAX_FRAME_LEN),
            sent: 0,
        })
    }

    /// A handle that can shut the socket down from another thread (to
    /// unblock a read at shutdown).
    ///
    /// # Errors
    /// If the socket cannot be duplicated.
    pub fn shutdown_handle(&self) -> io::Result<TcpStream> {
        self.writer.try_clone()
    }

    /// Queues one message; it is written at the latest before the next
    /// [`recv`](Self::recv) that has to wait for the server.
    ///
    /// # Errors
    /// Encoding or write failures (the connection is then unusable).
    pub fn send(&mut self, msg: &Message) -> Result<(), ConnectionError> {
        let before = self.out.len();
        msg.encode_into(&mut self.out)
            .map_err(ConnectionError::Encode)?;
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

    /// Writes the queued frames.
    ///
    /// # Errors
    /// Write failures.
    pub fn flush(&mut self) -> Result<(), ConnectionError> {
        let written = self.writer.write_all(&self.out);
        self.out.clear();
        written.map_err(|e| ConnectionError::Frame(FrameError::Io(e)))
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

    /// Waits for the next message.
    ///
    /// # Errors
    /// Timeouts, resets, a closed connection, or an undecodable answer.
    pub fn recv(&mut self) -> Result<Message, ConnectionError> {
        if !self.out.is_empty() && !self.reader.has_frame() {
            self.flush()?;
        }
        match self.reader.read_frame()? {
            Some(frame) => Message::from_frame(&frame).map_err(ConnectionError::Decode),
            None => Err(ConnectionError::Closed),
        }
    }

    /// Says BYE (best effort) and closes both directions.
    pub fn close(mut self) {
        if self.send(&Message::Bye).is_ok() {
            let _ = self.flush();
        }
        let _ = self.writer.shutdown(Shutdown::Both);
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
        assert_eq!(
            conn.bytes_sent(),
            2 * (crate::framing::HEADER_LEN as u64 + 3)
        );
    }
}
