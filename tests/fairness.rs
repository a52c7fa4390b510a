//! Fair service whatever one agency does: whoever holds one agency's key
//! opens as many sessions as the server gives it, keeps them alive with an
//! ECHO now and then, and parks connections that say HELLO and nothing
//! more, reopening each as soon as the server closes it (a buggy agency
//! started many times over does the same by accident). Another agency must
//! still be served within a few seconds, on a small pool and on the
//! defaults; and the agency whose key was abused still finishes once its
//! real client runs.

mod support;

use lottery::auth::AgencyKey;
use lottery::framing::FrameReader;
use lottery::message::{Message, PROTOCOL_VERSION};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::*;

/// The bound the issue sets: "served within a few seconds".
const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// One connection of the hog, which never panics: the server may refuse,
/// close or replace it at any moment, and then it simply starts again.
struct HogConnection {
    stream: TcpStream,
    reader: FrameReader<TcpStream>,
}

impl HogConnection {
    fn open(addr: SocketAddr) -> Option<HogConnection> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let reader = FrameReader::new(stream.try_clone().ok()?);
        Some(HogConnection { stream, reader })
    }

    fn send(&mut self, msg: &Message) -> Option<()> {
        let bytes = msg.to_bytes().ok()?;
        self.stream.write_all(&bytes).ok()
    }

    fn recv(&mut self) -> Option<Message> {
        let frame = self.reader.read_frame().ok()??;
        Message::from_frame(&frame).ok()
    }

    /// HELLO and AUTH with the stolen key; `Some` once the session is open.
    fn session(addr: SocketAddr, key: &AgencyKey) -> Option<HogConnection> {
        let mut conn = HogConnection::open(addr)?;
        conn.send(&Message::Hello { version: PROTOCOL_VERSION, agency: 1 })?;
        let Message::Challenge { nonce } = conn.recv()? else {
            return None;
        };
        conn.send(&Message::Auth { tag: key.tag(&nonce, 1, PROTOCOL_VERSION) })?;
        matches!(conn.recv()?, Message::HelloOk { .. }).then_some(conn)
    }
}

/// The hog: `sessions` threads each holding a session of agency 1 (alive
/// with an ECHO every 300 ms), `parked` threads each holding a connection
/// that said HELLO and nothing more; every one reopens its connection the
/// moment the server ends it. It counts the connections it opened.
fn hog(addr: SocketAddr, sessions: usize, parked: usize) -> Swarm {
    Swarm::new()
        .spawn(sessions, move |_, control| {
            let key = agency_key(1);
            while !control.stopped() {
                let Some(mut conn) = HogConnection::session(addr, &key) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                control.count();
                while !control.stopped() {
                    std::thread::sleep(Duration::from_millis(300));
                    let echo = Message::Echo(b"still here".to_vec());
                    if conn.send(&echo).is_none() || conn.recv() != Some(echo) {
                        break;
                    }
                }
            }
        })
        .spawn(parked, move |_, control| {
            while !control.stopped() {
                let Some(mut conn) = HogConnection::open(addr) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let hello = Message::Hello { version: PROTOCOL_VERSION, agency: 1 };
                if conn.send(&hello).is_none() {
                    continue;
                }
                control.count();
                // Read the CHALLENGE (or an ERROR) and never answer, until
                // the server gives up on it.
                while conn.recv().is_some() && !control.stopped() {}
            }
        })
}

/// Agency 2 ingests while agency 1's key is abused; then the hog stops and
/// agency 1's own client runs, and the lottery ends as usual.
fn hogged_run(name: &str, settings: &[(&str, &str)], sessions: usize, parked: usize) {
    let dir = TempDir::new(name);
    let files = generate(dir.path(), 2, |_| 2_000);
    let mut env = vec![("SERVER_AGENCIES", "2")];
    env.extend_from_slice(settings);
    let mut server = Server::start(dir.path(), &env);
    let hog = hog(server.addr, sessions, parked);
    // The hog holds what it can before the honest agency starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hog.control.counted() < sessions.min(4) {
        assert!(Instant::now() < deadline, "the hog never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    let honest = spawn_agencies(server.addr, &files[1..], &[]);
    server.log.wait_for(
        "action: agencia_finalizada | result: success | agencia: 2",
        Duration::from_secs(60),
    );
    let served = start.elapsed();
    let opened = hog.stop();
    println!(
        "{name}: agency 2 (2,000 bets) finished in {served:?} while agency 1's key opened {opened} connections ({sessions} sessions, {parked} parked HELLOs)"
    );
    assert!(
        served <= SERVED_WITHIN,
        "agency 2 took {served:?} to be served (bound {SERVED_WITHIN:?})"
    );
    let mut runs = spawn_agencies(server.addr, &files[..1], &[]);
    runs.extend(honest);
    let runs: Vec<ClientRun> = runs.into_iter().map(finish_client).collect();
    assert_agencies_finished(&files, &runs);
    server.terminate();
    assert!(server.wait(Duration::from_secs(20)).is_some());
    assert_stored_exactly(&server.storage, &files);
}

#[test]
fn a_key_holder_hogging_sessions_on_a_small_pool_does_not_keep_another_agency_out() {
    hogged_run("fair-small", &[("SERVER_WORKERS", "4"), ("SERVER_MAX_CONNECTIONS", "8")], 8, 3);
}

#[test]
fn a_key_holder_hogging_sessions_on_the_defaults_does_not_keep_another_agency_out() {
    hogged_run("fair-defaults", &[], 132, 3);
}

/// One session per agency: a second authenticated session of the same
/// agency replaces the first, which is told so (ERROR session_replaced)
/// and closed; the newer one carries on where the agency is.
#[test]
fn a_newer_session_of_an_agency_replaces_the_older_one() {
    let dir = TempDir::new("fair-replace");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "2")]);
    let mut old = Raw::connect(server.addr);
    assert!(matches!(old.hello(1), Message::HelloOk { .. }));
    let mut other = Raw::connect(server.addr);
    assert!(matches!(other.hello(2), Message::HelloOk { .. }));
    let mut new = Raw::connect(server.addr);
    assert!(matches!(new.hello(1), Message::HelloOk { .. }));
    match old.try_recv() {
        Some(Message::Error { code, message }) => {
            assert_eq!(code, lottery::message::ErrorCode::SessionReplaced);
            assert!(message.contains("newer session"), "{message}");
        }
        other => panic!("the older session got {other:?}"),
    }
    assert!(old.closed());
    // The newer session and another agency's are untouched.
    for raw in [&mut new, &mut other] {
        let echo = Message::Echo(b"ok".to_vec());
        raw.send(&echo);
        assert_eq!(raw.recv(), echo);
    }
    server.log.wait_for(
        "code: session_replaced | error: replaced by a newer session of agency 1",
        Duration::from_secs(10),
    );
}
