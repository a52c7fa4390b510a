//! A reply: the answers to the requests of one read, in order. Some are
//! ready at once; a BATCH's or a DONE's waits for the commit that holds it
//! ([`Awaiting`]), and the worker waits once, for the last of them
//! ([`Reply::finish`]).

use crate::logging::{Action, ActionEvent, LogLine, RequestEvent};
use crate::message::{ErrorCode, Message, encode_error};
use crate::store::{Acked, StoreError, Ticket};
use std::time::Duration;

/// The answers to a run of requests, in order.
#[derive(Debug, Default)]
pub struct Reply {
    pub parts: Vec<Part>,
    /// Close the connection once every part is sent.
    pub close: bool,
    /// `Some(d)`: the connection failed authentication. Read nothing more
    /// from it; send `parts` only once `d` has passed since this reply was
    /// returned, then close it. Set only together with `close`, and then
    /// every part is [`Part::Ready`]. The wait must hold no worker thread
    /// (the peer controls how often it happens), and at shutdown the parts
    /// may go at once.
    pub delay: Option<Duration>,
}

impl Reply {
    /// Whether some answer still waits for a commit that is not resolved
    /// (commits resolve in order: the last one tells).
    pub fn waits_for_commit(&self) -> bool {
        self.parts
            .iter()
            .rev()
            .find_map(|p| match p {
                Part::Awaiting(a) => Some(!a.ticket.is_resolved()),
                Part::Ready(_) => None,
            })
            .unwrap_or(false)
    }

    /// Just an ERROR, then close.
    pub fn refusal(code: ErrorCode, message: &str) -> Reply {
        let mut out = Vec::new();
        encode_error(&mut out, code, message);
        Reply { parts: vec![Part::Ready(out)], close: true, delay: None }
    }

    /// Appends the answers of later requests (read ahead).
    pub fn append(&mut self, later: Reply) {
        self.parts.extend(later.parts);
        self.close |= later.close;
        self.delay = self.delay.or(later.delay);
    }

    /// Waits for every commit the answers need (blocking the calling
    /// worker) and appends the encoded answers to `out`, in request order.
    /// Returns whether the connection must close.
    pub fn finish(self, out: &mut Vec<u8>) -> bool {
        let mut close = self.close;
        for part in self.parts {
            match part {
                Part::Ready(bytes) => out.extend_from_slice(&bytes),
                Part::Awaiting(awaiting) => {
                    if awaiting.wait(out) {
                        // A failed commit answers ERROR; nothing after it.
                        close = true;
                        break;
                    }
                }
            }
        }
        close
    }
}

/// One piece of a reply: bytes ready to send, or an answer that waits for
/// the commit holding a request.
#[derive(Debug)]
pub enum Part {
    Ready(Vec<u8>),
    Awaiting(Awaiting),
}

/// A BATCH or DONE handed to the store, whose answer waits for the commit
/// that holds it.
#[derive(Debug)]
pub struct Awaiting {
    pub(super) agency: u32,
    pub(super) ticket: Ticket,
    pub(super) what: Request,
}

/// What an [`Awaiting`] answer is for.
#[derive(Debug)]
pub(super) enum Request {
    /// A batch of `len` bets; `single` is (document, number) of a one-bet batch.
    Batch {
        len: usize,
        single: Option<(String, u16)>,
    },
    Done,
}

impl Awaiting {
    /// Blocks until the commit holding the request is durable (or failed),
    /// logs the outcome and appends the encoded answer to `out`. Returns
    /// whether the connection must close (a failed commit).
    fn wait(self, out: &mut Vec<u8>) -> bool {
        let agency = self.agency;
        match (&self.what, self.ticket.wait()) {
            (Request::Batch { len, single }, Ok(Acked { next_seq, duplicate })) => {
                let count = *len;
                if duplicate {
                    RequestEvent::BatchDuplicate { count, agency }.info();
                } else {
                    RequestEvent::BatchStored { count, agency }.info();
                    if let Some((document, number)) = single {
                        RequestEvent::BetStored { document, number: *number }.info();
                    }
                }
                encode(out, &Message::Ack { next_seq });
                false
            }
            // A DONE's ticket resolves to the agency's total.
            (Request::Done, Ok(Acked { next_seq: total, .. })) => {
                RequestEvent::AgencyDone { agency, bets: total }.info();
                encode(out, &Message::Ack { next_seq: total });
                false
            }
            (what, Err(e)) => {
                let code = store_error_code(&e);
                match what {
                    Request::Batch { len, .. } => RequestEvent::BatchFailed {
                        count: *len,
                        agency,
                        code: code.name(),
                        error: &e,
                    }
                    .error(),
                    Request::Done => {
                        RequestEvent::DoneFailed { agency, code: code.name(), error: &e }.error()
                    }
                }
                encode_error(out, code, &e.to_string());
                true
            }
        }
    }
}

/// Encodes an answer the server built itself (always encodable).
pub(super) fn encode(out: &mut Vec<u8>, msg: &Message) {
    if let Err(e) = msg.encode_into(out) {
        ActionEvent::Failed { action: Action::Encode, error: &e }.error();
    }
}

/// The ERROR code a store's refusal is answered with.
pub(super) fn store_error_code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::Sequence { .. } => ErrorCode::Sequence,
        StoreError::AlreadyDone => ErrorCode::AlreadyDone,
        StoreError::DoneMismatch { .. } => ErrorCode::DoneMismatch,
        StoreError::Storage(_) => ErrorCode::Storage,
        StoreError::Closed => ErrorCode::ShuttingDown,
    }
}
