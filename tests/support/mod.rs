//! Shared helpers for the end-to-end tests: start the real binaries on
//! loopback, watch their logs, talk raw protocol, compare stored rows.
//!
//! Tests wait on events (a log line, a process exit), never on fixed sleeps.
//!
//! Servers run authenticated by default (secret [`TEST_SECRET`]) and each
//! agency gets its own key ([`agency_key`]); a test opts out by setting
//! the keys itself (`SERVER_AUTH=off`, another `CLI_KEY`, ...).

#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod pg;
#[cfg(feature = "postgres")]
pub mod pg_proxy;

use chrono::NaiveDate;
use lottery::auth::{AgencyKey, Secret};
use lottery::bet::Bet;
use lottery::framing::{FrameReader, write_frame};
use lottery::message::{Message, PROTOCOL_VERSION};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SERVER: &str = env!("CARGO_BIN_EXE_server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_client");

/// The secret of the servers tests start (unless a test sets its own).
pub const TEST_SECRET: &str = "5ec2e7000000000000000000000000000000000000000000000000000000b0b0";

/// Agency `agency`'s key under [`TEST_SECRET`].
pub fn agency_key(agency: u32) -> AgencyKey {
    Secret::from_hex(TEST_SECRET)
        .expect("test secret")
        .agency_key(agency)
}

fn sets(env: &[(&str, &str)], keys: &[&str]) -> bool {
    env.iter().any(|(k, _)| keys.contains(k))
}

/// The repository root (configs live there).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // The counter keeps two directories made at once apart.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "lottery-e2e-{name}-{}-{nanos}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Collects a child's stdout lines and lets a test wait for one.
pub struct Log {
    lines: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
}

impl Log {
    fn follow(child: &mut Child) -> Log {
        let out = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let store = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                store.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Log { lines, rx }
    }

    /// Waits for a line containing `needle`; panics after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
            return l;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line with {needle:?} within {timeout:?}; log so far:\n{}",
                    self.lines().join("\n")
                ),
            }
        }
    }

    /// Waits until `n` lines contain `needle`; false if the timeout passes.
    pub fn wait_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count(needle) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // Any new line (or the timeout) re-checks the count.
            let _ = self.rx.recv_timeout(left.min(Duration::from_millis(50)));
        }
        true
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A running server binary.
pub struct Server {
    pub child: Child,
    pub log: Log,
    pub addr: SocketAddr,
    pub storage: PathBuf,
}

