//! The agency: connecting (and why it tries again), sending its bets, its
//! progress, its winners and its summary.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{Line, LogLine};
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
        error: &'a dyn Display,
    },
    /// The agency tries again (`reason` names why); `repeated`: the same
    /// reason since the last line.
    Reconnecting {
        reason: &'a str,
        server: &'a str,
        detail: &'a dyn Display,
        repeated: Option<u64>,
    },
    /// The agency refuses `server` (`reason` names why).
    ServerRefused {
        reason: &'a str,
        server: &'a str,
        detail: &'a dyn Display,
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
        error: &'a dyn Display,
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
        match *self {
            AgencyEvent::Connected { server } => {
                Line::new(f, Connect, Success).field("server_address", server).end()
            }
            AgencyEvent::GaveUp { server, error } => Line::new(f, Connect, Fail)
                .field("server_address", server)
                .field("error", error)
                .end(),
            AgencyEvent::Reconnecting { reason, server, detail, repeated } => {
                Line::new(f, Reconnect, InProgress)
                    .field("error", reason)
                    .field("server_address", server)
                    .field("detail", detail)
                    .field_if("repeated", repeated)
                    .end()
            }
            AgencyEvent::ServerRefused { reason, server, detail } => Line::new(f, Auth, Fail)
                .field("error", reason)
                .field("server_address", server)
                .field("detail", detail)
                .end(),
            AgencyEvent::AuthSkipped => {
                Line::new(f, Auth, Success).field("mode", "off (the server asked for no key)").end()
            }
            AgencyEvent::BatchSent { next_seq } => {
                Line::new(f, BatchEnviado, Success).field("next_seq", next_seq).end()
            }
            AgencyEvent::BetSent { document, number } => Line::new(f, ApuestaEnviada, Success)
                .field("dni", document)
                .field("numero", number)
                .end(),
            AgencyEvent::BetInvalid { line, error } => {
                Line::new(f, ApuestaInvalida, Fail).field("linea", line).field("error", error).end()
            }
            AgencyEvent::Progress { sent, acked, rate } => Line::new(f, Progreso, InProgress)
                .field("enviadas", sent)
                .field("confirmadas", acked)
                .field("por_segundo", format_args!("{rate:.0}"))
                .end(),
            AgencyEvent::WinnersPending { finished, expected } => {
                Line::new(f, ConsultaGanadores, InProgress)
                    .field("finalizadas", finished)
                    .field("esperadas", expected)
                    .end()
            }
            AgencyEvent::WinnersReceived { winners } => {
                Line::new(f, ConsultaGanadores, Success).field("cant_ganadores", winners).end()
            }
            AgencyEvent::Summary { sent, invalid, batches, bytes, seconds } => {
                Line::new(f, Resumen, Success)
                    .field("apuestas_enviadas", sent)
                    .field("apuestas_invalidas", invalid)
                    .field("batches", batches)
                    .field("bytes_enviados", bytes)
                    .field("segundos", format_args!("{seconds:.3}"))
                    .end()
            }
        }
    }
}
