//! End to end: the real `server` and `client` binaries on loopback.

mod support;

use lottery::bet::Bet;
use lottery::message::{Batch, ErrorCode, Message};
use std::time::{Duration, Instant};
use support::*;

const LONG: Duration = Duration::from_secs(60);

fn check_lottery(server: &Server, files: &[(u32, std::path::PathBuf)], runs: &[ClientRun]) {
    assert_agencies_finished(files, runs);
    assert_stored_exactly(&server.storage, files);
    server.log.wait_for("action: sorteo | result: success", LONG);
    assert_eq!(server.log.count("action: sorteo"), 1, "the draw runs once");
}

#[test]
fn five_agencies_store_every_bet_exactly_once_and_learn_their_winners() {
    let dir = TempDir::new("five");
    let files = generate(dir.path(), 5, |a| lottery::dataset::course_rows(a, 0.2));
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "5")]);
    let runs = run_agencies(server.addr, &files, &[]);
    check_lottery(&server, &files, &runs);
    // Every log line with an action keeps the course's grammar.
    for line in server.log.lines().iter().chain(runs.iter().flat_map(|r| r.log.iter())) {
        assert_course_grammar(line);
    }
}

#[test]
fn more_agencies_than_workers_all_finish() {
    let dir = TempDir::new("workers");
    let files = generate(dir.path(), 7, |a| 300 + u64::from(a) * 150);
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "7"), ("SERVER_WORKERS", "2")]);
    let runs = run_agencies(server.addr, &files, &[("CLI_BATCH_MAXAMOUNT", "20")]);
    check_lottery(&server, &files, &runs);
}

#[test]
fn single_bet_from_environment() {
    let dir = TempDir::new("single");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "1")]);
    let run = env_bet(
        &server,
        ["Santiago Lionel", "Lorca, \"el Tano\"", "30904465", "1999-03-17", "7574"],
    );
    assert!(run.status.success(), "{}", run.log.join("\n"));
    assert!(
        run.log.iter().any(|l| l
            .contains("action: apuesta_enviada | result: success | dni: 30904465 | numero: 7574")),
        "{}",
        run.log.join("\n")
    );
    assert_eq!(run.winners(), 1);
    server.log.wait_for(
        "action: apuesta_almacenada | result: success | dni: 30904465 | numero: 7574",
        LONG,
    );
    let stored = stored_bets(&server.storage);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].last_name, "Lorca, \"el Tano\"");
    assert_eq!(stored[0].agency, 1);
}

#[test]
fn an_invalid_single_bet_is_reported_and_exits_non_zero() {
    let dir = TempDir::new("badsingle");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "1")]);
    let run = env_bet(&server, ["Ana", "Paz", "12", "1999-02-30", "1"]);
    assert!(!run.status.success());
    assert!(run.log.iter().any(|l| l.contains("action: apuesta_enviada | result: fail")));
    assert!(stored_bets(&server.storage).is_empty());
}

/// A session of `agency`, which has stored nothing yet.
fn fresh_session(server: &Server, agency: u32) -> Raw {
    let mut raw = Raw::connect(server.addr);
    assert_eq!(raw.hello(agency), Message::HelloOk { next_seq: 0, done: false });
    raw
}

/// Agency 1 with one bet from the environment (`NOMBRE`, `APELLIDO`,
/// `DOCUMENTO`, `NACIMIENTO`, `NUMERO`), run to its end.
fn env_bet(server: &Server, fields: [&str; 5]) -> ClientRun {
    let names = ["NOMBRE", "APELLIDO", "DOCUMENTO", "NACIMIENTO", "NUMERO"];
    let env: Vec<(&str, &str)> = names.into_iter().zip(fields).collect();
    finish_client(spawn_client(server.addr, 1, &env))
}

/// The support's bet with another first name.
fn bet(agency: u32, first: &str, number: u16) -> Bet {
    Bet { first_name: first.into(), ..support::bet(agency, number) }
}

