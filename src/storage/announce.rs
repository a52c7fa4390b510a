//! The file backend's durable mark that the draw was announced: the
//! `sorteo` line was logged. Without it, a server that dies after the draw
//! became durable but before it logged the line would leave a draw no
//! server ever logs (a restart rebuilds the draw silently).
//!
//! The mark is a small file beside `bets.csv` (`bets.csv.draw`) holding
//! the draw it marks: `end=<committed bytes of bets.csv> ganadores=<N>`.
//! A mark that does not name the stored draw (missing, torn, left by an
//! earlier lottery in the same directory) marks nothing.
//!
//! Order: the line is logged first, then the mark is written and synced.
//! A crash between the two logs the draw twice (once more at the next
//! start); the other order could lose it for ever, which is what this
//! mark exists to prevent.

use super::error::{StorageError, io_err};
use super::location::SyncMode;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// The mark's path for a bets file: `bets.csv.draw`.
pub fn mark_path(data: &Path) -> PathBuf {
    super::location::beside(data, ".draw")
}

/// What the mark of the draw over `end` committed bytes with `winners`
/// winners holds.
fn mark_line(end: u64, winners: u64) -> String {
    format!("end={end} ganadores={winners}\n")
}

/// Whether the draw over the first `end` bytes of the bets file at `data`,
/// with `winners` winners, is marked as announced.
///
/// # Errors
/// The mark exists but cannot be read.
pub(super) fn is_marked(data: &Path, end: u64, winners: u64) -> Result<bool, StorageError> {
    let path = mark_path(data);
    match std::fs::read(&path) {
        Ok(text) => Ok(text == mark_line(end, winners).as_bytes()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(&path, "read")(e)),
    }
}

/// Marks that draw as announced, durably in `SyncMode::Always` (the mark
/// and its directory entry are synced before this returns).
///
/// # Errors
/// The mark cannot be written or synced.
pub(super) fn mark(
    data: &Path,
    end: u64,
    winners: u64,
    sync: SyncMode,
) -> Result<(), StorageError> {
    let path = mark_path(data);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err(&path, "create"))?;
    file.write_all(mark_line(end, winners).as_bytes()).map_err(io_err(&path, "write"))?;
    if sync == SyncMode::Always {
        file.sync_data().map_err(io_err(&path, "sync"))?;
        super::file::sync_parent_dir(&path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_names_the_draw_it_marks() {
        let dir = crate::testing::temp_dir("mark");
        let data = dir.join("bets.csv");
        assert!(!is_marked(&data, 100, 3).unwrap());
        mark(&data, 100, 3, SyncMode::Always).unwrap();
        assert!(is_marked(&data, 100, 3).unwrap());
        // Another lottery's draw in the same place is not marked by it.
        assert!(!is_marked(&data, 100, 4).unwrap());
        assert!(!is_marked(&data, 101, 3).unwrap());
        // A torn mark marks nothing.
        std::fs::write(mark_path(&data), b"end=100 gan").unwrap();
        assert!(!is_marked(&data, 100, 3).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
