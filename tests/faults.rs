//! Fault injection with the real binaries: the server killed (SIGKILL) and
//! stopped (SIGTERM) mid-ingest and restarted on the same storage,
//! connections cut by a proxy, slow and silent attackers, a full disk.
//!
//! The invariant everywhere: the multiset of stored rows equals the
//! multiset of the agencies' valid input rows (nothing lost, nothing
//! twice), the draw runs once, every agency learns the right winners. Each
//! test prints what it injected and the counts it compared.

#[path = "faults/proxy.rs"]
mod proxy;
mod support;

use lottery::dataset::{Rng, course_rows};
use lottery::message::Message;
use proxy::CuttingProxy;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// These tests time things and load the machine: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}
const RECEIVED: &str = "action: apuesta_recibida | result: success";

/// Clients that keep reconnecting for as long as a test may take.
const PATIENT: [(&str, &str); 3] =
    [("CLI_RETRY_TIMEOUT", "60s"), ("CLI_RETRY_MAXBACKOFF", "100ms"), ("CLI_IO_TIMEOUT", "10s")];

fn seed() -> u64 {
    std::env::var("FAULT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20_261_129)
}

/// Agencies that keep reconnecting ([`PATIENT`]), with `extra` settings.
fn spawn_patient(addr: SocketAddr, files: &[(u32, PathBuf)], extra: &[(&str, &str)]) -> Vec<Child> {
    spawn_agencies(addr, files, &[&PATIENT[..], extra].concat())
}

fn check_outcome(servers: &[Server], files: &[(u32, PathBuf)], children: Vec<Child>) {
    let runs: Vec<ClientRun> = children.into_iter().map(finish_client).collect();
    assert_agencies_finished(files, &runs);
    let last = servers.last().expect("a server");
    assert_stored_exactly(&last.storage, files);
    // The draw is logged by the life that saw the last DONE, which is not
    // the last life when every agency finished before the last restart.
    let draws = || -> usize {
        servers.iter().map(|s| s.log.count("action: sorteo | result: success")).sum()
    };
    let deadline = Instant::now() + WAIT;
    while draws() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let draws = draws();
    println!("draws logged over {} server lives: {draws}", servers.len());
    assert_eq!(draws, 1, "the draw runs once");
}

/// A server and 5 agencies ingesting twice the course's data in small
/// batches with a small window, slow enough that every fault injected after
/// some acknowledged batches lands mid-ingest (with the default window the
/// first server life stores nearly everything).
fn interruptible_ingest(dir: &TempDir) -> (Vec<(u32, PathBuf)>, Vec<Server>, Vec<Child>) {
    let files = generate(dir.path(), 5, |a| course_rows(a, 2.0));
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "5")]);
    let children = spawn_patient(
        server.addr,
        &files,
        &[("CLI_BATCH_MAXAMOUNT", "100"), ("CLI_BATCH_WINDOW", "8")],
    );
    (files, vec![server], children)
}

/// A new life of the server on `first`'s storage and port.
fn restart(first: &Server) -> Server {
    let port = first.addr.port().to_string();
    Server::start_with_storage(&first.storage, &[("SERVER_AGENCIES", "5"), ("SERVER_PORT", &port)])
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_stores_nothing_twice() {
    let _serial = serial();
    let seed = seed();
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("kill9");
    let (files, mut servers, children) = interruptible_ingest(&dir);
    for kill in 1..=5 {
        let server = servers.last_mut().expect("a server");
        let after = 3 + rng.below(25) as usize;
        let reached = server.log.wait_count(RECEIVED, after, WAIT);
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reaped");
        let acked = server.log.count(RECEIVED);
        println!(
            "kill -9 #{kill} (seed {seed}): after {acked} batches acknowledged in this life (aimed at {after}, reached: {reached})"
        );
        servers.push(restart(&servers[0]));
    }
    let dropped: Vec<String> = servers[1..]
        .iter()
        .map(|s| {
            let line = s.log.wait_for("action: recovery | result: success", WAIT);
            let after = line.split("| dropped_bytes: ").nth(1).unwrap_or("");
            after.split(' ').next().unwrap_or("").to_owned()
        })
        .collect();
    println!("bytes of unfinished commits dropped at each restart: {dropped:?}");
    check_outcome(&servers, &files, children);
}

#[test]
fn sigterm_mid_ingest_then_restart_loses_nothing() {
    let _serial = serial();
    let dir = TempDir::new("sigterm-restart");
    let (files, mut servers, children) = interruptible_ingest(&dir);
    for stop in 1..=2 {
        let server = servers.last_mut().expect("a server");
        assert!(server.log.wait_count(RECEIVED, 10, WAIT), "ingest started");
        server.terminate();
        let status = server.wait(Duration::from_secs(5)).expect("exited after SIGTERM");
        assert!(status.success(), "SIGTERM exit status {status}");
        println!(
            "SIGTERM #{stop}: exited 0 after {} batches acknowledged",
            server.log.count(RECEIVED)
        );
        servers.push(restart(&servers[0]));
    }
    check_outcome(&servers, &files, children);
}

#[test]
fn connections_cut_mid_batch_lose_nothing_and_store_nothing_twice() {
    let _serial = serial();
    let dir = TempDir::new("cuts");
    let files = generate(dir.path(), 5, |a| course_rows(a, 0.3));
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "5")]);
    let proxy = CuttingProxy::start(server.addr, seed(), 40);
    // A small window: with the default one (64 batches) an agency pushes
    // most of its file through before the answers it reads run into a cut.
    let children = spawn_patient(proxy.addr, &files, &[("CLI_BATCH_WINDOW", "4")]);
    let servers = [server];
    check_outcome(&servers, &files, children);
    let cuts = proxy.cuts.load(Ordering::SeqCst);
    println!("connections cut by the proxy (FIN or RST, mid-frame): {cuts}");
    assert!(cuts >= 10, "the proxy cut only {cuts} connections");
    println!(
        "resent batches recognised as already stored: {}",
        servers[0].log.count("action: apuesta_duplicada")
    );
}

