//! Configuration of both binaries: read the file → parse the text (pure) →
//! apply environment overrides (pure, from any list of pairs) → validate.
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

use crate::auth::{self, AgencyKey, Secret, ServerAuth};
use crate::storage::{Location, SyncMode};
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

fn key_err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
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

fn get<'a>(s: &'a Settings, key: &str, default: &'a str) -> &'a str {
    s.get(key).map(String::as_str).unwrap_or(default)
}

fn parse_num<T: std::str::FromStr>(
    s: &Settings,
    key: &str,
    default: &str,
) -> Result<T, ConfigError> {
    let v = get(s, key, default).trim();
    v.parse()
        .map_err(|_| key_err(key, format!("{v:?} is not a valid number")))
}

fn parse_dur(s: &Settings, key: &str, default: &str) -> Result<Duration, ConfigError> {
    let v = get(s, key, default);
    parse_duration(v).ok_or_else(|| {
        key_err(
            key,
            format!("{v:?} is not a duration like \"5s\" or \"100ms\""),
        )
    })
}

/// A server timeout: more than 0 (a socket timeout of 0 is refused by the
/// OS) and at most a day (deadlines are `Instant + timeout`, which must not
/// overflow).
fn timeout(s: &Settings, key: &str, default: &str) -> Result<Duration, ConfigError> {
    let d = positive(key, parse_dur(s, key, default)?)?;
    if d > Duration::from_secs(24 * 60 * 60) {
        return Err(key_err(key, "must be at most a day"));
    }
    Ok(d)
}

/// A duration that must not be zero.
fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(key_err(key, "must be more than 0"));
    }
    Ok(d)
}

fn parse_level(s: &Settings, key: &str, default: &str) -> Result<LevelFilter, ConfigError> {
    let v = get(s, key, default);
    crate::logging::parse_level(v).ok_or_else(|| key_err(key, format!("{v:?} is not a log level")))
}

/// `io.timeout`: 0 (none) or at least 1 s: a shorter one would make an
/// agency give up on a server that is only busy (a commit, a full pool).
fn io_timeout(s: &Settings) -> Result<Duration, ConfigError> {
    let timeout = parse_dur(s, "io.timeout", "30s")?;
    if !timeout.is_zero() && timeout < Duration::from_secs(1) {
        return Err(key_err(
            "io.timeout",
            format!("{timeout:?} is too short: 0 (no timeout) or at least 1s"),
        ));
    }
    Ok(timeout)
}

/// Reads a secret or key file named by a setting: the one piece of I/O
/// validation needs. `Err` is the reason, for the key that named the file.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> Result<String, String>;

