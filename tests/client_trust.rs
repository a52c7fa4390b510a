//! The client trusts no more than it must (issue 16, item 6): a server that
//! skips authentication, one that trickles its answer a byte at a time, one
//! that refuses the agency's key while another of the list takes it, and
//! one that keeps saying `busy`. Small fake servers on loopback speak raw
//! frames; real servers stand in where the test needs the real thing.

mod support;

use lottery::framing::{Frame, FrameReader};
use lottery::message::{ErrorCode, Message, kind};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const LONG: Duration = Duration::from_secs(30);
const AUTH_FAIL: &str = "action: auth | result: fail";
const CLIENT_FAIL: &str = "action: client | result: fail";

/// A secret other than the one the agencies' keys come from: a server
/// that has already rotated its keys.
const ROTATED: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ROTATED_AGAIN: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// A fake server: accepts connections on loopback and serves each with
/// `serve` on a thread of its own, until dropped.
struct Fake {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn start(serve: impl Fn(Peer) + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let (a, e, s) = (Arc::clone(&accepted), Arc::clone(&ended), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let (serve, e) = (Arc::clone(&serve), Arc::clone(&e));
                std::thread::spawn(move || {
                    serve(Peer::new(stream));
                    e.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Fake { addr, accepted, ended, stop }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until every connection accepted so far has been served.
    fn wait_idle(&self) {
        let deadline = Instant::now() + LONG;
        while self.ended.load(Ordering::SeqCst) < self.accepted() {
            assert!(Instant::now() < deadline, "a fake connection never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The fake server's side of one connection.
struct Peer {
    stream: TcpStream,
    reader: FrameReader<TcpStream>,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        let reader = FrameReader::new(stream.try_clone().expect("clone"));
        Peer { stream, reader }
    }

    /// The client's next frame; `None` once it has closed (or gone quiet
    /// for 10 s).
    fn frame(&mut self) -> Option<Frame> {
        self.reader.read_frame().ok().flatten()
    }

    fn send(&mut self, msg: &Message) -> bool {
        let bytes = msg.to_bytes().expect("encode");
        self.stream.write_all(&bytes).is_ok()
    }
}

/// A client that gives up after one second without progress.
fn impatient(file: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![("CLI_BETS_FILE", file.display().to_string()), ("CLI_RETRY_TIMEOUT", "1s".into())]
}

fn spawn(addr: SocketAddr, env: &[(&'static str, String)]) -> Child {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_client(addr, 1, &env)
}

fn line_with<'a>(log: &'a [String], needle: &str) -> &'a str {
    log.iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", log.join("\n")))
}

/// A server answering HELLO with HELLO_OK, as if agencies needed no key:
/// the agency (with its key, `auth` left at `required`) refuses it, sends
/// it nothing after HELLO (no BATCH, no DONE, no WINNERS?) and stops with a
/// clear error.
#[test]
fn a_hello_ok_in_place_of_the_challenge_is_refused_and_nothing_more_is_sent() {
    let dir = TempDir::new("trust-downgrade");
    let files = generate(dir.path(), 1, |_| 50);
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let record = Arc::clone(&received);
    let fake = Fake::start(move |mut peer| {
        while let Some(frame) = peer.frame() {
            record.lock().unwrap().push(frame.kind);
            if frame.kind == kind::HELLO {
                peer.send(&Message::HelloOk { next_seq: 0, done: false });
            }
        }
    });
    let mut env = impatient(&files[0].1);
    // Bounds the old behaviour (a BATCH, then waiting for its ACK).
    env.push(("CLI_IO_TIMEOUT", "2s".into()));
    let run = finish_client(spawn(fake.addr, &env));
    fake.wait_idle();
    let received = received.lock().unwrap().clone();
    println!("frames from the agency: {received:02x?}");
    assert!(!run.status.success(), "{}", run.log.join("\n"));
    assert_eq!(received, [kind::HELLO], "only HELLO, on one connection");
    assert_eq!(fake.accepted(), 1);
    let refused = line_with(&run.log, "action: auth | result: fail | error: no_challenge");
    assert!(refused.contains("WARN"), "{refused}");
    let fatal = line_with(&run.log, CLIENT_FAIL);
    assert!(
        fatal.contains("without asking for this agency's key") && fatal.contains("CLI_AUTH=off"),
        "{fatal}"
    );
}

/// Against a real server with `SERVER_AUTH=off`: an agency with its key
/// refuses it (nothing stored); with `CLI_AUTH=off`, and no key at all, it
/// runs, and says at start that it accepts servers without keys.
#[test]
fn an_open_server_is_used_only_by_an_agency_told_auth_off() {
    let dir = TempDir::new("trust-auth-off");
    let files = generate(dir.path(), 1, |_| 300);
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "1"), ("SERVER_AUTH", "off")]);
    let refused = finish_client(spawn(server.addr, &impatient(&files[0].1)));
    assert!(!refused.status.success(), "{}", refused.log.join("\n"));
    line_with(&refused.log, "error: no_challenge");
    assert!(stored_bets(&server.storage).is_empty());

    let runs = run_agencies(server.addr, &files, &[("CLI_AUTH", "off"), ("CLI_KEY", "")]);
    assert_agencies_finished(&files, &runs);
    assert_stored_exactly(&server.storage, &files);
    let warning = line_with(&runs[0].log, "action: config | result: success | auth: off");
    assert!(warning.contains("WARN"), "{warning}");
}

/// `auth: off` without a key cannot answer a server that asks for one: a
/// clear error, not a made-up AUTH.
#[test]
fn an_agency_without_a_key_says_so_when_a_server_asks_for_it() {
    let dir = TempDir::new("trust-no-key");
    let files = generate(dir.path(), 1, |_| 10);
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "1")]);
    let mut env = impatient(&files[0].1);
    env.extend([("CLI_AUTH", "off".into()), ("CLI_KEY", String::new())]);
    let run = finish_client(spawn(server.addr, &env));
    assert!(!run.status.success(), "{}", run.log.join("\n"));
    line_with(&run.log, "action: auth | result: fail | error: no_key");
    let fatal = line_with(&run.log, CLIENT_FAIL);
    assert!(fatal.contains("set CLI_KEY"), "{fatal}");
    assert!(stored_bets(&server.storage).is_empty());
}

/// A server that answers HELLO with a CHALLENGE sent one byte every 400 ms
/// (14 s for its 35 bytes): every byte comes well within `io.timeout` (1 s)
/// of the one before, so only a deadline on the whole answer stops the
/// wait. The agency gives up on that answer (and, its `retry.timeout`
/// spent, stops) while the trickle is still going.
#[test]
fn a_server_trickling_its_answer_cannot_hang_the_agency() {
    let dir = TempDir::new("trust-trickle");
    let files = generate(dir.path(), 1, |_| 10);
    let trickled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&trickled);
    let fake = Fake::start(move |mut peer| {
        if peer.frame().is_none() {
            return;
        }
        let bytes = Message::Challenge { nonce: [7; 32] }.to_bytes().unwrap();
        for b in bytes {
            std::thread::sleep(Duration::from_millis(400));
            if peer.stream.write_all(&[b]).is_err() {
                return;
            }
        }
        flag.store(true, Ordering::SeqCst);
        // Whatever the agency says next, it is not served.
    });
    let mut env = impatient(&files[0].1);
    env.push(("CLI_IO_TIMEOUT", "1s".into()));
    let started = Instant::now();
    let mut child = spawn(fake.addr, &env);
    let log = follow_client(&mut child);
    let status = wait_child(&mut child, LONG);
    let took = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    println!("the agency stopped after {took:?}");
    let status = status.expect("the agency did not stop");
    assert!(
        !trickled.load(Ordering::SeqCst),
        "the agency waited for the whole trickled answer ({took:?})"
    );
    assert!(!status.success());
    let reason = log.wait_for("action: reconnect | result: in_progress | error: io_timeout", LONG);
    assert!(reason.contains(&format!("server_address: {}", fake.addr)), "{reason}");
    log.wait_for(CLIENT_FAIL, LONG);
}

