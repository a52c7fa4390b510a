//! The lobby's view of a connection: what an accepted connection carries
//! while it waits for a worker ([`Accepted`], [`Carried`]), how ready it is
//! to be served ([`Readiness`]), and how long it may take: waiting in the
//! lobby ([`overdue`]) or on a worker ([`deadline`]).
//!
//! The registry keeps the lobby itself (see [`registry`](super::registry));
//! this file holds the rules it applies to each waiting connection, most of
//! them pure so that they are tested without sockets.

use super::handler::Session;
use super::limits::Limits;
use crate::framing;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// An accepted connection waiting for (or owned by) a worker.
#[derive(Debug)]
pub(super) struct Accepted {
    /// Its key in the registry.
    pub id: u64,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub accepted: Instant,
    pub carried: Carried,
}

/// What a connection carries from one worker to the next when it gives
/// its worker back (see [`connection`](super::connection)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Carried {
    pub session: Session,
    /// Bytes of a frame not yet complete.
    pub partial: Vec<u8>,
    /// When that frame started arriving.
    pub frame_started: Option<Instant>,
    pub last_activity: Instant,
    /// No whole frame has arrived yet.
    pub first_frame: bool,
}

impl Carried {
    /// What a connection just accepted at `now` carries: nothing yet.
    pub(super) fn fresh(now: Instant) -> Carried {
        Carried {
            session: Session::default(),
            partial: Vec::new(),
            frame_started: None,
            last_activity: now,
            first_frame: true,
        }
    }

    /// Whether it completed its handshake (it speaks for an agency).
    pub(super) fn authenticated(&self) -> bool {
        self.session.agency.is_some()
    }
}

impl Accepted {
    /// A connection just accepted.
    pub(super) fn new(id: u64, stream: TcpStream, peer: SocketAddr) -> Accepted {
        let now = Instant::now();
        Accepted { id, stream, peer, accepted: now, carried: Carried::fresh(now) }
    }

    /// Whether it completed its handshake (it speaks for an agency).
    pub(super) fn authenticated(&self) -> bool {
        self.carried.authenticated()
    }

    /// Looks at a waiting (non-blocking) connection's next bytes: those it
    /// carries from its last worker, then those the socket holds.
    pub(super) fn readiness(&self) -> Readiness {
        let mut buf = [0_u8; framing::MAX_FRAME_LEN];
        let carried = self.carried.partial.len().min(buf.len());
        buf[..carried].copy_from_slice(&self.carried.partial[..carried]);
        let peeked = match self.stream.peek(&mut buf[carried..]) {
            Ok(0) => return Readiness::Whole,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            // A reset or other error: serving it ends it at once.
            Err(_) => return Readiness::Whole,
        };
        Readiness::of(&buf[..carried + peeked])
    }
}

/// What a peek at a waiting connection's first bytes shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Readiness {
    /// A whole first frame (or the end of the stream, or a frame the
    /// server will refuse): serving it takes no waiting.
    Whole,
    /// Nothing yet. Better than `Partial`: a worker can give a silent
    /// connection back to the lobby (nothing was read), not one whose
    /// first bytes it has read.
    Silent,
    /// Some bytes of a first frame.
    Partial,
}

impl Readiness {
    /// The readiness of a connection whose next bytes are `waiting` (the
    /// stream still open).
    pub(super) fn of(waiting: &[u8]) -> Readiness {
        if waiting.is_empty() {
            return Readiness::Silent;
        }
        match framing::decode(waiting, framing::MAX_FRAME_LEN) {
            Ok(Some(_)) | Err(_) => Readiness::Whole,
            Ok(None) => Readiness::Partial,
        }
    }
}

/// What passing a connection's deadline means. Only its kind is kept: the
/// text is written when the connection is closed for it, not on each of
/// the reads the deadline bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// Bytes of a frame arrived, not all of them, within the frame timeout.
    FrameIncomplete,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// No whole first frame within the first-frame timeout of the accept.
    NoFirstFrame,
    /// No completed handshake within the first-frame timeout of the accept.
    NoHandshake,
}