/// A secret or key from the setting `value_key` (its 64 hex characters) or
/// the file named by `file_key`; exactly one of them. `Ok(None)` when
/// neither is set. Error messages never include the value.
fn hex32_setting(
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

fn in_range<T: PartialOrd + fmt::Display>(key: &str, v: T, lo: T, hi: T) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(key_err(key, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub port: u16,
    pub ip: String,
    pub listen_backlog: i32,
    pub logging_level: LevelFilter,
    /// Agencies that must finish before the draw; valid ids are 1..=agencies.
    pub agencies: u32,
    pub workers: usize,
    /// `STORAGE_BACKEND`: `file` (default) or `postgres` (with `STORAGE_URL`).
    pub storage_backend: StorageBackend,
    pub storage_filepath: PathBuf,
    pub storage_sync: SyncMode,
    pub max_connections: usize,
    /// A connection with nothing to say for this long is closed.
    pub idle_timeout: Duration,
    /// A frame must arrive whole within this long once it has started.
    pub frame_timeout: Duration,
    /// A peer that takes no bytes of its answers for this long is closed.
    pub write_timeout: Duration,
    pub max_frame_size: usize,
    /// A new connection must send a whole first frame (HELLO, or ECHO)
    /// within this long of being accepted: silent and trickling
    /// connections must not hold a worker.
    pub first_frame_timeout: Duration,
    /// How often the ingest's progress is logged while bets arrive (0: never).
    pub progress_interval: Duration,
    /// Whether agencies must prove their key, and the secret keys derive from.
    pub auth: ServerAuth,
}

/// Which storage backend the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageBackend {
    /// `bets.csv` and its journal (`STORAGE_FILEPATH`, `STORAGE_SYNC`).
    File,
    /// A PostgreSQL database several servers share, at `url` (`STORAGE_URL`).
    Postgres { url: String },
}

impl ServerConfig {
    /// Where the bets are kept, as the storage layer takes it.
    pub fn storage_location(&self) -> Location {
        match &self.storage_backend {
            StorageBackend::Postgres { url } => Location::Postgres {
                url: url.clone(),
                auth_required: matches!(self.auth, ServerAuth::Required(_)),
            },
            StorageBackend::File => Location::File {
                path: self.storage_filepath.clone(),
                sync: self.storage_sync,
            },
        }
    }
}

/// `STORAGE_BACKEND` and `STORAGE_URL`, checked against this build.
fn storage_backend(s: &Settings) -> Result<StorageBackend, ConfigError> {
    match get(s, "STORAGE_BACKEND", "file").trim() {
        "file" => return Ok(StorageBackend::File),
        "postgres" => {}
        other => {
            return Err(key_err(
                "STORAGE_BACKEND",
                format!("{other:?} is neither \"file\" nor \"postgres\""),
            ));
        }
    }
    if !cfg!(feature = "postgres") {
        return Err(key_err(
            "STORAGE_BACKEND",
            "\"postgres\" needs a server built with PostgreSQL support (cargo build --features postgres)",
        ));
    }
    let url = get(s, "STORAGE_URL", "").trim();
    if url.is_empty() {
        return Err(key_err(
            "STORAGE_URL",
            "missing: STORAGE_BACKEND=postgres needs the database, e.g. postgresql://user:password@host:5432/lottery",
        ));
    }
    Ok(StorageBackend::Postgres {
        url: url.to_owned(),
    })
}

/// Default of `SERVER_WORKERS`: enough for every agency of a large ingest
/// (100 in the benchmark) to be served at once.
pub const DEFAULT_WORKERS: usize = 128;

/// Server setting keys, which are also their environment variables.
pub const SERVER_KEYS: [&str; 20] = [
    "SERVER_PORT",
    "SERVER_IP",
    "SERVER_LISTEN_BACKLOG",
    "LOGGING_LEVEL",
    "SERVER_AGENCIES",
    "SERVER_WORKERS",
    "STORAGE_BACKEND",
    "STORAGE_FILEPATH",
    "STORAGE_SYNC",
    "STORAGE_URL",
    "SERVER_MAX_CONNECTIONS",
    "SERVER_IDLE_TIMEOUT",
    "SERVER_FRAME_TIMEOUT",
    "SERVER_WRITE_TIMEOUT",
    "SERVER_MAX_FRAME_SIZE",
    "SERVER_FIRST_FRAME_TIMEOUT",
    "SERVER_PROGRESS_INTERVAL",
    "SERVER_AUTH",
    "SERVER_SECRET_FILE",
    "SERVER_SECRET",
];

impl ServerConfig {
    /// Reads `path`, applies `env` and validates.
    ///
    /// # Errors
    /// An unreadable file or any invalid value, naming the key.
    pub fn load<I, K, V>(path: &Path, env: I) -> Result<ServerConfig, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        Self::from_settings(&Self::settings(path, env)?, &auth::read_private_file)
    }

    /// The secret agencies' keys derive from, read the way [`load`](Self::load)
    /// reads it (whatever `SERVER_AUTH` says): for `server agency-key N`.
    ///
    /// # Errors
    /// An unreadable config file, or a secret that is missing or malformed.
    pub fn load_secret<I, K, V>(path: &Path, env: I) -> Result<Secret, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        secret(&Self::settings(path, env)?, &auth::read_private_file)
    }

    /// Agency `agency`'s key (`agency` as typed by the operator, 1 or more),
    /// derived from the secret [`load_secret`](Self::load_secret) reads.
    ///
    /// # Errors
    /// As [`load_secret`](Self::load_secret), or an agency that is not a
    /// number from 1 up (reported as the key `agency`).
    pub fn agency_key<I, K, V>(path: &Path, env: I, agency: &str) -> Result<AgencyKey, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let n = agency
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                key_err(
                    "agency",
                    format!("{agency:?} is not an agency number (1..={})", u32::MAX),
                )
            })?;
        Ok(Self::load_secret(path, env)?.agency_key(n))
    }

    fn settings<I, K, V>(path: &Path, env: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut settings =
            Self::parse_ini(&read_file(path)?).map_err(|reason| ConfigError::File {
                path: path.to_owned(),
                reason,
            })?;
        apply_env(&mut settings, &SERVER_KEYS, |k| k.to_owned(), env);
        Ok(settings)
    }

    /// Parses INI text: the keys of `[DEFAULT]` (or of no section), any case.
    ///
    /// # Errors
    /// Text that is not INI.
    pub fn parse_ini(text: &str) -> Result<Settings, String> {
        let ini = ini::Ini::load_from_str(text).map_err(|e| e.to_string())?;
        let mut settings = Settings::new();
        for section in [None, Some("DEFAULT")] {
            if let Some(props) = ini.section(section) {
                for (k, v) in props.iter() {
                    settings.insert(k.trim().to_ascii_uppercase(), v.trim().to_owned());
                }
            }
        }
        Ok(settings)
    }

    /// Validates settings into a config. Absent keys take their defaults; a
    /// present key must hold a valid value. `read` reads
    /// `SERVER_SECRET_FILE` when that is where the secret is.
    ///
    /// # Errors
    /// The first invalid value, naming its key.
    pub fn from_settings(s: &Settings, read: ReadFile<'_>) -> Result<ServerConfig, ConfigError> {
        // A worker owns a connection for its life, so the workers bound
        // the agencies served at once; a thread blocked on a socket costs
        // memory (its stack, touched lightly), not CPU.
        let default_workers = DEFAULT_WORKERS.to_string();
        let sync_text = get(s, "STORAGE_SYNC", "always");
        let ip = get(s, "SERVER_IP", "0.0.0.0").trim().to_owned();
        if ip.is_empty() {
            return Err(key_err("SERVER_IP", "is empty"));
        }
        let path = get(s, "STORAGE_FILEPATH", "./bets.csv").trim();
        if path.is_empty() {
            return Err(key_err("STORAGE_FILEPATH", "is empty"));
        }
        let storage_backend = storage_backend(s)?;
        Ok(ServerConfig {
            port: parse_num(s, "SERVER_PORT", "12345")?,
            ip,
            listen_backlog: in_range(
                "SERVER_LISTEN_BACKLOG",
                parse_num(s, "SERVER_LISTEN_BACKLOG", "5")?,
                1,
                65535,
            )?,
            logging_level: parse_level(s, "LOGGING_LEVEL", "INFO")?,
            agencies: in_range(
                "SERVER_AGENCIES",
                parse_num(s, "SERVER_AGENCIES", "5")?,
                1,
                100_000,
            )?,
            workers: in_range(
                "SERVER_WORKERS",
                parse_num(s, "SERVER_WORKERS", &default_workers)?,
                1,
                1024,
            )?,
            storage_backend,
            storage_filepath: PathBuf::from(path),
            storage_sync: SyncMode::parse(sync_text).ok_or_else(|| {
                key_err(
                    "STORAGE_SYNC",
                    format!("{sync_text:?} is neither \"always\" nor \"none\""),
                )
            })?,
            max_connections: in_range(
                "SERVER_MAX_CONNECTIONS",
                parse_num(s, "SERVER_MAX_CONNECTIONS", "256")?,
                1,
                100_000,
            )?,
            idle_timeout: timeout(s, "SERVER_IDLE_TIMEOUT", "30s")?,
            frame_timeout: timeout(s, "SERVER_FRAME_TIMEOUT", "10s")?,
            write_timeout: timeout(s, "SERVER_WRITE_TIMEOUT", "10s")?,
            max_frame_size: in_range(
                "SERVER_MAX_FRAME_SIZE",
                parse_num(s, "SERVER_MAX_FRAME_SIZE", "8192")?,
                64,
                crate::framing::MAX_FRAME_LEN,
            )?,
            first_frame_timeout: timeout(s, "SERVER_FIRST_FRAME_TIMEOUT", "1s")?,
            progress_interval: parse_dur(s, "SERVER_PROGRESS_INTERVAL", "2s")?,
            auth: match get(s, "SERVER_AUTH", "required").trim() {
                "required" => ServerAuth::Required(secret(s, read)?),
                "off" => ServerAuth::Off,
                other => {
                    return Err(key_err(
                        "SERVER_AUTH",
                        format!("{other:?} is neither \"required\" nor \"off\""),
                    ));
                }
            },
        })
    }
}

