//! A pg_auto_failover cluster for the HA tests: a monitor, a primary and
//! a synchronous secondary on loopback, made, crashed, rejoined and
//! removed by `scripts/ha_cluster.py` (the benchmark uses the same
//! script), in a temporary directory, on free ports.
//!
//! Where `pg_autoctl` is not installed a test skips with a message, except
//! in CI (`CI` set), where it fails: CI installs it (the convention of
//! `support::pg`). The cluster is removed on drop, also while a panic
//! unwinds; a test run killed outright cannot do that, so each start
//! first removes the clusters of test processes that no longer exist.

use super::TempDir;
use lottery::bet::Bet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The start of every cluster directory's name under the temp dir.
const PREFIX: &str = "ha-cluster";

/// A running cluster: node1 on `base + 1`, node2 on `base + 2`.
pub struct HaCluster {
    dir: TempDir,
    base: u16,
}

fn script() -> PathBuf {
    super::repo().join("scripts/ha_cluster.py")
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Three consecutive ports nothing listens on, below the ephemeral range
/// (the kernel hands those to outgoing connections).
fn free_base() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let start = 20_000 + (nanos % 10_000) as u16;
    (0..1_000)
        .map(|i| 20_000 + (start - 20_000 + i * 7) % 10_000)
        .find(|&b| (b..b + 3).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()))
        .expect("three free consecutive ports")
}

impl HaCluster {
    /// Makes and starts a cluster (node1 primary, node2 its secondary),
    /// or `None` (after saying why) when pg_auto_failover is not installed
    /// and this is not CI.
    pub fn start() -> Option<HaCluster> {
        if !installed("pg_autoctl") || !installed("python3") {
            let how = "install Debian's postgresql-15-auto-failover and pg-auto-failover-cli (and python3)";
            if std::env::var_os("CI").is_some() {
                panic!("pg_auto_failover is needed by this test and was not found: {how}");
            }
            eprintln!("skipping the HA tests: pg_autoctl not found; to run them, {how}");
            return None;
        }
        sweep();
        let dir = TempDir::new(PREFIX);
        let base = free_base();
        let cluster = HaCluster { dir, base };
        cluster.run(&["up", &base.to_string()]);
        Some(cluster)
    }

    /// `ha_cluster.py CMD DIR ARGS`: its stdout lines; panics if it fails
    /// (its log, on stderr, is the test's).
    fn run(&self, args: &[&str]) -> Vec<String> {
        run_script(args[0], self.dir.path(), &args[1..])
    }

    /// The URL of database `db` as `user`: both nodes, the writable one
    /// wins (as the servers' `STORAGE_URL`).
    pub fn url(&self, user: &str, db: &str) -> String {
        let (p1, p2) = (self.base + 1, self.base + 2);
        format!(
            "postgresql://{user}@127.0.0.1:{p1},127.0.0.1:{p2}/{db}?target_session_attrs=read-write"
        )
    }

    /// The current primary's name (`node1` or `node2`).
    pub fn primary(&self) -> String {
        self.run(&["primary"]).concat()
    }

    /// SIGKILLs the primary's whole node, or with `postmaster_only` its
    /// postmaster alone; returns its name and, when `wait`, how long
    /// writes failed.
    pub fn kill_primary(&self, wait: bool, postmaster_only: bool) -> (String, Option<Duration>) {
        let mut args = vec!["kill-primary"];
        args.extend((!wait).then_some("--no-wait"));
        args.extend(postmaster_only.then_some("--postmaster-only"));
        let out = self.run(&args);
        let ms = out.get(1).map(|ms| Duration::from_millis(ms.parse().expect("ms")));
        (out[0].clone(), ms)
    }

    /// Waits until the two-host URL takes an INSERT again (a new
    /// connection each time, as a server's after an error) into
    /// `ha_probe`, the table `ha_cluster.py up` makes in database
    /// `postgres` for its own probe; panics after `timeout`.
    pub fn wait_writable(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let url = format!("{}&connect_timeout=1", self.url("postgres", "postgres"));
        loop {
            let written = postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut c| c.batch_execute("INSERT INTO ha_probe DEFAULT VALUES"));
            match written {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("no writable primary within {timeout:?}: {e}")
                }
                // The monitor's promotion is not an event this process
                // can wait on: poll.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Runs `node` again; returns when it is the secondary.
    pub fn rejoin(&self, node: &str) {
        self.run(&["rejoin", node]);
    }

    /// A new database `db` owned by the `lottery` role.
    pub fn create_database(&self, db: &str) {
        self.client("postgres", "postgres")
            .batch_execute(&format!("CREATE DATABASE {db} OWNER lottery"))
            .expect("create database");
    }

    pub fn client(&self, user: &str, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(user, db), postgres::NoTls)
            .expect("connect to the primary")
    }

    /// Every bet in `db`'s `bets` table: agency → (position, bet) in
    /// position order.
    pub fn stored_bets(&self, db: &str) -> BTreeMap<u32, Vec<(i64, Bet)>> {
        let rows = self
            .client("lottery", db)
            .query(
                "SELECT agency, position, first_name, last_name, document, birthdate::text, number::text FROM bets ORDER BY agency, position",
                &[],
            )
            .expect("read bets");
        let mut by_agency: BTreeMap<u32, Vec<(i64, Bet)>> = BTreeMap::new();
        for row in rows {
            let agency = u32::try_from(row.get::<_, i64>(0)).expect("agency");
            let bet =
                Bet::parse(agency, row.get(2), row.get(3), row.get(4), row.get(5), row.get(6))
                    .expect("a valid stored bet");
            by_agency.entry(agency).or_default().push((row.get(1), bet));
        }
        by_agency
    }

    /// The draw's winners in `db`: agency → documents in rank order (what
    /// each agency's WINNERS? pages are read from).
    pub fn winners(&self, db: &str) -> BTreeMap<u32, Vec<String>> {
        let rows = self
            .client("lottery", db)
            .query("SELECT agency, document FROM winners ORDER BY agency, rank", &[])
            .expect("read winners");
        let mut by_agency: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for row in rows {
            let agency = u32::try_from(row.get::<_, i64>(0)).expect("agency");
            by_agency.entry(agency).or_default().push(row.get(1));
        }
        by_agency
    }
}

impl HaCluster {
    /// The end of each node's log (pg_autoctl's and PostgreSQL's lines),
    /// to tell what the cluster did when a test failed.
    fn print_logs(&self) {
        for name in ["monitor", "node1", "node2"] {
            let path = self.dir.path().join("logs").join(format!("{name}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- last lines of {}:", path.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Stops the cluster and removes its directory (also while a panic
/// unwinds); a failure here is reported, not raised: the test's own
/// outcome matters more.
impl Drop for HaCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        down(self.dir.path());
    }
}

fn run_script(cmd: &str, dir: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("python3")
        .arg(script())
        .arg(cmd)
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/ha_cluster.py");
    assert!(
        out.status.success(),
        "ha_cluster.py {cmd} {args:?} failed ({}): see its log above",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn down(dir: &Path) {
    let status = Command::new("python3")
        .arg(script())
        .arg("down")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("ha_cluster.py down {} failed", dir.display());
    }
}

/// Removes the clusters whose test process is gone (a run killed with
/// SIGKILL leaves its nodes running); another live run's are left alone.
fn sweep() {
    for dir in TempDir::abandoned(&format!("{PREFIX}-")) {
        eprintln!("removing a cluster left by an earlier run: {}", dir.display());
        if dir.join(".ha-cluster").exists() {
            down(&dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
