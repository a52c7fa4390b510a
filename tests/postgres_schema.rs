//! What a server over PostgreSQL accepts at start, and how the database
//! holds the bets (cargo feature `postgres`; a throwaway cluster per
//! test, see `support::pg`): a server that disagrees with the lottery's
//! `SERVER_AGENCIES` or `SERVER_AUTH`, a database not in UTF-8, a
//! version-2 database upgraded by two servers at once, and `COPY ... TO
//! csv` giving the bytes `bets.csv` would hold.

#![cfg(feature = "postgres")]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::pg::{Postgres, server};
use support::*;

const SORTEO: &str = "action: sorteo | result: success";

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
        child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
        child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>),
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

#[test]
fn a_server_with_another_number_of_agencies_refuses_the_database_at_start() {
    let Some(pg) = Postgres::start("agencies") else {
        return;
    };
    let dir = TempDir::new("pg-agencies");
    let first = server(&dir, &pg, 5, "s0");
    let text = refused(&pg.url, 3, &[]);
    assert!(text.contains("set up for 5 agencies and SERVER_AGENCIES is 3"), "{text}");
    drop(first);
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
    pg.client().batch_execute(SCHEMA_V2_FIXTURE).expect("create a version-2 database");
    // Two servers that disagree on SERVER_AUTH upgrade it at the same time:
    // one of them records its setting and serves, the other refuses.
    let url = pg.url.as_str();
    let (off, required) = std::thread::scope(|s| {
        let off = s.spawn(|| try_server(url, 2, &[("SERVER_AUTH", "off")]));
        let required = s.spawn(|| try_server(url, 2, &[]));
        (off.join().expect("the first start"), required.join().expect("the second start"))
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
