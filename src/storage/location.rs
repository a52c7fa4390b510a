//! Where the bets are kept ([`Location`], from `STORAGE_BACKEND` and its
//! settings), and when the file backend syncs ([`SyncMode`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The path of a file that lives beside the bets file and belongs to it:
/// the bets file's name plus `suffix` (`bets.csv` → `bets.csv.journal`).
pub(super) fn beside(data: &Path, suffix: &str) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// When the file backend calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Every commit is synced before it is acknowledged (the default).
    Always,
    /// Never sync: faster, but a power loss may lose acknowledged bets.
    /// A killed process loses nothing (the kernel still has the data).
    None,
}

impl SyncMode {
    /// Parses `always` or `none` (any case).
    pub fn parse(s: &str) -> Option<SyncMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "always" => Some(SyncMode::Always),
            "none" => Some(SyncMode::None),
            _ => None,
        }
    }
}

/// Where the bets are kept (from `STORAGE_BACKEND` and its settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `bets.csv` at `path` and its journal beside it.
    File { path: PathBuf, sync: SyncMode },
    /// A PostgreSQL database: a `postgresql://` URL or a libpq-style
    /// `key=value` string. Durability is the database's
    /// (`synchronous_commit`). `auth_required` is the server's
    /// `SERVER_AUTH`: the database records it for the lottery, and a server
    /// that disagrees refuses to start (one with `off` would open every
    /// agency to anyone). `wait`: how long a start waits for the database
    /// to be reachable (`STORAGE_WAIT`).
    Postgres { url: String, auth_required: bool, wait: Duration },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_mode_parses() {
        assert_eq!(SyncMode::parse("ALWAYS"), Some(SyncMode::Always));
        assert_eq!(SyncMode::parse(" none"), Some(SyncMode::None));
        assert_eq!(SyncMode::parse("sometimes"), None);
    }
}
