//! The storage layer's error, naming the file or database at fault, and
//! how it reads in a log line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Errors of the storage layer, each with the file or database it concerns.
#[derive(Debug)]
pub enum StorageError {
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The file's content cannot be what this program wrote.
    Corrupt {
        path: PathBuf,
        reason: String,
    },
    /// Damage no crash explains, at byte `offset` of `path` (a damaged
    /// journal line with more after it, committed rows that do not match
    /// their checksum): a start refuses and changes nothing.
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An earlier failure left the files in a state this process cannot
    /// repair; a restart recovers them.
    Broken {
        reason: String,
    },
    /// The database refused or could not be reached; the next commit
    /// connects again.
    Database {
        action: &'static str,
        reason: String,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, action, source } => {
                write!(f, "cannot {action} {}: {source}", path.display())
            }
            StorageError::Corrupt { path, reason } => {
                write!(f, "{} is corrupt: {reason}", path.display())
            }
            StorageError::Damaged { path, offset, reason } => write!(
                f,
                "{} is damaged at byte {offset}: {reason}; refusing to start, nothing was changed",
                path.display()
            ),
            StorageError::Broken { reason } => {
                write!(f, "storage unusable until restart: {reason}")
            }
            StorageError::Database { action, reason } => {
                write!(f, "database: cannot {action}: {reason}")
            }
        }
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    /// The error as the fields of a log line: `file: … | offset: … |
    /// error: …` for damage, so an operator sees where to look.
    pub fn log_fields(&self) -> String {
        use crate::logging::clean;
        match self {
            StorageError::Damaged { path, offset, reason } => format!(
                "file: {} | offset: {offset} | error: {}; refusing to start, nothing was changed",
                clean(path.display()),
                clean(reason)
            ),
            StorageError::Io { path, .. } | StorageError::Corrupt { path, .. } => {
                format!("file: {} | error: {}", clean(path.display()), clean(self))
            }
            _ => format!("error: {}", clean(self)),
        }
    }
}

/// Turns an I/O error on `path` into the storage's error, saying what it was
/// doing (`action`).
pub(super) fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { path: path.to_owned(), action, source }
}
