//! The registry of live connections, and the lobby where accepted
//! connections wait for a worker.
//!
//! Every accepted connection is registered with a cloned handle of its
//! socket, so the server can shut it down from outside its worker (at
//! teardown, to evict it, to replace it). What the registry defends
//! against:
//!
//! - **The lobby** — a flood of silent or trickling connections holding
//!   every worker. A free worker picks *which* connection to serve
//!   ([`Connections::take_next`]): one whose next frame is already there
//!   comes before one that is silent or trickling bytes. A connection that
//!   has not completed its handshake one first-frame timeout after its
//!   accept is closed wherever it is, in the lobby without ever holding a
//!   worker. Workers give connections back to the lobby when another has a
//!   whole frame waiting (see [`connection`](super::connection)). So such
//!   a flood costs honest agencies a fraction of a second, and trickling
//!   connections at most one first-frame deadline.
//! - **The eviction** — the same flood filling `SERVER_MAX_CONNECTIONS`.
//!   At the limit, room is made by closing the oldest connection that has
//!   not sent a whole first frame (silent, or a byte at a time) and has not
//!   completed its handshake; an agency at work is never evicted. Only if
//!   there is no such connection is the newcomer refused with ERROR `busy`.
//! - **One session per agency** — one agency's key holding the workers
//!   every other agency needs. When a connection completes its handshake as
//!   an agency that already has a session, the older session is closed
//!   (ERROR `session_replaced`). The newest wins because an agency
//!   reconnects when its connection looks dead to it, and the server may
//!   not have noticed yet; refusing the newcomer would lock the agency out
//!   until the old one timed out.

use super::close::{Close, LAST_WORDS, log_close, refuse, refuse_logged};
use super::limits::Limits;
use super::lobby::{Accepted, Readiness, overdue};
use crate::logging::{Action, ConnectionEvent, LogLine, PEER_FAULT, ServerEvent};
use crate::message::ErrorCode;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Served connections evicted but not yet closed by their workers, at most:
/// how far past `SERVER_MAX_CONNECTIONS` the server may be for a moment.
const EVICTING: usize = 4;

/// A live connection as the registry sees it (a connection itself, with
/// its socket, is an [`Accepted`] in the lobby or on a worker).
struct LiveConnection {
    /// A clone of the connection's socket: shutting it down wakes the
    /// worker blocked on it.
    handle: TcpStream,
    accepted: Instant,
    /// Set once the connection completed its handshake (HELLO, and AUTH
    /// when authentication is on).
    agency: Option<u32>,
    /// A worker owns it (it left the lobby).
    serving: bool,
    /// It failed AUTH and waits in the penalty box for its late answer:
    /// no worker would notice an eviction, so it is never evicted (the
    /// penalty box holds a bounded number and frees each within a second).
    penalized: bool,
    /// Shut down to make room for a newcomer; its worker says so.
    evicted: bool,
    /// Shut down because a newer session of its agency began.
    replaced: bool,
}

/// Why a served connection was closed to make room for a newcomer.
const EVICTED: &str =
    "evicted: connection limit reached and this connection never completed its handshake";

#[derive(Default)]
struct Registry {
    next_id: u64,
    live: HashMap<u64, LiveConnection>,
    /// Connections waiting for a worker, oldest first.
    lobby: VecDeque<Accepted>,
    /// Teardown has begun: nothing more is admitted.
    closing: bool,
    /// When the lobby was last scanned for a whole first frame, and
    /// whether one was found (see [`Connections::whole_waiting`]).
    last_scan: Option<(Instant, bool)>,
}

/// How long one scan of the lobby answers [`Connections::whole_waiting`].
const SCAN_REUSE: Duration = Duration::from_millis(20);