/// The server's secret from `SERVER_SECRET` or `SERVER_SECRET_FILE`.
fn secret(s: &Settings, read: ReadFile<'_>) -> Result<Secret, ConfigError> {
    match hex32_setting(s, "SERVER_SECRET", "SERVER_SECRET_FILE", read)? {
        Some(bytes) => Ok(Secret::from_bytes(bytes)),
        None => Err(key_err(
            "SERVER_SECRET_FILE",
            "missing: the server's secret is 64 hex characters in the file SERVER_SECRET_FILE names (or in SERVER_SECRET); only SERVER_AUTH=off runs without one",
        )),
    }
}

/// The one bet the client sends when it has no bets file, as text from the
/// environment (`NOMBRE`, `APELLIDO`, `DOCUMENTO`, `NACIMIENTO`, `NUMERO`);
/// validated by the client, which logs what is wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvBet {
    pub first_name: String,
    pub last_name: String,
    pub document: String,
    pub birthdate: String,
    pub number: String,
}

/// Where the client's bets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BetSource {
    File(PathBuf),
    Single(EnvBet),
}

/// Everything the client needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub id: u32,
    pub server_address: String,
    pub log_level: LevelFilter,
    pub batch_max_amount: usize,
    /// Batches sent ahead of their ACK.
    pub batch_window: usize,
    pub bets: BetSource,
    /// How long to keep reconnecting without progress before giving up.
    pub retry_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub retry_max_backoff: Duration,
    /// Longest wait between two winners queries.
    pub winners_max_backoff: Duration,
    /// Longest wait for a connect, for each whole answer from the server
    /// and for each whole write to it; zero: none.
    pub io_timeout: Duration,
    /// Whether the agency proves who it is (`auth` / `CLI_AUTH`), and its
    /// key (`key` / `CLI_KEY`, or the file `key.file` / `CLI_KEY_FILE`
    /// names).
    pub auth: ClientAuth,
}

