//! The card's commands as a newcomer runs them, on the real binaries: a
//! server with nothing configured makes its own secret, `server agency-key
//! N` prints the key that secret gives, an agency sends one bet from its
//! environment, and a restart keeps the secret; a server with no agencies
//! (the course's server-alone exercise) answers ECHO and stops cleanly.
//!
//! Each binary runs in a directory laid out like a fresh clone (the repo's
//! `config/` and nothing else) with only the variables the README's
//! commands set: no secret, no storage path.

mod support;

use lottery::auth::Secret;
use lottery::message::{ErrorCode, Message};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(20);

/// A directory like a fresh clone's: the repository's two config files.
fn fresh_clone(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    for file in ["config/server/config.ini", "config/client/config.yaml"] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(file), to).unwrap();
    }
    dir
}

/// `bin` run in `dir` with `env` and nothing else of this process's
/// environment (no secret, no storage path, no agency key).
fn command(bin: &str, dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir).env_clear().envs(env.iter().copied());
    cmd
}

/// What the README's server command sets: where to listen. One agency,
/// so that its bet completes the draw and the agency finishes.
const SERVER_ENV: [(&str, &str); 3] =
    [("SERVER_IP", "127.0.0.1"), ("SERVER_PORT", "0"), ("SERVER_AGENCIES", "1")];

