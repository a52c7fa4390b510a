//! Agencies prove who they are (issue 10): HELLO → CHALLENGE → AUTH →
//! HELLO_OK with keys derived from the server's secret. Real binaries on
//! loopback; the support module gives every server `TEST_SECRET` and every
//! agency its own key unless a test says otherwise.

mod support;

use lottery::dataset::course_rows;
use lottery::message::{Batch, ErrorCode, Message, PROTOCOL_VERSION};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::*;

const LONG: Duration = Duration::from_secs(60);
const AUTH_FAIL: &str = "action: auth | result: fail";

/// The timing test loads the machine: the other tests wait for it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn batch(agency: u32, n: u16) -> Message {
    Message::Batch(Batch { agency, first_seq: 0, bets: (0..n).map(|i| bet(agency, i)).collect() })
}

fn expect_error(raw: &mut Raw, want: ErrorCode) {
    match raw.recv() {
        Message::Error { code, message } => {
            assert_eq!(code, want, "message: {message}");
        }
        other => panic!("expected ERROR {want:?}, got {other:?}"),
    }
    assert!(raw.closed(), "connection closed after ERROR {want:?}");
}

fn challenge(raw: &mut Raw, agency: u32) -> lottery::auth::Nonce {
    raw.send(&Message::Hello { version: PROTOCOL_VERSION, agency });
    match raw.recv() {
        Message::Challenge { nonce } => nonce,
        other => panic!("expected CHALLENGE, got {other:?}"),
    }
}

#[test]
fn five_agencies_with_their_keys_store_everything_as_before() {
    let _serial = serial();
    let dir = TempDir::new("auth-five");
    let files = generate(dir.path(), 5, |a| course_rows(a, 0.1));
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "5")]);
    let runs = run_agencies(server.addr, &files, &[]);
    assert_agencies_finished(&files, &runs);
    assert_stored_exactly(&server.storage, &files);
    server.log.wait_for("action: sorteo | result: success", LONG);
    // Every agency authenticated (more than once if it asked for its
    // winners before the draw: each poll is a new connection).
    for agency in 1..=5 {
        let hello = format!("action: hello | result: success | agencia: {agency} |");
        assert!(server.log.count(&hello) >= 1, "no {hello}");
    }
    assert_eq!(server.log.count(AUTH_FAIL), 0);
}

#[test]
fn another_agencys_key_is_refused_and_nothing_is_stored() {
    let _serial = serial();
    let dir = TempDir::new("auth-impostor");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "3")]);

    // By hand: agency 2's key claiming agency 3, with a batch and a DONE
    // sent right behind the AUTH.
    let mut raw = Raw::connect(server.addr);
    let nonce = challenge(&mut raw, 3);
    let asked = Instant::now();
    let mut bytes =
        Message::Auth { tag: agency_key(2).tag(&nonce, 3, PROTOCOL_VERSION) }.to_bytes().unwrap();
    bytes.extend(batch(3, 2).to_bytes().unwrap());
    bytes.extend(Message::Done { total: 2 }.to_bytes().unwrap());
    raw.send_bytes(&bytes);
    expect_error(&mut raw, ErrorCode::Unauthorized);
    let held = asked.elapsed();
    println!("ERROR unauthorized after {held:?}");
    assert!(
        held >= Duration::from_millis(900),
        "a failed AUTH is answered after the delay, not at once ({held:?})"
    );
    let line = server.log.wait_for(AUTH_FAIL, LONG);
    assert!(line.contains("| agencia: 3 | peer: 127.0.0.1:"), "{line}");

    // The real client binary with agency 2's key claiming agency 3.
    let client = spawn_client(
        server.addr,
        3,
        &[
            ("CLI_KEY", &agency_key(2).to_hex()),
            ("NOMBRE", "Eva"),
            ("APELLIDO", "Paz"),
            ("DOCUMENTO", "42"),
            ("NACIMIENTO", "1990-01-01"),
            ("NUMERO", "7574"),
        ],
    );
    let run = finish_client(client);
    assert!(!run.status.success(), "{}", run.log.join("\n"));
    assert!(
        run.log
            .iter()
            .any(|l| l.contains("action: client | result: fail") && l.contains("unauthorized")),
        "{}",
        run.log.join("\n")
    );
    assert!(server.log.wait_count(AUTH_FAIL, 2, LONG));

    // Nothing stored, no DONE recorded: agency 3 itself finds a clean slate.
    assert!(stored_bets(&server.storage).is_empty());
    let mut real = Raw::connect(server.addr);
    assert_eq!(real.hello(3), Message::HelloOk { next_seq: 0, done: false });
    assert_eq!(server.log.count("action: agencia_finalizada"), 0);
}