/// Every live connection, and the lobby of those waiting for a worker.
#[derive(Default)]
pub(super) struct Connections {
    registry: Mutex<Registry>,
    /// Signalled whenever a connection is removed (teardown waits on it).
    removed: Condvar,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Plain bookkeeping; a panic cannot leave it half-done.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection and puts it in the lobby, making room at
    /// the limit by evicting one that has not sent a whole first frame.
    /// Returns `false` if it was refused (already answered and closed).
    pub(super) fn admit(&self, stream: TcpStream, peer: SocketAddr, limits: &Limits) -> bool {
        // In the lobby a socket is non-blocking, so that peeking at it (and
        // refusing it) never blocks the accept loop; its worker makes it
        // blocking again.
        let prepared = stream
            .set_nonblocking(true)
            .and_then(|()| stream.set_nodelay(true))
            .and_then(|()| stream.try_clone());
        let handle = match prepared {
            Ok(handle) => handle,
            Err(e) => {
                ServerEvent::AcceptFailed { peer, error: &e }.error();
                return false;
            }
        };
        let mut reg = self.lock();
        if reg.closing {
            drop(reg);
            log_close(peer, None, &Close::Shutdown);
            return false;
        }
        if reg.live.len() >= limits.max_connections && !reg.evict_one() {
            drop(reg);
            let reason =
                format!("too many connections (limit {}); try again later", limits.max_connections);
            ConnectionEvent::Refused {
                action: Action::Accept,
                peer,
                code: ErrorCode::Busy.name(),
                error: &reason,
            }
            .log(PEER_FAULT);
            refuse(stream, ErrorCode::Busy, &reason);
            return false;
        }
        let id = reg.next_id;
        reg.next_id += 1;
        let conn = Accepted::new(id, stream, peer);
        reg.live.insert(
            id,
            LiveConnection {
                handle,
                accepted: conn.accepted,
                agency: None,
                serving: false,
                penalized: false,
                evicted: false,
                replaced: false,
            },
        );
        reg.lobby.push_back(conn);
        ServerEvent::Accepted { peer }.debug();
        true
    }

    /// The next connection a free worker should serve: the oldest with a
    /// whole frame waiting, else the oldest silent one (its worker can give
    /// it back), else the oldest with some bytes. Waiting connections past
    /// their deadline are closed on the way: one first-frame timeout after
    /// the accept without a completed handshake, or an idle timeout
    /// without a word from an agency. `None` when the lobby is empty.
    pub(super) fn take_next(&self, limits: &Limits) -> Option<Accepted> {
        let mut reg = self.lock();
        let now = Instant::now();
        let mut best: Option<(Readiness, usize)> = None;
        let mut expired = Vec::new();
        let mut i = 0;
        while i < reg.lobby.len() {
            let waiting = &reg.lobby[i];
            let readiness = waiting.readiness();
            if let Some(reason) =
                overdue(waiting.accepted, &waiting.carried, readiness, limits, now)
            {
                if let Some(gone) = reg.lobby.remove(i) {
                    expired.push((gone, ErrorCode::Timeout, reason));
                }
                continue;
            }
            if best.is_none_or(|(r, _)| readiness < r) {
                best = Some((readiness, i));
            }
            if readiness == Readiness::Whole {
                break;
            }
            i += 1;
        }
        let chosen = best.and_then(|(_, i)| reg.lobby.remove(i));
        if let Some(entry) = chosen.as_ref().and_then(|c| reg.live.get_mut(&c.id)) {
            entry.serving = true;
        }
        drop(reg);
        self.close_waiting(expired);
        chosen
    }

    /// Answers ERROR to connections taken out of the lobby and closes them,
    /// outside the registry's lock. Each stays registered until its socket
    /// is closed, so the connection cap counts every socket still open.
    fn close_waiting(&self, closing: Vec<(Accepted, ErrorCode, String)>) {
        if closing.is_empty() {
            return;
        }
        let mut ids = Vec::with_capacity(closing.len());
        for (conn, code, reason) in closing {
            ids.push(conn.id);
            refuse_logged(conn.stream, conn.peer, conn.carried.session.agency, code, reason);
        }
        let mut reg = self.lock();
        for id in ids {
            reg.live.remove(&id);
        }
        drop(reg);
        self.removed.notify_all();
    }

    /// Puts back in the lobby a connection whose worker gave it up
    /// (it had sent nothing; another had a whole frame waiting).
    pub(super) fn requeue(&self, conn: Accepted) {
        let mut reg = self.lock();
        let agency = conn.carried.session.agency;
        if reg.closing {
            drop(reg);
            log_close(conn.peer, agency, &Close::Shutdown);
            self.hang_up(conn.id, conn.stream, &[]);
            return;
        }
        if reg.live.get(&conn.id).is_some_and(|e| e.replaced) {
            drop(reg);
            let reason = replaced(agency);
            self.close_waiting(vec![(conn, ErrorCode::SessionReplaced, reason)]);
            return;
        }
        if let Some(entry) = reg.live.get_mut(&conn.id) {
            entry.serving = false;
        }
        reg.lobby.push_back(conn);
    }

    /// Whether a connection in the lobby has a whole first frame waiting.
    /// Workers holding silent connections ask often; one scan of the lobby
    /// answers them all for [`SCAN_REUSE`].
    pub(super) fn whole_waiting(&self) -> bool {
        let mut reg = self.lock();
        let now = Instant::now();
        if let Some((at, found)) = reg.last_scan
            && now - at < SCAN_REUSE
        {
            return found;
        }
        let found = reg.lobby.iter().any(|c| c.readiness() == Readiness::Whole);
        reg.last_scan = Some((now, found));
        found
    }

