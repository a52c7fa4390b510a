//! What a new user meets first: `make run` with a shared `CARGO_TARGET_DIR`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

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
    println!(
        "make run took {:.1} s:\n{stdout}",
        started.elapsed().as_secs_f64()
    );
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
    assert!(
        !copy.join("target").exists(),
        "cargo built into target/ despite CARGO_TARGET_DIR"
    );
}

/// The repository's files without `.git`, `.data` and build directories
/// (`tar` keeps their times, so cargo sees unchanged sources as unchanged).
fn copy_sources(from: &Path, to: &Path) {
    let mut excludes: Vec<String> = ["./target", "./.git", "./.data"]
        .iter()
        .map(|e| format!("--exclude={e}"))
        .collect();
    // This test's own target directory, when CARGO_TARGET_DIR puts it inside.
    let own_target: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_owned();
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
