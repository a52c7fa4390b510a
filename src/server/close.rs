//! How connections end, in one vocabulary for every part of the server
//! that closes one: its worker, the registry (refusals, evictions,
//! replaced sessions, the lobby's deadlines), the penalty box and the
//! accept loop at teardown.

use crate::logging::{PEER_FAULT, clean};
use crate::message::{ErrorCode, encode_error};
use log::{debug, info, log};
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
    let agency = agency.map_or_else(|| "-".to_owned(), |a| a.to_string());
    match how {
        Close::Normal(why) => debug!(
            "action: close_connection | result: success | peer: {peer} | agencia: {agency} | reason: {why}"
        ),
        Close::Shutdown => {
            info!("action: close_connection | result: success | peer: {peer} | agencia: {agency}");
        }
        Close::Fault(code, reason) => log!(
            PEER_FAULT,
            "action: close_connection | result: fail | peer: {peer} | agencia: {agency} | code: {} | error: {}",
            code.name(),
            clean(reason)
        ),
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
