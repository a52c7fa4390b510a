//! Exactly-once must not depend on the calendar: the real binaries under a
//! faked clock (Debian's `libfaketime`, the library behind `faketime -f
//! '+2d' COMMAND`, preloaded directly so that signals reach the binary
//! itself and not the `faketime` wrapper, which does not forward them).
//!
//! Skipped with a message where libfaketime is not installed, except in
//! CI (`CI` set), where it fails: `.ci/run` installs it.

mod support;

use chrono::{Days, NaiveDate, Utc};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// libfaketime's multi-threaded flavour, or `None` (after saying why)
/// outside CI when it is missing.
fn libfaketime(test: &str) -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib").ok().and_then(|dirs| {
        dirs.flatten().map(|d| d.path().join("faketime/libfaketimeMT.so.1")).find(|p| p.exists())
    });
    if found.is_none() {
        let how = "install Debian's `faketime` package (apt-get install faketime)";
        if std::env::var_os("CI").is_some() {
            panic!("libfaketime is needed by {test} and was not found: {how}");
        }
        eprintln!("skipping {test}: libfaketime not found; to run it, {how}");
    }
    found
}

/// The environment that runs a binary `offset` away from the real clock
/// (libfaketime's syntax: `+2d`, `-1d`).
fn clock<'a>(lib: &'a Path, offset: &'a str) -> [(&'a str, &'a str); 2] {
    [("LD_PRELOAD", lib.to_str().expect("utf-8 path")), ("FAKETIME", offset)]
}

/// Writes an agency file of `rows` rows, born on 1990-01-01 except the
/// rows in `born_on`, with the birthdate given there. Every tenth row bets
/// on the winning number.
fn agency_file(dir: &Path, rows: usize, born_on: &[(usize, NaiveDate)]) -> PathBuf {
    let path = dir.join("agency-1.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for i in 0..rows {
        let born = born_on
            .iter()
            .find(|(row, _)| *row == i)
            .map_or_else(|| "1990-01-01".to_owned(), |(_, d)| d.to_string());
        let number = if i % 10 == 0 { 7574 } else { i % 7000 };
        write!(out, "Ana,Paz,{},{born},{number}\r\n", 1_000_000 + i).expect("write");
    }
    out.flush().expect("flush");
    drop(out);
    path
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Stops `client` with SIGKILL once the server acknowledged a few batches
/// and asserts it was stopped mid-ingest.
fn kill_mid_ingest(server: &Server, mut client: Child, rows: usize) {
    assert!(
        server.log.wait_count("action: apuesta_recibida | result: success", 5, WAIT),
        "the agency never got going"
    );
    client.kill().expect("SIGKILL the client");
    client.wait().expect("reaped");
    let stored = stored_bets(&server.storage).len();
    assert!(stored < rows, "the agency finished ({stored} bets) before it could be stopped");
}

/// The reproduction: rows born tomorrow, an ingest stopped today
/// and resumed two days later with both clocks moved. A clock-dependent
/// rule skipped those rows on the first day and sent them on the third,
/// shifting every later position: 3 rows stored twice.
#[test]
fn an_ingest_stopped_today_and_resumed_two_days_later_stores_every_row_once() {
    let Some(lib) = libfaketime("calendar") else {
        return;
    };
    let dir = TempDir::new("calendar");
    let tomorrow = today() + Days::new(1);
    let rows = 20_000;
    let file = agency_file(dir.path(), rows, &[(3, tomorrow), (7, tomorrow), (11, tomorrow)]);
    let file_arg = file.to_str().expect("utf-8 path");
    let agency =
        [("CLI_BETS_FILE", file_arg), ("CLI_BATCH_MAXAMOUNT", "10"), ("CLI_BATCH_WINDOW", "1")];
    let settings = [("SERVER_AGENCIES", "1")];

    // Day 1: the real clock.
    let mut server = Server::start(dir.path(), &settings);
    let client = spawn_client(server.addr, 1, &agency);
    kill_mid_ingest(&server, client, rows);
    server.terminate();
    assert!(server.wait(WAIT).is_some_and(|s| s.success()));
    let port = server.addr.port().to_string();

    // Day 3: both clocks two days ahead.
    let ahead = clock(&lib, "+2d");
    let server_env: Vec<(&str, &str)> =
        settings.iter().copied().chain([("SERVER_PORT", port.as_str())]).chain(ahead).collect();
    let mut server = Server::start_with_storage(&server.storage, &server_env);
    let client_env: Vec<(&str, &str)> = agency.iter().copied().chain(ahead).collect();
    let run = finish_client(spawn_client(server.addr, 1, &client_env));
    assert!(run.status.success(), "{}", run.log.join("\n"));
    assert_eq!(run.winners(), rows / 10);
    server.terminate();
    assert!(server.wait(WAIT).is_some_and(|s| s.success()));
    assert_stored_exactly(&server.storage, &[(1, file.clone())]);
    assert_eq!(file_bets(1, &file).len(), rows, "every row is a valid bet");

    // A server whose clock went back two days accepts its own storage,
    // rows born "in its future" included, and still answers the winners.
    let behind = clock(&lib, "-2d");
    let server_env: Vec<(&str, &str)> = settings.iter().copied().chain(behind).collect();
    let mut server = Server::start_with_storage(&server.storage, &server_env);
    server.log.wait_for("action: recovery | result: success", WAIT);
    let run = finish_client(spawn_client(server.addr, 1, &agency));
    assert!(run.status.success(), "{}", run.log.join("\n"));
    assert_eq!(run.winners(), rows / 10);
    server.terminate();
    assert!(server.wait(WAIT).is_some_and(|s| s.success()));
}

/// An agency and a server a day apart agree on every bet: a row born on
/// the agency's today is not "in the future" for a server whose clock is
/// a day behind, so it never costs the agency a fatal `invalid_bet`.
#[test]
fn an_agency_a_day_ahead_of_the_server_is_never_refused_a_valid_bet() {
    let Some(lib) = libfaketime("calendar") else {
        return;
    };
    let dir = TempDir::new("calendar-apart");
    let file = agency_file(dir.path(), 500, &[(0, today()), (250, today())]);
    let behind = clock(&lib, "-1d");
    let server_env: Vec<(&str, &str)> =
        [("SERVER_AGENCIES", "1")].into_iter().chain(behind).collect();
    let mut server = Server::start(dir.path(), &server_env);
    let file_arg = file.to_str().expect("utf-8 path");
    let run = finish_client(spawn_client(server.addr, 1, &[("CLI_BETS_FILE", file_arg)]));
    assert!(run.status.success(), "{}", run.log.join("\n"));
    assert_eq!(run.winners(), 50);
    server.terminate();
    assert!(server.wait(WAIT).is_some_and(|s| s.success()));
    assert_stored_exactly(&server.storage, &[(1, file)]);
}
