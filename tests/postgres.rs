//! Several servers over one PostgreSQL database (cargo feature `postgres`):
//! real server and client binaries on loopback, a throwaway cluster per
//! test (see `support::pg`). Every test checks the same two things at the
//! end: each agency's file is in the `bets` table exactly once, and every
//! agency learned exactly the winners its file holds.

#![cfg(feature = "postgres")]

mod support;

use lottery::dataset::course_rows;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::pg::{CommitCutter, Cut, CutRule, Postgres};
use support::*;

const SORTEO: &str = "action: sorteo | result: success";
const STORED: &str = "action: apuesta_recibida | result: success";

/// Starts a server of the lottery in `pg` (bets.csv unused: in `dir`).
fn server(dir: &TempDir, pg: &Postgres, agencies: u32, name: &str) -> Server {
    server_at(dir, &pg.url, agencies, name, &[])
}

/// Starts a server of the lottery at `url`, with `extra` settings.
fn server_at(
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

/// How the start of a server on a database ended.
enum Start {
    /// It logged `listen` (and was then killed): its output until then.
    Serving(String),
    /// It exited first: its status and its output.
    Exited(ExitStatus, String),
}

/// Starts a server of `agencies` agencies on `url` with `extra` settings
/// and sees whether it starts serving or exits (as a server that refuses
/// the database at start does); one that does neither within 30 s fails
/// the test.
fn try_server(url: &str, agencies: u32, extra: &[(&str, &str)]) -> Start {
    let mut cmd = std::process::Command::new(SERVER);
    cmd.env("SERVER_CONFIG", repo().join("config/server/config.ini"))
        .env("SERVER_IP", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .env("SERVER_SECRET", TEST_SECRET)
        .env("SERVER_PROGRESS_INTERVAL", "0")
        .env("STORAGE_BACKEND", "postgres")
        .env("STORAGE_URL", url)
        .env("SERVER_AGENCIES", agencies.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start server");
    let (tx, lines) = mpsc::channel::<String>();
    let outputs: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ];
    for out in outputs.into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if line.contains("action: listen | result: success") {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Start::Serving(text);
                }
            }
            // Both outputs closed: the server has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("server status");
                return Start::Exited(status, text);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server neither served nor exited within 30 s:\n{text}");
            }
        }
    }
}

/// The output of a server that must refuse the database at start (and
/// exit with a failure).
fn refused(url: &str, agencies: u32, extra: &[(&str, &str)]) -> String {
    match try_server(url, agencies, extra) {
        Start::Exited(status, text) => {
            assert!(!status.success(), "exited with success:\n{text}");
            text
        }
        Start::Serving(text) => panic!("started anyway:\n{text}"),
    }
}

/// The fixture most tests here start from: a throwaway cluster, the
/// agencies' files and `n` servers of the lottery on that cluster.
struct Lottery {
    // Fields drop in this order: the servers before the files and the
    // database they use.
    servers: Vec<Server>,
    files: Vec<(u32, PathBuf)>,
    /// Holds the files (and each server's unused `bets.csv` path).
    _dir: TempDir,
    pg: Postgres,
}

impl Lottery {
    /// `None` where PostgreSQL is not installed (see [`Postgres::start`]).
    fn start(name: &str, agencies: u32, rows: impl Fn(u32) -> u64, n: usize) -> Option<Lottery> {
        Postgres::start(name).map(|pg| Lottery::on(pg, name, agencies, rows, n))
    }

    /// The same on a cluster the test has already set up.
    fn on(pg: Postgres, name: &str, agencies: u32, rows: impl Fn(u32) -> u64, n: usize) -> Lottery {
        let dir = TempDir::new(&format!("pg-{name}"));
        let files = generate(dir.path(), agencies, rows);
        let servers = (0..n)
            .map(|i| server(&dir, &pg, agencies, &format!("s{i}")))
            .collect();
        Lottery {
            servers,
            files,
            _dir: dir,
            pg,
        }
    }

