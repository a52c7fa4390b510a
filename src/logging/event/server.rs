//! The server's life: the signal, listening, accepting, the ingest's
//! progress and the teardown.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{LogLine, Text, line};
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
        error: Text<'a>,
    },
    /// `accept` itself failed; `unlogged`: failures since the last line.
    ListenerFailed {
        error: Text<'a>,
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
        let line = match *self {
            Self::SignalReceived => line(f, Signal, Success).field("signal", "SIGTERM/SIGINT"),
            Self::Listening { address } => line(f, Listen, Success).field("address", address),
            Self::Accepted { peer } => line(f, Accept, Success).field("peer", peer),
            Self::AcceptFailed { peer, error } => {
                line(f, Accept, Fail).field("peer", peer).field("error", error)
            }
            Self::ListenerFailed { error, unlogged } => {
                line(f, Accept, Fail).field("error", error).field("omitidos", unlogged)
            }
            Self::Ingest { bets, rate, active_agencies, finished } => line(f, Ingesta, InProgress)
                .field("apuestas", bets)
                .field("por_segundo", format_args!("{rate:.0}"))
                .field("agencias_activas", active_agencies)
                .field("agencias_finalizadas", finished),
            Self::PoolClosed { workers } => {
                line(f, CloseThreadPool, Success).field("workers", workers)
            }
            Self::ConnectionsClosed { count } => {
                line(f, CloseConnections, Success).field("count", count)
            }
        };
        line.end()
    }
}
