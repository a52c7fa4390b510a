//! One call of [`Handler::handle`](super::Handler::handle): the requests
//! of one read against one connection's [`Session`], and the [`Reply`]
//! they build. What each request does is in [`handshake`](super::handshake)
//! (HELLO, AUTH) and [`requests`](super::requests) (BATCH, DONE, WINNERS?);
//! here are what they share: sending, refusing, and the dispatch.

use super::reply::{Awaiting, Part, Reply, Request, encode, store_error_code};
use super::session::Session;
use crate::auth::ServerAuth;
use crate::logging::{Action, ConnectionEvent, LogLine, PEER_FAULT};
use crate::message::{ErrorCode, Message};
use crate::store::{Store, StoreError, Ticket};
use std::net::SocketAddr;

/// See the module doc.
pub(super) struct Exchange<'a> {
    pub(super) store: &'a Store,
    pub(super) server_auth: &'a ServerAuth,
    pub(super) session: &'a mut Session,
    pub(super) peer: SocketAddr,
    pub(super) reply: Reply,
}

impl Exchange<'_> {
    /// Appends an answer that is ready now.
    pub(super) fn send(&mut self, msg: &Message) {
        if let Some(Part::Ready(bytes)) = self.reply.parts.last_mut() {
            encode(bytes, msg);
        } else {
            let mut bytes = Vec::new();
            encode(&mut bytes, msg);
            self.reply.parts.push(Part::Ready(bytes));
        }
    }

    /// Appends the answer of a request handed to the store: it waits for
    /// the commit holding it.
    pub(super) fn wait_for(&mut self, ticket: Ticket, agency: u32, what: Request) {
        self.reply.parts.push(Part::Awaiting(Awaiting { agency, ticket, what }));
    }

    /// Answers ERROR, logs why, and closes the connection.
    pub(super) fn refuse(&mut self, action: Action, code: ErrorCode, reason: &str) {
        ConnectionEvent::Refused { action, peer: self.peer, code: code.name(), error: &reason }
            .log(PEER_FAULT);
        self.fail(code, reason.to_owned());
    }

    /// Answers ERROR and closes the connection (the caller logged why).
    pub(super) fn fail(&mut self, code: ErrorCode, message: String) {
        self.send(&Message::Error { code, message });
        self.reply.close = true;
    }

    /// Answers a store's refusal with its ERROR, logs it, and closes.
    pub(super) fn refuse_store(&mut self, action: Action, e: &StoreError) {
        self.refuse(action, store_error_code(e), &e.to_string());
    }

    /// The agency of this connection, or an ERROR if it has not completed
    /// the handshake.
    pub(super) fn agency(&mut self) -> Option<u32> {
        if self.session.agency.is_none() {
            if self.session.challenge.is_some() {
                self.refuse(
                    Action::Request,
                    ErrorCode::Unauthorized,
                    "AUTH must succeed before any other request",
                );
            } else {
                self.refuse(Action::Request, ErrorCode::HelloRequired, "HELLO must come first");
            }
        }
        self.session.agency
    }

    /// Handles one request, whatever it is (the caller decodes a BATCH in
    /// place and calls [`Exchange::batch`] itself).
    pub(super) fn other(&mut self, msg: Message) {
        match msg {
            Message::Echo(bytes) => self.send(&Message::Echo(bytes)),
            Message::Bye => {
                ConnectionEvent::Bye { peer: self.peer }.debug();
                self.reply.close = true;
            }
            Message::Hello { version, agency } => self.hello(version, agency),
            Message::Done { total } => self.done(total),
            Message::WinnersQuery { offset } => self.winners(offset),
            Message::Batch(batch) => self.batch(&batch.view()),
            Message::Auth { tag } => self.auth(&tag),
            Message::HelloOk { .. }
            | Message::Challenge { .. }
            | Message::Ack { .. }
            | Message::Error { .. }
            | Message::Winners { .. }
            | Message::NotReady { .. } => {
                let reason =
                    format!("message type 0x{:02x} is only sent by the server", msg.kind());
                self.refuse(Action::Request, ErrorCode::UnexpectedMessage, &reason);
            }
        }
    }
}