/// Servers in the middle of a key rotation: the first of the list already
/// has the new secret and refuses the agency's key (`unauthorized`); the
/// second still takes it. The agency moves on and finishes there.
#[test]
fn unauthorized_from_one_server_of_the_list_moves_on_to_the_next() {
    let (dir_a, dir_b) = (TempDir::new("trust-rotated"), TempDir::new("trust-good"));
    let rotated =
        Server::start(dir_a.path(), &[("SERVER_AGENCIES", "1"), ("SERVER_SECRET", ROTATED)]);
    let good = Server::start(dir_b.path(), &[("SERVER_AGENCIES", "1")]);
    let files = generate(dir_b.path(), 1, |_| 300);
    let list = format!("{},{}", rotated.addr, good.addr);
    let runs = run_agencies(
        rotated.addr,
        &files,
        &[("CLI_SERVER_ADDRESS", &list), ("CLI_RETRY_TIMEOUT", "5s")],
    );
    assert_agencies_finished(&files, &runs);
    assert_stored_exactly(&good.storage, &files);
    assert!(stored_bets(&rotated.storage).is_empty());
    assert!(rotated.log.wait_count(AUTH_FAIL, 1, LONG));
    let moved =
        line_with(&runs[0].log, "action: reconnect | result: in_progress | error: unauthorized");
    assert!(moved.contains("INFO"), "{moved}");
    assert!(moved.contains(&format!("server_address: {}", rotated.addr)), "{moved}");
}

