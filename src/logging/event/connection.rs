//! One connection on the server: its handshake, the requests it has
//! refused, and how it closed.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{Line, LogLine, OrDash};
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
        error: &'a dyn Display,
    },
    Challenged {
        agency: u32,
        peer: SocketAddr,
    },
    ChallengeFailed {
        agency: u32,
        peer: SocketAddr,
        error: &'a dyn Display,
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
        error: &'a dyn Display,
    },
}

impl LogLine for ConnectionEvent<'_> {}

impl Display for ConnectionEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Action::{Auth, Bye, Challenge, CloseConnection, Hello, Request};
        use Outcome::{Fail, Success};
        match *self {
            ConnectionEvent::Refused { action, peer, code, error } => Line::new(f, action, Fail)
                .field("peer", peer)
                .field("code", code)
                .field("error", error)
                .end(),
            ConnectionEvent::Challenged { agency, peer } => {
                Line::new(f, Challenge, Success).field("agencia", agency).field("peer", peer).end()
            }
            ConnectionEvent::ChallengeFailed { agency, peer, error } => {
                Line::new(f, Challenge, Fail)
                    .field("agencia", agency)
                    .field("peer", peer)
                    .field("error", error)
                    .end()
            }
            ConnectionEvent::AuthRefused { agency, peer } => Line::new(f, Auth, Fail)
                .field("agencia", agency)
                .field("peer", peer)
                .field("error", format_args!("the answer does not prove agency {agency}'s key"))
                .end(),
            ConnectionEvent::Welcomed { agency, peer, next_seq, done } => {
                Line::new(f, Hello, Success)
                    .field("agencia", agency)
                    .field("peer", peer)
                    .field("next_seq", next_seq)
                    .field("done", done)
                    .end()
            }
            ConnectionEvent::RequestPanicked { peer } => Line::new(f, Request, Fail)
                .field("peer", peer)
                .field("error", "internal error (panic)")
                .end(),
            ConnectionEvent::Bye { peer } => Line::new(f, Bye, Success).field("peer", peer).end(),
            ConnectionEvent::Closed { peer, agency, reason } => {
                Line::new(f, CloseConnection, Success)
                    .field("peer", peer)
                    .field("agencia", OrDash(agency))
                    .field("reason", reason)
                    .end()
            }
            ConnectionEvent::ClosedAtShutdown { peer, agency } => {
                Line::new(f, CloseConnection, Success)
                    .field("peer", peer)
                    .field("agencia", OrDash(agency))
                    .end()
            }
            ConnectionEvent::ClosedOnError { peer, agency, code, error } => {
                Line::new(f, CloseConnection, Fail)
                    .field("peer", peer)
                    .field("agencia", OrDash(agency))
                    .field("code", code)
                    .field("error", error)
                    .end()
            }
        }
    }
}
