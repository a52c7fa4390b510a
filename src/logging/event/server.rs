//! The server's life: the signal, listening, accepting, the ingest's
//! progress and the teardown.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{Line, LogLine};
use std::fmt::{self, Display, Formatter};
use std::net::SocketAddr;

/// See the module doc.
#[derive(Clone, Copy)]
pub enum ServerEvent<'a> {
    SignalReceived,
    Listening {
        address: SocketAddr,
    },
    Accepted {
        peer: SocketAddr,
    },
    /// A connection accepted that cannot be set up.
    AcceptFailed {
        peer: SocketAddr,
        error: &'a dyn Display,
    },
    /// `accept` itself failed; `unlogged`: failures since the last line.
    ListenerFailed {
        error: &'a dyn Display,
        unlogged: u64,
    },
    /// The ingest's progress, every few seconds while bets arrive.
    Ingest {
        bets: u64,
        rate: f64,
        active_agencies: usize,
        finished: u32,
    },
    /// The teardown: the workers joined, the connections closed.
    PoolClosed {
        workers: usize,
    },
    ConnectionsClosed {
        count: usize,
    },
}

impl LogLine for ServerEvent<'_> {}

impl Display for ServerEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Action::{Accept, CloseConnections, CloseThreadPool, Ingesta, Listen, Signal};
        use Outcome::{Fail, InProgress, Success};
        match *self {
            ServerEvent::SignalReceived => {
                Line::new(f, Signal, Success).field("signal", "SIGTERM/SIGINT").end()
            }
            ServerEvent::Listening { address } => {
                Line::new(f, Listen, Success).field("address", address).end()
            }
            ServerEvent::Accepted { peer } => {
                Line::new(f, Accept, Success).field("peer", peer).end()
            }
            ServerEvent::AcceptFailed { peer, error } => {
                Line::new(f, Accept, Fail).field("peer", peer).field("error", error).end()
            }
            ServerEvent::ListenerFailed { error, unlogged } => {
                Line::new(f, Accept, Fail).field("error", error).field("omitidos", unlogged).end()
            }
            ServerEvent::Ingest { bets, rate, active_agencies, finished } => {
                Line::new(f, Ingesta, InProgress)
                    .field("apuestas", bets)
                    .field("por_segundo", format_args!("{rate:.0}"))
                    .field("agencias_activas", active_agencies)
                    .field("agencias_finalizadas", finished)
                    .end()
            }
            ServerEvent::PoolClosed { workers } => {
                Line::new(f, CloseThreadPool, Success).field("workers", workers).end()
            }
            ServerEvent::ConnectionsClosed { count } => {
                Line::new(f, CloseConnections, Success).field("count", count).end()
            }
        }
    }
}
