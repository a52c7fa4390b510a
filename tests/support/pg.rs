//! A throwaway PostgreSQL for the tests of the PostgreSQL backend: a new
//! cluster in a temporary directory (`initdb`, `pg_ctl`), on a free
//! loopback port, stopped and removed on drop.
//!
//! The binaries come from `LOTTERY_PG_BIN` or the newest
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package). PostgreSQL
//! refuses to run as root, so as root the cluster runs as the `postgres`
//! user (`runuser`). Where none is installed a test skips with a message,
//! except in CI (`CI` set), where it fails: CI installs it.
//!
//! The cluster listens on TCP only (`unix_socket_directories=''`: a
//! socket path under a long `TMPDIR` would pass the 107 bytes a Unix
//! socket's name may have). A test that panics still stops its cluster:
//! [`Postgres`]'s `Drop` runs while the panic unwinds. A test run that was
//! killed outright cannot, so each start first stops and removes the
//! clusters left by test processes that no longer exist ([`sweep`]).
//!
//! The cluster runs with `fsync=off`: these tests kill servers and restart
//! the database, never the machine, so flushing to disk proves nothing
//! here and only costs time (the benchmark uses a durable cluster).

use super::TempDir;
use lottery::bet::Bet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running throwaway cluster.
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    run_as: Option<&'static str>,
    pub url: String,
}

/// The directory holding `initdb` and `pg_ctl`, if PostgreSQL is installed.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LOTTERY_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Postgres {
    /// Starts a new cluster, or `None` (after saying why) when PostgreSQL
    /// is not installed and this is not CI.
    pub fn start(name: &str) -> Option<Postgres> {
        let Some(bin) = find_bin() else {
            let how = "install Debian's `postgresql` package (apt-get install postgresql) or set LOTTERY_PG_BIN to the directory holding initdb and pg_ctl";
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL is needed by this test and was not found: {how}");
            }
            eprintln!("skipping {name}: PostgreSQL not found; to run it, {how}");
            return None;
        };
        let run_as = is_root().then_some("postgres");
        sweep(&bin, run_as);
        let dir = TempDir::new(&format!("{PREFIX}{name}"));
        if let Some(user) = run_as {
            let ok = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown {} to {user}", dir.path().display());
        }
        let mut pg = Postgres {
            url: String::new(),
            bin,
            run_as,
            dir,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "lottery",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let port = free_port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c shared_buffers=16MB -c max_connections=50"
        );
        let log = pg.log();
        pg.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        pg.url = format!("postgresql://lottery@127.0.0.1:{port}/postgres");
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Runs one of PostgreSQL's programs (as `postgres` when root); panics
    /// if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let out = command(&self.bin, self.run_as, program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.join(program).display()));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl restart -m fast`: every connection is cut, and the database
    /// is back when this returns.
    pub fn restart_fast(&self) {
        let data = self.data();
        // With its log file: otherwise the new postmaster keeps pg_ctl's
        // output open and `run` waits for it for ever.
        let log = self.log();
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "restart",
            ],
        );
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }

    /// Every bet in the `bets` table.
    pub fn stored_bets(&self) -> Vec<Bet> {
        self.client()
            .query(
                "SELECT agency, first_name, last_name, document, birthdate::text, number::text FROM bets",
                &[],
            )
            .expect("read bets")
            .iter()
            .map(|row| {
                let agency: i64 = row.get(0);
                Bet::parse(
                    u32::try_from(agency).expect("agency"),
                    row.get(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                )
                .expect("a valid stored bet")
            })
            .collect()
    }
}

/// Stops the cluster (also when the test panics: this runs while the
/// panic unwinds), before its `TempDir` is removed.
impl Drop for Postgres {
    fn drop(&mut self) {
        stop_immediate(&self.bin, self.run_as, self.dir.path());
    }
}

/// The start of every cluster directory's name under the temp dir:
/// `TempDir` names it `lottery-e2e-pg-<test>-<pid>-<nanos>-<n>`.
const PREFIX: &str = "pg-";

/// One of PostgreSQL's programs in `bin`, run as `run_as` if given.
fn command(bin: &Path, run_as: Option<&str>, program: &str) -> Command {
    let path = bin.join(program);
    match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(path);
            c
        }
        None => Command::new(path),
    }
}

