//! Several servers over one PostgreSQL database (cargo feature `postgres`):
//! real server and client binaries on loopback, a throwaway cluster per
//! test (see `support::pg`). Every test checks the same two things at the
//! end: each agency's file is in the `bets` table exactly once, and every
//! agency learned exactly the winners its file holds.

#![cfg(feature = "postgres")]

mod support;

use lottery::dataset::course_rows;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::pg::Postgres;
use support::*;

const SORTEO: &str = "action: sorteo | result: success";
const STORED: &str = "action: apuesta_recibida | result: success";

/// Starts a server of the lottery in `pg` (bets.csv unused: in `dir`).
fn server(dir: &TempDir, pg: &Postgres, agencies: u32, name: &str) -> Server {
    let agencies = agencies.to_string();
    Server::start_with_storage(
        &dir.path().join(format!("{name}-unused.csv")),
        &[
            ("STORAGE_BACKEND", "postgres"),
            ("STORAGE_URL", &pg.url),
            ("SERVER_AGENCIES", &agencies),
            ("SERVER_PROGRESS_INTERVAL", "0"),
        ],
    )
}

/// Runs a server of `agencies` agencies on `url` until it exits (for a
/// server that refuses the database at start): its status and its output.
fn run_server(url: &str, agencies: u32) -> (ExitStatus, String) {
    let out = std::process::Command::new(SERVER)
        .env("SERVER_CONFIG", repo().join("config/server/config.ini"))
        .env("SERVER_IP", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .env("SERVER_SECRET", TEST_SECRET)
        .env("STORAGE_BACKEND", "postgres")
        .env("STORAGE_URL", url)
        .env("SERVER_AGENCIES", agencies.to_string())
        .output()
        .expect("run server");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
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
    let (status, text) = run_server(&pg.url, 3);
    assert!(!status.success(), "started anyway:\n{text}");
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
    let (status, text) = run_server(&url, 2);
    assert!(!status.success(), "started anyway:\n{text}");
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
