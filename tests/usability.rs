//! What a new user meets first: `make run` with a shared `CARGO_TARGET_DIR`,
//! and an agency's progress lines during a long ingest.

mod support;

use lottery::framing::FrameReader;
use lottery::logging::{CourseLine, Outcome};
use lottery::message::Message;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use support::*;

/// A stand-in for the server that takes `delay` to acknowledge each batch,
/// so an ingest lasts as long as the test needs on any machine. Returns the
/// bets it acknowledged.
fn slow_server(delay: Duration) -> (SocketAddr, JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut reader = FrameReader::new(stream.try_clone().expect("clone"));
        let mut out = stream;
        let mut stored = 0;
        while let Ok(Some(frame)) = reader.read_frame() {
            let answer = match Message::from_frame(&frame).expect("a valid message") {
                Message::Hello { .. } => Message::HelloOk { next_seq: 0, done: false },
                Message::Batch(batch) => {
                    thread::sleep(delay);
                    stored = batch.first_seq + batch.bets.len() as u64;
                    Message::Ack { next_seq: stored }
                }
                Message::Done { total } => Message::Ack { next_seq: total },
                Message::WinnersQuery { offset } => {
                    Message::Winners { total: 0, offset, documents: Vec::new() }
                }
                Message::Bye => break,
                other => panic!("unexpected message {other:?}"),
            };
            out.write_all(&answer.to_bytes().expect("encode")).expect("answer");
        }
        stored
    });
    (addr, server)
}

/// Runs one agency with `bets` bets in batches of 10 against a server that
/// takes `delay` per batch; returns its log and the bets acknowledged.
fn ingest(name: &str, bets: u64, delay: Duration) -> (ClientRun, u64) {
    let dir = TempDir::new(name);
    let files = generate(dir.path(), 1, |_| bets);
    let (addr, server) = slow_server(delay);
    let file = files[0].1.to_str().expect("utf-8 path");
    // The stand-in asks for no key (HELLO → HELLO_OK): the agency must be
    // told so, or it refuses the server.
    let run = finish_client(spawn_client(
        addr,
        1,
        &[("CLI_BETS_FILE", file), ("CLI_BATCH_MAXAMOUNT", "10"), ("CLI_AUTH", "off")],
    ));
    let stored = server.join().expect("server thread");
    assert!(run.status.success(), "client failed:\n{}", run.log.join("\n"));
    assert_eq!(stored, bets);
    for line in &run.log {
        assert_course_grammar(line);
    }
    (run, stored)
}

/// (enviadas, confirmadas, por_segundo) of every `progreso` line.
fn progress_lines(log: &[String]) -> Vec<(u64, u64, u64)> {
    log.iter()
        .filter_map(|l| CourseLine::parse(l).ok())
        .filter(|line| line.action == "progreso")
        .map(|line| {
            assert_eq!(line.result, Outcome::InProgress);
            let keys: Vec<&str> = line.fields.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, ["enviadas", "confirmadas", "por_segundo"]);
            let n = |i: usize| line.fields[i].1.parse::<u64>().expect("a whole number");
            (n(0), n(1), n(2))
        })
        .collect()
}

#[test]
fn a_long_ingest_logs_growing_progress_and_a_short_one_none() {
    // 30 batches at 100 ms each: at least 3 s, so lines at about 1 s and 2 s.
    let (run, total) = ingest("progress-long", 300, Duration::from_millis(100));
    let lines = progress_lines(&run.log);
    println!("progress lines: {lines:?}");
    assert!(lines.len() >= 2, "log:\n{}", run.log.join("\n"));
    for &(sent, acked, rate) in &lines {
        assert!(acked <= sent && sent <= total, "{lines:?}");
        assert!(rate > 0, "{lines:?}");
    }
    for pair in lines.windows(2) {
        assert!(pair[0].0 <= pair[1].0 && pair[0].1 < pair[1].1, "{lines:?}");
    }

    let (run, _) = ingest("progress-short", 50, Duration::ZERO);
    assert_eq!(progress_lines(&run.log), [], "log:\n{}", run.log.join("\n"));
    assert!(run.log.iter().any(|l| l.contains("action: resumen")));
}

/// `make run` in a copy of the repository (so no `target/` exists) with
/// `CARGO_TARGET_DIR` elsewhere, as with a shared target directory: the
/// scripts must run the binaries where cargo put them.
///
/// Both directories persist in cargo's `CARGO_TARGET_TMPDIR`: the first run
/// builds the crate and its dependencies in release mode from nothing, later
/// runs only what changed.
#[test]
fn make_run_uses_the_binaries_in_cargo_target_dir() {
    if Command::new("make").arg("--version").output().is_err() {
        println!("skipped: `make` is not installed");
        return;
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("make-run");
    let copy = root.join("repo");
    let target = root.join("target");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).expect("create the copy");
    copy_sources(&repo(), &copy);

    let started = std::time::Instant::now();
    let out = Command::new("make")
        .arg("run")
        .current_dir(&copy)
        .env("CARGO_TARGET_DIR", &target)
        // Not the jobserver of a `make test` this test may run under.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("CARGO_MAKEFLAGS")
        .output()
        .expect("run make");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("make run took {:.1} s:\n{stdout}", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "make run failed:\n{stdout}\n{stderr}");
    // `agency 3: 2 winners (16014 bets sent)`: `?` stands for a missing count.
    for agency in 1..=5 {
        let prefix = format!("agency {agency}: ");
        let line = stdout.lines().find(|l| l.starts_with(&prefix));
        assert!(
            line.is_some_and(|l| l.ends_with(" bets sent)") && !l.contains('?')),
            "no result for agency {agency}:\n{stdout}"
        );
    }
    assert!(stdout.contains("stored: "), "{stdout}");
    assert!(target.join("release/server").is_file());
    assert!(!copy.join("target").exists(), "cargo built into target/ despite CARGO_TARGET_DIR");
}

/// The repository's files without `.git`, `.data` and build directories
/// (`tar` keeps their times, so cargo sees unchanged sources as unchanged).
fn copy_sources(from: &Path, to: &Path) {
    let mut excludes: Vec<String> =
        ["./target", "./.git", "./.data"].iter().map(|e| format!("--exclude={e}")).collect();
    // This test's own target directory, when CARGO_TARGET_DIR puts it inside.
    let own_target: PathBuf =
        Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_owned();
    if let Ok(inside) = own_target.strip_prefix(from) {
        excludes.push(format!("--exclude=./{}", inside.display()));
    }
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"tar -C "$1" "${@:3}" -cf - . | tar -C "$2" -xf -"#)
        .arg("copy")
        .arg(from)
        .arg(to)
        .args(&excludes)
        .status()
        .expect("run tar");
    assert!(status.success(), "copying the repository failed");
}
