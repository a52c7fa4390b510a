//! Checks logs against the course's grammar with the library's one checker
//! (`lottery::logging::check_line`), for tests outside Rust: the Docker
//! end-to-end test runs it on every container's log.
//!
//! ```text
//! cargo run --release --example check-log -- FILE...   (or the log on stdin)
//! ```
//!
//! Every line with `action:` is checked. Prints how many were; exits 1
//! naming the first line that breaks the grammar, 2 if a file cannot be
//! read.

use lottery::logging::check_line;
use std::io::{self, BufRead, BufReader};
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let mut checked = 0;
    let outcome = if files.is_empty() {
        check("stdin", io::stdin().lock(), &mut checked)
    } else {
        files.iter().try_for_each(|name| {
            let file =
                std::fs::File::open(name).map_err(|e| Bad::Unreadable(format!("{name}: {e}")))?;
            check(name, BufReader::new(file), &mut checked)
        })
    };
    match outcome {
        Ok(()) => {
            println!("{checked} action lines in the course's grammar");
            ExitCode::SUCCESS
        }
        Err(Bad::Line(why)) => {
            eprintln!("{why}");
            ExitCode::FAILURE
        }
        Err(Bad::Unreadable(why)) => {
            eprintln!("cannot read {why}");
            ExitCode::from(2)
        }
    }
}

enum Bad {
    /// `name:number: what is wrong: the line`.
    Line(String),
    Unreadable(String),
}

/// Checks the `action:` lines of one log; counts them into `checked`.
fn check(name: &str, log: impl BufRead, checked: &mut usize) -> Result<(), Bad> {
    for (number, line) in log.split(b'\n').enumerate() {
        let line = line.map_err(|e| Bad::Unreadable(format!("{name}: {e}")))?;
        // A log may hold bytes that are not UTF-8 (a container's other
        // output); they cannot be in an action line that passes.
        let line = String::from_utf8_lossy(&line);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if !line.contains("action:") {
            continue;
        }
        *checked += 1;
        if let Err(why) = check_line(line) {
            return Err(Bad::Line(format!("{name}:{}: {why}: {line}", number + 1)));
        }
    }
    Ok(())
}