/// How an agency authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `auth: required`, the default: the agency answers the server's
    /// CHALLENGE with its key, and refuses a server that answers HELLO
    /// with HELLO_OK instead (no silent downgrade to no authentication).
    Required(AgencyKey),
    /// `auth: off`: for a server run with `SERVER_AUTH=off` (the course's
    /// exercises). HELLO_OK right after HELLO is accepted; a CHALLENGE is
    /// answered with the key if one is set, and refused otherwise.
    Off(Option<AgencyKey>),
}

impl ClientAuth {
    /// The key to answer a CHALLENGE with, if the agency has one.
    pub fn key(&self) -> Option<&AgencyKey> {
        match self {
            ClientAuth::Required(key) => Some(key),
            ClientAuth::Off(key) => key.as_ref(),
        }
    }

    /// Whether a server that skips the CHALLENGE must be refused.
    pub fn is_required(&self) -> bool {
        matches!(self, ClientAuth::Required(_))
    }
}

impl ClientConfig {
    /// The servers of `server.address`, in order: one, or several
    /// (comma-separated) that share a database, for failover.
    pub fn server_addresses(&self) -> Vec<&str> {
        split_addresses(&self.server_address)
    }
}

/// The non-empty, trimmed entries of a comma-separated address list.
fn split_addresses(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

/// Client setting keys (YAML paths); the variables are `CLI_` + upper case
/// with `_` for `.`.
pub const CLIENT_KEYS: [&str; 13] = [
    "id",
    "server.address",
    "log.level",
    "batch.maxAmount",
    "batch.window",
    "bets.file",
    "retry.timeout",
    "retry.maxBackoff",
    "winners.maxBackoff",
    "io.timeout",
    "auth",
    "key",
    "key.file",
];

/// `batch.maxAmount` → `CLI_BATCH_MAXAMOUNT`.
pub fn client_env_name(key: &str) -> String {
    format!("CLI_{}", key.replace('.', "_").to_ascii_uppercase())
}

impl ClientConfig {
    /// Reads `path`, applies `env`, validates. With no `bets.file`, uses
    /// `default_bets_file` when given (the binary passes `/agency.csv` if it
    /// exists), else the single bet from the environment.
    ///
    /// # Errors
    /// An unreadable file or any invalid value, naming the key.
    pub fn load<I>(
        path: &Path,
        env: I,
        default_bets_file: Option<PathBuf>,
    ) -> Result<ClientConfig, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut settings =
            Self::parse_yaml(&read_file(path)?).map_err(|reason| ConfigError::File {
                path: path.to_owned(),
                reason,
            })?;
        let env: Vec<(String, String)> = env.into_iter().collect();
        apply_env(
            &mut settings,
            &CLIENT_KEYS,
            client_env_name,
            env.iter().cloned(),
        );
        Self::from_settings(&settings, &env, default_bets_file, &auth::read_private_file)
    }

    /// Flattens YAML into dotted keys (`batch: {maxAmount: 5}` → `batch.maxAmount`).
    ///
    /// # Errors
    /// Text that is not YAML, or a top level that is not a mapping.
    pub fn parse_yaml(text: &str) -> Result<Settings, String> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut settings = Settings::new();
        match value {
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Mapping(_) => flatten("", &value, &mut settings),
            _ => return Err("the top level must be a mapping".into()),
        }
        Ok(settings)
    }

    /// Validates settings into a config; `env` supplies the single bet,
    /// `read` reads `key.file` when that is where the key is.
    ///
    /// # Errors
    /// The first invalid value, naming its key; a missing key is an error
    /// unless `auth` is `off` (an agency never runs unauthenticated unless
    /// told so).
    pub fn from_settings(
        s: &Settings,
        env: &[(String, String)],
        default_bets_file: Option<PathBuf>,
        read: ReadFile<'_>,
    ) -> Result<ClientConfig, ConfigError> {
        let address = get(s, "server.address", "server:12345").trim().to_owned();
        if split_addresses(&address).is_empty() {
            return Err(key_err("server.address", "is empty"));
        }
        let file = get(s, "bets.file", "").trim();
        let bets = if !file.is_empty() {
            BetSource::File(PathBuf::from(file))
        } else if let Some(default) = default_bets_file {
            BetSource::File(default)
        } else {
            let var = |name: &str| {
                env.iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            BetSource::Single(EnvBet {
                first_name: var("NOMBRE"),
                last_name: var("APELLIDO"),
                document: var("DOCUMENTO"),
                birthdate: var("NACIMIENTO"),
                number: var("NUMERO"),
            })
        };
        Ok(ClientConfig {
            id: in_range("id", parse_num(s, "id", "")?, 1, u32::MAX)?,
            server_address: address,
            log_level: parse_level(s, "log.level", "info")?,
            batch_max_amount: in_range(
                "batch.maxAmount",
                parse_num(s, "batch.maxAmount", "200")?,
                1,
                65535,
            )?,
            batch_window: in_range(
                "batch.window",
                parse_num(s, "batch.window", "128")?,
                1,
                1024,
            )?,
            bets,
            retry_timeout: parse_dur(s, "retry.timeout", "30s")?,
            retry_max_backoff: parse_dur(s, "retry.maxBackoff", "2s")?,
            winners_max_backoff: parse_dur(s, "winners.maxBackoff", "1s")?,
            io_timeout: io_timeout(s)?,
            auth: client_auth(s, read)?,
        })
    }
}

