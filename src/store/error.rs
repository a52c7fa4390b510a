//! Why the store refused a request ([`StoreError`]).

use std::fmt;

/// Why the store refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The batch starts at `got` but the agency's next position is `expected`.
    Sequence { expected: u64, got: u64 },
    /// The agency already said DONE.
    AlreadyDone,
    /// DONE announced `total` bets, but the server holds `stored`.
    DoneMismatch { total: u64, stored: u64 },
    /// The commit failed; nothing of it is stored.
    Storage(String),
    /// The store is closing.
    Closed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Sequence { expected, got } => {
                write!(f, "batch starts at bet {got}, expected {expected}")
            }
            StoreError::AlreadyDone => write!(f, "agency already finished"),
            StoreError::DoneMismatch { total, stored } => {
                write!(f, "agency says it sent {total} bets, server holds {stored}")
            }
            StoreError::Storage(reason) => write!(f, "storage failure: {reason}"),
            StoreError::Closed => write!(f, "server is shutting down"),
        }
    }
}
