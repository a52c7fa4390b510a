//! The client binary in a test: one agency, or many at once, run to
//! completion (with a watchdog) and their logs collected.

use super::server::{Log, signal};
use super::setup::{CLIENT, agency_key, repo, sets};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
    assert!(!watchdog.join().unwrap_or(false), "client {pid} did not finish within 60 s: killed");
    ClientRun {
        status: out.status,
        log: String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect(),
    }
}

/// Runs one client per `(agency, bets file)` at the same time.
pub fn run_agencies(
    addr: SocketAddr,
    files: &[(u32, PathBuf)],
    env: &[(&str, &str)],
) -> Vec<ClientRun> {
    spawn_agencies(addr, files, env).into_iter().map(finish_client).collect()
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

/// The failover list of an agency: every server, starting at `first`.
pub fn failover(servers: &[SocketAddr], first: usize) -> String {
    (0..servers.len())
        .map(|i| servers[(first + i) % servers.len()].to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts each agency with all servers in its list, agency `a` first on
/// server `a % servers`; `extra` is added to every client's environment.
pub fn spawn_spread(
    servers: &[SocketAddr],
    files: &[(u32, PathBuf)],
    extra: &[(&str, &str)],
) -> Vec<Child> {
    files
        .iter()
        .flat_map(|entry| {
            let list = failover(servers, entry.0 as usize % servers.len());
            let mut env = vec![("CLI_SERVER_ADDRESS", list.as_str())];
            env.extend_from_slice(extra);
            spawn_agencies(servers[0], std::slice::from_ref(entry), &env)
        })
        .collect()
}
