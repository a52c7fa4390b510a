//! Logging in the course's format, the same for both binaries, through
//! `simplelog` (the design card's crate):
//!
//! ```text
//! 2026-11-29 18:20:00 [INFO] action: sorteo | result: success | ganadores: 12
//! ```
//!
//! Every `action:` line is built here, from one vocabulary: the enums in
//! `event/` name each line and its fields (`action.rs` the actions),
//! `line.rs` writes them in the course's grammar (`action: <name> |
//! result: <success|fail|in_progress> | key: value | ...`), and
//! `grammar.rs` checks a line against it, for every test. A caller says
//! what happened and at which level:
//! `RequestEvent::BatchStored { count, agency }.info()`.
//!
//! Only the time and the level come before the course's text; no thread,
//! target or source location, so the course's parser (which reads from
//! `action:` on) sees its lines unchanged. Lines go to stdout whole: each
//! in one `write`, or several at once while a thread holds them (see
//! [`hold`]); simplelog's lock keeps lines of different threads apart.

mod action;
mod event;
mod grammar;
mod line;
mod rate_limit;

pub use action::{Action, Outcome};
pub use event::{
    ActionEvent, AgencyEvent, ConfigEvent, ConnectionEvent, RequestEvent, ServerEvent, StorageEvent,
};
pub use grammar::{CourseLine, check_line};
pub use line::{Clean, LogLine};
pub use rate_limit::RateLimit;

use log::{Level, LevelFilter};
use simplelog::{ConfigBuilder, WriteLogger, format_description};
use std::cell::RefCell;
use std::io::{self, Write};

/// Installs the logger. A second call (tests running servers in-process)
/// keeps the first logger and only adjusts the level.
pub fn init(level: LevelFilter) {
    let mut config = ConfigBuilder::new();
    config
        .set_time_format_custom(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .set_max_level(LevelFilter::Error)
        .set_time_level(LevelFilter::Error)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off);
    // The local time, if the platform can tell it (else UTC): called before
    // any other thread starts, which is when `time` can read it soundly.
    let _ = config.set_time_offset_to_local();
    if WriteLogger::init(level, config.build(), Lines).is_err() {
        log::set_max_level(level);
    }
}

/// What simplelog writes to: it writes a line in pieces (time, level,
/// text, newline); they are gathered per thread and go to stdout as whole
/// lines, in one `write` per line, or per group of lines while held.
struct Lines;

/// This thread's lines not yet written, and whether they are held.
struct Pending {
    held: bool,
    bytes: Vec<u8>,
}

thread_local! {
    static PENDING: RefCell<Pending> = const {
        RefCell::new(Pending { held: false, bytes: Vec::new() })
    };
}

/// Held lines are written at the latest once they pass this many bytes.
const HOLD_LIMIT: usize = 64 * 1024;

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.bytes.extend_from_slice(buf);
            let whole = p.bytes.last() == Some(&b'\n');
            if whole && (!p.held || p.bytes.len() >= HOLD_LIMIT) {
                write_out(&mut p.bytes);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// Writes whole lines to stdout in one call. Nowhere to report a failed
/// log write; dropping the lines is right.
fn write_out(bytes: &mut Vec<u8>) {
    let _ = io::stdout().lock().write_all(bytes);
    bytes.clear();
}

/// Holds this thread's log lines until the returned guard is dropped, then
/// writes them in one `write`. A server worker holds its lines for one
/// round of a connection (read, handle, answer): the line per batch was a
/// `write(2)` per batch, by a hundred threads taking turns at the logger's
/// lock. A line is late by at most one round; a `kill -9` loses at most
/// one round's lines.
pub fn hold() -> Held {
    PENDING.with(|p| p.borrow_mut().held = true);
    Held(())
}

/// See [`hold`].
#[must_use = "lines are held only while the guard lives"]
pub struct Held(());

impl Drop for Held {
    fn drop(&mut self) {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.held = false;
            if !p.bytes.is_empty() {
                write_out(&mut p.bytes);
            }
        });
    }
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

/// Makes a value from outside (an error text, a name) safe inside a log
/// line: the course's grammar splits on ` | ` and expects one line. The
/// vocabulary cleans every value it writes ([`Clean`]); this is for text
/// built outside it (a storage report's fields).
pub fn clean(value: impl std::fmt::Display) -> String {
    Clean(value).to_string()
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
