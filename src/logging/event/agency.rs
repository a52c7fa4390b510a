//! The agency: connecting (and why it tries again), sending its bets, its
//! progress, its winners and its summary.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{LogLine, Text, line};
use std::fmt::{self, Display, Formatter};

/// See the module doc.
#[derive(Clone, Copy)]
pub enum AgencyEvent<'a> {
    Connected {
        server: &'a str,
    },
    /// No server stored anything for too long: the agency stops.
    GaveUp {
        server: &'a str,
        error: Text<'a>,
    },
    /// The agency tries again (`reason` names why); `repeated`: the same
    /// reason since the last line.
    Reconnecting {
        reason: &'a str,
        server: &'a str,
        detail: Text<'a>,
        repeated: Option<u64>,
    },
    /// The agency refuses `server` (`reason` names why).
    ServerRefused {
        reason: &'a str,
        server: &'a str,
        detail: Text<'a>,
    },
    /// The server asked for no key (`CLI_AUTH=off`).
    AuthSkipped,
    BatchSent {
        next_seq: u64,
    },
    /// The bet of env mode (the course's exercise), stored.
    BetSent {
        document: &'a str,
        number: u16,
    },
    /// A row of the agency's file that is not a bet, skipped.
    BetInvalid {
        line: u64,
        error: Text<'a>,
    },
    /// The agency's progress, at most once a second while it sends.
    Progress {
        sent: u64,
        acked: u64,
        rate: f64,
    },
    WinnersPending {
        finished: u32,
        expected: u32,
    },
    WinnersReceived {
        winners: usize,
    },
    Summary {
        sent: u64,
        invalid: u64,
        batches: u64,
        bytes: u64,
        seconds: f64,
    },
}

impl LogLine for AgencyEvent<'_> {}

impl Display for AgencyEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Action::*;
        use Outcome::{Fail, InProgress, Success};
        let line = match *self {
            Self::Connected { server } => line(f, Connect, Success).field("server_address", server),
            Self::GaveUp { server, error } => {
                line(f, Connect, Fail).field("server_address", server).field("error", error)
            }
            Self::Reconnecting { reason, server, detail, repeated } => {
                line(f, Reconnect, InProgress)
                    .field("error", reason)
                    .field("server_address", server)
                    .field("detail", detail)
                    .field_if("repeated", repeated)
            }
            Self::ServerRefused { reason, server, detail } => line(f, Auth, Fail)
                .field("error", reason)
                .field("server_address", server)
                .field("detail", detail),
            Self::AuthSkipped => {
                line(f, Auth, Success).field("mode", "off (the server asked for no key)")
            }
            Self::BatchSent { next_seq } => {
                line(f, BatchEnviado, Success).field("next_seq", next_seq)
            }
            Self::BetSent { document, number } => {
                line(f, ApuestaEnviada, Success).field("dni", document).field("numero", number)
            }
            Self::BetInvalid { line: row, error } => {
                line(f, ApuestaInvalida, Fail).field("linea", row).field("error", error)
            }
            Self::Progress { sent, acked, rate } => line(f, Progreso, InProgress)
                .field("enviadas", sent)
                .field("confirmadas", acked)
                .field("por_segundo", format_args!("{rate:.0}")),
            Self::WinnersPending { finished, expected } => line(f, ConsultaGanadores, InProgress)
                .field("finalizadas", finished)
                .field("esperadas", expected),
            Self::WinnersReceived { winners } => {
                line(f, ConsultaGanadores, Success).field("cant_ganadores", winners)
            }
            Self::Summary { sent, invalid, batches, bytes, seconds } => line(f, Resumen, Success)
                .field("apuestas_enviadas", sent)
                .field("apuestas_invalidas", invalid)
                .field("batches", batches)
                .field("bytes_enviados", bytes)
                .field("segundos", format_args!("{seconds:.3}")),
        };
        line.end()
    }
}
