//! Several servers over one PostgreSQL database (cargo feature `postgres`):
//! real server and client binaries on loopback, a throwaway cluster per
//! test (see `support::pg`), agencies failing over between the servers
//! while servers are killed, the database restarts, a row stays locked or
//! the database's default isolation is stricter. Every test checks the
//! same two things at the end: each agency's file is in the `bets` table
//! exactly once, and every agency learned exactly the winners its file
//! holds. The schema and the start-up checks are in `postgres_schema.rs`;
//! lost COMMITs and the draw's announcement in `postgres_commit.rs`.

#![cfg(feature = "postgres")]

mod support;

use lottery::dataset::course_rows;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};
use support::pg::{Postgres, server};
use support::*;

const SORTEO: &str = "action: sorteo | result: success";
const STORED: &str = "action: apuesta_recibida | result: success";

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
        let servers = (0..n).map(|i| server(&dir, &pg, agencies, &format!("s{i}"))).collect();
        Lottery { servers, files, _dir: dir, pg }
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
    let Some(mut l) = Lottery::start("kill", 5, |a| course_rows(a, 4.0), 3) else {
        return;
    };
    // Small batches: the ingest lasts long enough to be cut twice.
    let clients = l.spawn_spread(&[("CLI_BATCH_MAXAMOUNT", "50")]);
    let first = somewhere(0, 2);
    let second = 1 - first;
    for victim in [first, second] {
        let at = l.servers[victim].log.count(STORED) + somewhere(5, 60);
        assert!(
            l.servers[victim].log.wait_count(STORED, at, Duration::from_secs(30)),
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

/// Cuts the servers off their database with `cut` once server 0 has
/// stored a few batches, lets every agency finish, and checks what every
/// such test checks: each agency's file stored exactly once, one draw, no
/// server exited. Returns how long `cut` took.
fn cut_mid_ingest(l: &mut Lottery, cut: impl FnOnce(&Postgres)) -> Duration {
    let clients = l.spawn_spread(&[("CLI_BATCH_MAXAMOUNT", "50")]);
    let at = somewhere(5, 60);
    assert!(
        l.servers[0].log.wait_count(STORED, at, Duration::from_secs(30)),
        "never stored {at} batches"
    );
    let started = Instant::now();
    cut(&l.pg);
    let took = started.elapsed();
    let runs: Vec<ClientRun> = clients.into_iter().map(finish_client).collect();
    assert_agencies_finished(&l.files, &runs);
    assert_bets_exactly(l.pg.stored_bets(), &l.files);
    assert_eq!(l.sorteos(), 1);
    for (i, s) in l.servers.iter_mut().enumerate() {
        assert!(s.child.try_wait().expect("server status").is_none(), "server {i} exited");
    }
    took
}

#[test]
fn a_database_restart_mid_ingest_is_retried_and_no_server_exits() {
    let Some(mut l) = Lottery::start("restart", 5, |a| course_rows(a, 2.0), 2) else {
        return;
    };
    cut_mid_ingest(&mut l, Postgres::restart_fast);
    // A commit cut by the restart fails (`commit | fail`), or finds the
    // database gone (`storage | in_progress`, the outage's line).
    let met: usize = l
        .servers
        .iter()
        .map(|s| s.log.count("action: commit | result: fail") + s.log.count(UNREACHABLE))
        .sum();
    assert!(met > 0, "no commit met the restart");
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
            spawn_client(s.addr, 1, &[("CLI_BETS_FILE", file), ("CLI_BATCH_MAXAMOUNT", "100")])
        })
        .collect();
    let runs: Vec<ClientRun> = clients.into_iter().map(finish_client).collect();
    let twice = [l.files[0].clone(), l.files[0].clone()];
    assert_agencies_finished(&twice, &runs);
    assert_bets_exactly(l.pg.stored_bets(), &l.files);
    assert_eq!(l.sorteos(), 1);
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
        s.log.wait_count("action: commit | result: fail", 1, Duration::from_secs(20)),
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
    assert!(s.child.try_wait().expect("server status").is_none(), "the server exited");
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
    let runs: Vec<ClientRun> =
        l.spawn_spread(&[("CLI_BATCH_MAXAMOUNT", "100")]).into_iter().map(finish_client).collect();
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

const UNREACHABLE: &str = "action: storage | result: in_progress";
const REACHABLE: &str = "action: storage | result: success";

/// No primary for a few seconds (what a failover looks like from a
/// server): the servers keep running, say so at most once a second, say
/// when the database is back, and the agencies finish with every bet once.
#[test]
fn a_database_gone_for_seconds_mid_ingest_is_logged_once_a_second_and_loses_nothing() {
    let Some(mut l) = Lottery::start("outage", 5, |a| course_rows(a, 2.0), 2) else {
        return;
    };
    let outage = cut_mid_ingest(&mut l, |pg| {
        pg.stop_fast();
        std::thread::sleep(Duration::from_secs(4));
        pg.start_again();
    });
    for (i, s) in l.servers.iter().enumerate() {
        let lines = s.log.count(UNREACHABLE);
        // One line when it is first noticed, then one a second at most.
        let most = outage.as_secs() as usize + 2;
        assert!((1..=most).contains(&lines), "server {i}: {lines} outage lines in {outage:?}");
    }
    // ... then that it is back, by a server that used the database again
    // (one whose agencies all moved on may not).
    let back: usize = l.servers.iter().map(|s| s.log.count(REACHABLE)).sum();
    assert!(back > 0, "no server said the database is back");
}

/// A server started while no primary answers waits for one up to
/// `STORAGE_WAIT`, saying so at most once a second, then serves.
#[test]
fn a_server_started_before_its_database_waits_for_it() {
    let Some(pg) = Postgres::start("wait") else {
        return;
    };
    let dir = TempDir::new("pg-wait");
    let files = generate(dir.path(), 1, |a| course_rows(a, 0.2));
    pg.stop_fast();
    let started = Instant::now();
    let server = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            pg.start_again();
        });
        support::pg::server_at(&dir, &pg.url, 1, "s", &[("STORAGE_WAIT", "60s")])
    });
    assert!(started.elapsed() >= Duration::from_secs(3), "served before its database was up");
    let waiting = server.log.count("action: storage_open | result: in_progress");
    let most = started.elapsed().as_secs() as usize + 1;
    assert!((1..=most).contains(&waiting), "{waiting} waiting lines in {:?}", started.elapsed());
    let runs = run_agencies(server.addr, &files, &[]);
    assert_agencies_finished(&files, &runs);
    assert_bets_exactly(pg.stored_bets(), &files);
}

/// ... and past `STORAGE_WAIT` it stops, saying why, instead of serving
/// agencies it cannot store for.
#[test]
fn a_server_whose_database_stays_away_stops_after_storage_wait() {
    let Some(pg) = Postgres::start("no-wait") else {
        return;
    };
    let dir = TempDir::new("pg-no-wait");
    pg.stop_fast();
    let env = [
        ("STORAGE_BACKEND", "postgres"),
        ("STORAGE_URL", pg.url.as_str()),
        ("SERVER_AGENCIES", "1"),
        ("STORAGE_WAIT", "2s"),
    ];
    let started = Instant::now();
    let (mut child, log) = Server::spawn_with_storage(&dir.path().join("unused.csv"), &env);
    let status = wait_child(&mut child, Duration::from_secs(20)).expect("the server never stopped");
    assert!(!status.success(), "a server without its database exited 0");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "stopped after {took:?}"
    );
    assert_eq!(log.count("action: listen | result: success"), 0, "it listened");
}
