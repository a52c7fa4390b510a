//! A start's look at the files ([`inspect`]): the lengths of `bets.csv` and
//! its journal, the journal missing under rows, then the walk over both.

use super::plan::{OnDamage, Plan};
use super::walk::Walk;
use crate::storage::error::{StorageError, io_err};
use std::io;
use std::path::Path;

/// Reads `bets.csv` at `data_path` and its journal and decides what a start
/// keeps; writes nothing.
///
/// # Errors
/// A file that cannot be read; with [`OnDamage::Refuse`], damage a crash
/// cannot explain ([`StorageError::Damaged`], naming the file and offset),
/// and rows without a journal ([`StorageError::Corrupt`]).
pub(in crate::storage) fn inspect(
    data_path: &Path,
    journal_path: &Path,
    on_damage: OnDamage,
) -> Result<Plan, StorageError> {
    let data_len = file_len(data_path)?;
    let Some(journal_len) = file_len(journal_path)? else {
        return match data_len {
            Some(len) if len > 0 => Err(StorageError::Corrupt {
                path: journal_path.to_owned(),
                reason: format!(
                    "it is missing while {} holds {len} bytes (a journal deleted, or rows from \
                     elsewhere): no checksum vouches for those rows, and which agencies finished \
                     is unknown; refusing to start, nothing was changed (if the rows are to be \
                     trusted, `server storage-rebuild-journal {}` writes a journal for them)",
                    data_path.display(),
                    data_path.display()
                ),
            }),
            _ => Ok(Plan { data_exists: data_len.is_some(), ..Plan::default() }),
        };
    };
    let start = Plan {
        data_exists: data_len.is_some(),
        journal_exists: true,
        data_len: data_len.unwrap_or(0),
        journal_len,
        ..Plan::default()
    };
    Walk::new(data_path, journal_path, start, on_damage)?.run()
}

/// A file's length, `None` if it does not exist.
fn file_len(path: &Path) -> Result<Option<u64>, StorageError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "stat")(e)),
    }
}
