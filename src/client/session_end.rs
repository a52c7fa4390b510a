//! How one connection ended, in the terms the agency acts on: a
//! [`SessionEnd`] (try again, the server is busy, a refusal, no draw yet, or
//! stop), with the [`Reason`] a retry logs. The session produces them, the
//! failover in `reconnect.rs` decides what follows.

use super::connection::ConnectionError;
use super::error::ClientError;
use super::source::SourceError;
use crate::message::{EncodeError, ErrorCode, Message};

/// Why a connection ended in a way worth trying again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reason {
    /// A short, stable name (`busy`, `io_timeout`, `connect`, ...): what
    /// the log line's `error` says and what its rate limit is kept by.
    pub kind: &'static str,
    /// What happened, for people.
    pub detail: String,
}

impl Reason {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Reason { kind, detail: detail.into() }
    }
}

/// What ended one connection.
#[derive(Debug)]
pub(super) enum SessionEnd {
    /// Worth reconnecting: the connection broke or the server said "later".
    Retry(Reason),
    /// The server is at its connection limit: alive, so keep trying.
    Busy(Reason),
    /// This server will not do as configured: it refused the agency's key
    /// (`unauthorized`), or the agency refused it (no CHALLENGE, or one it
    /// has no key for). `error` stops the agency if it has no other server.
    Refused {
        kind: &'static str,
        error: ClientError,
    },
    /// The draw has not happened yet (`finished` agencies are done); the
    /// server closed the connection.
    NotReady {
        finished: u32,
        expected: u32,
    },
    Fatal(ClientError),
}

impl From<ConnectionError> for SessionEnd {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Decode(d) => SessionEnd::Fatal(ClientError::Protocol(d.to_string())),
            ConnectionError::Encode(e) => SessionEnd::from(e),
            other => SessionEnd::Retry(Reason::new(other.name(), other.to_string())),
        }
    }
}

impl From<EncodeError> for SessionEnd {
    fn from(e: EncodeError) -> Self {
        SessionEnd::Fatal(ClientError::Protocol(e.to_string()))
    }
}

impl From<SourceError> for SessionEnd {
    fn from(e: SourceError) -> Self {
        SessionEnd::Fatal(ClientError::Source(e))
    }
}

/// What an answer other than the one `wanted` means: the server's errors
/// that say "later" are retried, `busy` and `unauthorized` have their own
/// ends, anything else stops the agency.
pub(super) fn unexpected(msg: Message, wanted: &str) -> SessionEnd {
    match msg {
        Message::Error { code: ErrorCode::Busy, message } => {
            SessionEnd::Busy(Reason::new("busy", format!("server: busy ({message})")))
        }
        Message::Error { code, message } if code.is_retryable() => SessionEnd::Retry(Reason::new(
            code.name(),
            format!("server: {} ({message})", code.name()),
        )),
        Message::Error { code: ErrorCode::Unauthorized, message } => SessionEnd::Refused {
            kind: "unauthorized",
            error: ClientError::Server { code: ErrorCode::Unauthorized, message },
        },
        Message::Error { code, message } => {
            SessionEnd::Fatal(ClientError::Server { code, message })
        }
        Message::Ack { next_seq } => SessionEnd::Retry(Reason::new(
            "out_of_order",
            format!("ACK for position {next_seq} out of order; resyncing"),
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
    fn retryable_server_errors_reconnect_and_others_stop() {
        let retry = unexpected(
            Message::Error { code: ErrorCode::Storage, message: "disk full".into() },
            "ACK",
        );
        assert!(matches!(retry, SessionEnd::Retry(_)));
        let fatal = unexpected(
            Message::Error { code: ErrorCode::UnknownAgency, message: "no".into() },
            "ACK",
        );
        assert!(matches!(fatal, SessionEnd::Fatal(ClientError::Server { .. })));
        assert!(matches!(
            unexpected(Message::Bye, "ACK"),
            SessionEnd::Fatal(ClientError::Protocol(_))
        ));
    }

    /// `unauthorized` is not fatal by itself: another server of the list
    /// (in the middle of a key rotation) may take the key.
    #[test]
    fn unauthorized_is_a_refusal_and_busy_a_reason_named_busy() {
        let refused = unexpected(
            Message::Error { code: ErrorCode::Unauthorized, message: "bad key".into() },
            "HELLO_OK",
        );
        let SessionEnd::Refused { kind, error } = refused else { panic!("not a refusal") };
        assert_eq!(kind, "unauthorized");
        assert!(error.to_string().contains("unauthorized"), "{error}");
        let busy = unexpected(
            Message::Error { code: ErrorCode::Busy, message: "full".into() },
            "HELLO_OK",
        );
        assert!(matches!(busy, SessionEnd::Busy(Reason { kind: "busy", .. })));
    }
}
