//! What the server does with each request of a connection, without the
//! socket: frames in, encoded answers out, plus whether to close.
//!
//! The connection's worker calls [`Handler::handle`] with every whole frame
//! one read brought in. A BATCH or DONE is handed to the store at once and
//! its answer becomes an [`Awaiting`] part; the worker then blocks once, on
//! the last commit it needs ([`Reply::finish`]), and sends every answer in
//! one write. So the batches of one read — and of every connection reading
//! at the same time — share one commit and one `fsync`. A WINNERS? before
//! the draw is answered NOT_READY at once and the connection closed: a
//! worker never waits for the draw.
//!
//! The handshake lives here too: HELLO → CHALLENGE → AUTH → HELLO_OK (or
//! HELLO → HELLO_OK with `SERVER_AUTH=off`). Until it completes a
//! connection is served ECHO and nothing else; a failed AUTH is answered
//! only after [`AUTH_FAIL_DELAY`] (see [`Reply::delay`]).
//!
//! - `session.rs`: what the server knows about a connection between reads;
//! - `exchange.rs`: one call of [`Handler::handle`] — sending, refusing,
//!   and which request goes where;
//! - `handshake.rs`: HELLO and AUTH; `requests.rs`: BATCH, DONE, WINNERS?;
//! - `reply.rs`: the answers, and the wait for the commit they need.
//!
//! Its unit tests (`tests/`) check every rule of the protocol against a
//! store on a temporary directory, without a socket.

mod exchange;
mod handshake;
mod reply;
mod requests;
mod session;

pub use handshake::AUTH_FAIL_DELAY;
pub use reply::{Awaiting, Part, Reply};
pub use requests::WINNERS_ROOM;
pub use session::{Challenge, Session};

use crate::auth::ServerAuth;
use crate::framing::{self, MAX_FRAME_LEN};
use crate::logging::Action;
use crate::message::{BatchView, Message, kind};
use crate::store::Store;
use exchange::Exchange;
use std::net::SocketAddr;

/// Handles requests against the shared store.
#[derive(Debug, Clone)]
pub struct Handler {
    store: Store,
    auth: ServerAuth,
}

impl Handler {
    /// A handler for `store`; `auth` says whether agencies must prove
    /// their key (HELLO → CHALLENGE → AUTH) or not (`ServerAuth::Off`).
    pub fn new(store: Store, auth: ServerAuth) -> Self {
        Handler { store, auth }
    }

    /// Handles the whole frames in `frames` (as the connection's worker cut
    /// them out of its buffer), in order, for the connection whose state is
    /// `session`. Stops at the first request that closes the connection.
    /// Does not wait for commits (the caller does, once, through
    /// [`Reply::finish`]); blocks only while the store's pending group is
    /// full.
    pub fn handle(&self, session: &mut Session, peer: SocketAddr, mut frames: &[u8]) -> Reply {
        let mut exchange = Exchange {
            store: &self.store,
            server_auth: &self.auth,
            session,
            peer,
            reply: Reply::default(),
        };
        while let Ok(Some(frame)) = framing::decode(frames, MAX_FRAME_LEN) {
            frames = &frames[frame.len..];
            // Batches are decoded in place (no copy of each bet's strings).
            let decoded = if frame.kind == kind::BATCH {
                BatchView::decode(frame.payload).map(|view| exchange.batch(&view))
            } else {
                Message::decode(frame.kind, frame.payload).map(|msg| exchange.other(msg))
            };
            if let Err(e) = decoded {
                exchange.refuse(Action::Decode, e.code(), &e.to_string());
            }
            if exchange.reply.close {
                break;
            }
        }
        exchange.reply
    }
}

#[cfg(test)]
mod tests;
