//! Writing one line of the course's grammar, `action: <name> | result:
//! <success|fail|in_progress> | key: value | ...`: the only code that
//! writes the separators, so no line can get them wrong. Values are
//! cleaned on the way ([`Clean`]): nothing from outside can add a field or
//! a line. Writes straight into the logger's formatter, with no `String`
//! in between: the line logged per batch allocates nothing.

use super::action::{Action, Outcome};
use log::Level;
use std::fmt::{self, Display, Formatter, Write};

/// A line of the vocabulary (the enums of `logging/event/`), logged at
/// the caller's level: `ServerEvent::Listening { address }.info()`. Only
/// the vocabulary's enums implement it.
pub trait LogLine: Display {
    /// Logs the line at `level` (written only if that level is on).
    fn log(&self, level: Level) {
        log::log!(level, "{self}");
    }

    fn error(&self) {
        self.log(Level::Error);
    }

    fn warn(&self) {
        self.log(Level::Warn);
    }

    fn info(&self) {
        self.log(Level::Info);
    }

    fn debug(&self) {
        self.log(Level::Debug);
    }

    /// Prints the line on stderr: before the logger is set up (its level
    /// is in the config), or for an operator's command.
    fn eprint(&self) {
        eprintln!("{self}");
    }
}

/// Text from outside as a line's field takes it: anything `Display`,
/// cleaned when written ([`Clean`]).
pub type Text<'a> = &'a dyn Display;

/// Starts a line: its action and result (see [`Line`]).
pub(super) fn line<'a, 'f>(
    f: &'a mut Formatter<'f>,
    action: Action,
    outcome: Outcome,
) -> Line<'a, 'f> {
    Line::new(f, action, outcome)
}

/// A line being written into a formatter (see the module doc): started
/// with its action and result, then one call per field, in order.
pub(super) struct Line<'a, 'f> {
    f: &'a mut Formatter<'f>,
    written: fmt::Result,
}

impl<'a, 'f> Line<'a, 'f> {
    pub(super) fn new(f: &'a mut Formatter<'f>, action: Action, outcome: Outcome) -> Self {
        let written = write!(f, "action: {} | result: {}", action.name(), outcome.name());
        Line { f, written }
    }

    /// ` | key: value`, the value cleaned.
    pub(super) fn field(mut self, key: &str, value: impl Display) -> Self {
        if self.written.is_ok() {
            self.written = write!(self.f, " | {key}: {}", Clean(value));
        }
        self
    }

    /// A field only when there is a value.
    pub(super) fn field_if(self, key: &str, value: Option<impl Display>) -> Self {
        match value {
            Some(value) => self.field(key, value),
            None => self,
        }
    }

    /// Fields their owner wrote already, ` | `-separated, each value
    /// cleaned (a storage report, `StorageError::log_fields`).
    pub(super) fn fields(mut self, fields: impl Display) -> Self {
        if self.written.is_ok() {
            self.written = write!(self.f, " | {fields}");
        }
        self
    }

    pub(super) fn end(self) -> fmt::Result {
        self.written
    }
}

/// A value as it may stand in a log line: `|` (the grammar's separator)
/// becomes `/` and a line break a space. Written without allocating.
pub struct Clean<T>(pub T);

impl<T: Display> Display for Clean<T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(Cleaning(f), "{}", self.0)
    }
}

/// Passes text on to a formatter, cleaned (see [`Clean`]).
struct Cleaning<'a, 'f>(&'a mut Formatter<'f>);

impl Write for Cleaning<'_, '_> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while let Some(at) = memchr::memchr3(b'|', b'\n', b'\r', s.as_bytes()) {
            self.0.write_str(&s[..at])?;
            self.0.write_char(if s.as_bytes()[at] == b'|' { '/' } else { ' ' })?;
            s = &s[at + 1..];
        }
        self.0.write_str(s)
    }
}

/// A value written as `{:?}` writes it (a setting's variant name).
pub(super) struct AsDebug<T>(pub(super) T);

impl<T: fmt::Debug> Display for AsDebug<T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// An agency number, or `-` for a connection that has not said which.
pub(super) struct OrDash(pub(super) Option<u32>);

impl Display for OrDash {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(agency) => write!(f, "{agency}"),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample;

    impl Display for Sample {
        fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
            Line::new(f, Action::Config, Outcome::InProgress)
                .field("a", 1)
                .field("error", "x | y\r\nz|")
                .field_if("skipped", None::<u8>)
                .field_if("kept", Some(true))
                .fields("k: v | w: 2")
                .end()
        }
    }

    #[test]
    fn a_line_writes_its_separators_and_cleans_its_values() {
        assert_eq!(
            Sample.to_string(),
            "action: config | result: in_progress | a: 1 | error: x / y  z/ | kept: true | k: v | w: 2"
        );
        assert_eq!(Clean("plain").to_string(), "plain");
        assert_eq!(OrDash(None).to_string(), "-");
        assert_eq!(OrDash(Some(7)).to_string(), "7");
    }
}