impl Server {
    /// Starts the server on a free loopback port with storage in `dir`.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let storage = dir.join("bets.csv");
        Self::start_with_storage(&storage, env)
    }

    pub fn start_with_storage(storage: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(SERVER);
        cmd.env("SERVER_CONFIG", repo().join("config/server/config.ini"))
            .env("SERVER_IP", "127.0.0.1")
            .env("SERVER_PORT", "0")
            .env("STORAGE_FILEPATH", storage)
            .env("SERVER_LISTEN_BACKLOG", "128")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !sets(env, &["SERVER_SECRET", "SERVER_SECRET_FILE"]) {
            cmd.env("SERVER_SECRET", TEST_SECRET);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start server");
        let log = Log::follow(&mut child);
        let line = log.wait_for("action: listen | result: success", Duration::from_secs(20));
        let addr: SocketAddr = line
            .rsplit("address: ")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Server {
            child,
            log,
            addr,
            storage: storage.to_owned(),
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        signal(self.child.id(), "TERM");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A client binary run to completion.
pub struct ClientRun {
    pub status: ExitStatus,
    pub log: Vec<String>,
}

impl ClientRun {
    pub fn winners(&self) -> usize {
        self.log
            .iter()
            .find_map(|l| l.split("cant_ganadores: ").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no consulta_ganadores line in:\n{}", self.log.join("\n")))
    }
}

/// Starts a client binary for `agency` against `addr`.
pub fn spawn_client(addr: SocketAddr, agency: u32, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(CLIENT);
    cmd.env("CLI_CONFIG", repo().join("config/client/config.yaml"))
        .env("CLI_ID", agency.to_string())
        .env("CLI_SERVER_ADDRESS", addr.to_string())
        .env("CLI_RETRY_TIMEOUT", "20s")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !sets(env, &["CLI_KEY", "CLI_KEY_FILE"]) {
        cmd.env("CLI_KEY", agency_key(agency).to_hex());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start client")
}

/// Follows a spawned client's log while it runs (for tests that act on a
/// client's lines before it exits).
pub fn follow_client(child: &mut Child) -> Log {
    Log::follow(child)
}

/// Waits for a client (at most 60 s: then it is killed and the test fails,
/// rather than hang) and collects its log.
pub fn finish_client(child: Child) -> ClientRun {
    let pid = child.id();
    let (finished, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let overdue = watch.recv_timeout(Duration::from_secs(60)).is_err();
        if overdue {
            signal(pid, "KILL");
        }
        overdue
    });
    let out = child.wait_with_output().expect("client output");
    let _ = finished.send(());
    assert!(
        !watchdog.join().unwrap_or(false),
        "client {pid} did not finish within 60 s: killed"
    );
    ClientRun {
        status: out.status,
        log: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    }
}

/// Runs one client per `(agency, bets file)` at the same time.
pub fn run_agencies(
    addr: SocketAddr,
    files: &[(u32, PathBuf)],
    env: &[(&str, &str)],
) -> Vec<ClientRun> {
    spawn_agencies(addr, files, env)
        .into_iter()
        .map(finish_client)
        .collect()
}

/// Starts one client per `(agency, bets file)`; see [`finish_client`].
pub fn spawn_agencies(
    addr: SocketAddr,
    files: &[(u32, PathBuf)],
    env: &[(&str, &str)],
) -> Vec<Child> {
    files
        .iter()
        .map(|(agency, file)| {
            let mut e: Vec<(&str, &str)> = env.to_vec();
            e.push(("CLI_BETS_FILE", file.to_str().expect("utf-8 path")));
            spawn_client(addr, *agency, &e)
        })
        .collect()
}

/// Writes synthetic files for agencies `1..=n` with `rows(agency)` bets.
pub fn generate(dir: &Path, n: u32, rows: impl Fn(u32) -> u64) -> Vec<(u32, PathBuf)> {
    (1..=n)
        .map(|agency| {
            lottery::dataset::write_agency_file(dir, agency, rows(agency), 42).expect("write data");
            (agency, dir.join(format!("agency-{agency}.csv")))
        })
        .collect()
}

/// Every valid bet of an agency's file.
pub fn file_bets(agency: u32, path: &Path) -> Vec<Bet> {
    use lottery::client::source::{BetsFile, Row};
    let mut f = BetsFile::open(path, agency).expect("open bets file");
    let mut bets = Vec::new();
    while let Some(row) = f.next_row().expect("read bets file") {
        if let Row::Bet(b) = row {
            bets.push(b.to_bet());
        }
    }
    bets
}

/// Multiset of bets: bet → how many times.
pub fn multiset(bets: impl IntoIterator<Item = Bet>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for b in bets {
        let key = format!("{b:?}");
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

pub fn stored_bets(path: &Path) -> Vec<Bet> {
    if !path.exists() {
        return Vec::new();
    }
    lottery::storage::load_bets(path)
        .expect("open storage")
        .map(|b| b.expect("valid stored row"))
        .collect()
}

/// Asserts that storage holds exactly the files' bets, each once.
pub fn assert_stored_exactly(storage: &Path, files: &[(u32, PathBuf)]) {
    assert_bets_exactly(stored_bets(storage), files);
}

/// Asserts that `stored` holds exactly the files' bets, each once.
pub fn assert_bets_exactly(stored: Vec<Bet>, files: &[(u32, PathBuf)]) {
    let input: Vec<Bet> = files.iter().flat_map(|(a, p)| file_bets(*a, p)).collect();
    let (n_in, n_stored) = (input.len(), stored.len());
    let (want, got) = (multiset(input), multiset(stored));
    let missing = want.iter().filter(|(k, n)| got.get(*k) < Some(n)).count();
    let extra = got.iter().filter(|(k, n)| want.get(*k) < Some(n)).count();
    println!(
        "compared {n_in} input bets with {n_stored} stored rows: {missing} missing, {extra} duplicated or foreign"
    );
    assert_eq!((missing, extra, n_in), (0, 0, n_stored));
}

/// Asserts that every agency's client exited 0 and reported exactly the
/// winners its file holds.
pub fn assert_agencies_finished(files: &[(u32, PathBuf)], runs: &[ClientRun]) {
    for ((agency, file), run) in files.iter().zip(runs) {
        assert!(
            run.status.success(),
            "agency {agency} failed:\n{}",
            run.log.join("\n")
        );
        assert_eq!(
            run.winners(),
            file_winners(*agency, file),
            "winners of agency {agency}"
        );
    }
}

/// Winners in an agency's file.
pub fn file_winners(agency: u32, path: &Path) -> usize {
    file_bets(agency, path)
        .iter()
        .filter(|b| lottery::bet::has_won(b))
        .count()
}

/// A raw protocol connection for wire-level tests.
pub struct Raw {
    pub stream: TcpStream,
    reader: FrameReader<TcpStream>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = FrameReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    pub fn send(&mut self, msg: &Message) {
        let bytes = msg.to_bytes().expect("encode");
        std::io::Write::write_all(&mut self.stream, &bytes).expect("send");
    }

    pub fn send_frame(&mut self, kind: u8, payload: &[u8]) {
        write_frame(&mut self.stream, kind, payload).expect("send frame");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self.stream, bytes).expect("send bytes");
    }

    pub fn recv(&mut self) -> Message {
        let frame = self
            .reader
            .read_frame()
            .expect("read")
            .expect("a frame, not EOF");
        Message::from_frame(&frame).expect("decodable answer")
    }

    /// The next message, or `None` once the server has closed (EOF, reset
    /// or a 10 s silence).
    pub fn try_recv(&mut self) -> Option<Message> {
        match self.reader.read_frame() {
            Ok(Some(frame)) => Some(Message::from_frame(&frame).expect("decodable answer")),
            _ => None,
        }
    }

    /// True if the server closed the connection (EOF or reset) next.
    pub fn closed(&mut self) -> bool {
        match self.reader.read_frame() {
            Ok(None) => true,
            Ok(Some(_)) => false,
            Err(e) => {
                !matches!(e, lottery::framing::FrameError::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock || io.kind() == std::io::ErrorKind::TimedOut)
            }
        }
    }

    /// The handshake as `agency` with its key: HELLO, and AUTH if the
    /// server sends a CHALLENGE. Returns the server's last answer
    /// (HELLO_OK, or an ERROR).
    pub fn hello(&mut self, agency: u32) -> Message {
        self.hello_with(agency, &agency_key(agency))
    }

    /// The handshake claiming `agency`, answering with `key`.
    pub fn hello_with(&mut self, agency: u32, key: &AgencyKey) -> Message {
        self.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            agency,
        });
        match self.recv() {
            Message::Challenge { nonce } => {
                self.send(&Message::Auth {
                    tag: key.tag(&nonce, agency, PROTOCOL_VERSION),
                });
                self.recv()
            }
            other => other,
        }
    }
}

/// A valid bet of `agency` whose number and first name come from `n`: for
/// tests that build batches by hand.
pub fn bet(agency: u32, n: u16) -> Bet {
    Bet {
        agency,
        first_name: format!("Ana{n}"),
        last_name: "Paz".into(),
        document: "123".into(),
        birthdate: NaiveDate::from_ymd_opt(1990, 5, 6).unwrap(),
        number: n,
    }
}

/// `action: <name> | result: <success|fail|in_progress> | key: value | ...`
pub fn assert_course_grammar(line: &str) {
    let Some(at) = line.find("action: ") else {
        return;
    };
    let fields: Vec<&str> = line[at..].split(" | ").collect();
    assert!(fields.len() >= 2, "{line}");
    assert!(
        fields[0]
            .strip_prefix("action: ")
            .is_some_and(|n| !n.is_empty() && !n.contains(' ')),
        "{line}"
    );
    let result = fields[1]
        .strip_prefix("result: ")
        .unwrap_or_else(|| panic!("no result in {line}"));
    assert!(
        ["success", "fail", "in_progress"].contains(&result),
        "{line}"
    );
    for f in &fields[2..] {
        let (k, _) = f
            .split_once(": ")
            .unwrap_or_else(|| panic!("field {f:?} of {line}"));
        assert!(!k.is_empty() && !k.contains(' '), "{line}");
    }
}

/// Every winner of `agency` (which must be done), asked WINNERS? page by
/// page on one connection as an agency does, checking each page's offset
/// and that no page is empty before the end; also the number of pages.
pub fn winners_paged(addr: SocketAddr, agency: u32) -> (Vec<String>, usize) {
    let mut raw = Raw::connect(addr);
    assert!(
        matches!(raw.hello(agency), Message::HelloOk { done: true, .. }),
        "agency {agency} is not done"
    );
    let mut all: Vec<String> = Vec::new();
    let mut pages = 0;
    loop {
        let offset = all.len() as u32;
        raw.send(&Message::WinnersQuery { offset });
        match raw.recv() {
            Message::Winners {
                total,
                offset: got,
                documents,
            } => {
                assert_eq!(got, offset);
                pages += 1;
                if documents.is_empty() {
                    assert_eq!(total as usize, all.len(), "an empty page before the end");
                    return (all, pages);
                }
                all.extend(documents);
                if all.len() == total as usize {
                    return (all, pages);
                }
            }
            other => panic!("agency {agency}: {other:?} at offset {offset}"),
        }
    }
}
