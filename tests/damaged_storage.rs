//! Damaged storage with the real `server` binary: a byte flipped in the
//! middle of the journal or of the committed rows stops the server at start,
//! naming the file and the byte offset, and changes nothing on disk; a
//! commit torn by a crash is cut and the start says why; the operator's
//! subcommands (`storage-check`, `storage-rebuild-journal`,
//! `storage-truncate`) get the store going again.
//!
//! The store is written by the library, 30 commits of 100 bets from 5
//! agencies (the 3,000 acknowledged bets), so every test knows where
//! each commit lies.

mod support;

use chrono::NaiveDate;
use lottery::bet::Bet;
use lottery::storage::{Storage, SyncMode, journal_path};
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::*;

const COMMITS: usize = 30;
const PER_COMMIT: usize = 100;

/// Where one commit's rows and journal line lie.
struct Commit {
    rows: Range<u64>,
    line: Range<u64>,
}

/// Writes the store and says where each commit lies.
fn write_store(path: &Path) -> Vec<Commit> {
    let (mut storage, _) = Storage::open(path, SyncMode::None).expect("open storage");
    let journal = journal_path(path);
    let journal_len = || std::fs::metadata(&journal).expect("journal").len();
    let mut commits = Vec::new();
    for c in 0..COMMITS {
        let agency = (c % 5 + 1) as u32;
        let bets: Vec<Bet> = (0..PER_COMMIT)
            .map(|i| Bet {
                agency,
                first_name: format!("Nombre{c}"),
                last_name: "Apellido".into(),
                document: format!("{}", 30_000_000 + c * PER_COMMIT + i),
                birthdate: NaiveDate::from_ymd_opt(1990, 5, 6).expect("date"),
                number: (i % 10_000) as u16,
            })
            .collect();
        let (rows_at, line_at) = (storage.committed_len(), journal_len());
        storage.store_bets(&bets).expect("store");
        commits
            .push(Commit { rows: rows_at..storage.committed_len(), line: line_at..journal_len() });
    }
    commits
}

fn files(path: &Path) -> (Vec<u8>, Vec<u8>) {
    (std::fs::read(path).expect("bets.csv"), std::fs::read(journal_path(path)).expect("journal"))
}

fn change(path: &Path, at: u64, f: impl FnOnce(u8) -> u8) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at as usize] = f(bytes[at as usize]);
    std::fs::write(path, bytes).expect("write");
}

/// Runs the server binary with its storage at `storage` until it exits by
/// itself (a refused start): its exit status and log.
fn start_refused(storage: &Path) -> (std::process::ExitStatus, String) {
    let mut child =
        Server::command(storage, &[]).stderr(Stdio::piped()).spawn().expect("start server");
    let Some(_) = wait_child(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        let out = child.wait_with_output().expect("reap");
        panic!(
            "the server did not stop by itself; it logged:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    let out = child.wait_with_output().expect("output");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `server <args>`, run to completion.
fn operator(args: &[&str]) -> Output {
    Command::new(SERVER)
        .args(args)
        .env("SERVER_CONFIG", repo().join("config/server/config.ini"))
        .output()
        .expect("run server subcommand")
}

/// The start is refused: exit ≠ 0, one `recovery | result: fail` line
/// naming `file` and `offset`, and both files exactly as they were.
fn assert_start_refused(storage: &Path, file: &Path, offset: u64) {
    let before = files(storage);
    let (status, log) = start_refused(storage);
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("action: recovery | result: fail"))
        .unwrap_or_else(|| panic!("no refused recovery in the log:\n{log}"));
    println!("refused start: {line}");
    assert_course_grammar(line);
    let named = format!("| file: {} | offset: {offset} |", file.display());
    assert!(line.contains(&named), "{line:?} names {named:?}");
    assert!(!log.contains("action: listen | result: success"), "it never served:\n{log}");
    assert!(files(storage) == before, "both files byte for byte unchanged");
}

/// The reproduction: one digit changed in a journal line in the
/// middle. The server used to start, `dropped_bytes: 27900`, with 900 of
/// 3,000 acknowledged bets gone.
#[test]
fn a_digit_changed_in_a_middle_journal_line_stops_the_server_and_changes_nothing() {
    let dir = TempDir::new("damaged-journal");
    let storage = dir.path().join("bets.csv");
    let commits = write_store(&storage);
    let journal = journal_path(&storage);
    let bad = &commits[COMMITS - 9];
    // `end=N…`: the first digit of N, one more.
    change(&journal, bad.line.start + 4, |d| if d == b'9' { b'0' } else { d + 1 });
    assert_start_refused(&storage, &journal, bad.line.start);

    // The operator: the check says the same and changes nothing ...
    let before = files(&storage);
    let check = operator(&["storage-check", &storage.display().to_string()]);
    let said = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("| offset: {} |", bad.line.start)), "{said}");
    assert!(files(&storage) == before);
    // ... the rows are intact, so a new journal from them keeps every bet.
    let rebuild = operator(&["storage-rebuild-journal", &storage.display().to_string()]);
    let said = String::from_utf8_lossy(&rebuild.stdout);
    println!("{said}");
    assert!(rebuild.status.success(), "{said}");
    assert!(said.contains("apuestas: 3000"), "{said}");
    assert_eq!(files(&storage).0, before.0, "bets.csv untouched");
    let mut old = journal.clone().into_os_string();
    old.push(".old");
    assert_eq!(std::fs::read(&old).expect("old journal kept"), before.1);

    let mut server = Server::start_with_storage(&storage, &[]);
    let line = server.log.wait_for("action: recovery | result: success", Duration::from_secs(20));
    assert!(line.contains("| dropped_bytes: 0 | journal_dropped_bytes: 0 |"), "{line}");
    server.terminate();
    assert!(server.wait(Duration::from_secs(10)).is_some());
    assert_eq!(stored_bets(&storage).len(), COMMITS * PER_COMMIT);
}

