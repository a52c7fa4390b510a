//! The one checker of the course's grammar, shared by the unit tests, the
//! tests in `tests/` and the Docker end-to-end test (through `cargo run
//! --example check-log`). A line as the binaries write it:
//!
//! ```text
//! 2026-11-29 18:20:00 [INFO] action: sorteo | result: success | ganadores: 12
//! ```
//!
//! the time and the level as simplelog writes them, then `action: <name>`,
//! `result: <success|fail|in_progress>`, and any `key: value` fields, all
//! separated by ` | `. Names and keys are lowercase `snake_case`; a value
//! holds no `|` and no line break (see [`super::clean`]).

use super::action::Outcome;
use log::Level;

/// A log line taken apart; see the module doc.
#[derive(Debug, PartialEq)]
pub struct CourseLine<'a> {
    pub level: Level,
    pub action: &'a str,
    pub result: Outcome,
    pub fields: Vec<(&'a str, &'a str)>,
}

impl<'a> CourseLine<'a> {
    /// Parses one line (without its line break).
    ///
    /// # Errors
    /// What breaks the grammar, first found first.
    pub fn parse(line: &'a str) -> Result<CourseLine<'a>, String> {
        if line.contains(['\n', '\r']) {
            return Err("a line break inside the line".into());
        }
        let (level, text) = split_prefix(line)?;
        let mut parts = text.split(" | ");
        let action = parts
            .next()
            .and_then(|p| p.strip_prefix("action: "))
            .ok_or("the text does not start with `action: `")?;
        if !is_word(action) {
            return Err(format!("action {action:?} is not a snake_case word"));
        }
        let result = parts
            .next()
            .and_then(|p| p.strip_prefix("result: "))
            .ok_or("no `result: ` after the action")?;
        let result = Outcome::from_name(result)
            .ok_or_else(|| format!("result {result:?} is not success, fail or in_progress"))?;
        let fields = parts.map(field).collect::<Result<Vec<_>, _>>()?;
        if fields.iter().any(|(key, _)| *key == "result") {
            return Err("a second `result` field".into());
        }
        Ok(CourseLine { level, action, result, fields })
    }
}

/// Whether `line` follows the course's grammar; `Err` says how it does not.
///
/// # Errors
/// See [`CourseLine::parse`].
pub fn check_line(line: &str) -> Result<(), String> {
    CourseLine::parse(line).map(drop)
}

/// `YYYY-MM-DD HH:MM:SS [LEVEL] ` and the text after it.
fn split_prefix(line: &str) -> Result<(Level, &str), String> {
    const NO_PREFIX: &str = "no `YYYY-MM-DD HH:MM:SS [LEVEL] ` before the text";
    let time = line.get(..19).ok_or(NO_PREFIX)?;
    let time_ok = time.bytes().zip(b"dddd-dd-dd dd:dd:dd").all(|(b, p)| match p {
        b'd' => b.is_ascii_digit(),
        p => b == *p,
    });
    let rest = line[19..].strip_prefix(" [").filter(|_| time_ok);
    let (level, text) = rest.and_then(|r| r.split_once("] ")).ok_or(NO_PREFIX)?;
    let level = Level::iter()
        .find(|l| l.as_str() == level)
        .ok_or_else(|| format!("level {level:?} is not one of ERROR, WARN, INFO, DEBUG, TRACE"))?;
    Ok((level, text))
}

/// One ` | `-separated field: `key: value`.
fn field(part: &str) -> Result<(&str, &str), String> {
    let (key, value) =
        part.split_once(": ").ok_or_else(|| format!("field {part:?} is not `key: value`"))?;
    if !is_word(key) {
        return Err(format!("key {key:?} is not a snake_case word"));
    }
    if value.contains('|') {
        return Err(format!("the value of {key} holds a `|`"));
    }
    Ok((key, value))
}

/// A lowercase `snake_case` word: what names and keys are.
fn is_word(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "2026-11-29 18:20:00";

    #[test]
    fn a_line_of_the_course_parses_into_its_parts() {
        let line = format!(
            "{AT} [WARN] action: apuesta_recibida | result: fail | cantidad: 2 | error: bet 1: no: name"
        );
        assert_eq!(
            CourseLine::parse(&line),
            Ok(CourseLine {
                level: Level::Warn,
                action: "apuesta_recibida",
                result: Outcome::Fail,
                fields: vec![("cantidad", "2"), ("error", "bet 1: no: name")],
            })
        );
        let bare = format!("{AT} [INFO] action: close_listener | result: success");
        assert_eq!(CourseLine::parse(&bare).map(|l| l.fields.len()), Ok(0));
    }

    /// Each way a line can break the grammar, and the checker's word for it.
    #[test]
    fn every_break_of_the_grammar_is_named() {
        let cases = [
            ("action: sorteo | result: success", "no `YYYY"),
            ("2026-11-29 18:20 [INFO] action: sorteo | result: success", "no `YYYY"),
            ("2026-11-29 18:20:00 INFO action: sorteo | result: success", "no `YYYY"),
            ("2026-11-29 18:20:00 [NOTE] action: sorteo | result: success", "level \"NOTE\""),
            ("2026-11-29 18:20:00 [INFO] sorteo | result: success", "does not start"),
            (
                "2026-11-29 18:20:00 [INFO] action: el sorteo | result: success",
                "action \"el sorteo\"",
            ),
            ("2026-11-29 18:20:00 [INFO] action: Sorteo | result: success", "action \"Sorteo\""),
            ("2026-11-29 18:20:00 [INFO] action: sorteo", "no `result: `"),
            ("2026-11-29 18:20:00 [INFO] action: sorteo | ganadores: 3", "no `result: `"),
            ("2026-11-29 18:20:00 [INFO] action: sorteo | result: ok", "result \"ok\""),
            ("2026-11-29 18:20:00 [INFO] action: sorteo | result: success | 3", "field \"3\""),
            (
                "2026-11-29 18:20:00 [INFO] action: sorteo | result: success | los ganadores: 3",
                "key \"los ganadores\"",
            ),
            (
                "2026-11-29 18:20:00 [INFO] action: sorteo | result: success | result: fail",
                "second `result`",
            ),
            (
                "2026-11-29 18:20:00 [INFO] action: sorteo | result: success | error: a|b",
                "holds a `|`",
            ),
            (
                "2026-11-29 18:20:00 [INFO] action: sorteo | result: success | error: a\nb",
                "line break",
            ),
        ];
        for (line, said) in cases {
            let err = check_line(line).expect_err(line);
            assert!(err.contains(said), "{line:?}: {err}");
        }
    }
}
