//! Logging in the course's format, the same for both binaries:
//!
//! ```text
//! 2026-11-29 18:20:00 INFO     action: sorteo | result: success
//! ```
//!
//! A tiny `log::Log` rather than `simplelog`: simplelog always wraps the
//! level in brackets (`[INFO]`), and the course's lines have none. Each line
//! goes out in one `write` to stdout (or several lines in one, see
//! [`hold`]), so lines from different threads never interleave and a reader
//! (a test, `docker logs`) sees them at once.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Logger {
    level: LevelFilter,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line =
            timestamp(|now| format!("{now} {:<8} {}\n", record.level().as_str(), record.args()));
        let held = HOLD.with(|hold| {
            let mut hold = hold.borrow_mut();
            if !hold.on {
                return false;
            }
            hold.lines.extend_from_slice(line.as_bytes());
            if hold.lines.len() >= HOLD_LIMIT {
                write_out(&hold.lines);
                hold.lines.clear();
            }
            true
        });
        if !held {
            write_out(line.as_bytes());
        }
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

/// Writes whole lines to stdout in one call. Nowhere to report a failed
/// log write; dropping the lines is right.
fn write_out(lines: &[u8]) {
    let _ = std::io::stdout().lock().write_all(lines);
}

/// Lines held back by this thread, see [`hold`].
struct Hold {
    on: bool,
    lines: Vec<u8>,
}

thread_local! {
    static HOLD: std::cell::RefCell<Hold> = const {
        std::cell::RefCell::new(Hold { on: false, lines: Vec::new() })
    };
}

/// Held lines are written at the latest once they pass this many bytes.
const HOLD_LIMIT: usize = 64 * 1024;

/// Holds this thread's log lines until the returned guard is dropped, then
/// writes them in one `write`. The server's event loop holds its lines for
/// one turn of the loop: its line per batch was a `write(2)` per batch
/// (50,000 at 10 M bets). A line is late by at most one turn; a `kill -9`
/// loses at most one turn's lines.
pub fn hold() -> Held {
    HOLD.with(|hold| hold.borrow_mut().on = true);
    Held(())
}

/// See [`hold`].
#[must_use = "lines are held only while the guard lives"]
pub struct Held(());

impl Drop for Held {
    fn drop(&mut self) {
        HOLD.with(|hold| {
            let mut hold = hold.borrow_mut();
            if !hold.lines.is_empty() {
                write_out(&hold.lines);
                hold.lines.clear();
            }
            hold.on = false;
        });
    }
}

/// Calls `f` with the current local time, formatted once per second per
/// thread: the server logs a line per batch, and formatting the clock for
/// each one was a visible cost at millions of bets.
fn timestamp<T>(f: impl FnOnce(&str) -> T) -> T {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            *cache = (
                second,
                chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
            );
        }
        f(&cache.1)
    })
}

/// Parses a level name as the course's configs spell it (`INFO`, `debug`, …).
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    match name.trim().to_ascii_uppercase().as_str() {
        "OFF" => Some(LevelFilter::Off),
        "ERROR" | "CRITICAL" => Some(LevelFilter::Error),
        "WARN" | "WARNING" => Some(LevelFilter::Warn),
        "INFO" => Some(LevelFilter::Info),
        "DEBUG" => Some(LevelFilter::Debug),
        "TRACE" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// Installs the logger. A second call (tests running servers in-process)
/// keeps the first logger and only adjusts the level.
pub fn init(level: LevelFilter) {
    if log::set_boxed_logger(Box::new(Logger { level })).is_ok() {
        log::set_max_level(level);
    }
}

/// Makes a value from outside (an error text, a name) safe inside a log
/// line: the course's grammar splits on ` | ` and expects one line.
pub fn clean(value: impl std::fmt::Display) -> String {
    value
        .to_string()
        .chars()
        .map(|c| match c {
            '|' => '/',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

/// The level used for a log line about a failure that the peer caused:
/// it is the peer's problem, not the server's.
pub const PEER_FAULT: Level = Level::Warn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!(parse_level("info"), Some(LevelFilter::Info));
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("Warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn clean_keeps_a_value_on_one_field() {
        assert_eq!(clean("a | b\nc"), "a / b c");
    }
}
