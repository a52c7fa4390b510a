//! The agency's configuration: `config/client/config.yaml`, each key
//! overridden by `CLI_` + its path in capitals (`batch.maxAmount` →
//! `CLI_BATCH_MAXAMOUNT`, as the course's Go client reads it with viper),
//! validated into a [`ClientConfig`]; with no bets file, the one bet of
//! `NOMBRE`, `APELLIDO`, `DOCUMENTO`, `NACIMIENTO`, `NUMERO`.

use super::error::{ConfigError, key_err};
use super::layers::{
    ReadFile, Settings, apply_env, get, hex32_setting, in_range, parse_dur, parse_level, parse_num,
    read_file,
};
use crate::auth::{self, AgencyKey};
use crate::logging::{ConfigEvent, LogLine};
use log::LevelFilter;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

impl ClientConfig {
    /// Logs the configuration at start: the `config` line, and a warning if
    /// the agency accepts a server that does not ask for its key.
    pub fn log_start(&self) {
        ConfigEvent::Agency {
            id: self.id,
            server_address: &self.server_address,
            batch_max_amount: self.batch_max_amount,
            log_level: self.log_level,
        }
        .info();
        if !self.auth.is_required() {
            ConfigEvent::AgencyAuthOff.warn();
        }
    }
}

/// The non-empty, trimmed entries of a comma-separated address list.
fn split_addresses(list: &str) -> Vec<&str> {
    list.split(',').map(str::trim).filter(|a| !a.is_empty()).collect()
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
        let mut settings = Self::parse_yaml(&read_file(path)?)
            .map_err(|reason| ConfigError::File { path: path.to_owned(), reason })?;
        let env: Vec<(String, String)> = env.into_iter().collect();
        apply_env(&mut settings, &CLIENT_KEYS, client_env_name, env.iter().cloned());
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
            batch_window: in_range("batch.window", parse_num(s, "batch.window", "128")?, 1, 1024)?,
            bets,
            retry_timeout: parse_dur(s, "retry.timeout", "30s")?,
            retry_max_backoff: parse_dur(s, "retry.maxBackoff", "2s")?,
            winners_max_backoff: parse_dur(s, "winners.maxBackoff", "1s")?,
            io_timeout: io_timeout(s)?,
            auth: client_auth(s, read)?,
        })
    }
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
        (other, _) => {
            Err(key_err("auth", format!("{other:?} is neither \"required\" nor \"off\"")))
        }
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
                let path = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
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
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{HEX, no_files, pairs};

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
        assert_eq!(c.auth, ClientAuth::Required(AgencyKey::from_hex(HEX).unwrap()));
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
        assert_eq!(with(&[("CLI_KEY_FILE", "/run/key")], &file).unwrap().auth, required);
        // The YAML's `key` too.
        let s = ClientConfig::parse_yaml(&format!("id: 2\nkey: \"{HEX}\"\n")).unwrap();
        assert_eq!(ClientConfig::from_settings(&s, &[], None, &no_files).unwrap().auth, required);

        let err = |env: &[(&str, &str)], read: ReadFile<'_>| match with(env, read) {
            Err(e @ ConfigError::Key { .. }) => e.to_string(),
            other => panic!("{env:?} gave {other:?}"),
        };
        for (env, names) in [
            (&[][..], "config key key: missing: set CLI_KEY"),
            (&[("CLI_KEY", "")][..], "config key key: missing"),
            (&[("CLI_KEY", "abc")][..], "config key key: must be 64 hexadecimal"),
            (&[("CLI_KEY_FILE", "/none")][..], "config key key.file: /none"),
            (&[("CLI_KEY", HEX), ("CLI_KEY_FILE", "/run/key")][..], "both key and key.file"),
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
        assert_eq!(with(&[("CLI_AUTH", "off")]).unwrap().auth, ClientAuth::Off(None));
        let off = with(&[("CLI_AUTH", " off "), ("CLI_KEY", HEX)]).unwrap().auth;
        assert_eq!(off, ClientAuth::Off(Some(key.clone())));
        assert!(!off.is_required());
        assert_eq!(off.key(), Some(&key));
        let required = with(&[("CLI_AUTH", "required"), ("CLI_KEY", HEX)]).unwrap().auth;
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
        if p == Path::new("/run/key") { Ok(HEX.into()) } else { no_files(p) }
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
        let BetSource::Single(bet) = c.bets else { panic!("expected a single bet") };
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