/// `pg_ctl stop -m immediate` on the cluster in `dir` (if it runs);
/// errors are ignored: there may be nothing to stop.
fn stop_immediate(bin: &Path, run_as: Option<&str>, dir: &Path) {
    let _ = command(bin, run_as, "pg_ctl")
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-m", "immediate", "stop"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops and removes the clusters whose test process is gone (a run
/// killed with SIGKILL or Ctrl-C leaves its postmaster running). A
/// cluster whose process still exists — another test binary running now —
/// is left alone.
fn sweep(bin: &Path, run_as: Option<&str>) {
    // Whether a process exists is read from /proc: without it, sweep
    // nothing rather than stop another run's cluster.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !name.starts_with(&format!("lottery-e2e-{PREFIX}")) {
            continue;
        }
        // `...-<pid>-<nanos>-<n>`: the owner's pid is third from the end.
        let Some(owner) = name
            .rsplit('-')
            .nth(2)
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let dir = entry.path();
        if dir.join("data").join("postmaster.pid").exists() {
            eprintln!(
                "stopping a cluster left by an earlier run: {}",
                dir.display()
            );
            stop_immediate(bin, run_as, &dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// Where a [`CommitCutter`] cuts a COMMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Closes both sides instead of passing the COMMIT on: the database
    /// rolls the transaction back, and the server never hears why.
    Before,
    /// Passes the COMMIT on and drops the database's answer: the
    /// transaction commits, and the server never hears it.
    Answer,
}

/// A rule of a [`CommitCutter`]: the COMMIT of the first transaction that
/// sent a statement containing `sql` is cut as `cut` says (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutRule {
    pub sql: &'static str,
    pub cut: Cut,
}

/// A loopback TCP proxy in front of a cluster that reads the client's
/// side of the PostgreSQL protocol and cuts the connection at a COMMIT
/// (`Query` message `COMMIT`, as rust-postgres sends `commit()`), per its
/// rules; everything else passes as it is. [`CommitCutter::url`] is the
/// cluster's URL through the proxy. Its threads end with its connections
/// (and the accept loop with the test process).
pub struct CommitCutter {
    pub url: String,
    fired: std::sync::mpsc::Receiver<CutRule>,
}

/// The codes of the startup-phase requests for TLS or GSSAPI encryption:
/// the server answers one byte, and another startup message follows.
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

impl CommitCutter {
    /// Starts the proxy in front of `pg` with `rules`, each applied once,
    /// in order of the COMMITs that match them.
    pub fn start(pg: &Postgres, rules: &[CutRule]) -> CommitCutter {
        use std::net::{SocketAddr, TcpListener, TcpStream};
        use std::sync::{Arc, Mutex, mpsc};
        let upstream: SocketAddr = pg
            .url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .expect("the cluster's address in its URL");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let url = pg.url.replace(&upstream.to_string(), &addr.to_string());
        let rules = Arc::new(Mutex::new(rules.to_vec()));
        let (tx, fired) = mpsc::channel();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (rules, tx) = (Arc::clone(&rules), tx.clone());
                let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (c2, s2, cut2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    Arc::clone(&cut),
                );
                std::thread::spawn(move || answers(s2, c2, &cut2));
                std::thread::spawn(move || requests(client, server, &cut, &rules, &tx));
            }
        });
        CommitCutter { url, fired }
    }

    /// Waits up to `timeout` for the next cut; the rule that made it.
    pub fn next_cut(&self, timeout: std::time::Duration) -> Option<CutRule> {
        self.fired.recv_timeout(timeout).ok()
    }
}

/// The database's side to the client, unless the connection was cut:
/// then the answer that comes is dropped and the database's side closed.
fn answers(
    mut server: std::net::TcpStream,
    mut client: std::net::TcpStream,
    cut: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = client.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) || client.write_all(&buf[..n]).is_err() {
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// The client's side to the database, message by message, watching each
/// transaction's statements and cutting at a COMMIT that a rule names.
fn requests(
    mut client: std::net::TcpStream,
    mut server: std::net::TcpStream,
    cut: &std::sync::atomic::AtomicBool,
    rules: &std::sync::Mutex<Vec<CutRule>>,
    fired: &std::sync::mpsc::Sender<CutRule>,
) {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::sync::atomic::Ordering;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut started = false;
    // The statements of the transaction under way.
    let mut statements: Vec<String> = Vec::new();
    loop {
        // Every whole message in the buffer.
        loop {
            let (start, tag) = if started {
                (1, buf.first().copied())
            } else {
                (0, None)
            };
            if buf.len() < start + 4 {
                break;
            }
            let len =
                u32::from_be_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]])
                    as usize;
            let total = start + len;
            if buf.len() < total {
                break;
            }
            let message: Vec<u8> = buf.drain(..total).collect();
            match tag {
                None => {
                    let code = message
                        .get(4..8)
                        .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    started = !ENCRYPTION_REQUESTS.contains(&code);
                }
                Some(b'P') => statements.push(String::from_utf8_lossy(&message[5..]).into_owned()),
                Some(b'Q') => {
                    let text = String::from_utf8_lossy(&message[5..]);
                    let text = text.trim_end_matches('\0').trim();
                    if text.eq_ignore_ascii_case("COMMIT") {
                        let rule = {
                            let mut rules = rules.lock().expect("rules");
                            let i = rules
                                .iter()
                                .position(|r| statements.iter().any(|s| s.contains(r.sql)));
                            i.map(|i| rules.remove(i))
                        };
                        if let Some(rule) = rule {
                            // Cut before anything can answer: the client
                            // side is closed first.
                            cut.store(true, Ordering::SeqCst);
                            let _ = client.shutdown(Shutdown::Both);
                            if rule.cut == Cut::Answer {
                                let _ = server.write_all(&message);
                            } else {
                                let _ = server.shutdown(Shutdown::Both);
                            }
                            let _ = fired.send(rule);
                            return;
                        }
                    }
                    // A simple query inside a transaction (`SET LOCAL`)
                    // belongs to it; a new transaction starts afresh.
                    let upper = text.to_ascii_uppercase();
                    if upper.starts_with("BEGIN")
                        || upper.starts_with("START")
                        || upper.starts_with("ROLLBACK")
                        || upper == "COMMIT"
                    {
                        statements.clear();
                    }
                    statements.push(text.to_owned());
                }
                Some(_) => {}
            }
            if server.write_all(&message).is_err() {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