#[test]
fn a_batch_with_one_invalid_bet_is_rejected_whole() {
    let dir = TempDir::new("invalidbatch");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "2")]);
    let mut raw = fresh_session(&server, 1);
    raw.send(&Message::Batch(Batch {
        agency: 1,
        first_seq: 0,
        bets: vec![bet(1, "Ana", 1), bet(1, "", 2), bet(1, "Eva", 3)],
    }));
    match raw.recv() {
        Message::Error { code, message } => {
            assert_eq!(code, ErrorCode::InvalidBet);
            assert!(message.contains("first_name is empty"), "{message}");
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(raw.closed());
    server.log.wait_for("action: apuesta_recibida | result: fail | cantidad: 3", LONG);
    // Nothing of the batch is stored, and the agency may start over.
    let mut raw = fresh_session(&server, 1);
    raw.send(&Message::Batch(Batch { agency: 1, first_seq: 0, bets: vec![bet(1, "Ana", 1)] }));
    assert_eq!(raw.recv(), Message::Ack { next_seq: 1 });
    assert_eq!(stored_bets(&server.storage), vec![bet(1, "Ana", 1)]);
}

/// A WINNERS? asked before the draw is answered NOT_READY at once and the
/// connection closed: a worker never waits for the draw, so with a single
/// worker the agency that polls never keeps the last agency out. The agency
/// asks again on a new connection and gets its winners after the draw.
#[test]
fn winners_asked_before_the_draw_get_not_ready_at_once_and_release_the_worker() {
    let dir = TempDir::new("notready");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "2"), ("SERVER_WORKERS", "1")]);
    let mut one = Raw::connect(server.addr);
    assert!(matches!(one.hello(1), Message::HelloOk { .. }));
    one.send(&Message::Batch(Batch {
        agency: 1,
        first_seq: 0,
        bets: vec![bet(1, "Ana", 7574), bet(1, "Eva", 3)],
    }));
    assert_eq!(one.recv(), Message::Ack { next_seq: 2 });
    one.send(&Message::Done { total: 2 });
    assert_eq!(one.recv(), Message::Ack { next_seq: 2 });

    let asked = Instant::now();
    one.send(&Message::WinnersQuery { offset: 0 });
    assert_eq!(one.recv(), Message::NotReady { finished: 1, expected: 2 });
    assert!(asked.elapsed() < Duration::from_millis(300), "NOT_READY after {:?}", asked.elapsed());
    assert!(one.closed(), "the server closes after NOT_READY");

    // The only worker is free again: agency 2 gets in and finishes.
    let mut two = Raw::connect(server.addr);
    assert!(matches!(two.hello(2), Message::HelloOk { .. }));
    two.send(&Message::Done { total: 0 });
    assert_eq!(two.recv(), Message::Ack { next_seq: 0 });
    two.send(&Message::Bye);
    assert!(two.closed());
    server.log.wait_for("action: sorteo | result: success", LONG);

    // Agency 1 asks again on a new connection.
    let mut again = Raw::connect(server.addr);
    assert_eq!(again.hello(1), Message::HelloOk { next_seq: 2, done: true });
    again.send(&Message::WinnersQuery { offset: 0 });
    assert_eq!(
        again.recv(),
        Message::Winners { total: 1, offset: 0, documents: vec!["123".into()] }
    );
}

#[test]
fn sigterm_with_idle_clients_exits_zero_within_a_second() {
    let dir = TempDir::new("sigterm");
    let mut server = Server::start(dir.path(), &[("SERVER_AGENCIES", "3")]);
    let _silent = Raw::connect(server.addr);
    let mut hello = Raw::connect(server.addr);
    assert!(matches!(hello.hello(2), Message::HelloOk { .. }));
    let mut echo = Raw::connect(server.addr);
    echo.send(&Message::Echo(b"ping".to_vec()));
    assert_eq!(echo.recv(), Message::Echo(b"ping".to_vec()));
    server.log.wait_for("action: hello | result: success", LONG);
    let start = Instant::now();
    server.terminate();
    let status = server.wait(Duration::from_secs(5)).expect("server exited");
    let took = start.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    for close in [
        "close_listener",
        "close_connections | result: success | count: 3",
        "close_thread_pool",
        "close_storage",
    ] {
        server.log.wait_for(&format!("action: {close}"), Duration::from_secs(5));
    }
    assert!(hello.closed(), "idle agency connection closed");
}

