//! The rules of the protocol, checked without a socket: frames in, as a
//! connection's worker cuts them out of its buffer; answers out, decoded
//! as an agency reads them; a real [`Store`] on a temporary directory
//! behind the handler.

use super::*;
use crate::auth::{AgencyKey, Nonce, Secret};
use crate::bet::{Bet, WINNING_NUMBER};
use crate::framing::FrameReader;
use crate::message::{Batch, BatchEncoder, ErrorCode, PROTOCOL_VERSION};
use crate::storage::{Location, SyncMode, load_bets};
use chrono::NaiveDate;
use std::path::PathBuf;

/// The secret of the stores these tests open with authentication on.
const SECRET: [u8; 32] = [0x5E; 32];

fn key(agency: u32) -> AgencyKey {
    Secret::from_bytes(SECRET).agency_key(agency)
}

/// A handler over a store of `agencies` on its own temporary directory,
/// closed and removed when the test ends.
struct Fixture {
    dir: PathBuf,
    store: Store,
    handler: Handler,
}

/// What one call of [`Handler::handle`] answered.
#[derive(Debug)]
struct Said {
    answers: Vec<Message>,
    close: bool,
    delay: Option<std::time::Duration>,
}

impl Fixture {
    fn new(name: &str, agencies: u32, auth: ServerAuth) -> Fixture {
        let dir = crate::testing::temp_dir(&format!("handler-{name}"));
        let location = Location::File { path: dir.join("bets.csv"), sync: SyncMode::None };
        let (store, _) = Store::open(&location, agencies).expect("open the store");
        let handler = Handler::new(store.clone(), auth);
        Fixture { dir, store, handler }
    }

    /// Agencies must prove their key.
    fn with_keys(name: &str, agencies: u32) -> Fixture {
        Fixture::new(name, agencies, ServerAuth::Required(Secret::from_bytes(SECRET)))
    }

    /// One read that brought in `msgs`, each a whole frame.
    fn send(&self, session: &mut Session, msgs: &[Message]) -> Said {
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| m.to_bytes().unwrap()).collect();
        self.send_bytes(session, &bytes)
    }

    /// One read that brought in `bytes`: the handler answers, the caller
    /// waits for the commits the answers need, as a worker does.
    fn send_bytes(&self, session: &mut Session, bytes: &[u8]) -> Said {
        let peer = "127.0.0.1:9".parse().unwrap();
        let reply = self.handler.handle(session, peer, bytes);
        let delay = reply.delay;
        let mut out = Vec::new();
        let close = reply.finish(&mut out);
        let mut reader = FrameReader::new(&out[..]);
        let mut answers = Vec::new();
        while let Some(frame) = reader.read_frame().expect("whole answers") {
            answers.push(Message::from_frame(&frame).expect("answers decode"));
        }
        Said { answers, close, delay }
    }

    /// The handshake as `agency` with its key (HELLO, and AUTH if the
    /// handler sends a CHALLENGE); what the last step answered.
    fn handshake(&self, session: &mut Session, agency: u32) -> Said {
        let said = self.send(session, &[hello(agency)]);
        match said.answers[..] {
            [Message::Challenge { nonce }] => {
                self.send(session, &[answer(agency, &nonce, &key(agency))])
            }
            _ => said,
        }
    }

    /// A connection that completed its handshake as `agency`.
    fn session(&self, agency: u32) -> Session {
        let mut session = Session::default();
        let said = self.handshake(&mut session, agency);
        assert!(matches!(said.answers[..], [Message::HelloOk { .. }]), "{said:?}");
        assert_eq!(session.agency, Some(agency));
        session
    }

    /// The rows in `bets.csv`.
    fn stored(&self) -> usize {
        load_bets(&self.dir.join("bets.csv")).map_or(0, |rows| rows.filter(Result::is_ok).count())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.store.close();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hello(agency: u32) -> Message {
    Message::Hello { version: PROTOCOL_VERSION, agency }
}

/// The AUTH answering `nonce` as `agency`, with `key`.
fn answer(agency: u32, nonce: &Nonce, key: &AgencyKey) -> Message {
    Message::Auth { tag: key.tag(nonce, agency, PROTOCOL_VERSION) }
}

/// Bet `i` of `agency`: it wins when `winner`.
fn bet(agency: u32, i: u64, winner: bool) -> Bet {
    Bet {
        agency,
        first_name: "Ana".into(),
        last_name: "Paz".into(),
        document: format!("{agency}{i:07}"),
        birthdate: NaiveDate::from_ymd_opt(1990, 5, 6).unwrap(),
        number: if winner { WINNING_NUMBER } else { 1 },
    }
}

/// A BATCH of `agency`'s bets `first..first + n` (none wins).
fn batch(agency: u32, first: u64, n: u64) -> Message {
    Message::Batch(Batch {
        agency,
        first_seq: first,
        bets: (first..first + n).map(|i| bet(agency, i, false)).collect(),
    })
}

fn ack(next_seq: u64) -> Message {
    Message::Ack { next_seq }
}

/// The reply ends with ERROR `code` and closes the connection, at once.
#[track_caller]
fn assert_refused(said: &Said, code: ErrorCode) {
    match said.answers.last() {
        Some(Message::Error { code: got, message }) => {
            assert_eq!(*got, code, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected ERROR {}, got {other:?}", code.name()),
    }
    assert!(said.close, "ERROR {} closes the connection", code.name());
    assert_eq!(said.delay, None);
}

mod handshake;
mod requests;
