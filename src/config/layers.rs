//! The layers' plumbing both configs share: read the file, apply the
//! environment overrides to the [`Settings`] (pure, from any list of pairs),
//! and the validators of single values (numbers, durations, log levels,
//! ranges, a secret given inline or by file).

use super::duration::parse_duration;
use super::error::{ConfigError, key_err};
use crate::auth;
use log::LevelFilter;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

pub(super) fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File { path: path.to_owned(), reason: e.to_string() })
}

/// Settings as text, keyed by their canonical name.
pub type Settings = BTreeMap<String, String>;

/// Replaces settings with the environment variables that name them.
/// `env_name` maps a setting key to its variable.
pub fn apply_env<I, K, V>(
    settings: &mut Settings,
    known: &[&str],
    env_name: fn(&str) -> String,
    env: I,
) where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: Into<String>,
{
    let names: BTreeMap<String, &str> = known.iter().map(|k| (env_name(k), *k)).collect();
    for (k, v) in env {
        if let Some(key) = names.get(k.as_ref()) {
            settings.insert((*key).to_owned(), v.into());
        }
    }
}

pub(super) fn get<'a>(s: &'a Settings, key: &str, default: &'a str) -> &'a str {
    s.get(key).map(String::as_str).unwrap_or(default)
}

pub(super) fn parse_num<T: std::str::FromStr>(
    s: &Settings,
    key: &str,
    default: &str,
) -> Result<T, ConfigError> {
    let v = get(s, key, default).trim();
    v.parse().map_err(|_| key_err(key, format!("{v:?} is not a valid number")))
}

pub(super) fn parse_dur(s: &Settings, key: &str, default: &str) -> Result<Duration, ConfigError> {
    let v = get(s, key, default);
    parse_duration(v)
        .ok_or_else(|| key_err(key, format!("{v:?} is not a duration like \"5s\" or \"100ms\"")))
}

pub(super) fn parse_level(
    s: &Settings,
    key: &str,
    default: &str,
) -> Result<LevelFilter, ConfigError> {
    let v = get(s, key, default);
    crate::logging::parse_level(v).ok_or_else(|| key_err(key, format!("{v:?} is not a log level")))
}

/// Reads a secret or key file named by a setting: the one piece of I/O
/// validation needs. `Err` is the reason, for the key that named the file.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> Result<String, String>;

/// A secret or key from the setting `value_key` (its 64 hex characters) or
/// the file named by `file_key`; exactly one of them. `Ok(None)` when
/// neither is set. Error messages never include the value.
pub(super) fn hex32_setting(
    s: &Settings,
    value_key: &str,
    file_key: &str,
    read: ReadFile<'_>,
) -> Result<Option<[u8; auth::LEN]>, ConfigError> {
    let value = get(s, value_key, "").trim();
    let file = get(s, file_key, "").trim();
    match (value.is_empty(), file.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => {
            Err(key_err(value_key, format!("both {value_key} and {file_key} are set; keep one")))
        }
        (false, true) => {
            auth::parse_hex32(value).map(Some).map_err(|e| key_err(value_key, e.to_string()))
        }
        (true, false) => {
            let text = read(Path::new(file)).map_err(|reason| key_err(file_key, reason))?;
            auth::parse_hex32(&text)
                .map(Some)
                .map_err(|e| key_err(file_key, format!("{file}: {e}")))
        }
    }
}

pub(super) fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(key_err(key, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v)
}
