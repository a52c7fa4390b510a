//! The requests of an agency whose handshake is complete: BATCH and DONE,
//! handed to the store (their answers wait for the commit), and WINNERS?,
//! answered at once from the draw's winners.

use super::exchange::Exchange;
use super::reply::{Request, store_error_code};
use crate::framing::MAX_PAYLOAD_LEN;
use crate::logging::{Action, LogLine, PEER_FAULT, RequestEvent};
use crate::message::{BatchView, ErrorCode, Message, WINNERS_HEADER_LEN};
use crate::storage::WinnersPage;
use crate::store::{StoreError, WinnersAnswer};

/// Bytes of a WINNERS frame left for documents: a page holds as many of
/// the agency's winners as fit (the agency asks again from where it ends).
pub const WINNERS_ROOM: usize = MAX_PAYLOAD_LEN - WINNERS_HEADER_LEN;

/// The answer to WINNERS? at `offset` after the draw: the page the store
/// read from there (at most [`WINNERS_ROOM`] bytes of documents). `Err`:
/// an offset beyond the list.
fn winners_page(agency: u32, offset: u32, page: WinnersPage) -> Result<Message, String> {
    if offset > page.total {
        return Err(format!("offset {offset} beyond {} winners", page.total));
    }
    if offset == 0 {
        RequestEvent::WinnersSent { agency, winners: page.total }.info();
    }
    Ok(Message::Winners { total: page.total, offset, documents: page.documents })
}

impl Exchange<'_> {
    /// BATCH: checked (this agency's, not after its DONE, every bet valid)
    /// and handed to the store; its ACK waits for the commit.
    pub(super) fn batch(&mut self, batch: &BatchView<'_>) {
        let Some(agency) = self.agency() else { return };
        let n = batch.bets.len();
        if batch.agency != agency {
            let reason =
                format!("batch for agency {} on agency {agency}'s connection", batch.agency);
            return self.refuse(Action::ApuestaRecibida, ErrorCode::AgencyMismatch, &reason);
        }
        if self.session.done_sent {
            return self.refuse_store(Action::ApuestaRecibida, &StoreError::AlreadyDone);
        }
        if let Err((i, e)) = batch.validate() {
            RequestEvent::BatchInvalid { count: n, agency, bet: i, error: &e }.log(PEER_FAULT);
            let message = format!("bet {i} of the batch: {e}; nothing of the batch was stored");
            return self.fail(ErrorCode::InvalidBet, message);
        }
        match self.store.submit_batch(agency, batch.first_seq, &batch.bets) {
            Ok(ticket) => {
                let single = match batch.bets.as_slice() {
                    [bet] => Some((bet.document.to_owned(), bet.number)),
                    _ => None,
                };
                self.wait_for(ticket, agency, Request::Batch { len: n, single });
            }
            Err(e) => {
                let code = store_error_code(&e);
                RequestEvent::BatchFailed { count: n, agency, code: code.name(), error: &e }
                    .log(PEER_FAULT);
                self.fail(code, e.to_string());
            }
        }
    }

    /// DONE: once per connection, handed to the store, which checks the
    /// total; its ACK waits for the commit.
    pub(super) fn done(&mut self, total: u64) {
        let Some(agency) = self.agency() else { return };
        if self.session.done_sent {
            return self.refuse(
                Action::AgenciaFinalizada,
                ErrorCode::DoneTwice,
                "DONE already sent on this connection",
            );
        }
        self.session.done_sent = true;
        match self.store.submit_done(agency, total) {
            Ok(ticket) => self.wait_for(ticket, agency, Request::Done),
            Err(e) => self.refuse_store(Action::AgenciaFinalizada, &e),
        }
    }

    /// WINNERS?: a page of the agency's winners after the draw; before it,
    /// NOT_READY and the connection closed.
    pub(super) fn winners(&mut self, offset: u32) {
        let Some(agency) = self.agency() else { return };
        match self.store.winners(agency, offset, WINNERS_ROOM) {
            Ok(WinnersAnswer::NotReady { finished, expected }) => {
                RequestEvent::WinnersNotReady { agency, finished }.debug();
                // The agency asks again later on a new connection: this
                // worker and this connection are released now.
                self.send(&Message::NotReady { finished, expected });
                self.reply.close = true;
            }
            Ok(WinnersAnswer::Ready(page)) => match winners_page(agency, offset, page) {
                Ok(msg) => self.send(&msg),
                Err(reason) => {
                    self.refuse(Action::ConsultaGanadores, ErrorCode::BadOffset, &reason);
                }
            },
            Err(e) => self.refuse_store(Action::ConsultaGanadores, &e),
        }
    }
}
