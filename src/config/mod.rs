//! Configuration of both binaries, in layers: read the file → parse the
//! text (pure) → apply environment overrides (pure, from any list of pairs)
//! → validate.
//!
//! - `layers.rs`: what both share: the layers' plumbing ([`Settings`],
//!   [`apply_env`]) and the validators of single values;
//! - `duration.rs`: Go-style durations ([`parse_duration`]);
//! - `error.rs`: the error type ([`ConfigError`]);
//! - `server.rs` and `client.rs`: each binary's keys, defaults and config
//!   type.
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
//! [`auth::read_private_file`](crate::auth::read_private_file)), so tests
//! give their own.

mod client;
mod duration;
mod error;
mod layers;
mod server;
#[cfg(test)]
mod testing;

pub use client::{BetSource, CLIENT_KEYS, ClientAuth, ClientConfig, EnvBet, client_env_name};
pub use duration::parse_duration;
pub use error::ConfigError;
pub use layers::{ReadFile, Settings, apply_env};
pub use server::{
    DEFAULT_SECRET_NAME, DEFAULT_WORKERS, DefaultSecret, DefaultSecretFile, SERVER_KEYS,
    ServerConfig, StorageBackend, default_secret_path,
};