#[test]
fn garbage_gets_an_error_and_the_server_keeps_serving() {
    let dir = TempDir::new("garbage");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "1")]);
    let mut raw = Raw::connect(server.addr);
    raw.send_bytes(b"GET / HTTP/1.1\r\nHost: lottery\r\n\r\n");
    match raw.recv() {
        Message::Error { code, .. } => {
            assert!(matches!(code, ErrorCode::UnknownType | ErrorCode::FrameTooLarge), "{code:?}")
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(raw.closed());
    let files = generate(server_dir(&server), 1, |_| 500);
    let runs = run_agencies(server.addr, &files, &[]);
    check_lottery(&server, &files, &runs);
}

fn server_dir(server: &Server) -> &std::path::Path {
    server.storage.parent().expect("storage has a directory")
}

#[test]
fn the_course_data_set_when_present() {
    let zip = repo().join("../shared/data/tp0-dataset.zip");
    if !zip.exists() {
        println!("skipped: {} not present", zip.display());
        return;
    }
    let dir = TempDir::new("dataset");
    let ok = std::process::Command::new("unzip")
        .args(["-q", "-j", "-o"])
        .arg(&zip)
        .arg("-d")
        .arg(dir.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        println!("skipped: `unzip` not available to open {}", zip.display());
        return;
    }
    let files: Vec<_> = (1..=5).map(|a| (a, dir.path().join(format!("agency-{a}.csv")))).collect();
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "5")]);
    let runs = run_agencies(server.addr, &files, &[]);
    check_lottery(&server, &files, &runs);
    let total: usize = files.iter().map(|(a, p)| file_bets(*a, p).len()).sum();
    assert_eq!(total, 78_697);
}

/// The server logs the ingest's progress every `SERVER_PROGRESS_INTERVAL`
/// while bets arrive, with growing counts, in the course's grammar; a run
/// shorter than the interval logs none.
#[test]
fn a_long_ingest_logs_its_progress_and_a_short_one_does_not() {
    let dir = TempDir::new("progress");
    // One agency, 10 bets a batch, one batch in flight, each acknowledged
    // after its fsync: 4,000 round trips, a second or more.
    let files = generate(dir.path(), 1, |_| 40_000);
    let server = Server::start(
        dir.path(),
        &[("SERVER_AGENCIES", "1"), ("SERVER_PROGRESS_INTERVAL", "100ms")],
    );
    let runs = run_agencies(
        server.addr,
        &files,
        &[("CLI_BATCH_MAXAMOUNT", "10"), ("CLI_BATCH_WINDOW", "1")],
    );
    check_lottery(&server, &files, &runs);
    let progress: Vec<String> =
        server.log.lines().into_iter().filter(|l| l.contains("action: ingesta")).collect();
    println!("{} progress lines, the last: {:?}", progress.len(), progress.last());
    assert!(progress.len() >= 2, "progress lines: {progress:?}");
    let mut last = 0;
    for line in &progress {
        assert_course_grammar(line);
        assert!(line.contains("| result: in_progress |"), "{line}");
        let field = |key: &str| -> u64 {
            line.split(&format!("| {key}: "))
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        let bets = field("apuestas");
        assert!(bets > last && bets <= 40_000, "{line}");
        assert!(field("por_segundo") > 0, "{line}");
        assert!(field("agencias_activas") <= 1, "{line}");
        assert!(field("agencias_finalizadas") <= 1, "{line}");
        last = bets;
    }

    // The same kind of run with the default interval (2 s) and a quick
    // ingest: no progress line.
    let dir = TempDir::new("noprogress");
    let files = generate(dir.path(), 1, |_| 2_000);
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "1")]);
    let runs = run_agencies(server.addr, &files, &[]);
    check_lottery(&server, &files, &runs);
    assert_eq!(server.log.count("action: ingesta"), 0);
}