#[test]
fn a_byte_flipped_in_committed_rows_stops_the_server_and_changes_nothing() {
    let dir = TempDir::new("damaged-rows");
    let storage = dir.path().join("bets.csv");
    let commits = write_store(&storage);
    let bad = &commits[COMMITS / 2];
    // Inside a document of the commit's third row: a digit, one more.
    let bytes = std::fs::read(&storage).expect("bets.csv");
    let third_row = bytes[bad.rows.start as usize..]
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .map(|(i, _)| bad.rows.start + i as u64 + 1)
        .expect("a third row");
    let digit = third_row + 2 + "Nombre15,Apellido,".len() as u64 + 3;
    assert!(bytes[digit as usize].is_ascii_digit());
    change(&storage, digit, |d| if d == b'9' { b'0' } else { d + 1 });
    assert_start_refused(&storage, &storage, bad.rows.start);

    // The operator cuts back to the last whole commit; the cut is saved.
    let cut = operator(&["storage-truncate", &storage.display().to_string()]);
    let said = String::from_utf8_lossy(&cut.stdout);
    println!("{said}");
    assert!(cut.status.success(), "{said}");
    assert_eq!(std::fs::metadata(&storage).expect("bets.csv").len(), bad.rows.start);
    let mut saved = storage.clone().into_os_string();
    saved.push(".cut");
    assert_eq!(
        std::fs::metadata(&saved).expect("cut rows saved").len(),
        commits[COMMITS - 1].rows.end - bad.rows.start
    );
    let mut server = Server::start_with_storage(&storage, &[]);
    server.log.wait_for("action: recovery | result: success", Duration::from_secs(20));
    server.terminate();
    assert!(server.wait(Duration::from_secs(10)).is_some());
}

/// A commit torn by a crash is still cut at start, and the log says why.
#[test]
fn a_torn_last_commit_is_cut_and_the_start_says_why() {
    let dir = TempDir::new("torn-tail");
    let storage = dir.path().join("bets.csv");
    let commits = write_store(&storage);
    let last = &commits[COMMITS - 1];
    // Its journal line half written, its rows partly.
    let cut = |path: &Path, len: u64| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(len))
            .expect("cut");
    };
    cut(&journal_path(&storage), last.line.start + 10);
    cut(&storage, last.rows.start + 1000);
    let mut server = Server::start_with_storage(&storage, &[]);
    let line = server.log.wait_for("action: recovery | result: success", Duration::from_secs(20));
    println!("{line}");
    assert_course_grammar(&line);
    assert!(
        line.contains("| dropped_bytes: 1000 | journal_dropped_bytes: 10 |")
            && line.contains("reason: torn last commit"),
        "{line}"
    );
    server.terminate();
    assert!(server.wait(Duration::from_secs(10)).is_some());
    assert_eq!(stored_bets(&storage).len(), (COMMITS - 1) * PER_COMMIT);
}
