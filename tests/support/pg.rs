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
//!
//! [`server`] and [`server_at`] start a lottery server on a cluster; the
//! proxy that cuts COMMITs is `support::pg_proxy`.

use super::{Server, TempDir};
use lottery::bet::Bet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running throwaway cluster.
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    run_as: Option<&'static str>,
    /// The postmaster's options (`pg_ctl start -o`), for a start again.
    options: String,
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
        let mut pg = Postgres { url: String::new(), bin, run_as, dir, options: String::new() };
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
        pg.options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c shared_buffers=16MB -c max_connections=50"
        );
        pg.start_again();
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

    /// `pg_ctl start` of the cluster, stopped or new; back when this
    /// returns.
    pub fn start_again(&self) {
        let (data, log) = (self.data(), self.log());
        let args = ["-D", path_str(&data), "-l", path_str(&log), "-o", &self.options];
        self.run("pg_ctl", &[&args[..], &["-w", "-t", "60", "start"]].concat());
    }

    /// `pg_ctl stop -m fast`: every connection is cut, and nothing answers
    /// on the port until [`Postgres::start_again`].
    pub fn stop_fast(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", path_str(&data), "-m", "fast", "-w", "-t", "60", "stop"]);
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
    for dir in TempDir::abandoned(PREFIX) {
        if dir.join("data").join("postmaster.pid").exists() {
            eprintln!("stopping a cluster left by an earlier run: {}", dir.display());
            stop_immediate(bin, run_as, &dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// Starts a server of the lottery in `pg` (bets.csv unused: in `dir`).
pub fn server(dir: &TempDir, pg: &Postgres, agencies: u32, name: &str) -> Server {
    server_at(dir, &pg.url, agencies, name, &[])
}

/// Starts a server of the lottery at `url`, with `extra` settings.
pub fn server_at(
    dir: &TempDir,
    url: &str,
    agencies: u32,
    name: &str,
    extra: &[(&str, &str)],
) -> Server {
    let agencies = agencies.to_string();
    let mut env = vec![
        ("STORAGE_BACKEND", "postgres"),
        ("STORAGE_URL", url),
        ("SERVER_AGENCIES", agencies.as_str()),
        ("SERVER_PROGRESS_INTERVAL", "0"),
    ];
    env.extend_from_slice(extra);
    Server::start_with_storage(&dir.path().join(format!("{name}-unused.csv")), &env)
}
