//! The server's configuration: `config/server/config.ini` (section
//! `[DEFAULT]`), each key overridden by the environment variable of the
//! same name, validated into a [`ServerConfig`]; and the secret agencies'
//! keys derive from, for the server and for `server agency-key N`.
//!
//! The secret is `SERVER_SECRET`, or the file `SERVER_SECRET_FILE` names;
//! with neither, the default file `lottery.secret` beside the storage
//! ([`default_secret_path`]), which the server creates with a fresh secret
//! at its first start and `agency-key` only reads. There is no fixed
//! default secret: a clone of this repository shares none with another.

use super::error::{ConfigError, key_err};
use super::layers::{
    ReadFile, Settings, apply_env, get, hex32_setting, in_range, parse_dur, parse_level, parse_num,
    read_file,
};
use crate::auth::{self, AgencyKey, Secret, ServerAuth};
use crate::logging::{ConfigEvent, LogLine};
use crate::storage::{Location, SyncMode};
use log::LevelFilter;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub port: u16,
    pub ip: String,
    pub listen_backlog: i32,
    pub logging_level: LevelFilter,
    /// Agencies that must finish before the draw; valid ids are
    /// 1..=agencies. 0: none, a server that answers ECHO only (every HELLO
    /// gets `unknown_agency`, and there is no draw).
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
    /// Set when no secret was configured and the secret is the default
    /// file's (for the start-up line that says where it is).
    pub default_secret: Option<DefaultSecret>,
}

/// The server's default secret file, used when neither `SERVER_SECRET` nor
/// `SERVER_SECRET_FILE` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultSecret {
    pub path: PathBuf,
    /// Whether this start created it (with a fresh secret).
    pub created: bool,
}

/// `STORAGE_FILEPATH` when not set.
const DEFAULT_STORAGE_FILEPATH: &str = "./bets.csv";

/// The name of the default secret file.
pub const DEFAULT_SECRET_NAME: &str = "lottery.secret";

/// Reads the default secret file at a path: its text, and whether this call
/// created it. The server passes [`auth::read_or_create_secret`];
/// `agency-key` passes a reader that never creates one.
pub type DefaultSecretFile<'a> = &'a dyn Fn(&Path) -> Result<(String, bool), String>;

/// Which storage backend the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageBackend {
    /// `bets.csv` and its journal (`STORAGE_FILEPATH`, `STORAGE_SYNC`).
    File,
    /// A PostgreSQL database several servers share, at `url`
    /// (`STORAGE_URL`); at start, the server waits up to `wait`
    /// (`STORAGE_WAIT`) for it to be reachable (a primary that accepts
    /// writes, with a manager's multi-host URL).
    Postgres { url: String, wait: Duration },
}

impl ServerConfig {
    /// Where the bets are kept, as the storage layer takes it.
    pub fn storage_location(&self) -> Location {
        match &self.storage_backend {
            StorageBackend::Postgres { url, wait } => Location::Postgres {
                url: url.clone(),
                wait: *wait,
                auth_required: matches!(self.auth, ServerAuth::Required(_)),
            },
            StorageBackend::File => {
                Location::File { path: self.storage_filepath.clone(), sync: self.storage_sync }
            }
        }
    }