/// Starts the server binary in `dir`; returns it, its log and its address.
fn start_server(dir: &Path) -> (std::process::Child, Log, SocketAddr) {
    let mut child = command(SERVER, dir, &SERVER_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start server");
    let log = follow_client(&mut child);
    let line = log.wait_for("action: listen | result: success", LONG);
    let addr = line
        .rsplit("address: ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, log, addr)
}

fn print_agency_key(dir: &Path, agency: &str) -> Output {
    command(SERVER, dir, &SERVER_ENV)
        .args(["agency-key", agency])
        .output()
        .expect("run server agency-key")
}

/// SIGTERM; the server stops with exit code 0, nothing failed.
fn stop(mut child: std::process::Child, log: &Log) {
    signal(child.id(), "TERM");
    let status = wait_child(&mut child, LONG).expect("server stops");
    let lines = log.lines();
    assert_eq!(status.code(), Some(0), "{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.contains("result: fail")), "{}", lines.join("\n"));
}

/// The secret file's text, after checking it is closed to others.
fn secret_text(dir: &Path) -> String {
    let path = dir.join("lottery.secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is closed to others", path.display());
    }
    std::fs::read_to_string(path).unwrap()
}

/// `server agency-key 1` in `dir`: the key it prints.
fn key_of_agency_1(dir: &Path) -> String {
    let out = print_agency_key(dir, "1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The README's agency: `cargo run --bin client` in `dir` with its id, key,
/// server and one bet in the environment, run to its end; its log.
fn send_one_bet(dir: &Path, key: &str, addr: SocketAddr) -> String {
    let addr = addr.to_string();
    let env = [
        ("CLI_ID", "1"),
        ("CLI_KEY", key),
        ("CLI_SERVER_ADDRESS", addr.as_str()),
        ("NOMBRE", "Ana"),
        ("APELLIDO", "Paz"),
        ("DOCUMENTO", "30904465"),
        ("NACIMIENTO", "1999-03-17"),
        ("NUMERO", "7574"),
    ];
    let out = command(CLIENT, dir, &env).output().expect("run client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_cards_commands_work_on_a_fresh_clone() {
    let dir = fresh_clone("card");
    let dir = dir.path();

    // `cargo run --bin server`: no secret configured, so it makes one.
    let (server, log, addr) = start_server(dir);
    let line = log.wait_for("action: secret", LONG);
    assert!(
        line.ends_with(
            "action: secret | result: success | path: ./lottery.secret | created: true | keys: cargo run --bin server -- agency-key N"
        ),
        "{line}"
    );
    assert_course_grammar(&line);
    let secret = Secret::from_hex(&secret_text(dir)).expect("64 hex characters");

    // `cargo run --bin server -- agency-key 1`: the same secret's key.
    let key = key_of_agency_1(dir);
    assert_eq!(key, secret.agency_key(1).to_hex());

    // `cargo run --bin client` with one bet in its environment: stored,
    // and (the lottery's only agency) it wins.
    let agency = send_one_bet(dir, &key, addr);
    assert!(
        agency.contains("action: apuesta_enviada | result: success | dni: 30904465 | numero: 7574"),
        "{agency}"
    );
    assert!(agency.contains("cant_ganadores: 1"), "{agency}");
    let stored = stored_bets(&dir.join("bets.csv"));
    let fields =
        |b: &lottery::bet::Bet| (b.agency, b.first_name.clone(), b.document.clone(), b.number);
    assert_eq!(
        stored.iter().map(fields).collect::<Vec<_>>(),
        [(1, "Ana".into(), "30904465".into(), 7574)]
    );
    stop(server, &log);

    // A restart reads the same secret: the same key still works.
    let before = secret_text(dir);
    let (server, log, addr) = start_server(dir);
    let line = log.wait_for("action: secret", LONG);
    assert!(line.contains("path: ./lottery.secret | created: false"), "{line}");
    assert_eq!(secret_text(dir), before, "the secret is never replaced");
    assert_eq!(key_of_agency_1(dir), key);
    let agency = send_one_bet(dir, &key, addr);
    assert!(agency.contains("cant_ganadores: 1"), "{agency}");
    assert_eq!(stored_bets(&dir.join("bets.csv")).len(), 1, "stored once");
    stop(server, &log);
}

/// A default secret file that is open to others or holds no secret stops
/// the server at start, saying why; `agency-key` never creates one.
#[test]
fn a_bad_default_secret_stops_the_server_and_agency_key_never_creates_one() {
    let dir = fresh_clone("card-bad-secret");
    let dir = dir.path();
    let out = print_agency_key(dir, "1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("action: agency_key | result: fail | error: config key SERVER_SECRET_FILE: not set, so the default: ./lottery.secret does not exist: the server creates it at its first start"),
        "{err}"
    );
    assert!(!dir.join("lottery.secret").exists());

    let path = dir.join("lottery.secret");
    for (text, mode, says) in [
        (
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
            0o644,
            "./lottery.secret has mode 0644: others than its owner may read it; chmod 600 it",
        ),
        ("not a secret\n", 0o600, "./lottery.secret: must be 64 hexadecimal characters"),
    ] {
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let out = command(SERVER, dir, &SERVER_ENV).output().expect("run server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "action: config | result: fail | error: config key SERVER_SECRET_FILE: not set, so the default: {says}"
            )),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "left as it was");
    }
}

/// The course's server-alone exercise (`generar-compose.sh OUT 0`): with
/// no agencies the server answers ECHO, refuses every HELLO with
/// `unknown_agency`, has no draw, and stops on SIGTERM with exit code 0;
/// the refused HELLO is the only `result: fail` line.
#[test]
fn a_server_with_no_agencies_answers_echo_and_stops_cleanly() {
    let dir = TempDir::new("card-no-agencies");
    let mut server = Server::start(dir.path(), &[("SERVER_AGENCIES", "0")]);
    let warning = server.log.wait_for("agencies: 0 | warning:", LONG);
    assert!(warning.contains("[WARN]"), "{warning}");

    Raw::connect(server.addr).echo(b"test_echo_server");

    let mut raw = Raw::connect(server.addr);
    raw.say_hello(1);
    match raw.recv() {
        Message::Error { code, message } => {
            assert_eq!(code, ErrorCode::UnknownAgency, "{message}");
            assert_eq!(message, "agency 1 is outside 1..=0");
        }
        other => panic!("HELLO got {other:?}"),
    }
    assert!(raw.closed());
    server.log.wait_for("code: unknown_agency", LONG);

    server.terminate();
    let status = server.wait(LONG).expect("server stops");
    let lines = server.log.lines();
    assert_eq!(status.code(), Some(0), "{}", lines.join("\n"));
    assert!(lines.iter().any(|l| l.contains("action: shutdown | result: success")));
    let fails: Vec<&String> = lines.iter().filter(|l| l.contains("result: fail")).collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(
        fails[0].contains("action: hello | result: fail") && fails[0].contains("unknown_agency"),
        "{fails:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("action: sorteo")), "no draw");
    assert!(!lottery::storage::mark_path(&server.storage).exists());
    for line in &lines {
        assert_course_grammar(line);
    }
}