/// When every server of the list refuses the key, one after the other,
/// the agency stops with an error that names each of them.
#[test]
fn when_every_server_of_the_list_refuses_the_agency_stops_naming_them() {
    let (dir_a, dir_b) = (TempDir::new("trust-refuse-a"), TempDir::new("trust-refuse-b"));
    let a = Server::start(dir_a.path(), &[("SERVER_AGENCIES", "1"), ("SERVER_SECRET", ROTATED)]);
    let b =
        Server::start(dir_b.path(), &[("SERVER_AGENCIES", "1"), ("SERVER_SECRET", ROTATED_AGAIN)]);
    let files = generate(dir_a.path(), 1, |_| 10);
    let list = format!("{},{}", a.addr, b.addr);
    let runs = run_agencies(
        a.addr,
        &files,
        &[("CLI_SERVER_ADDRESS", &list), ("CLI_RETRY_TIMEOUT", "30s")],
    );
    let run = &runs[0];
    assert!(!run.status.success(), "{}", run.log.join("\n"));
    let fatal = line_with(&run.log, CLIENT_FAIL);
    assert!(fatal.contains("every server of the list refused"), "{fatal}");
    for server in [&a, &b] {
        assert!(
            fatal.contains(&format!("{}: server refused (unauthorized)", server.addr)),
            "{fatal}"
        );
        assert!(server.log.wait_count(AUTH_FAIL, 1, LONG));
    }
    assert!(stored_bets(&a.storage).is_empty() && stored_bets(&b.storage).is_empty());
}

/// A server that answers every HELLO with ERROR `busy`: the agency keeps
/// trying (20 times a second here) and says why at INFO, once a second at
/// most, with how many times the reason came back in between.
#[test]
fn every_retry_reason_is_logged_at_info_at_most_once_a_second() {
    let dir = TempDir::new("trust-busy");
    let files = generate(dir.path(), 1, |_| 10);
    let fake = Fake::start(|mut peer| {
        if peer.frame().is_some() {
            peer.send(&Message::Error {
                code: ErrorCode::Busy,
                message: "connection limit reached".into(),
            });
        }
    });
    let mut env = impatient(&files[0].1);
    env.extend([("CLI_RETRY_MAXBACKOFF", "50ms".into()), ("CLI_LOG_LEVEL", "info".into())]);
    let started = Instant::now();
    let mut child = spawn(fake.addr, &env);
    let log = follow_client(&mut child);
    let deadline = Instant::now() + LONG;
    while fake.accepted() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(child.id(), "TERM");
    let status = wait_child(&mut child, LONG);
    // From before its start to after its exit: longer than it logged.
    let took = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(status.is_some(), "the agency did not stop on SIGTERM");
    let tries = fake.accepted();
    let lines: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.contains("action: reconnect | result: in_progress | error: busy"))
        .collect();
    println!(
        "{tries} connections told busy in {took:?}: {} lines\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(tries >= 40, "only {tries} tries");
    assert!(!lines.is_empty(), "no reason at INFO:\n{}", log.lines().join("\n"));
    for line in &lines {
        assert!(line.contains("INFO"), "{line}");
        assert!(
            line.contains(&format!(
                "| server_address: {} | detail: server: busy (connection limit reached)",
                fake.addr
            )),
            "{line}"
        );
    }
    assert!(lines.len() as u64 <= took.as_secs() + 1, "more than one line a second for one reason");
    assert!(lines.iter().any(|l| l.contains("| repeated: ")), "the tries held back are counted");
}