impl Expiry {
    /// The reason a connection closed for it is given (ERROR `timeout`).
    pub(super) fn reason(self, limits: &Limits) -> String {
        match self {
            Expiry::FrameIncomplete => {
                format!("frame incomplete after {:?}", limits.frame_timeout)
            }
            Expiry::Idle => format!("idle for {:?}", limits.idle_timeout),
            Expiry::NoFirstFrame => {
                format!("no whole first frame within {:?}", limits.first_frame_timeout)
            }
            Expiry::NoHandshake => {
                format!("no handshake within {:?}", limits.first_frame_timeout)
            }
        }
    }
}

/// Why a connection accepted at `accepted` and waiting in the lobby must
/// be closed at `now`, if it must: one first-frame timeout after its accept
/// without a completed handshake, or an idle timeout without a word from
/// an agency.
pub(super) fn overdue(
    accepted: Instant,
    carried: &Carried,
    readiness: Readiness,
    limits: &Limits,
    now: Instant,
) -> Option<String> {
    let expired = if !carried.authenticated() {
        (now - accepted > limits.first_frame_timeout).then_some(
            if carried.first_frame && readiness != Readiness::Whole {
                Expiry::NoFirstFrame
            } else {
                Expiry::NoHandshake
            },
        )
    } else {
        (readiness == Readiness::Silent
            && carried.partial.is_empty()
            && now - carried.last_activity > limits.idle_timeout)
            .then_some(Expiry::Idle)
    };
    expired.map(|expiry| expiry.reason(limits))
}

