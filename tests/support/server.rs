//! The server binary in a test: started on a free loopback port, its log
//! followed line by line, signalled and waited for; and the course's
//! grammar its lines (and the clients') follow.

use super::setup::{SERVER, TEST_SECRET, repo, sets};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Collects a child's stdout lines and lets a test wait for one.
pub struct Log {
    lines: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
}

impl Log {
    pub(super) fn follow(child: &mut Child) -> Log {
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
        let (child, log) = Self::spawn_with_storage(storage, env);
        let line = log.wait_for("action: listen | result: success", Duration::from_secs(20));
        let addr: SocketAddr = line
            .rsplit("address: ")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Server { child, log, addr, storage: storage.to_owned() }
    }

    /// Starts the server process and follows its log, without waiting for
    /// it to listen (a start that is meant to wait, or to fail).
    pub fn spawn_with_storage(storage: &Path, env: &[(&str, &str)]) -> (Child, Log) {
        let mut child = Self::command(storage, env).spawn().expect("start server");
        let log = Log::follow(&mut child);
        (child, log)
    }

    /// The server's command as the tests run it: loopback, a free port,
    /// storage at `storage`, the tests' secret unless `env` sets one, then
    /// `env`; stdout piped (its log), stderr inherited.
    pub fn command(storage: &Path, env: &[(&str, &str)]) -> Command {
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
        cmd
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

/// A line with an `action:` follows the course's grammar, as the library's
/// one checker ([`lottery::logging::check_line`]) reads it.
pub fn assert_course_grammar(line: &str) {
    if !line.contains("action: ") {
        return;
    }
    if let Err(e) = lottery::logging::check_line(line) {
        panic!("not the course's grammar ({e}): {line}");
    }
}