    /// Records that a connection failed AUTH and went to the penalty box.
    pub(super) fn set_penalized(&self, id: u64) {
        if let Some(entry) = self.lock().live.get_mut(&id) {
            entry.penalized = true;
        }
    }

    /// Records the agency a connection completed its handshake as, and
    /// closes the agency's older session if it has one (see the module
    /// doc): at once if it waits in the lobby, through its worker if one
    /// serves it (its read side is shut down; it answers what it has, then
    /// ERROR `session_replaced`).
    pub(super) fn set_agency(&self, id: u64, agency: u32) {
        let mut reg = self.lock();
        let older: Vec<u64> = reg
            .live
            .iter()
            .filter(|(other, e)| **other != id && e.agency == Some(agency) && !e.replaced)
            .map(|(other, _)| *other)
            .collect();
        let mut waiting = Vec::new();
        for old in older {
            let in_lobby = reg.lobby.iter().position(|c| c.id == old);
            if let Some(conn) = in_lobby.and_then(|at| reg.lobby.remove(at)) {
                waiting.push((conn, ErrorCode::SessionReplaced, replaced(Some(agency))));
            }
            if let Some(entry) = reg.live.get_mut(&old) {
                entry.replaced = true;
                if in_lobby.is_none() {
                    let _ = entry.handle.shutdown(Shutdown::Read);
                }
            }
        }
        if let Some(entry) = reg.live.get_mut(&id) {
            entry.agency = Some(agency);
        }
        drop(reg);
        self.close_waiting(waiting);
    }

    /// Whether the server shut the connection down (to make room for
    /// another, or for a newer session of its agency), and how it ends.
    pub(super) fn ended_by_server(&self, id: u64) -> Option<Close> {
        let reg = self.lock();
        let entry = reg.live.get(&id)?;
        if entry.replaced {
            Some(Close::Fault(ErrorCode::SessionReplaced, replaced(entry.agency)))
        } else if entry.evicted {
            Some(Close::Fault(ErrorCode::Busy, EVICTED.into()))
        } else {
            None
        }
    }

    /// Forgets a closed connection.
    pub(super) fn remove(&self, id: u64) {
        self.lock().live.remove(&id);
        self.removed.notify_all();
    }

    /// Ends connection `id`: sends `last` (its last ERROR, if any; best
    /// effort within [`LAST_WORDS`]: the peer may be gone or not reading),
    /// forgets it, then shuts its socket. Out of the registry before the
    /// peer can see the close: a peer that reconnects at once must find
    /// the room it left. The caller has logged why.
    pub(super) fn hang_up(&self, id: u64, mut stream: TcpStream, last: &[u8]) {
        if !last.is_empty() {
            let _ = stream.set_write_timeout(Some(LAST_WORDS));
            let _ = stream.write_all(last);
        }
        self.remove(id);
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Agencies with a connection open right now.
    pub(super) fn active_agencies(&self) -> usize {
        let reg = self.lock();
        let mut agencies: Vec<u32> = reg.live.values().filter_map(|e| e.agency).collect();
        agencies.sort_unstable();
        agencies.dedup();
        agencies.len()
    }

    /// Teardown: admits nothing more, closes the connections still waiting
    /// for a worker (each close logged) and shuts down the reading side of
    /// every served one, so that its worker's blocked read returns, its
    /// answers in flight still go out, and it closes. Returns how many
    /// connections were open.
    pub(super) fn close_all(&self) -> usize {
        let mut reg = self.lock();
        reg.closing = true;
        let count = reg.live.len();
        let lobby: Vec<Accepted> = reg.lobby.drain(..).collect();
        for conn in &lobby {
            reg.live.remove(&conn.id);
        }
        for entry in reg.live.values() {
            let _ = entry.handle.shutdown(Shutdown::Read);
        }
        drop(reg);
        for conn in lobby {
            log_close(conn.peer, None, &Close::Shutdown);
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        self.removed.notify_all();
        count
    }

    /// Waits up to `grace` for every connection to close; then shuts down
    /// both directions of those left (a peer that does not read its
    /// answers), so no worker stays blocked.
    pub(super) fn drain(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut reg = self.lock();
        while !reg.live.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                for entry in reg.live.values() {
                    let _ = entry.handle.shutdown(Shutdown::Both);
                }
                return;
            }
            reg =
                self.removed.wait_timeout(reg, left).map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
    }
}

impl Registry {
    /// Makes room by closing the oldest connection that has neither
    /// completed its handshake nor sent a whole first frame: first among
    /// those waiting in the lobby, then among those a worker serves.
    fn evict_one(&mut self) -> bool {
        let waiting = self
            .lobby
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.authenticated() && c.readiness() != Readiness::Whole)
            .min_by_key(|(_, c)| c.accepted)
            .map(|(i, _)| i);
        if let Some(conn) = waiting.and_then(|i| self.lobby.remove(i)) {
            self.live.remove(&conn.id);
            refuse_logged(conn.stream, conn.peer, None, ErrorCode::Busy, EVICTED.into());
            return true;
        }
        // A served connection whose handshake is not complete: silent,
        // trickling, or between HELLO and AUTH (its worker ends that within
        // a first-frame timeout anyway). Its worker notices at once, but
        // until it has closed it the connection still counts: at most
        // EVICTING of them at a time, or a flood of newcomers evicting one
        // another would take the server as far past the cap as it is fast.
        if self.live.values().filter(|e| e.evicted).count() >= EVICTING {
            return false;
        }
        let served = self
            .live
            .iter_mut()
            .filter(|(_, e)| e.serving && e.agency.is_none() && !e.evicted && !e.penalized)
            .min_by_key(|(_, e)| e.accepted);
        if let Some((_, entry)) = served {
            // Its worker wakes up, sees the flag, answers ERROR busy and
            // closes; it still counts until then.
            entry.evicted = true;
            let _ = entry.handle.shutdown(Shutdown::Read);
            return true;
        }
        false
    }
}