/// The nearest deadline of a connection on a worker (`mid_frame`: bytes
/// of a frame have arrived, not all of them), and what passing it means:
/// the frame timeout from the frame's first bytes, else the idle timeout
/// from the last read. Until its handshake is complete a connection lives
/// one first-frame timeout from its accept at most, wherever it waits (in
/// the lobby or on a worker): enough for HELLO, CHALLENGE and AUTH, or an
/// ECHO, but a peer without a key (an ECHO every few seconds, a HELLO
/// never followed by AUTH) cannot keep a place from the agencies.
pub(super) fn deadline(
    accepted: Instant,
    carried: &Carried,
    mid_frame: bool,
    limits: &Limits,
) -> (Instant, Expiry) {
    let activity = if mid_frame {
        let started = carried.frame_started.unwrap_or(carried.last_activity);
        (started + limits.frame_timeout, Expiry::FrameIncomplete)
    } else {
        (carried.last_activity + limits.idle_timeout, Expiry::Idle)
    };
    let handshake = accepted + limits.first_frame_timeout;
    if carried.authenticated() || activity.0 <= handshake {
        return activity;
    }
    let expiry = if carried.first_frame { Expiry::NoFirstFrame } else { Expiry::NoHandshake };
    (handshake, expiry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deadline with its reason written out, as a close would give it.
    fn described((at, expiry): (Instant, Expiry), limits: &Limits) -> (Instant, String) {
        (at, expiry.reason(limits))
    }
    use crate::message::{Message, kind};
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            max_connections: 4,
            first_frame_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            max_frame: framing::MAX_FRAME_LEN,
        }
    }

    #[test]
    fn a_whole_frame_comes_first_then_silence_then_some_bytes() {
        let echo = Message::Echo(b"hola".to_vec()).to_bytes().unwrap();
        assert_eq!(Readiness::of(&echo), Readiness::Whole);
        // A frame the server will refuse is served at once, too.
        assert_eq!(Readiness::of(&[kind::ECHO, 0xFF, 0xFF]), Readiness::Whole);
        assert_eq!(Readiness::of(&[]), Readiness::Silent);
        assert_eq!(Readiness::of(&echo[..4]), Readiness::Partial);
        assert_eq!(Readiness::of(&echo[..1]), Readiness::Partial);
        assert!(Readiness::Whole < Readiness::Silent && Readiness::Silent < Readiness::Partial);
    }

    #[test]
    fn a_stranger_waits_one_first_frame_timeout_from_its_accept_at_most() {
        let (l, accepted) = (limits(), Instant::now());
        let mut carried = Carried::fresh(accepted);
        let soon = accepted + Duration::from_millis(900);
        let late = accepted + Duration::from_millis(1100);
        assert_eq!(overdue(accepted, &carried, Readiness::Silent, &l, soon), None);
        assert_eq!(
            overdue(accepted, &carried, Readiness::Partial, &l, late).as_deref(),
            Some("no whole first frame within 1s")
        );
        // Its whole first frame waits to be served: what is missing is
        // the handshake.
        assert_eq!(
            overdue(accepted, &carried, Readiness::Whole, &l, late).as_deref(),
            Some("no handshake within 1s")
        );
        // An ECHO answered, a CHALLENGE sent: still no agency.
        carried.first_frame = false;
        carried.last_activity = soon;
        assert_eq!(
            overdue(accepted, &carried, Readiness::Silent, &l, late).as_deref(),
            Some("no handshake within 1s")
        );
    }

    #[test]
    fn an_agency_waits_one_idle_timeout_from_its_last_word() {
        let (l, accepted) = (limits(), Instant::now());
        let mut carried = Carried::fresh(accepted);
        carried.session.agency = Some(3);
        carried.first_frame = false;
        let later = accepted + Duration::from_secs(11);
        // Long past the first-frame timeout: an agency is not a stranger.
        let idle = overdue(accepted, &carried, Readiness::Silent, &l, later);
        assert_eq!(idle.as_deref(), Some("idle for 10s"));
        carried.last_activity = accepted + Duration::from_secs(5);
        assert_eq!(overdue(accepted, &carried, Readiness::Silent, &l, later), None);
        // Bytes are waiting (in the socket or carried): it is served, not
        // closed, and its worker applies the frame timeout.
        carried.last_activity = accepted;
        assert_eq!(overdue(accepted, &carried, Readiness::Partial, &l, later), None);
        carried.partial = vec![kind::ECHO];
        assert_eq!(overdue(accepted, &carried, Readiness::Silent, &l, later), None);
    }

    #[test]
    fn a_served_connection_meets_the_nearest_of_its_deadlines() {
        let (mut l, accepted) = (limits(), Instant::now());
        let ms = Duration::from_millis;
        let mut carried = Carried::fresh(accepted);
        // A stranger: one first-frame timeout from its accept.
        let stranger = described(deadline(accepted, &carried, false, &l), &l);
        assert_eq!(stranger, (accepted + ms(1000), "no whole first frame within 1s".into()));
        carried.first_frame = false;
        let stranger = described(deadline(accepted, &carried, false, &l), &l);
        assert_eq!(stranger, (accepted + ms(1000), "no handshake within 1s".into()));
        // ... unless a frame it started must be whole sooner.
        l.frame_timeout = ms(500);
        carried.frame_started = Some(accepted + ms(100));
        let frame = described(deadline(accepted, &carried, true, &l), &l);
        assert_eq!(frame, (accepted + ms(600), "frame incomplete after 500ms".into()));
        // An agency: idle from its last word, or a frame timeout from the
        // first bytes of the frame it is sending.
        carried.session.agency = Some(1);
        carried.last_activity = accepted + ms(5000);
        let idle = described(deadline(accepted, &carried, false, &l), &l);
        assert_eq!(idle, (accepted + ms(15_000), "idle for 10s".into()));
        carried.frame_started = Some(accepted + ms(4000));
        let frame = described(deadline(accepted, &carried, true, &l), &l);
        assert_eq!(frame, (accepted + ms(4500), "frame incomplete after 500ms".into()));
    }
}
