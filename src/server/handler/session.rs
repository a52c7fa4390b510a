//! What the server knows about one connection between requests: the
//! agency it speaks for once its handshake is complete, the CHALLENGE it
//! has to answer before that, and whether it already sent DONE.

use crate::auth::Nonce;

/// What the server knows about one connection between requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Session {
    /// The agency this connection speaks for, once its handshake has
    /// completed (HELLO_OK sent). `None` until then, so a connection that
    /// said HELLO but has not authenticated is still a stranger (the
    /// connection limit may evict it).
    pub agency: Option<u32>,
    /// Between HELLO and AUTH: the agency claimed and the nonce sent.
    pub challenge: Option<Challenge>,
    /// Whether this connection already sent DONE.
    pub done_sent: bool,
}

/// A CHALLENGE sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    pub agency: u32,
    pub nonce: Nonce,
}
