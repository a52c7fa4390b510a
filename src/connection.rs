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
    scratch: Vec<u8>,
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
            match TcpStream::connect_timeout(&addr, io_timeout) {
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
            scratch: Vec::new(),
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

    /// Sends one message.
    ///
    /// # Errors
    /// Encoding or write failures (the connection is then unusable).
    pub fn send(&mut self, msg: &Message) -> Result<(), ConnectionError> {
        self.scratch.clear();
        msg.encode_into(&mut self.scratch)
            .map_err(ConnectionError::Encode)?;
        self.send_raw_scratch()
    }

    /// Sends a frame whose payload is already encoded.
    ///
    /// # Errors
    /// Oversize payloads and write failures.
    pub fn send_frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), ConnectionError> {
        self.scratch.clear();
        crate::framing::encode_into(&mut self.scratch, kind, payload)?;
        self.send_raw_scratch()
    }

    fn send_raw_scratch(&mut self) -> Result<(), ConnectionError> {
        self.writer
            .write_all(&self.scratch)
            .map_err(|e| ConnectionError::Frame(FrameError::Io(e)))?;
        self.sent += self.scratch.len() as u64;
        Ok(())
    }

    /// Bytes sent on this connection so far (frames, headers included).
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Waits for the next message.
    ///
    /// # Errors
    /// Timeouts, resets, a closed connection, or an undecodable answer.
    pub fn recv(&mut self) -> Result<Message, ConnectionError> {
        match self.reader.read_frame()? {
            Some(frame) => Message::from_frame(&frame).map_err(ConnectionError::Decode),
            None => Err(ConnectionError::Closed),
        }
    }

    /// Says BYE (best effort) and closes both directions.
    pub fn close(mut self) {
        let _ = self.send(&Message::Bye);
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}
