//! The error every layer of the configuration returns: which file or key is
//! at fault, and why.

use std::fmt;
use std::path::PathBuf;

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
    ConfigError::Key { key: key.to_owned(), reason: reason.into() }
}