    /// Starts every agency with [`spawn_spread`] over all the servers.
    fn spawn_spread(&self, extra: &[(&str, &str)]) -> Vec<Child> {
        let addrs: Vec<SocketAddr> = self.servers.iter().map(|s| s.addr).collect();
        spawn_spread(&addrs, &self.files, extra)
    }

    /// How many draws the servers logged.
    fn sorteos(&self) -> usize {
        self.servers.iter().map(|s| s.log.count(SORTEO)).sum()
    }
}

/// The failover list of an agency: every server, starting at `first`.
fn failover(servers: &[SocketAddr], first: usize) -> String {
    (0..servers.len())
        .map(|i| servers[(first + i) % servers.len()].to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts each agency with all servers in its list, agency `a` first on
/// server `a % servers`; `extra` is added to every client's environment.
fn spawn_spread(
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

/// A number in `lo..hi` that changes from run to run (a "random point").
fn somewhere(lo: usize, hi: usize) -> usize {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    lo + nanos % (hi - lo)
}

#[test]
fn three_servers_share_five_agencies_and_store_every_bet_once() {
    let Some(l) = Lottery::start("three-servers", 5, |a| course_rows(a, 1.0), 3) else {
        return;
    };
    let runs: Vec<ClientRun> = l.spawn_spread(&[]).into_iter().map(finish_client).collect();
    assert_agencies_finished(&l.files, &runs);
    assert_bets_exactly(l.pg.stored_bets(), &l.files);
    assert_eq!(l.sorteos(), 1, "the draw is logged by one server only");
    // Each server took some of the agencies' batches.
    for s in &l.servers {
        assert!(s.log.count(STORED) > 0, "a server stored nothing");
    }
}

#[test]
fn killing_two_servers_mid_ingest_loses_and_doubles_nothing() {
    let Some(mut l) = Lottery::start("kill", 5, |a| course_rows(a, 2.0), 3) else {
        return;
    };
    // Small batches: the ingest lasts long enough to be cut twice.
    let clients = l.spawn_spread(&[("CLI_BATCH_MAXAMOUNT", "50")]);
    let first = somewhere(0, 2);
    let second = 1 - first;
    for victim in [first, second] {
        let at = l.servers[victim].log.count(STORED) + somewhere(5, 60);
        assert!(
            l.servers[victim]
                .log
                .wait_count(STORED, at, Duration::from_secs(30)),
            "server {victim} never stored {at} batches"
        );
        assert_eq!(l.sorteos(), 0, "killed after the draw");
        signal(l.servers[victim].child.id(), "KILL");
        l.servers[victim].wait(Duration::from_secs(10));
    }
    let runs: Vec<ClientRun> = clients.into_iter().map(finish_client).collect();
    assert_agencies_finished(&l.files, &runs);
    assert_bets_exactly(l.pg.stored_bets(), &l.files);
    assert_eq!(l.sorteos(), 1);
}

#[test]
fn a_database_restart_mid_ingest_is_retried_and_no_server_exits() {
    let Some(mut l) = Lottery::start("restart", 5, |a| course_rows(a, 2.0), 2) else {
        return;
    };
    let clients = l.spawn_spread(&[("CLI_BATCH_MAXAMOUNT", "50")]);
    let at = somewhere(5, 60);
    assert!(
        l.servers[0]
            .log
            .wait_count(STORED, at, Duration::from_secs(30)),
        "never stored {at} batches"
    );
    l.pg.restart_fast();
    let runs: Vec<ClientRun> = clients.into_iter().map(finish_client).collect();
    assert_agencies_finished(&l.files, &runs);
    assert_bets_exactly(l.pg.stored_bets(), &l.files);
    let failed: usize = l
        .servers
        .iter()
        .map(|s| s.log.count("action: commit | result: fail"))
        .sum();
    assert!(failed > 0, "no commit met the restart");
    for s in &mut l.servers {
        assert!(
            s.child.try_wait().expect("server status").is_none(),
            "a server exited"
        );
    }
    assert_eq!(l.sorteos(), 1);
}

#[test]
fn one_agency_on_two_servers_at_once_is_stored_once() {
    let Some(l) = Lottery::start("twice", 1, |a| course_rows(a, 1.0), 2) else {
        return;
    };
    let file = l.files[0].1.to_str().expect("utf-8 path");
    // The same agency, the same file, one connection on each server.
    let clients: Vec<Child> = l
        .servers
        .iter()
        .map(|s| {
            spawn_client(
                s.addr,
                1,
                &[("CLI_BETS_FILE", file), ("CLI_BATCH_MAXAMOUNT", "100")],
            )
        })
        .collect();
    let runs: Vec<ClientRun> = clients.into_iter().map(finish_client).collect();
    let twice = [l.files[0].clone(), l.files[0].clone()];
    assert_agencies_finished(&twice, &runs);
    assert_bets_exactly(l.pg.stored_bets(), &l.files);
    assert_eq!(l.sorteos(), 1);
}

#[test]
fn a_server_with_another_number_of_agencies_refuses_the_database_at_start() {
    let Some(pg) = Postgres::start("agencies") else {
        return;
    };
    let dir = TempDir::new("pg-agencies");
    let first = server(&dir, &pg, 5, "s0");
    let text = refused(&pg.url, 3, &[]);
    assert!(
        text.contains("set up for 5 agencies and SERVER_AGENCIES is 3"),
        "{text}"
    );
    drop(first);
}

#[test]
fn an_agency_row_locked_elsewhere_fails_the_commit_within_the_lock_timeout() {
    let Some(mut l) = Lottery::start("lock", 2, |_| 3_000, 1) else {
        return;
    };
    // Another server, paused while its transaction holds agency 1's row.
    let mut other = l.pg.client();
    let mut held = other.transaction().expect("begin");
    held.query("SELECT 1 FROM agencies WHERE agency = 1 FOR UPDATE", &[])
        .expect("lock agency 1's row");
    let since = Instant::now();
    let clients = l.spawn_spread(&[("CLI_BATCH_MAXAMOUNT", "100")]);
    let s = &mut l.servers[0];
    // The server's lock_timeout is 5 s: its commit gives up and answers
    // ERROR storage well before the lock is released (which is only after
    // that failure is seen: without the timeout this waits for ever).
    assert!(
        s.log
            .wait_count("action: commit | result: fail", 1, Duration::from_secs(20)),
        "the commit waited on the locked row for over 20 s"
    );
    let waited = since.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(12),
        "the commit failed after {waited:?}, not after the 5 s lock timeout"
    );
    assert!(
        s.log.count("lock timeout") > 0,
        "the failure names the lock timeout:\n{}",
        s.log.lines().join("\n")
    );
    held.rollback().expect("release the row");
    let runs: Vec<ClientRun> = clients.into_iter().map(finish_client).collect();
    assert_agencies_finished(&l.files, &runs);
    assert_bets_exactly(l.pg.stored_bets(), &l.files);
    assert!(
        s.child.try_wait().expect("server status").is_none(),
        "the server exited"
    );
    assert_eq!(l.sorteos(), 1);
}

#[test]
fn a_repeatable_read_default_still_draws_exactly_once() {
    let Some(pg) = Postgres::start("isolation") else {
        return;
    };
    // A database whose default isolation is stricter than READ COMMITTED:
    // with a count of `agencies WHERE done` read from a snapshot, two last
    // DONEs committing together each saw the other unfinished and no one
    // drew. The servers now start READ COMMITTED transactions explicitly
    // and count on the lottery's locked row.
    pg.client()
        .batch_execute(
            "ALTER DATABASE postgres SET default_transaction_isolation = 'repeatable read'",
        )
        .expect("set the default isolation");
    let l = Lottery::on(pg, "isolation", 6, |_| 2_000, 3);
    let runs: Vec<ClientRun> = l
        .spawn_spread(&[("CLI_BATCH_MAXAMOUNT", "100")])
        .into_iter()
        .map(finish_client)
        .collect();
    assert_agencies_finished(&l.files, &runs);
    assert_bets_exactly(l.pg.stored_bets(), &l.files);
    assert_eq!(l.sorteos(), 1);
    let (finished, draws): (i64, i64) = {
        let row = l
            .pg
            .client()
            .query_one(
                "SELECT (SELECT finished FROM lottery WHERE id = 1), (SELECT count(*) FROM draw)",
                &[],
            )
            .expect("read the lottery");
        (row.get(0), row.get(1))
    };
    assert_eq!((finished, draws), (6, 1));
}

#[test]
fn a_database_not_in_utf8_is_refused_at_start() {
    let Some(pg) = Postgres::start("encoding") else {
        return;
    };
    pg.client()
        .batch_execute("CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        .expect("create a LATIN1 database");
    let url = pg.url.replace("/postgres", "/latin");
    let text = refused(&url, 2, &[]);
    assert!(text.contains("its encoding is LATIN1, not UTF8"), "{text}");
    // Refused before creating anything there.
    let mut latin = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let tables: i64 = latin
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .expect("count tables")
        .get(0);
    assert_eq!(tables, 0);
}

#[test]
fn copy_to_csv_gives_the_bytes_bets_csv_would_hold_for_hostile_names() {
    let Some(pg) = Postgres::start("copy") else {
        return;
    };
    let dir = TempDir::new("pg-copy");
    let names = [
        ("José, \"Pepe\"", "Núñez"),
        (" leading", "trailing "),
        ("\tTab", "tab\t"),
        ("  ", "x"),
        ("Ana\nMaría", "O'Brien\r\n"),
        ("Ñandú", "Çelik 😀"),
        ("a|b", "\""),
        ("\\.", "back\\slash"),
        ("\"quoted\"", ",comma,"),
    ];
    // The agency's file, every field quoted (the client reads RFC 4180).
    let quote = |f: &str| format!("\"{}\"", f.replace('"', "\"\""));
    let mut text = String::new();
    for (i, (first, last)) in names.iter().enumerate() {
        let number = if i % 3 == 0 { 7574 } else { 100 + i };
        text.push_str(&format!(
            "{},{},{},1980-02-29,{number}\n",
            quote(first),
            quote(last),
            30_000_000 + i
        ));
    }
    let file = dir.path().join("agency-1.csv");
    std::fs::write(&file, text).expect("write the agency's file");
    let files = [(1, file)];
    let bets = file_bets(1, &files[0].1);
    assert_eq!(bets.len(), names.len(), "the client reads every row");
    let s = server(&dir, &pg, 1, "s0");
    let runs = run_agencies(s.addr, &files, &[]);
    assert_agencies_finished(&files, &runs);
    // What the file backend would write to bets.csv for the same bets...
    let mut expected = Vec::new();
    for bet in &bets {
        lottery::storage::encode_row(&mut expected, bet);
    }
    // ...and what `\copy (select ...) to stdout csv` gives, in the
    // database's own session settings (a psql session's).
    let mut copied = Vec::new();
    pg.client()
        .copy_out(
            "COPY (SELECT agency, first_name, last_name, document, birthdate, number FROM bets
                   ORDER BY agency, position) TO STDOUT (FORMAT csv)",
        )
        .expect("copy out")
        .read_to_end(&mut copied)
        .expect("read the copy");
    assert!(
        copied == expected,
        "COPY TO csv:\n{}\nbets.csv:\n{}",
        String::from_utf8_lossy(&copied),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn a_server_with_another_server_auth_refuses_the_database_at_start() {
    let Some(pg) = Postgres::start("auth") else {
        return;
    };
    let dir = TempDir::new("pg-auth");
    let files = generate(dir.path(), 2, |_| 500);
    // The lottery's first server authenticates its agencies (the tests'
    // default); one with SERVER_AUTH=off would open every agency to
    // anyone through it.
    let first = server(&dir, &pg, 2, "s0");
    let text = refused(&pg.url, 2, &[("SERVER_AUTH", "off")]);
    assert!(
        text.contains("SERVER_AUTH: this server has off, the database's lottery has required"),
        "{text}"
    );
    // The first server goes on serving the lottery.
    let runs = run_agencies(first.addr, &files, &[]);
    assert_agencies_finished(&files, &runs);
    assert_bets_exactly(pg.stored_bets(), &files);
    assert_eq!(first.log.count(SORTEO), 1);
}

/// The schema a version-2 server created, mid-lottery: agency 1 has
/// stored 3 bets (rows not needed here), nobody has finished.
const SCHEMA_V2_FIXTURE: &str = "
CREATE TABLE schema_version (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
INSERT INTO schema_version (version) VALUES (2);
CREATE TABLE lottery (id INT PRIMARY KEY, agencies BIGINT NOT NULL, finished BIGINT NOT NULL DEFAULT 0);
INSERT INTO lottery (id, agencies) VALUES (1, 2);
CREATE TABLE agencies (agency BIGINT PRIMARY KEY, next_position BIGINT NOT NULL, done BOOLEAN NOT NULL);
INSERT INTO agencies VALUES (1, 3, false), (2, 0, false);
CREATE TABLE bets (agency BIGINT NOT NULL, position BIGINT NOT NULL, first_name TEXT NOT NULL,
    last_name TEXT NOT NULL, document TEXT NOT NULL, birthdate DATE NOT NULL, number INT NOT NULL,
    PRIMARY KEY (agency, position));
CREATE INDEX bets_winners ON bets (agency, position) WHERE number = 7574;
CREATE TABLE draw (id INT PRIMARY KEY, winning_number INT NOT NULL, winners BIGINT NOT NULL,
    drawn_at TIMESTAMPTZ NOT NULL DEFAULT now());
";

#[test]
fn a_version_2_database_takes_the_auth_of_the_first_server_that_upgrades_it() {
    let Some(pg) = Postgres::start("upgrade") else {
        return;
    };
    pg.client()
        .batch_execute(SCHEMA_V2_FIXTURE)
        .expect("create a version-2 database");
    // Two servers that disagree on SERVER_AUTH upgrade it at the same time:
    // one of them records its setting and serves, the other refuses.
    let url = pg.url.as_str();
    let (off, required) = std::thread::scope(|s| {
        let off = s.spawn(|| try_server(url, 2, &[("SERVER_AUTH", "off")]));
        let required = s.spawn(|| try_server(url, 2, &[]));
        (
            off.join().expect("the first start"),
            required.join().expect("the second start"),
        )
    });
    let (recorded, refusal) = match (&off, &required) {
        (Start::Serving(_), Start::Exited(status, text)) => ("off", (status, text)),
        (Start::Exited(status, text), Start::Serving(_)) => ("required", (status, text)),
        (Start::Serving(a), Start::Serving(b)) => panic!("both started:\n{a}\n{b}"),
        (Start::Exited(_, a), Start::Exited(_, b)) => panic!("neither started:\n{a}\n{b}"),
    };
    let other = if recorded == "off" { "required" } else { "off" };
    assert!(!refusal.0.success(), "{}", refusal.1);
    assert!(
        refusal.1.contains(&format!(
            "SERVER_AUTH: this server has {other}, the database's lottery has {recorded}"
        )),
        "{}",
        refusal.1
    );
    let row = pg
        .client()
        .query_one(
            "SELECT (SELECT auth FROM lottery WHERE id = 1),
                    (SELECT max(version) FROM schema_version),
                    (SELECT next_position FROM agencies WHERE agency = 1)",
            &[],
        )
        .expect("read the upgraded database");
    let (auth, version, position): (String, i32, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((auth.as_str(), version, position), (recorded, 3, 3));
}

#[test]
fn a_lost_commit_answer_is_learned_from_the_database_on_reconnecting() {
    let Some(pg) = Postgres::start("lost-commit") else {
        return;
    };
    // Between the server and the database: the first COMMIT of a
    // transaction that stores bets never reaches the database, and the
    // answer to the COMMIT that records the draw never reaches the server.
    let never_sent = CutRule {
        sql: "COPY bets",
        cut: Cut::Before,
    };
    let answer_lost = CutRule {
        sql: "INSERT INTO draw",
        cut: Cut::Answer,
    };
    let cutter = CommitCutter::start(&pg, &[never_sent, answer_lost]);
    let dir = TempDir::new("pg-lost-commit");
    let files = generate(dir.path(), 1, |_| 2_000);
    let s = server_at(&dir, &cutter.url, 1, "s0", &[]);
    let runs = run_agencies(s.addr, &files, &[("CLI_BATCH_MAXAMOUNT", "100")]);
    let cuts = [Duration::ZERO; 2].map(|t| cutter.next_cut(t));
    assert_eq!(cuts, [Some(never_sent), Some(answer_lost)]);
    assert_agencies_finished(&files, &runs);
    assert_bets_exactly(pg.stored_bets(), &files);
    let log = s.log.lines().join("\n");
    // The COMMIT that never arrived failed its batches (the agency sent
    // them again)...
    assert_eq!(s.log.count("committed: false"), 1, "{log}");
    assert_eq!(s.log.count("action: commit | result: fail"), 1, "{log}");
    // ...and the one whose answer was lost did not fail: the server asked
    // the database, found it committed, acknowledged the DONE and logged
    // the draw it recorded.
    assert_eq!(s.log.count("committed: true"), 1, "{log}");
    assert_eq!(s.log.count(SORTEO), 1, "{log}");
}

/// A draw recorded in the database but never announced (its server died
/// between the draw's COMMIT and its `sorteo` line; here: the mark undone
/// by hand) is logged by the next server that starts on it, once: the
/// server after it finds it marked. Meanwhile every agency, with most of
/// its bets winning and the agencies' rows interleaved, reads its winners
/// page by page by rank, in storage order, from any server.
#[test]
fn a_draw_recorded_but_never_announced_is_logged_once_and_winners_page_by_rank() {
    let Some(pg) = Postgres::start("announce") else {
        return;
    };
    let dir = TempDir::new("pg-announce");
    // Most bets win: 3 agencies, about 2,600 winners each, several pages.
    let files: Vec<(u32, PathBuf)> = (1..=3)
        .map(|agency| {
            let path = dir.path().join(format!("agency-{agency}.csv"));
            let rows: String = (0..3_000u32)
                .map(|i| {
                    let document = format!("{}", 10_000_000 + agency * 100_000 + i * 7);
                    let number = if i % 7 == 3 { 1 } else { 7574 };
                    format!("Ana,\"Paz, la\",{document},1990-05-06,{number}\r\n")
                })
                .collect();
            std::fs::write(&path, rows).expect("write an agency file");
            (agency, path)
        })
        .collect();
    let first = server(&dir, &pg, 3, "s0");
    let runs = run_agencies(first.addr, &files, &[("CLI_BATCH_MAXAMOUNT", "40")]);
    assert_agencies_finished(&files, &runs);
    first.log.wait_for(SORTEO, Duration::from_secs(30));
    assert_eq!(first.log.count(SORTEO), 1);
    drop(first);
    pg.client()
        .batch_execute("UPDATE draw SET announced = false")
        .expect("undo the mark");
    let (total, ranked): (i64, i64) = {
        let row = pg
            .client()
            .query_one(
                "SELECT (SELECT winners FROM draw), (SELECT count(*) FROM winners)",
                &[],
            )
            .expect("read the draw");
        (row.get(0), row.get(1))
    };
    assert_eq!(total, ranked, "every winner has its rank");

    let second = server(&dir, &pg, 3, "s1");
    let third = server(&dir, &pg, 3, "s2");
    // Each logs (or not) before it listens.
    assert_eq!(
        second.log.count(&format!("{SORTEO} | ganadores: {total}")),
        1,
        "the next server logs the draw"
    );
    assert_eq!(third.log.count(SORTEO), 0, "and the one after it does not");
    for s in [&second, &third] {
        for (agency, path) in &files {
            let want: Vec<String> = file_bets(*agency, path)
                .into_iter()
                .filter(lottery::bet::has_won)
                .map(|b| b.document)
                .collect();
            let (got, pages) = winners_paged(s.addr, *agency);
            assert!(got == want, "agency {agency}: winners differ");
            assert!(pages > 2, "{pages} pages");
        }
    }
}
