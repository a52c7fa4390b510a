//! The winners while bets still arrive ([`WinnersLog`]): the log on disk
//! (`bets.csv.winners-log`), appended by the committer, and each agency's
//! tally in memory; at the draw it is regrouped into the winners file.

use super::super::location::beside as with_suffix;
use super::grouped::WinnersFile;
use super::record::{Tally, push_record, tally};
use super::regroup::Regroup;
use crate::storage::error::{StorageError, io_err};
use crate::storage::rows::for_each_winner;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log's path for a bets file: `bets.csv.winners-log`.
fn log_path(data: &Path) -> PathBuf {
    with_suffix(data, ".winners-log")
}

/// The regrouped winners' path for a bets file: `bets.csv.winners`.
fn grouped_path(data: &Path) -> PathBuf {
    with_suffix(data, ".winners")
}

/// The winners of the stored bets while bets still arrive: the log on disk
/// and each agency's count in memory.
#[derive(Debug)]
pub struct WinnersLog {
    data: PathBuf,
    path: PathBuf,
    file: File,
    tallies: BTreeMap<u32, Tally>,
    /// A write failed: the log is incomplete and is rebuilt from `bets.csv`
    /// at the draw.
    broken: Option<String>,
}

impl WinnersLog {
    /// A fresh log of the winners among the first `len` bytes of the bets
    /// file at `data` (its committed part), read in one streaming pass.
    ///
    /// # Errors
    /// The bets file cannot be read or holds a row that is not a bet; the
    /// log cannot be written.
    pub fn rebuild(data: &Path, len: u64) -> Result<WinnersLog, StorageError> {
        let path = log_path(data);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        let mut log = WinnersLog {
            data: data.to_owned(),
            path,
            file,
            tallies: BTreeMap::new(),
            broken: None,
        };
        if len == 0 {
            return Ok(log);
        }
        let mut chunk = Vec::with_capacity(1 << 16);
        for_each_winner(data, len, |agency, document| {
            push_record(&mut chunk, agency, document);
            if chunk.len() >= 1 << 16 {
                log.write(&chunk)?;
                chunk.clear();
            }
            Ok(())
        })?;
        log.write(&chunk)?;
        Ok(log)
    }

    fn write(&mut self, records: &[u8]) -> Result<(), StorageError> {
        self.file.write_all(records).map_err(io_err(&self.path, "append to"))?;
        tally(&mut self.tallies, records);
        Ok(())
    }

    /// Appends the winners of a durable commit (records of
    /// [`push_record`]). A failed write is not the commit's failure (the
    /// bets are durable): the log is marked broken and rebuilt at the draw.
    pub fn append(&mut self, records: &[u8]) {
        if records.is_empty() || self.broken.is_some() {
            return;
        }
        if let Err(e) = self.write(records) {
            self.broken = Some(e.to_string());
        }
    }

    /// Winners logged so far, all agencies.
    pub fn total(&self) -> u64 {
        self.tallies.values().map(|t| t.count).sum()
    }

    /// Regroups the log by agency into the winners file and removes the
    /// log (after rebuilding it from `bets.csv` if a write had failed).
    /// `len`: the committed length of the bets file.
    ///
    /// # Errors
    /// Reading the log or the bets file, writing the winners file.
    /// The log is left empty: it has served its purpose.
    pub fn finish(&mut self, len: u64) -> Result<WinnersFile, StorageError> {
        if self.broken.is_some() {
            *self = WinnersLog::rebuild(&self.data, len)?;
        }
        self.regroup()
    }

    fn regroup(&mut self) -> Result<WinnersFile, StorageError> {
        let tallies = std::mem::take(&mut self.tallies);
        let path = grouped_path(&self.data);
        let out = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        let mut regroup = Regroup::lay_out(&tallies, out, path)?;
        regroup.copy_log(&self.path)?;
        let file = regroup.finish(&self.path)?;
        // The log has served its purpose; a restart rebuilds everything.
        let _ = std::fs::remove_file(&self.path);
        Ok(file)
    }
}
