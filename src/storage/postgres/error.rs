//! The database's errors as the storage's: what a statement was doing, the
//! server's message, and a value that does not fit the server's type.

use crate::storage::error::StorageError;
use ::postgres as pg;

/// Turns the error of a statement into the storage's error, saying what
/// it was doing (`action`).
pub(super) fn db(action: &'static str) -> impl FnOnce(pg::Error) -> StorageError {
    move |e| StorageError::Database { action, reason: error_text(&e) }
}

/// The error with the server's message, when there is one.
fn error_text(e: &pg::Error) -> String {
    match e.as_db_error() {
        Some(dbe) => format!("{}: {}", dbe.severity(), dbe.message()),
        None => e.to_string(),
    }
}

/// A value read from the database that does not fit the server's type.
pub(super) fn out_of_range(what: &str) -> StorageError {
    StorageError::Database { action: "read", reason: format!("{what} out of range") }
}