/// `auth` (`required` by default, or `off`) and the key: required unless
/// `auth` is `off`, and used then too if it is set.
fn client_auth(s: &Settings, read: ReadFile<'_>) -> Result<ClientAuth, ConfigError> {
    let key = hex32_setting(s, "key", "key.file", read)?.map(AgencyKey::from_bytes);
    match (get(s, "auth", "required").trim(), key) {
        ("required", Some(key)) => Ok(ClientAuth::Required(key)),
        ("required", None) => Err(key_err(
            "key",
            "missing: set CLI_KEY to this agency's key, 64 hex characters (the operator prints it with `server agency-key N`), or CLI_KEY_FILE to a file holding it (only CLI_AUTH=off, for a server with SERVER_AUTH=off, runs without one)",
        )),
        ("off", key) => Ok(ClientAuth::Off(key)),
        (other, _) => Err(key_err(
            "auth",
            format!("{other:?} is neither \"required\" nor \"off\""),
        )),
    }
}

fn flatten(prefix: &str, value: &serde_yaml::Value, out: &mut Settings) {
    use serde_yaml::Value;
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => scalar_text(other),
                };
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_owned(), scalar_text(other));
        }
    }
}

fn scalar_text(v: &serde_yaml::Value) -> String {
    use serde_yaml::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// Tests read no files.
    fn no_files(p: &Path) -> Result<String, String> {
        Err(format!("{}: no files in tests", p.display()))
    }

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

    const INI: &str = "[DEFAULT]\nSERVER_PORT = 12345\nSERVER_IP = 0.0.0.0\nSERVER_LISTEN_BACKLOG = 5\nLOGGING_LEVEL = INFO\nserver_agencies = 3\nSERVER_SECRET = 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

    #[test]
    fn server_file_then_env_then_defaults() {
        let mut s = ServerConfig::parse_ini(INI).unwrap();
        apply_env(
            &mut s,
            &SERVER_KEYS,
            |k| k.to_owned(),
            pairs(&[
                ("SERVER_PORT", "7000"),
                ("UNRELATED", "x"),
                ("STORAGE_SYNC", "none"),
            ]),
        );
        let c = ServerConfig::from_settings(&s, &no_files).unwrap();
        assert_eq!(c.port, 7000, "env beats file");
        assert_eq!(c.agencies, 3, "file key in any case");
        assert_eq!(c.listen_backlog, 5);
        assert_eq!(c.storage_sync, SyncMode::None);
        assert_eq!(c.storage_filepath, PathBuf::from("./bets.csv"), "default");
        assert_eq!(c.max_frame_size, 8192);
        assert_eq!(c.idle_timeout, Duration::from_secs(30));
        assert_eq!(
            c.auth,
            ServerAuth::Required(Secret::from_hex(HEX).unwrap()),
            "required by default"
        );
    }

    #[test]
    fn server_secret_from_env_or_file_or_auth_off() {
        let base = ServerConfig::parse_ini("[DEFAULT]\n").unwrap();
        let with = |env: &[(&str, &str)], read: ReadFile<'_>| {
            let mut s = base.clone();
            apply_env(&mut s, &SERVER_KEYS, |k| k.to_owned(), pairs(env));
            ServerConfig::from_settings(&s, read)
        };
        let secret = ServerAuth::Required(Secret::from_hex(HEX).unwrap());
        assert_eq!(
            with(&[("SERVER_SECRET", HEX)], &no_files).unwrap().auth,
            secret
        );
        let file = |p: &Path| {
            assert_eq!(p, Path::new("/run/secret"));
            Ok(format!("{HEX}\n"))
        };
        let c = with(&[("SERVER_SECRET_FILE", "/run/secret")], &file).unwrap();
        assert_eq!(c.auth, secret);
        let c = with(&[("SERVER_AUTH", "off")], &no_files).unwrap();
        assert_eq!(c.auth, ServerAuth::Off, "off needs no secret");

        let err_key = |env: &[(&str, &str)], read: ReadFile<'_>| match with(env, read) {
            Err(ConfigError::Key { key, reason }) => {
                assert!(!reason.contains(&HEX[..20]), "{reason} shows the secret");
                key
            }
            other => panic!("{env:?} gave {other:?}"),
        };
        assert_eq!(err_key(&[], &no_files), "SERVER_SECRET_FILE", "missing");
        assert_eq!(
            err_key(&[("SERVER_SECRET_FILE", "/nonexistent")], &no_files),
            "SERVER_SECRET_FILE"
        );
        let short = |_: &Path| Ok(HEX[..40].to_owned());
        assert_eq!(
            err_key(&[("SERVER_SECRET_FILE", "/run/secret")], &short),
            "SERVER_SECRET_FILE"
        );
        assert_eq!(
            err_key(&[("SERVER_SECRET", &HEX[1..])], &no_files),
            "SERVER_SECRET"
        );
        let both = [
            ("SERVER_SECRET", HEX),
            ("SERVER_SECRET_FILE", "/run/secret"),
        ];
        assert_eq!(err_key(&both, &file), "SERVER_SECRET");
        assert_eq!(
            err_key(
                &[("SERVER_AUTH", "maybe"), ("SERVER_SECRET", HEX)],
                &no_files
            ),
            "SERVER_AUTH"
        );
    }

    #[test]
    fn server_invalid_values_name_their_key() {
        for (key, value) in [
            ("SERVER_PORT", "70000"),
            ("SERVER_PORT", ""),
            ("SERVER_AGENCIES", "0"),
            ("SERVER_WORKERS", "many"),
            ("LOGGING_LEVEL", "LOUD"),
            ("STORAGE_SYNC", "sometimes"),
            ("SERVER_IDLE_TIMEOUT", "30"),
            ("SERVER_WRITE_TIMEOUT", "0"),
            ("SERVER_FRAME_TIMEOUT", "0"),
            ("SERVER_IDLE_TIMEOUT", "100000h"),
            ("SERVER_MAX_FRAME_SIZE", "9000"),
            ("STORAGE_FILEPATH", " "),
        ] {
            let mut s = ServerConfig::parse_ini(INI).unwrap();
            s.insert(key.into(), value.into());
            let err = ServerConfig::from_settings(&s, &no_files).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Key { key: k, .. } if k == key),
                "{key}={value:?} gave {err}"
            );
        }
    }

    #[test]
    fn the_storage_backend_is_the_file_unless_postgres_is_asked_for() {
        let with = |env: &[(&str, &str)]| {
            let mut s = ServerConfig::parse_ini(INI).unwrap();
            apply_env(&mut s, &SERVER_KEYS, |k| k.to_owned(), pairs(env));
            ServerConfig::from_settings(&s, &no_files)
        };
        let c = with(&[]).unwrap();
        assert_eq!(c.storage_backend, StorageBackend::File);
        assert!(matches!(c.storage_location(), Location::File { .. }));
        let key_of = |env: &[(&str, &str)]| match with(env) {
            Err(ConfigError::Key { key, reason }) => (key, reason),
            other => panic!("{env:?} gave {other:?}"),
        };
        assert_eq!(key_of(&[("STORAGE_BACKEND", "mysql")]).0, "STORAGE_BACKEND");
        let url = "postgresql://lottery:pw@db:5432/lottery";
        let postgres = [("STORAGE_BACKEND", "postgres"), ("STORAGE_URL", url)];
        if cfg!(feature = "postgres") {
            let c = with(&postgres).unwrap();
            assert_eq!(
                c.storage_location(),
                Location::Postgres {
                    url: url.into(),
                    auth_required: true
                }
            );
            // The database is told SERVER_AUTH, which it records.
            let off = [postgres[0], postgres[1], ("SERVER_AUTH", "off")];
            assert_eq!(
                with(&off).unwrap().storage_location(),
                Location::Postgres {
                    url: url.into(),
                    auth_required: false
                }
            );
            assert_eq!(
                key_of(&[("STORAGE_BACKEND", "postgres")]).0,
                "STORAGE_URL",
                "the database is required"
            );
        } else {
            let (key, reason) = key_of(&postgres);
            assert_eq!(key, "STORAGE_BACKEND");
            assert!(reason.contains("--features postgres"), "{reason}");
        }
    }

    #[test]
    fn server_unparsable_file_and_missing_file() {
        assert!(ServerConfig::parse_ini("[DEFAULT\nx").is_err());
        let err = ServerConfig::load(Path::new("/nonexistent/config.ini"), pairs(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }));
    }

    const YAML: &str =
        "server:\n  address: \"server:12345\"\nlog:\n  level: \"info\"\nbatch:\n  maxAmount: 100\n";

    #[test]
    fn client_env_overrides_yaml_in_the_go_style() {
        let mut s = ClientConfig::parse_yaml(YAML).unwrap();
        let env = pairs(&[
            ("CLI_KEY", HEX),
            ("CLI_ID", "4"),
            ("CLI_BATCH_MAXAMOUNT", "50"),
            ("CLI_SERVER_ADDRESS", "localhost:9"),
            ("CLI_RETRY_TIMEOUT", "1m30s"),
        ]);
        apply_env(&mut s, &CLIENT_KEYS, client_env_name, env.clone());
        let c =
            ClientConfig::from_settings(&s, &env, Some(PathBuf::from("/agency.csv")), &no_files)
                .unwrap();
        assert_eq!(c.id, 4);
        assert_eq!(c.batch_max_amount, 50);
        assert_eq!(c.server_address, "localhost:9");
        assert_eq!(c.retry_timeout, Duration::from_secs(90));
        assert_eq!(c.bets, BetSource::File(PathBuf::from("/agency.csv")));
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!(
            c.auth,
            ClientAuth::Required(AgencyKey::from_hex(HEX).unwrap())
        );
        assert_eq!(c.server_addresses(), ["localhost:9"]);
    }

    #[test]
    fn client_server_address_takes_a_failover_list() {
        let mut s = ClientConfig::parse_yaml(YAML).unwrap();
        let env = pairs(&[
            ("CLI_KEY", HEX),
            ("CLI_ID", "1"),
            ("CLI_SERVER_ADDRESS", " s1:12345, s2:12345 ,,s3:12345"),
        ]);
        apply_env(&mut s, &CLIENT_KEYS, client_env_name, env.clone());
        let c = ClientConfig::from_settings(&s, &env, None, &no_files).unwrap();
        assert_eq!(c.server_addresses(), ["s1:12345", "s2:12345", "s3:12345"]);
    }

    #[test]
    fn client_key_from_env_or_file_and_never_missing() {
        let with = |env: &[(&str, &str)], read: ReadFile<'_>| {
            let mut s = ClientConfig::parse_yaml("id: 2\nbets:\n  file: x.csv\n").unwrap();
            let env = pairs(env);
            apply_env(&mut s, &CLIENT_KEYS, client_env_name, env.clone());
            ClientConfig::from_settings(&s, &env, None, read)
        };
        let key = AgencyKey::from_hex(HEX).unwrap();
        let required = ClientAuth::Required(key.clone());
        assert_eq!(with(&[("CLI_KEY", HEX)], &no_files).unwrap().auth, required);
        let file = |p: &Path| {
            assert_eq!(p, Path::new("/run/key"));
            Ok(format!("{}\n", HEX.to_uppercase()))
        };
        assert_eq!(
            with(&[("CLI_KEY_FILE", "/run/key")], &file).unwrap().auth,
            required
        );
        // The YAML's `key` too.
        let s = ClientConfig::parse_yaml(&format!("id: 2\nkey: \"{HEX}\"\n")).unwrap();
        assert_eq!(
            ClientConfig::from_settings(&s, &[], None, &no_files)
                .unwrap()
                .auth,
            required
        );

        let err = |env: &[(&str, &str)], read: ReadFile<'_>| match with(env, read) {
            Err(e @ ConfigError::Key { .. }) => e.to_string(),
            other => panic!("{env:?} gave {other:?}"),
        };
        for (env, names) in [
            (&[][..], "config key key: missing: set CLI_KEY"),
            (&[("CLI_KEY", "")][..], "config key key: missing"),
            (
                &[("CLI_KEY", "abc")][..],
                "config key key: must be 64 hexadecimal",
            ),
            (
                &[("CLI_KEY_FILE", "/none")][..],
                "config key key.file: /none",
            ),
            (
                &[("CLI_KEY", HEX), ("CLI_KEY_FILE", "/run/key")][..],
                "both key and key.file",
            ),
        ] {
            let e = err(env, &file_or_none);
            assert!(e.contains(names), "{env:?}: {e}");
            assert!(!e.contains(&HEX[..20]), "{e} shows the key");
        }
    }

    /// `auth: off` is for a server with `SERVER_AUTH=off`: the key becomes
    /// optional, and is kept when given; anything but required/off is an
    /// error naming `auth`.
    #[test]
    fn client_auth_is_required_unless_explicitly_off() {
        let with = |env: &[(&str, &str)]| {
            let mut s = ClientConfig::parse_yaml("id: 2\nbets:\n  file: x.csv\n").unwrap();
            let env = pairs(env);
            apply_env(&mut s, &CLIENT_KEYS, client_env_name, env.clone());
            ClientConfig::from_settings(&s, &env, None, &no_files)
        };
        let key = AgencyKey::from_hex(HEX).unwrap();
        assert_eq!(
            with(&[("CLI_AUTH", "off")]).unwrap().auth,
            ClientAuth::Off(None)
        );
        let off = with(&[("CLI_AUTH", " off "), ("CLI_KEY", HEX)])
            .unwrap()
            .auth;
        assert_eq!(off, ClientAuth::Off(Some(key.clone())));
        assert!(!off.is_required());
        assert_eq!(off.key(), Some(&key));
        let required = with(&[("CLI_AUTH", "required"), ("CLI_KEY", HEX)])
            .unwrap()
            .auth;
        assert!(required.is_required());
        assert_eq!(required.key(), Some(&key));
        let e = with(&[("CLI_AUTH", "required")]).unwrap_err().to_string();
        assert!(e.contains("config key key: missing"), "{e}");
        for bad in ["", "no", "OFF", "optional"] {
            let e = with(&[("CLI_AUTH", bad), ("CLI_KEY", HEX)]).unwrap_err();
            assert!(
                matches!(&e, ConfigError::Key { key, .. } if key == "auth"),
                "{bad:?} gave {e}"
            );
        }
    }

    fn file_or_none(p: &Path) -> Result<String, String> {
        if p == Path::new("/run/key") {
            Ok(HEX.into())
        } else {
            no_files(p)
        }
    }

    #[test]
    fn client_without_file_takes_the_bet_from_env() {
        let s = ClientConfig::parse_yaml(&format!("id: 2\nkey: {HEX}\n")).unwrap();
        let env = pairs(&[
            ("NOMBRE", "Ana"),
            ("APELLIDO", "Pérez"),
            ("DOCUMENTO", "123"),
            ("NACIMIENTO", "1999-01-02"),
            ("NUMERO", "7574"),
        ]);
        let c = ClientConfig::from_settings(&s, &env, None, &no_files).unwrap();
        let BetSource::Single(bet) = c.bets else {
            panic!("expected a single bet")
        };
        assert_eq!(bet.first_name, "Ana");
        assert_eq!(bet.number, "7574");
        // An explicit bets.file beats the default.
        let mut s = s;
        s.insert("bets.file".into(), "mine.csv".into());
        let c =
            ClientConfig::from_settings(&s, &env, Some("/agency.csv".into()), &no_files).unwrap();
        assert_eq!(c.bets, BetSource::File("mine.csv".into()));
    }

    #[test]
    fn client_invalid_values_name_their_key() {
        for (key, value) in [
            ("id", ""),
            ("id", "0"),
            ("batch.maxAmount", "0"),
            ("log.level", "x"),
            ("retry.timeout", "soon"),
            ("io.timeout", "500ms"),
            ("server.address", ""),
            ("server.address", " , ,"),
        ] {
            let mut s = ClientConfig::parse_yaml(YAML).unwrap();
            s.insert("id".into(), "1".into());
            s.insert("key".into(), HEX.into());
            s.insert(key.into(), value.into());
            let err = ClientConfig::from_settings(&s, &[], None, &no_files).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Key { key: k, .. } if k == key),
                "{key}={value:?} gave {err}"
            );
        }
        assert!(ClientConfig::parse_yaml("- a\n- b\n").is_err());
        assert!(ClientConfig::parse_yaml("a: [").is_err());
    }
}