#[test]
fn a_replayed_auth_is_refused() {
    let _serial = serial();
    let dir = TempDir::new("auth-replay");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "2")]);
    // An honest handshake, overheard.
    let mut honest = Raw::connect(server.addr);
    let first = challenge(&mut honest, 1);
    let overheard = Message::Auth { tag: agency_key(1).tag(&first, 1, PROTOCOL_VERSION) };
    honest.send(&overheard);
    assert!(matches!(honest.recv(), Message::HelloOk { .. }));
    // Replayed on a new connection: a new nonce, so the answer is wrong.
    let mut replay = Raw::connect(server.addr);
    let second = challenge(&mut replay, 1);
    assert_ne!(first, second, "every challenge is fresh");
    replay.send(&overheard);
    expect_error(&mut replay, ErrorCode::Unauthorized);
    server.log.wait_for(AUTH_FAIL, LONG);
}

#[test]
fn only_echo_is_served_before_the_handshake_completes() {
    let _serial = serial();
    let dir = TempDir::new("auth-before");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "2")]);
    let requests = [
        ("BATCH", batch(1, 1)),
        ("DONE", Message::Done { total: 0 }),
        ("WINNERS?", Message::WinnersQuery { offset: 0 }),
    ];
    for (name, request) in &requests {
        // Before HELLO.
        println!("{name} before HELLO");
        let mut raw = Raw::connect(server.addr);
        raw.send(&Message::Echo(b"hi".to_vec()));
        assert_eq!(raw.recv(), Message::Echo(b"hi".to_vec()));
        raw.send(request);
        expect_error(&mut raw, ErrorCode::HelloRequired);
        // After HELLO, before AUTH (ECHO still answered meanwhile).
        println!("{name} between HELLO and AUTH");
        let mut raw = Raw::connect(server.addr);
        challenge(&mut raw, 1);
        raw.send(&Message::Echo(b"hi".to_vec()));
        assert_eq!(raw.recv(), Message::Echo(b"hi".to_vec()));
        raw.send(request);
        expect_error(&mut raw, ErrorCode::Unauthorized);
    }
    // AUTH out of place.
    let mut raw = Raw::connect(server.addr);
    raw.send(&Message::Auth { tag: [0; 32] });
    expect_error(&mut raw, ErrorCode::HelloRequired);
    let mut raw = Raw::connect(server.addr);
    assert!(matches!(raw.hello(1), Message::HelloOk { .. }));
    raw.send(&Message::Auth { tag: [0; 32] });
    expect_error(&mut raw, ErrorCode::DuplicateHello);
    let mut raw = Raw::connect(server.addr);
    challenge(&mut raw, 1);
    raw.send(&Message::Hello { version: PROTOCOL_VERSION, agency: 2 });
    expect_error(&mut raw, ErrorCode::DuplicateHello);
    // A CHALLENGE is the server's to send.
    let mut raw = Raw::connect(server.addr);
    raw.send(&Message::Challenge { nonce: [0; 32] });
    expect_error(&mut raw, ErrorCode::UnexpectedMessage);

    // A worker writes a round's log lines after its answers: wait for the
    // one HELLO line before counting.
    server.log.wait_count("action: hello | result: success", 1, LONG);
    assert!(stored_bets(&server.storage).is_empty());
    assert_eq!(server.log.count("action: agencia_finalizada"), 0);
    assert_eq!(server.log.count("action: hello | result: success"), 1);
}

