//! Configuration of both binaries, in layers: read the file → parse the
//! text (pure) → apply environment overrides (pure, from any list of pairs)
//! → validate. This module holds what both share: the layers' plumbing
//! ([`Settings`], [`apply_env`]), Go-style durations, the validators of
//! single values and the error type; `server.rs` and `client.rs` each own
//! their binary's keys, defaults and config type.
//!
//! Tests call the pure steps with their own pairs and never touch the real
//! environment. The server reads an INI file (section `[DEFAULT]`) whose keys
//! are also the environment variables; the client reads YAML whose nested
//! keys map to `CLI_` variables the way the course's Go client (viper) does:
//! `batch.maxAmount` ↔ `CLI_BATCH_MAXAMOUNT`.
//!
//! The server's secret and an agency's key may come from a file
//! (`SERVER_SECRET_FILE`, `CLI_KEY_FILE`); validation reads it through a
//! [`ReadFile`] the caller passes (`load` passes
//! [`auth::read_private_file`]), so tests give their own.

mod client;
mod server;

pub use client::{BetSource, CLIENT_KEYS, ClientAuth, ClientConfig, EnvBet, client_env_name};
pub use server::{
    DEFAULT_SECRET_NAME, DEFAULT_WORKERS, DefaultSecret, DefaultSecretFile, SERVER_KEYS,
    ServerConfig, StorageBackend, default_secret_path,
};

use crate::auth;
use log::LevelFilter;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, naming the key or file at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    File { path: PathBuf, reason: String },
    Key { key: String, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File { path, reason } => {
                write!(f, "config file {}: {reason}", path.display())
            }
            ConfigError::Key { key, reason } => write!(f, "config key {key}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

pub(super) fn key_err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

pub(super) fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Parses a Go-style duration: `"100ms"`, `"5s"`, `"1m30s"`, `"1.5h"`,
/// `"0"`. Units: ns, us (µs), ms, s, m, h.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let s = text.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
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
    v.parse()
        .map_err(|_| key_err(key, format!("{v:?} is not a valid number")))
}

pub(super) fn parse_dur(s: &Settings, key: &str, default: &str) -> Result<Duration, ConfigError> {
    let v = get(s, key, default);
    parse_duration(v).ok_or_else(|| {
        key_err(
            key,
            format!("{v:?} is not a duration like \"5s\" or \"100ms\""),
        )
    })
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
        (false, false) => Err(key_err(
            value_key,
            format!("both {value_key} and {file_key} are set; keep one"),
        )),
        (false, true) => auth::parse_hex32(value)
            .map(Some)
            .map_err(|e| key_err(value_key, e.to_string())),
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

/// What the unit tests of both configs share.
#[cfg(test)]
pub(super) mod testing {
    use std::path::Path;

    pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// Tests read no files.
    pub fn no_files(p: &Path) -> Result<String, String> {
        Err(format!("{}: no files in tests", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "5 s", "-1s", "1x", "1..2s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
