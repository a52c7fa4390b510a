//! Why an agency stops before it knows its winners: [`ClientError`], what
//! [`run`](super::run) returns and the binary turns into one message and an
//! exit code.

use super::source::SourceError;
use crate::bet::InvalidBet;
use crate::message::ErrorCode;
use std::fmt;

/// Why the agency stopped before finishing.
#[derive(Debug)]
pub enum ClientError {
    /// The bet given in the environment is not valid.
    InvalidBet(InvalidBet),
    Source(SourceError),
    /// The server refused a request for a reason retrying cannot fix.
    Server {
        code: ErrorCode,
        message: String,
    },
    /// The server answered something the protocol does not allow there.
    Protocol(String),
    /// No progress for `retry.timeout`, and every server of the list failed
    /// since: the last error.
    GaveUp {
        last: String,
    },
    /// The server answered HELLO with HELLO_OK, without asking for the
    /// agency's key, and the agency's `auth` is `required`.
    Unauthenticated {
        server: String,
    },
    /// The server asked for the agency's key (`auth: off`, no key set).
    NoKey {
        server: String,
    },
    /// Every server of the list refused the agency (or was refused by it),
    /// one after the other: `server: reason` for each.
    AllRefused {
        refusals: Vec<String>,
    },
    /// SIGTERM/SIGINT.
    Shutdown,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidBet(e) => write!(f, "invalid bet: {e}"),
            ClientError::Source(e) => write!(f, "{e}"),
            ClientError::Server { code, message } => {
                write!(f, "server refused ({}): {message}", code.name())
            }
            ClientError::Protocol(what) => write!(f, "protocol error: {what}"),
            ClientError::GaveUp { last } => write!(f, "gave up reconnecting: {last}"),
            ClientError::Unauthenticated { server } => write!(
                f,
                "server {server} answered HELLO with HELLO_OK without asking for this agency's key: refused, nothing more sent to it (an agency with a key never runs unauthenticated; CLI_AUTH=off accepts a server run with SERVER_AUTH=off)"
            ),
            ClientError::NoKey { server } => write!(
                f,
                "server {server} asks for this agency's key and none is set (CLI_AUTH=off): set CLI_KEY or CLI_KEY_FILE"
            ),
            ClientError::AllRefused { refusals } => {
                write!(f, "every server of the list refused: {}", refusals.join("; "))
            }
            ClientError::Shutdown => write!(f, "stopped by a signal"),
        }
    }
}

impl std::error::Error for ClientError {}