/// Runs a binary with `env` (and nothing of ours), to completion.
fn run_binary(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for k in ["SERVER_SECRET", "SERVER_SECRET_FILE", "SERVER_AUTH", "CLI_KEY", "CLI_KEY_FILE"] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run binary")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_or_malformed_key_is_a_clear_error_at_start() {
    let client_config = repo().join("config/client/config.yaml");
    let config = client_config.to_str().unwrap();
    for (env, names) in [
        (vec![], "config key key: missing"),
        (vec![("CLI_KEY", "")], "config key key: missing"),
        (vec![("CLI_KEY", "0123")], "config key key: must be 64 hexadecimal characters"),
        (vec![("CLI_KEY_FILE", "/nonexistent/key")], "config key key.file: /nonexistent/key"),
    ] {
        let mut all = vec![
            ("CLI_CONFIG", config),
            ("CLI_ID", "1"),
            ("CLI_SERVER_ADDRESS", "127.0.0.1:9"),
            ("CLI_BETS_FILE", "/nonexistent.csv"),
        ];
        all.extend(env.iter().copied());
        let out = run_binary(CLIENT, &[], &all);
        let err = stderr_of(&out);
        println!("{env:?}: exit {:?}, {}", out.status.code(), err.trim());
        assert!(!out.status.success());
        assert!(
            err.contains("action: config | result: fail | error: ") && err.contains(names),
            "{err}"
        );
    }
    // The server with its secret file missing: a configured secret is never
    // replaced by a new one (with none configured, the server makes its
    // own: tests/card.rs).
    let server_config = repo().join("config/server/config.ini");
    let out = run_binary(
        SERVER,
        &[],
        &[
            ("SERVER_CONFIG", server_config.to_str().unwrap()),
            ("SERVER_PORT", "0"),
            ("SERVER_SECRET_FILE", "/nonexistent/secret"),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains(
            "action: config | result: fail | error: config key SERVER_SECRET_FILE: /nonexistent/secret"
        ),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn agency_key_prints_the_key_the_server_expects() {
    let dir = TempDir::new("auth-agency-key");
    let server_config = repo().join("config/server/config.ini");
    let config = ("SERVER_CONFIG", server_config.to_str().unwrap());
    let out = run_binary(SERVER, &["agency-key", "3"], &[config, ("SERVER_SECRET", TEST_SECRET)]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", agency_key(3).to_hex()));
    // From a file, which must be closed to others.
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{TEST_SECRET}\n")).unwrap();
    let secret_file = ("SERVER_SECRET_FILE", file.to_str().unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run_binary(SERVER, &["agency-key", "3"], &[config, secret_file]);
        assert!(!out.status.success());
        assert!(stderr_of(&out).contains("chmod 600"), "{}", stderr_of(&out));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = run_binary(SERVER, &["agency-key", "3"], &[config, secret_file]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), agency_key(3).to_hex());
    let out = run_binary(SERVER, &["agency-key", "0"], &[config, secret_file]);
    assert!(!out.status.success());
}

#[test]
fn with_server_auth_off_the_old_handshake_still_works() {
    let _serial = serial();
    let dir = TempDir::new("auth-off");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "2"), ("SERVER_AUTH", "off")]);
    let warning = server.log.wait_for("auth: off", LONG);
    assert!(warning.contains("WARN"), "{warning}");
    // HELLO → HELLO_OK, no CHALLENGE.
    let mut raw = Raw::connect(server.addr);
    raw.send(&Message::Hello { version: PROTOCOL_VERSION, agency: 1 });
    assert_eq!(raw.recv(), Message::HelloOk { next_seq: 0, done: false });
    raw.send(&batch(1, 2));
    assert_eq!(raw.recv(), Message::Ack { next_seq: 2 });
    raw.send(&Message::Done { total: 2 });
    assert_eq!(raw.recv(), Message::Ack { next_seq: 2 });
    // An agency runs against an open server only when told `auth: off`
    // (with its key, which goes unused; without it: tests/client_trust.rs).
    let files = generate(dir.path(), 2, |_| 300);
    let files = vec![files[1].clone()];
    let runs = run_agencies(server.addr, &files, &[("CLI_AUTH", "off")]);
    assert!(runs[0].status.success(), "{}", runs[0].log.join("\n"));
    assert_eq!(stored_bets(&server.storage).len(), 2 + file_bets(2, &files[0].1).len());
}

/// Attackers that guess agencies' keys in a loop: HELLO, a wrong AUTH,
/// wait for the ERROR (as a guesser must, to learn the outcome), again.
/// They claim the very agencies that are ingesting: a failed AUTH holds
/// back only its own connection's answer, never the agency it claimed.
fn key_guessers(addr: std::net::SocketAddr, n: usize) -> Swarm {
    Swarm::new().spawn(n, move |i, control| {
        let agency = i as u32 % 5 + 1;
        let wrong = agency_key(agency + 100);
        while !control.stopped() {
            let mut raw = Raw::connect(addr);
            let answer = raw.hello_with(agency, &wrong);
            assert!(
                matches!(answer, Message::Error { code: ErrorCode::Unauthorized, .. }),
                "{answer:?}"
            );
            control.count();
        }
    })
}

/// Wall time for 5 agencies against a fresh server, with `attackers`
/// guessing keys meanwhile; and how many failed AUTHs the server logged.
fn timed_run(
    dir: &TempDir,
    files: &[(u32, std::path::PathBuf)],
    attackers: u32,
    round: usize,
) -> (Duration, usize) {
    let storage = dir.path().join(format!("bets-{attackers}-{round}.csv"));
    let server = Server::start_with_storage(&storage, &[("SERVER_AGENCIES", "5")]);
    let guessers = (attackers > 0).then(|| key_guessers(server.addr, attackers as usize));
    if attackers > 0 {
        // Every attacker has failed once before the agencies start.
        assert!(server.log.wait_count(AUTH_FAIL, attackers as usize, LONG));
    }
    let start = Instant::now();
    let runs = run_agencies(server.addr, files, &[]);
    let took = start.elapsed();
    let fails = server.log.count(AUTH_FAIL);
    if let Some(g) = guessers {
        g.stop();
    }
    assert_agencies_finished(files, &runs);
    assert_stored_exactly(&storage, files);
    (took, fails)
}

#[test]
fn key_guessers_do_not_delay_honest_agencies() {
    let _serial = serial();
    let dir = TempDir::new("auth-guessers");
    let files = generate(dir.path(), 5, |a| course_rows(a, 1.0));
    // Five of each, interleaved, compared by their medians: one noisy run
    // on a shared machine must not decide the outcome.
    let (mut alone, mut attacked, mut fails) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..5 {
        alone.push(timed_run(&dir, &files, 0, round).0);
        let (took, failed) = timed_run(&dir, &files, 10, round);
        attacked.push(took);
        fails.push(failed);
    }
    alone.sort();
    attacked.sort();
    let (baseline, under_attack) = (alone[2], attacked[2]);
    println!(
        "5 honest agencies, 78,697 bets, median of 5: {baseline:?} alone, {under_attack:?} with 10 key guessers (alone {alone:?}, attacked {attacked:?}; failed AUTHs logged per attacked run {fails:?})"
    );
    assert!(
        under_attack <= baseline * 3 / 2,
        "with guessers {under_attack:?} vs {baseline:?} alone"
    );
}
