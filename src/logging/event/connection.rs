//! One connection on the server: its handshake, the requests it has
//! refused, and how it closed.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{LogLine, OrDash, Text, line};
use std::fmt::{self, Display, Formatter};
use std::net::SocketAddr;

/// See the module doc. `agency` is `None` (written `-`) for a connection
/// that has not completed its handshake.
#[derive(Clone, Copy)]
pub enum ConnectionEvent<'a> {
    /// A request (`action`) the server refuses with ERROR `code`.
    Refused {
        action: Action,
        peer: SocketAddr,
        code: &'a str,
        error: Text<'a>,
    },
    Challenged {
        agency: u32,
        peer: SocketAddr,
    },
    ChallengeFailed {
        agency: u32,
        peer: SocketAddr,
        error: Text<'a>,
    },
    /// An AUTH that does not prove the agency's key.
    AuthRefused {
        agency: u32,
        peer: SocketAddr,
    },
    /// The handshake is complete (`hello | success`).
    Welcomed {
        agency: u32,
        peer: SocketAddr,
        next_seq: u64,
        done: bool,
    },
    /// A bug in a request, caught: that connection ends.
    RequestPanicked {
        peer: SocketAddr,
    },
    Bye {
        peer: SocketAddr,
    },
    /// Closed in the protocol's course (`reason`).
    Closed {
        peer: SocketAddr,
        agency: Option<u32>,
        reason: &'a str,
    },
    ClosedAtShutdown {
        peer: SocketAddr,
        agency: Option<u32>,
    },
    ClosedOnError {
        peer: SocketAddr,
        agency: Option<u32>,
        code: &'a str,
        error: Text<'a>,
    },
}

impl LogLine for ConnectionEvent<'_> {}

impl Display for ConnectionEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Action::{Auth, Bye, Challenge, CloseConnection, Hello, Request};
        use Outcome::{Fail, Success};
        let line = match *self {
            Self::Refused { action, peer, code, error } => {
                line(f, action, Fail).field("peer", peer).field("code", code).field("error", error)
            }
            Self::Challenged { agency, peer } => {
                line(f, Challenge, Success).field("agencia", agency).field("peer", peer)
            }
            Self::ChallengeFailed { agency, peer, error } => line(f, Challenge, Fail)
                .field("agencia", agency)
                .field("peer", peer)
                .field("error", error),
            Self::AuthRefused { agency, peer } => line(f, Auth, Fail)
                .field("agencia", agency)
                .field("peer", peer)
                .field("error", format_args!("the answer does not prove agency {agency}'s key")),
            Self::Welcomed { agency, peer, next_seq, done } => line(f, Hello, Success)
                .field("agencia", agency)
                .field("peer", peer)
                .field("next_seq", next_seq)
                .field("done", done),
            Self::RequestPanicked { peer } => {
                line(f, Request, Fail).field("peer", peer).field("error", "internal error (panic)")
            }
            Self::Bye { peer } => line(f, Bye, Success).field("peer", peer),
            Self::Closed { peer, agency, reason } => line(f, CloseConnection, Success)
                .field("peer", peer)
                .field("agencia", OrDash(agency))
                .field("reason", reason),
            Self::ClosedAtShutdown { peer, agency } => line(f, CloseConnection, Success)
                .field("peer", peer)
                .field("agencia", OrDash(agency)),
            Self::ClosedOnError { peer, agency, code, error } => line(f, CloseConnection, Fail)
                .field("peer", peer)
                .field("agencia", OrDash(agency))
                .field("code", code)
                .field("error", error),
        };
        line.end()
    }
}
