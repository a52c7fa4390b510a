//! An agency's requests on the server: its batches (one line per batch:
//! the hot line), its DONE and its winners.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{LogLine, Text, line};
use std::fmt::{self, Display, Formatter};

/// See the module doc.
#[derive(Clone, Copy)]
pub enum RequestEvent<'a> {
    /// A batch is durable.
    BatchStored {
        count: usize,
        agency: u32,
    },
    /// A batch resent after a reconnect, stored before.
    BatchDuplicate {
        count: usize,
        agency: u32,
    },
    /// The bet of a one-bet batch (the course's exercise).
    BetStored {
        document: &'a str,
        number: u16,
    },
    /// Bet number `bet` of the batch is not valid: nothing of it is stored.
    BatchInvalid {
        count: usize,
        agency: u32,
        bet: usize,
        error: Text<'a>,
    },
    /// A batch the store refused, or whose commit failed.
    BatchFailed {
        count: usize,
        agency: u32,
        code: &'a str,
        error: Text<'a>,
    },
    /// The agency's DONE is durable: `bets` in all.
    AgencyDone {
        agency: u32,
        bets: u64,
    },
    DoneFailed {
        agency: u32,
        code: &'a str,
        error: Text<'a>,
    },
    /// WINNERS? before the draw.
    WinnersNotReady {
        agency: u32,
        finished: u32,
    },
    /// The first page of an agency's winners.
    WinnersSent {
        agency: u32,
        winners: u32,
    },
}

impl LogLine for RequestEvent<'_> {}

impl Display for RequestEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Action::*;
        use Outcome::{Fail, InProgress, Success};
        let line = match *self {
            Self::BatchStored { count, agency } => {
                line(f, ApuestaRecibida, Success).field("cantidad", count).field("agencia", agency)
            }
            Self::BatchDuplicate { count, agency } => {
                line(f, ApuestaDuplicada, Success).field("cantidad", count).field("agencia", agency)
            }
            Self::BetStored { document, number } => {
                line(f, ApuestaAlmacenada, Success).field("dni", document).field("numero", number)
            }
            Self::BatchInvalid { count, agency, bet, error } => line(f, ApuestaRecibida, Fail)
                .field("cantidad", count)
                .field("agencia", agency)
                .field("error", format_args!("bet {bet}: {error}")),
            Self::BatchFailed { count, agency, code, error } => line(f, ApuestaRecibida, Fail)
                .field("cantidad", count)
                .field("agencia", agency)
                .field("code", code)
                .field("error", error),
            Self::AgencyDone { agency, bets } => {
                line(f, AgenciaFinalizada, Success).field("agencia", agency).field("apuestas", bets)
            }
            Self::DoneFailed { agency, code, error } => line(f, AgenciaFinalizada, Fail)
                .field("agencia", agency)
                .field("code", code)
                .field("error", error),
            Self::WinnersNotReady { agency, finished } => line(f, ConsultaGanadores, InProgress)
                .field("agencia", agency)
                .field("finalizadas", finished),
            Self::WinnersSent { agency, winners } => line(f, GanadoresEnviados, Success)
                .field("agencia", agency)
                .field("cant_ganadores", winners),
        };
        line.end()
    }
}