/// Wall time for 5 agencies to finish against a fresh server.
fn timed_run(
    dir: &TempDir,
    files: &[(u32, PathBuf)],
    attack: Option<&Attack>,
    round: usize,
) -> Duration {
    let storage = dir.path().join(format!("bets-{}-{round}.csv", attack.is_some()));
    let workers = attack.map_or_else(|| "128".to_owned(), |a| a.workers.to_string());
    let server = Server::start_with_storage(
        &storage,
        &[("SERVER_AGENCIES", "5"), ("SERVER_WORKERS", &workers)],
    );
    let _attackers = attack.map(|a| a.launch(server.addr));
    let start = Instant::now();
    let runs = run_agencies(server.addr, files, &[]);
    let took = start.elapsed();
    for run in &runs {
        assert!(run.status.success(), "{}", run.log.join("\n"));
    }
    assert_stored_exactly(&storage, files);
    took
}

struct Attack {
    silent: usize,
    slow: usize,
    /// The server's workers during the attack (alone: the default).
    workers: usize,
}

struct Attackers {
    _silent: Vec<TcpStream>,
    stop: Arc<AtomicBool>,
}

impl Drop for Attackers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Attack {
    /// Opens the silent connections, starts the slow senders (one byte per
    /// second of a frame that never completes), and returns once all are
    /// connected.
    fn launch(&self, addr: SocketAddr) -> Attackers {
        let silent: Vec<TcpStream> =
            (0..self.silent).filter_map(|_| TcpStream::connect(addr).ok()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut slow: Vec<TcpStream> =
            (0..self.slow).filter_map(|_| TcpStream::connect(addr).ok()).collect();
        let s = Arc::clone(&stop);
        std::thread::spawn(move || {
            let frame = [0x0A_u8, 0x1F, 0xFD]; // ECHO announcing 8189 bytes
            let mut sent = 0usize;
            while !s.load(Ordering::SeqCst) {
                for conn in &mut slow {
                    let byte = frame.get(sent).copied().unwrap_or(b'x');
                    let _ = conn.write_all(&[byte]);
                }
                sent += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        println!(
            "attack: {} silent connections, {} sending one byte per second",
            silent.len(),
            self.slow
        );
        Attackers { _silent: silent, stop }
    }
}

/// The first-frame deadline of `config/server/config.ini`: a silent or
/// trickling connection holds a worker at most this long.
const FIRST_FRAME_DEADLINE: Duration = Duration::from_secs(1);

/// Runs 5 honest agencies alone and under `attack`, three of each,
/// interleaved, and checks the attacked median against the one alone.
fn honest_agencies_keep_their_pace(name: &str, attack: &Attack) {
    let dir = TempDir::new(name);
    let files = generate(dir.path(), 5, |a| course_rows(a, 1.0));
    // Three of each, interleaved, compared by their medians: one noisy run
    // on a shared machine must not decide the outcome.
    let (mut alone, mut attacked) = (Vec::new(), Vec::new());
    for round in 0..3 {
        alone.push(timed_run(&dir, &files, None, round));
        attacked.push(timed_run(&dir, &files, Some(attack), round));
    }
    alone.sort();
    attacked.sort();
    let (baseline, under_attack) = (alone[1], attacked[1]);
    println!(
        "5 honest agencies, 78,697 bets, {} workers under attack, median of 3: {baseline:?} alone, {under_attack:?} under attack (alone {alone:?}, attacked {attacked:?})",
        attack.workers
    );
    // 2x, plus one first-frame deadline (a worker may be holding a silent
    // connection when the agencies arrive), plus 100 ms so that scheduler
    // noise on a small baseline cannot fail it.
    assert!(
        under_attack <= baseline * 2 + FIRST_FRAME_DEADLINE + Duration::from_millis(100),
        "under attack {under_attack:?} vs {baseline:?} alone"
    );
}

#[test]
fn slow_and_silent_attackers_do_not_hold_up_honest_agencies() {
    let _serial = serial();
    honest_agencies_keep_their_pace("attack", &Attack { silent: 500, slow: 20, workers: 128 });
}

/// The blocking pool's worst case: far more attackers than workers, all
/// connected before the agencies start.
#[test]
fn silent_and_slow_attackers_on_four_workers_cost_at_most_one_deadline() {
    let _serial = serial();
    honest_agencies_keep_their_pace("attack4", &Attack { silent: 300, slow: 20, workers: 4 });
}

#[test]
fn a_full_disk_gets_errors_not_acks_and_keeps_what_was_stored() {
    let _serial = serial();
    let dir = TempDir::new("diskfull");
    let mnt = dir.path().join("small-disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=192k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        println!("skipped: mounting a small tmpfs needs root (this is how the test fills a disk)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let files = generate(dir.path(), 1, |_| 20_000); // ~1 MB of rows for 192 KiB
    let storage = mnt.join("bets.csv");
    let server = Server::start_with_storage(&storage, &[("SERVER_AGENCIES", "1")]);
    let child = spawn_client(
        server.addr,
        1,
        &[
            ("CLI_BETS_FILE", files[0].1.to_str().unwrap()),
            ("CLI_RETRY_TIMEOUT", "1s"),
            ("CLI_RETRY_MAXBACKOFF", "100ms"),
        ],
    );
    let run = finish_client(child);
    assert!(!run.status.success(), "the agency cannot finish on a full disk");
    let failure = server.log.wait_for("action: commit | result: fail", WAIT);
    assert!(failure.contains("No space left"), "{failure}");
    println!("injected: storage on a 192 KiB tmpfs; server said: {failure}");
    // No ACK went out for what failed: the agency's acknowledged position
    // equals what is stored, and what is stored is an intact prefix.
    let stored = stored_bets(&storage);
    let input = file_bets(1, &files[0].1);
    assert!(!stored.is_empty() && stored.len() < input.len());
    assert_eq!(stored[..], input[..stored.len()], "stored rows are the file's first rows, whole");
    let mut raw = Raw::connect(server.addr);
    match raw.hello(1) {
        Message::HelloOk { next_seq, .. } => assert_eq!(next_seq, stored.len() as u64),
        other => panic!("{other:?}"),
    }
    println!("stored {} of {} bets before the disk filled; all intact", stored.len(), input.len());
    // The server is alive and serving.
    let mut echo = Raw::connect(server.addr);
    echo.send(&Message::Echo(b"alive".to_vec()));
    assert_eq!(echo.recv(), Message::Echo(b"alive".to_vec()));
}

/// The first server in an agency's list stops answering without closing
/// anything (its process is stopped: the kernel still accepts connections,
/// nothing answers them). The agency waits one `io.timeout`, then fails over
/// to the next server, even though its `retry.timeout` is no longer than
/// that: it gives up only once every server in the list has failed.
#[test]
fn a_silent_server_in_the_list_makes_the_agency_fail_over_not_give_up() {
    let (dir_a, dir_b) = (TempDir::new("silent-a"), TempDir::new("silent-b"));
    let silent = Server::start(dir_a.path(), &[("SERVER_AGENCIES", "1")]);
    let good = Server::start(dir_b.path(), &[("SERVER_AGENCIES", "1")]);
    let files = generate(dir_b.path(), 1, |_| 500);
    signal(silent.child.id(), "STOP");
    let list = format!("{},{}", silent.addr, good.addr);
    let runs = run_agencies(
        silent.addr,
        &files,
        &[
            ("CLI_SERVER_ADDRESS", list.as_str()),
            ("CLI_IO_TIMEOUT", "1s"),
            ("CLI_RETRY_TIMEOUT", "1s"),
        ],
    );
    signal(silent.child.id(), "CONT");
    assert_agencies_finished(&files, &runs);
    assert_stored_exactly(&good.storage, &files);
}
