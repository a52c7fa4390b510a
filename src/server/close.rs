//! How connections end, in one vocabulary for every part of the server
//! that closes one: its worker, the registry (refusals, evictions,
//! replaced sessions, the lobby's deadlines), the penalty box and the
//! accept loop at teardown.

use crate::logging::{ConnectionEvent, LogLine, PEER_FAULT};
use crate::message::{ErrorCode, encode_error};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// How long a last ERROR may take to leave before the socket is closed.
pub(super) const LAST_WORDS: Duration = Duration::from_millis(100);

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Close {
    /// The peer or the protocol ended it (logged at debug: routine).
    Normal(&'static str),
    /// The server is stopping (logged at info: every close is reported).
    Shutdown,
    /// Answered with ERROR `code` and closed.
    Fault(ErrorCode, String),
}

/// Logs a connection's close in the course's grammar.
pub(super) fn log_close(peer: SocketAddr, agency: Option<u32>, how: &Close) {
    match how {
        Close::Normal(reason) => ConnectionEvent::Closed { peer, agency, reason }.debug(),
        Close::Shutdown => ConnectionEvent::ClosedAtShutdown { peer, agency }.info(),
        Close::Fault(code, reason) => {
            ConnectionEvent::ClosedOnError { peer, agency, code: code.name(), error: reason }
                .log(PEER_FAULT)
        }
    }
}

/// Answers ERROR on a connection the server will not serve and closes it,
/// without ever blocking (the socket is non-blocking): what the peer
/// already sent is read and dropped first, so the close is a FIN the peer
/// reads after the ERROR, not a reset that may discard it.
pub(super) fn refuse(mut stream: TcpStream, code: ErrorCode, reason: &str) {
    let mut out = Vec::new();
    encode_error(&mut out, code, reason);
    let _ = stream.set_nonblocking(true);
    let mut scratch = [0_u8; 4096];
    for _ in 0..4 {
        match stream.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = stream.write(&out);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Logs the close of a connection the server ends without a worker (one
/// waiting in the lobby), then refuses it (see [`refuse`]).
pub(super) fn refuse_logged(
    stream: TcpStream,
    peer: SocketAddr,
    agency: Option<u32>,
    code: ErrorCode,
    reason: String,
) {
    log_close(peer, agency, &Close::Fault(code, reason.clone()));
    refuse(stream, code, &reason);
}