    /// Logs the configuration at start: the `config` line, where the
    /// default secret is (and how to print keys from it), and a warning
    /// for each setting that leaves the lottery open or idle.
    pub fn log_start(&self) {
        // The database's address is logged when the server connects to it
        // (without its password), not here.
        let path = self.storage_filepath.display();
        let (storage, sync): (&dyn fmt::Display, Option<&dyn fmt::Debug>) =
            match self.storage_backend {
                StorageBackend::File => (&path, Some(&self.storage_sync)),
                StorageBackend::Postgres { .. } => (&"postgres", None),
            };
        ConfigEvent::Server {
            port: self.port,
            listen_backlog: self.listen_backlog,
            logging_level: self.logging_level,
            agencies: self.agencies,
            workers: self.workers,
            storage,
            sync,
        }
        .info();
        if let Some(DefaultSecret { path, created }) = &self.default_secret {
            ConfigEvent::SecretFile { path: &path.display(), created: *created }.info();
        }
        if self.auth == ServerAuth::Off {
            ConfigEvent::ServerAuthOff.warn();
        }
        if self.agencies == 0 {
            ConfigEvent::NoAgencies.warn();
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
    // 0: one try, no waiting.
    let wait = parse_dur(s, "STORAGE_WAIT", "30s")?;
    if wait > Duration::from_secs(24 * 60 * 60) {
        return Err(key_err("STORAGE_WAIT", "must be at most a day"));
    }
    Ok(StorageBackend::Postgres { url: url.to_owned(), wait })
}

/// Default of `SERVER_WORKERS`: enough for every agency of a large ingest
/// (100 in the benchmark) to be served at once.
pub const DEFAULT_WORKERS: usize = 128;

/// Server setting keys, which are also their environment variables.
pub const SERVER_KEYS: [&str; 21] = [
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
    "STORAGE_WAIT",
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
        Self::from_settings(
            &Self::settings(path, env)?,
            &auth::read_private_file,
            &auth::read_or_create_secret,
        )
    }

    /// The secret agencies' keys derive from, read the way [`load`](Self::load)
    /// reads it (whatever `SERVER_AUTH` says): for `server agency-key N`.
    /// The default secret file is only read, never created: run from
    /// another directory, or with other settings, this fails instead of
    /// printing keys of a secret the server does not have.
    ///
    /// # Errors
    /// An unreadable config file, or a secret that is missing or malformed.
    pub fn load_secret<I, K, V>(path: &Path, env: I) -> Result<Secret, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let settings = Self::settings(path, env)?;
        secret(&settings, &auth::read_private_file, &read_default_secret).map(|(secret, _)| secret)
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
        let n = agency.trim().parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            key_err("agency", format!("{agency:?} is not an agency number (1..={})", u32::MAX))
        })?;
        Ok(Self::load_secret(path, env)?.agency_key(n))
    }

    fn settings<I, K, V>(path: &Path, env: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut settings = Self::parse_ini(&read_file(path)?)
            .map_err(|reason| ConfigError::File { path: path.to_owned(), reason })?;
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
    /// `SERVER_SECRET_FILE` when that is where the secret is; `default`
    /// reads (or creates) the default secret file when no secret is set.
    ///
    /// # Errors
    /// The first invalid value, naming its key.
    pub fn from_settings(
        s: &Settings,
        read: ReadFile<'_>,
        default: DefaultSecretFile<'_>,
    ) -> Result<ServerConfig, ConfigError> {
        // A worker owns a connection for its life, so the workers bound
        // the agencies served at once; a thread blocked on a socket costs
        // memory (its stack, touched lightly), not CPU.
        let default_workers = DEFAULT_WORKERS.to_string();
        let sync_text = get(s, "STORAGE_SYNC", "always");
        let ip = get(s, "SERVER_IP", "0.0.0.0").trim().to_owned();
        if ip.is_empty() {
            return Err(key_err("SERVER_IP", "is empty"));
        }
        let path = get(s, "STORAGE_FILEPATH", DEFAULT_STORAGE_FILEPATH).trim();
        if path.is_empty() {
            return Err(key_err("STORAGE_FILEPATH", "is empty"));
        }
        let storage_backend = storage_backend(s)?;
        let mut config = ServerConfig {
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
                0,
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
                key_err("STORAGE_SYNC", format!("{sync_text:?} is neither \"always\" nor \"none\""))
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
            auth: ServerAuth::Off,
            default_secret: None,
        };
        // Last, so that a config with a bad value creates no secret file.
        (config.auth, config.default_secret) = server_auth(s, read, default)?;
        Ok(config)
    }
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

/// `SERVER_AUTH` (`required` by default, or `off`) and, when required,
/// the secret (see [`secret`]).
fn server_auth(
    s: &Settings,
    read: ReadFile<'_>,
    default: DefaultSecretFile<'_>,
) -> Result<(ServerAuth, Option<DefaultSecret>), ConfigError> {
    match get(s, "SERVER_AUTH", "required").trim() {
        "required" => {
            let (secret, default_secret) = secret(s, read, default)?;
            Ok((ServerAuth::Required(secret), default_secret))
        }
        "off" => Ok((ServerAuth::Off, None)),
        other => {
            Err(key_err("SERVER_AUTH", format!("{other:?} is neither \"required\" nor \"off\"")))
        }
    }
}

/// The server's secret from `SERVER_SECRET` or `SERVER_SECRET_FILE`; with
/// neither, from the default file at [`default_secret_path`], which
/// `default` reads (and the server's creates when missing). Errors about
/// the default file are reported under `SERVER_SECRET_FILE`, the key that
/// would name another.
fn secret(
    s: &Settings,
    read: ReadFile<'_>,
    default: DefaultSecretFile<'_>,
) -> Result<(Secret, Option<DefaultSecret>), ConfigError> {
    if let Some(bytes) = hex32_setting(s, "SERVER_SECRET", "SERVER_SECRET_FILE", read)? {
        return Ok((Secret::from_bytes(bytes), None));
    }
    let path = default_secret_path(s);
    let not_set = |reason: String| {
        key_err("SERVER_SECRET_FILE", format!("not set, so the default: {reason}"))
    };
    let (text, created) = default(&path).map_err(not_set)?;
    let bytes =
        auth::parse_hex32(&text).map_err(|e| not_set(format!("{}: {e}", path.display())))?;
    Ok((Secret::from_bytes(bytes), Some(DefaultSecret { path, created })))
}

/// Where the server keeps its secret when none is configured: beside the
/// bets file (`lottery.secret` in the directory of `STORAGE_FILEPATH`, so
/// `./lottery.secret` by default), or, with `STORAGE_BACKEND=postgres`,
/// which keeps nothing on the server's disk, in the working directory.
/// A new lottery started by removing `bets.csv*` keeps its agencies' keys.
pub fn default_secret_path(s: &Settings) -> PathBuf {
    let dir = if get(s, "STORAGE_BACKEND", "file").trim() == "postgres" {
        Path::new(".")
    } else {
        match Path::new(get(s, "STORAGE_FILEPATH", DEFAULT_STORAGE_FILEPATH).trim()).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    };
    dir.join(DEFAULT_SECRET_NAME)
}

/// `agency-key`'s reader of the default secret file: it must exist (the
/// server creates it at its first start).
fn read_default_secret(path: &Path) -> Result<(String, bool), String> {
    if !path.exists() {
        return Err(format!(
            "{} does not exist: the server creates it at its first start; run this with the server's settings, from its directory",
            path.display()
        ));
    }
    auth::read_private_file(path).map(|text| (text, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{HEX, no_files, pairs};

    /// Tests create no default secret file.
    fn no_default(p: &Path) -> Result<(String, bool), String> {
        Err(format!("{}: no files in tests", p.display()))
    }

    const INI: &str = "[DEFAULT]\nSERVER_PORT = 12345\nSERVER_IP = 0.0.0.0\nSERVER_LISTEN_BACKLOG = 5\nLOGGING_LEVEL = INFO\nserver_agencies = 3\nSERVER_SECRET = 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

    #[test]
    fn server_file_then_env_then_defaults() {
        let mut s = ServerConfig::parse_ini(INI).unwrap();
        apply_env(
            &mut s,
            &SERVER_KEYS,
            |k| k.to_owned(),
            pairs(&[("SERVER_PORT", "7000"), ("UNRELATED", "x"), ("STORAGE_SYNC", "none")]),
        );
        let c = ServerConfig::from_settings(&s, &no_files, &no_default).unwrap();
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
        assert_eq!(c.default_secret, None, "the secret is configured");
    }

    #[test]
    fn server_secret_from_env_or_file_or_auth_off() {
        let base = ServerConfig::parse_ini("[DEFAULT]\n").unwrap();
        let with = |env: &[(&str, &str)], read: ReadFile<'_>| {
            let mut s = base.clone();
            apply_env(&mut s, &SERVER_KEYS, |k| k.to_owned(), pairs(env));
            ServerConfig::from_settings(&s, read, &no_default)
        };
        let secret = ServerAuth::Required(Secret::from_hex(HEX).unwrap());
        assert_eq!(with(&[("SERVER_SECRET", HEX)], &no_files).unwrap().auth, secret);
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
        assert_eq!(err_key(&[], &no_files), "SERVER_SECRET_FILE", "not set, and no default file");
        assert_eq!(
            err_key(&[("SERVER_SECRET_FILE", "/nonexistent")], &no_files),
            "SERVER_SECRET_FILE"
        );
        let short = |_: &Path| Ok(HEX[..40].to_owned());
        assert_eq!(err_key(&[("SERVER_SECRET_FILE", "/run/secret")], &short), "SERVER_SECRET_FILE");
        assert_eq!(err_key(&[("SERVER_SECRET", &HEX[1..])], &no_files), "SERVER_SECRET");
        let both = [("SERVER_SECRET", HEX), ("SERVER_SECRET_FILE", "/run/secret")];
        assert_eq!(err_key(&both, &file), "SERVER_SECRET");
        assert_eq!(
            err_key(&[("SERVER_AUTH", "maybe"), ("SERVER_SECRET", HEX)], &no_files),
            "SERVER_AUTH"
        );
    }

    #[test]
    fn server_invalid_values_name_their_key() {
        for (key, value) in [
            ("SERVER_PORT", "70000"),
            ("SERVER_PORT", ""),
            ("SERVER_AGENCIES", "100001"),
            ("SERVER_AGENCIES", "-1"),
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
            let err = ServerConfig::from_settings(&s, &no_files, &no_default).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Key { key: k, .. } if k == key),
                "{key}={value:?} gave {err}"
            );
        }
        // No agencies at all: a server that answers ECHO only.
        let mut s = ServerConfig::parse_ini(INI).unwrap();
        s.insert("SERVER_AGENCIES".into(), "0".into());
        let c = ServerConfig::from_settings(&s, &no_files, &no_default).unwrap();
        assert_eq!(c.agencies, 0);
    }

    /// With neither `SERVER_SECRET` nor `SERVER_SECRET_FILE`, the secret is
    /// the default file's, beside the bets file (the working directory for
    /// a database); a configured secret never touches it, nor does
    /// `SERVER_AUTH=off`.
    #[test]
    fn with_no_secret_set_the_secret_is_the_default_file_beside_the_storage() {
        let with = |env: &[(&str, &str)], default: DefaultSecretFile<'_>| {
            let mut s = ServerConfig::parse_ini("[DEFAULT]\n").unwrap();
            apply_env(&mut s, &SERVER_KEYS, |k| k.to_owned(), pairs(env));
            ServerConfig::from_settings(&s, &no_files, default)
        };
        let asked = std::cell::RefCell::new(Vec::new());
        let created = |p: &Path| {
            asked.borrow_mut().push(p.to_owned());
            Ok((format!("{HEX}\n"), true))
        };
        let c = with(&[], &created).unwrap();
        assert_eq!(c.auth, ServerAuth::Required(Secret::from_hex(HEX).unwrap()));
        assert_eq!(
            c.default_secret,
            Some(DefaultSecret { path: PathBuf::from("./lottery.secret"), created: true })
        );
        with(&[("STORAGE_FILEPATH", "/data/bets.csv")], &created).unwrap();
        with(&[("STORAGE_FILEPATH", "bets.csv")], &created).unwrap();
        assert_eq!(
            asked.take(),
            ["./lottery.secret", "/data/lottery.secret", "./lottery.secret"].map(PathBuf::from)
        );
        let mut postgres = Settings::new();
        postgres.insert("STORAGE_BACKEND".into(), "postgres".into());
        postgres.insert("STORAGE_FILEPATH".into(), "/data/bets.csv".into());
        assert_eq!(default_secret_path(&postgres), Path::new("./lottery.secret"));

        let untouched = |p: &Path| -> Result<(String, bool), String> {
            panic!("{} read with a secret configured", p.display())
        };
        let c = with(&[("SERVER_SECRET", HEX)], &untouched).unwrap();
        assert_eq!(c.default_secret, None);
        let c = with(&[("SERVER_AUTH", "off")], &untouched).unwrap();
        assert_eq!((c.auth, c.default_secret), (ServerAuth::Off, None));
        // A config with a bad value creates no secret file.
        let err = with(&[("SERVER_PORT", "x")], &untouched).unwrap_err();
        assert!(matches!(&err, ConfigError::Key { key, .. } if key == "SERVER_PORT"), "{err}");

        // A default file that cannot be read or holds no secret stops the
        // server, under the key that would name another file.
        let bad = |_: &Path| Ok((HEX[..40].to_owned(), false));
        match with(&[], &bad) {
            Err(ConfigError::Key { key, reason }) => {
                assert_eq!(key, "SERVER_SECRET_FILE");
                assert!(reason.contains("./lottery.secret: must be 64"), "{reason}");
                assert!(!reason.contains(&HEX[..20]), "{reason} shows the secret");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_storage_backend_is_the_file_unless_postgres_is_asked_for() {
        let with = |env: &[(&str, &str)]| {
            let mut s = ServerConfig::parse_ini(INI).unwrap();
            apply_env(&mut s, &SERVER_KEYS, |k| k.to_owned(), pairs(env));
            ServerConfig::from_settings(&s, &no_files, &no_default)
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
                    auth_required: true,
                    wait: Duration::from_secs(30)
                }
            );
            // The database is told SERVER_AUTH, which it records.
            let off = [postgres[0], postgres[1], ("SERVER_AUTH", "off")];
            assert_eq!(
                with(&off).unwrap().storage_location(),
                Location::Postgres {
                    url: url.into(),
                    auth_required: false,
                    wait: Duration::from_secs(30)
                }
            );
            assert_eq!(
                key_of(&[("STORAGE_BACKEND", "postgres")]).0,
                "STORAGE_URL",
                "the database is required"
            );
            // STORAGE_WAIT: 0 is one try; more than a day is a mistake.
            let no_wait = [postgres[0], postgres[1], ("STORAGE_WAIT", "0")];
            assert!(matches!(
                with(&no_wait).unwrap().storage_location(),
                Location::Postgres { wait: Duration::ZERO, .. }
            ));
            let day = [postgres[0], postgres[1], ("STORAGE_WAIT", "25h")];
            assert_eq!(key_of(&day).0, "STORAGE_WAIT");
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
}
