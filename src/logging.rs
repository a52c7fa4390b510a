//! Logging in the course's format, the same for both binaries, through
//! `simplelog` (the design card's crate):
//!
//! ```text
//! 2026-11-29 18:20:00 [INFO] action: sorteo | result: success | ganadores: 12
//! ```
//!
//! Only the time and the level come before the course's text; no thread,
//! target or source location, so the course's parser (which reads from
//! `action:` on) sees its lines unchanged. Lines go to stdout through a
//! line-buffered writer: each line leaves in one `write`, and simplelog's
//! lock keeps lines of different threads from interleaving.

use log::{Level, LevelFilter};
use simplelog::{ConfigBuilder, WriteLogger, format_description};

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
    let stdout = std::io::LineWriter::new(std::io::stdout());
    if WriteLogger::init(level, config.build(), stdout).is_err() {
        log::set_max_level(level);
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