/// Why a session was closed for a newer one of its agency.
fn replaced(agency: Option<u32>) -> String {
    let agency = agency.map_or_else(|| "-".to_owned(), |a| a.to_string());
    format!("replaced by a newer session of agency {agency}")
}

#[cfg(test)]
mod tests {
    //! The registry's rules on loopback sockets: the registry keeps real
    //! sockets (it peeks at them, refuses and shuts them down), so each test
    //! plays the peers' side of a few local connections.

    use super::*;
    use crate::framing::{self, FrameReader};
    use crate::message::Message;
    use std::net::TcpListener;

    fn limits(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            first_frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_frame: framing::MAX_FRAME_LEN,
        }
    }

    /// Loopback connections: the peer's end, the server's end and its
    /// address as the server sees it.
    struct Peers(TcpListener);

    impl Peers {
        fn new() -> Peers {
            Peers(TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
        }

        /// Connects a peer and admits its connection; the peer's end.
        fn admit(&self, connections: &Connections, limits: &Limits) -> (TcpStream, bool) {
            let peer = TcpStream::connect(self.0.local_addr().unwrap()).unwrap();
            let (stream, addr) = self.0.accept().unwrap();
            (peer, connections.admit(stream, addr, limits))
        }
    }

    /// The ERROR the server sent a peer before closing, if any.
    fn last_words(peer: &TcpStream) -> Option<ErrorCode> {
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        match FrameReader::new(peer).read_frame() {
            Ok(Some(frame)) => match Message::from_frame(&frame) {
                Ok(Message::Error { code, .. }) => Some(code),
                other => panic!("{other:?}"),
            },
            _ => None,
        }
    }

    /// Waits until every connection in the lobby shows `want` to a peek
    /// (bytes sent on loopback arrive at once, but not synchronously).
    fn lobby_shows(connections: &Connections, want: &[Readiness]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let shows: Vec<Readiness> =
                connections.lock().lobby.iter().map(Accepted::readiness).collect();
            if shows == want {
                return;
            }
            assert!(Instant::now() < deadline, "lobby shows {shows:?}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn at_the_limit_a_stranger_makes_room_and_agencies_never_do() {
        let (peers, connections, limits) = (Peers::new(), Connections::default(), limits(2));
        let (first, _) = peers.admit(&connections, &limits);
        let (_second, _) = peers.admit(&connections, &limits);
        // The oldest stranger makes room for the newcomer.
        let (_third, admitted) = peers.admit(&connections, &limits);
        assert!(admitted);
        assert_eq!(last_words(&first), Some(ErrorCode::Busy));
        assert_eq!(connections.lock().live.len(), 2);
        // Both complete their handshakes: nobody left to evict.
        for agency in [1, 2] {
            let mut conn = connections.take_next(&limits).expect("a waiting connection");
            conn.carried.session.agency = Some(agency);
            connections.set_agency(conn.id, agency);
            connections.requeue(conn);
        }
        let (refused, admitted) = peers.admit(&connections, &limits);
        assert!(!admitted);
        assert_eq!(last_words(&refused), Some(ErrorCode::Busy));
        assert_eq!(connections.active_agencies(), 2);
    }

    #[test]
    fn a_served_stranger_is_evicted_through_its_worker() {
        let (peers, connections, limits) = (Peers::new(), Connections::default(), limits(1));
        let (_first, _) = peers.admit(&connections, &limits);
        let served = connections.take_next(&limits).expect("a waiting connection");
        let (_second, admitted) = peers.admit(&connections, &limits);
        assert!(admitted);
        // Its worker learns it from its socket and from the registry.
        let how = connections.ended_by_server(served.id);
        assert_eq!(how, Some(Close::Fault(ErrorCode::Busy, EVICTED.into())));
    }

    #[test]
    fn a_new_session_of_an_agency_closes_the_older_one() {
        let (peers, connections, limits) = (Peers::new(), Connections::default(), limits(8));
        let hello = Message::Echo(b"hola".to_vec()).to_bytes().unwrap();
        // An older session waiting in the lobby is refused at once.
        let (waiting, _) = peers.admit(&connections, &limits);
        let mut old = connections.take_next(&limits).unwrap();
        old.carried.session.agency = Some(7);
        connections.set_agency(old.id, 7);
        connections.requeue(old);
        let (mut newer, _) = peers.admit(&connections, &limits);
        std::io::Write::write_all(&mut newer, &hello).unwrap();
        lobby_shows(&connections, &[Readiness::Silent, Readiness::Whole]);
        let new = connections.take_next(&limits).unwrap();
        connections.set_agency(new.id, 7);
        assert_eq!(last_words(&waiting), Some(ErrorCode::SessionReplaced));
        // An older session on a worker is told through its worker.
        let (_newest, _) = peers.admit(&connections, &limits);
        let newest = connections.take_next(&limits).unwrap();
        connections.set_agency(newest.id, 7);
        let reason = "replaced by a newer session of agency 7".to_owned();
        let how = connections.ended_by_server(new.id);
        assert_eq!(how, Some(Close::Fault(ErrorCode::SessionReplaced, reason)));
        assert_eq!(connections.ended_by_server(newest.id), None);
        assert_eq!(connections.active_agencies(), 1);
    }

    #[test]
    fn a_free_worker_takes_a_whole_frame_then_silence_then_some_bytes() {
        let (peers, connections, limits) = (Peers::new(), Connections::default(), limits(8));
        let echo = Message::Echo(b"hola".to_vec()).to_bytes().unwrap();
        let (_silent, _) = peers.admit(&connections, &limits);
        let (mut trickling, _) = peers.admit(&connections, &limits);
        std::io::Write::write_all(&mut trickling, &echo[..2]).unwrap();
        let (mut ready, _) = peers.admit(&connections, &limits);
        std::io::Write::write_all(&mut ready, &echo).unwrap();
        use Readiness::{Partial, Silent, Whole};
        lobby_shows(&connections, &[Silent, Partial, Whole]);
        assert!(connections.whole_waiting());
        let order: Vec<u64> =
            std::iter::from_fn(|| connections.take_next(&limits)).map(|c| c.id).collect();
        assert_eq!(order, [2, 0, 1]);
    }

    #[test]
    fn strangers_past_their_first_frame_timeout_are_closed_in_the_lobby() {
        let (peers, connections) = (Peers::new(), Connections::default());
        let mut limits = limits(8);
        limits.first_frame_timeout = Duration::from_millis(1);
        let (stranger, _) = peers.admit(&connections, &limits);
        std::thread::sleep(Duration::from_millis(2));
        assert!(connections.take_next(&limits).is_none());
        assert_eq!(last_words(&stranger), Some(ErrorCode::Timeout));
        assert!(connections.lock().live.is_empty());
    }

    #[test]
    fn teardown_admits_nothing_and_counts_every_connection() {
        let (peers, connections, limits) = (Peers::new(), Connections::default(), limits(8));
        let (_served, _) = peers.admit(&connections, &limits);
        let served = connections.take_next(&limits).unwrap();
        let (waiting, _) = peers.admit(&connections, &limits);
        assert_eq!(connections.close_all(), 2);
        // The one waiting is closed without a word; the served one is its
        // worker's to close.
        assert_eq!(last_words(&waiting), None);
        assert_eq!(connections.lock().live.len(), 1);
        let (_late, admitted) = peers.admit(&connections, &limits);
        assert!(!admitted);
        connections.remove(served.id);
        connections.drain(Duration::from_secs(1));
        assert!(connections.lock().live.is_empty());
    }
}
