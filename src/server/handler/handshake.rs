//! The handshake: HELLO → CHALLENGE → AUTH → HELLO_OK, or HELLO →
//! HELLO_OK with `SERVER_AUTH=off`. Until it completes a connection is
//! served ECHO and nothing else (see [`Exchange::agency`]).

use super::exchange::Exchange;
use super::session::Challenge;
use crate::auth::{self, ServerAuth};
use crate::logging::{Action, ConnectionEvent, LogLine, PEER_FAULT};
use crate::message::{ErrorCode, Message, PROTOCOL_VERSION};
use std::time::Duration;

/// How long the answer to a failed AUTH is held back before it is sent and
/// the connection closed. Slows a peer guessing keys one connection after
/// another; an honest agency with the right key never meets it.
pub const AUTH_FAIL_DELAY: Duration = Duration::from_secs(1);

impl Exchange<'_> {
    /// HELLO: the agency this connection claims to speak for. Answered
    /// CHALLENGE (or HELLO_OK with `SERVER_AUTH=off`) if the claim can be
    /// checked: one HELLO per connection, this protocol's version, an
    /// agency of this lottery.
    pub(super) fn hello(&mut self, version: u8, agency: u32) {
        if let Some(current) = self.session.agency.or(self.session.challenge.map(|c| c.agency)) {
            let reason = format!("this connection already said HELLO as agency {current}");
            return self.refuse(Action::Hello, ErrorCode::DuplicateHello, &reason);
        }
        if version != PROTOCOL_VERSION {
            let reason = format!(
                "protocol version {version} not supported (this server speaks {PROTOCOL_VERSION})"
            );
            return self.refuse(Action::Hello, ErrorCode::UnsupportedVersion, &reason);
        }
        let agencies = self.store.agencies();
        if agency == 0 || agency > agencies {
            let reason = format!("agency {agency} is outside 1..={agencies}");
            return self.refuse(Action::Hello, ErrorCode::UnknownAgency, &reason);
        }
        if *self.server_auth == ServerAuth::Off {
            return self.welcome(agency);
        }
        match auth::nonce() {
            Ok(nonce) => {
                self.session.challenge = Some(Challenge { agency, nonce });
                ConnectionEvent::Challenged { agency, peer: self.peer }.debug();
                self.send(&Message::Challenge { nonce });
            }
            Err(e) => {
                ConnectionEvent::ChallengeFailed { agency, peer: self.peer, error: &e }.error();
                self.fail(ErrorCode::Busy, "no randomness for a challenge; try again".into());
            }
        }
    }

    /// AUTH: the answer to this connection's CHALLENGE.
    pub(super) fn auth(&mut self, tag: &[u8]) {
        let Some(Challenge { agency, nonce }) = self.session.challenge.take() else {
            return match self.session.agency {
                Some(current) => {
                    let reason = format!(
                        "this connection already speaks for agency {current}; no CHALLENGE to answer"
                    );
                    self.refuse(Action::Auth, ErrorCode::DuplicateHello, &reason)
                }
                None => {
                    self.refuse(Action::Auth, ErrorCode::HelloRequired, "HELLO must come first")
                }
            };
        };
        let ServerAuth::Required(secret) = &self.server_auth else {
            // A challenge is only ever sent when authentication is required.
            return self.refuse(
                Action::Auth,
                ErrorCode::UnexpectedMessage,
                "no CHALLENGE to answer",
            );
        };
        if secret.agency_key(agency).verify(&nonce, agency, PROTOCOL_VERSION, tag) {
            return self.welcome(agency);
        }
        ConnectionEvent::AuthRefused { agency, peer: self.peer }.log(PEER_FAULT);
        self.fail(ErrorCode::Unauthorized, format!("AUTH does not prove agency {agency}'s key"));
        self.reply.delay = Some(AUTH_FAIL_DELAY);
    }

    /// The handshake is complete: this connection speaks for `agency`,
    /// told where to resume (HELLO_OK).
    pub(super) fn welcome(&mut self, agency: u32) {
        match self.store.position(agency) {
            Ok((next_seq, done)) => {
                self.session.agency = Some(agency);
                ConnectionEvent::Welcomed { agency, peer: self.peer, next_seq, done }.info();
                self.send(&Message::HelloOk { next_seq, done });
            }
            Err(e) => self.refuse_store(Action::Hello, &e),
        }
    }
}
