//! The cloneable [`Store`] handle every connection worker holds: opening
//! the storage and starting the committer, then each request's way in
//! (positions, batches, DONE, winners) and the close; with the answers it
//! gives ([`WinnersAnswer`], [`IngestTotals`]).

use super::committer;
use super::error::StoreError;
use super::manager::{Signals, StoreManager, lock};
use super::ticket::Ticket;
use crate::bet::BetRef;
use crate::logging::{Action, ActionEvent, LogLine, Outcome};
use crate::storage::{
    Backend, DrawState, Location, Lookup, OpenReport, StorageError, WinnersPage, encode_copy_row,
    encode_row, push_record,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

impl std::error::Error for StoreError {}

/// Answer to a winners query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WinnersAnswer {
    /// The draw has not happened: `finished` of `expected` agencies are done.
    NotReady { finished: u32, expected: u32 },
    /// A page of the agency's winners' documents, in storage order.
    Ready(WinnersPage),
}

/// How far the ingest has come, in durable figures (the server's progress
/// line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestTotals {
    /// Bets stored, all agencies.
    pub bets: u64,
    /// Agencies whose DONE is stored.
    pub finished: u32,
}

/// Shared handle to the lottery's state: `Arc<Mutex<StoreManager>>`, the
/// condition variables that go with it, and the committer thread. Cheap to
/// clone; every connection worker holds one.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) manager: Arc<Mutex<StoreManager>>,
    /// Agencies that must finish before the draw (fixed at start).
    agencies: u32,
    pub(super) signals: Arc<Signals>,
    committer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// What workers ask the database directly (nothing for the file
    /// backend). A shared one means the bets live in a database other
    /// servers also write: its rows carry their position, and it finds the
    /// winners and decides the draw.
    lookup: Lookup,
    /// The storage, for the close log line.
    describe: String,
}

impl Store {
    /// Opens the storage at `location` (recovering the files, or creating
    /// the database's schema), rebuilds the draw if every one of the
    /// `agencies` had finished (file backend), and starts the committer.
    ///
    /// # Errors
    /// Storage that cannot be opened or recovered.
    pub fn open(location: &Location, agencies: u32) -> Result<(Store, OpenReport), StorageError> {
        let mut opened = Backend::open(location, agencies)?;
        let winners = opened.backend.drawn_winners();
        // A draw that is durable but was never announced (the server that
        // recorded it died before logging it) is announced now.
        committer::announce(&mut opened.backend);
        let manager =
            Arc::new(Mutex::new(StoreManager::new(agencies, opened.counts, opened.done, winners)));
        let describe = opened.backend.describe();
        let signals = Arc::new(Signals::default());
        let committer = committer::start(&manager, &signals, opened.backend)?;
        Ok((
            Store {
                manager,
                agencies,
                signals,
                committer: Arc::new(Mutex::new(Some(committer))),
                lookup: opened.lookup,
                describe,
            },
            opened.report,
        ))
    }

    fn lock(&self) -> Result<MutexGuard<'_, StoreManager>, StoreError> {
        lock(&self.manager)
    }

    /// Number of agencies that must finish before the draw.
    pub fn agencies(&self) -> u32 {
        self.agencies
    }

    /// Where the agency should resume, and whether its DONE is recorded.
    /// With a shared database the answer is read from it (outside the
    /// lock) and this server's memory catches up with it.
    ///
    /// # Errors
    /// A database that cannot be reached; a poisoned internal lock.
    pub fn position(&self, agency: u32) -> Result<(u64, bool), StoreError> {
        // A recorded DONE never changes: no need to ask the database.
        if let Some(next) = self.lock()?.finished_at(agency) {
            return Ok((next, true));
        }
        let read = self.lookup.position(agency).map_err(|e| StoreError::Storage(e.to_string()))?;
        let mut state = self.lock()?;
        if let Some(durable) = read {
            state.catch_up(agency, durable);
        }
        Ok(state.position(agency))
    }

    /// Durable bets and finished agencies so far.
    ///
    /// # Errors
    /// Only a poisoned internal lock.
    pub fn progress(&self) -> Result<IngestTotals, StoreError> {
        let (bets, finished) = self.lock()?.durable_totals();
        Ok(IngestTotals { bets, finished })
    }

    /// Hands in a validated batch of the agency's bets starting at
    /// position `first_seq`. A batch already stored (a resend after a lost
    /// ACK) is not stored again; its ticket resolves once the original is
    /// durable. Blocks while the pending group is full, until the
    /// committer takes it.
    ///
    /// # Errors
    /// A gap or overlap in the sequence, an agency that already finished,
    /// a closing store.
    pub fn submit_batch(
        &self,
        agency: u32,
        first_seq: u64,
        bets: &[BetRef<'_>],
    ) -> Result<Ticket, StoreError> {
        // Encode outside the lock (the CPU-heavy part), into a buffer each
        // worker thread keeps: no allocation per batch.
        thread_local! {
            static ROWS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        ROWS.with(|buffers| {
            let (rows, winners) = &mut *buffers.borrow_mut();
            self.encode(agency, first_seq, bets, rows, winners);
            let mut state = self.lock()?;
            // Wait for room: the committer takes the group and signals.
            while state.is_full_for(rows.len()) {
                state = self
                    .signals
                    .room
                    .wait(state)
                    .map_err(|_| StoreError::Storage("internal state poisoned".into()))?;
            }
            let ticket = state.append(agency, first_seq, bets.len() as u64, rows, winners)?;
            drop(state);
            self.signals.work.notify_one();
            Ok(ticket)
        })
    }

    /// Encodes a batch as the backend stores it: its CSV rows (with their
    /// positions for a shared database), and the records of its winners
    /// (a shared database finds the winners itself).
    fn encode(
        &self,
        agency: u32,
        first_seq: u64,
        bets: &[BetRef<'_>],
        rows: &mut Vec<u8>,
        winners: &mut Vec<u8>,
    ) {
        rows.clear();
        winners.clear();
        if self.lookup.is_shared() {
            for (position, bet) in (first_seq..).zip(bets) {
                encode_copy_row(rows, bet, position);
            }
            return;
        }
        for bet in bets {
            encode_row(rows, bet);
        }
        for bet in bets.iter().filter(|bet| bet.has_won()) {
            push_record(winners, agency, bet.document);
        }
    }

    /// Records that the agency sent all `total` of its bets. Repeating it
    /// (after a reconnect) is harmless.
    ///
    /// # Errors
    /// `total` differs from the bets held for the agency; a closing store.
    pub fn submit_done(&self, agency: u32, total: u64) -> Result<Ticket, StoreError> {
        let ticket = self.lock()?.finish(agency, total)?;
        self.signals.work.notify_one();
        Ok(ticket)
    }

    /// Once the draw has happened, a page of the agency's winners from
    /// `offset`: as many as fit in `room` bytes of documents (each takes
    /// its length plus one). Read from the winners file or the database,
    /// never under the lock; the page costs what it holds, not what the
    /// agency won in all.
    ///
    /// # Errors
    /// A database or winners file that cannot be read; a poisoned
    /// internal lock.
    pub fn winners(
        &self,
        agency: u32,
        offset: u32,
        room: usize,
    ) -> Result<WinnersAnswer, StoreError> {
        let storage = |e: StorageError| StoreError::Storage(e.to_string());
        let read = self.lookup.draw(agency, offset, room, &committer::log_draw).map_err(storage)?;
        if let Some(state) = read {
            return Ok(match state {
                DrawState::NotReady { finished } => {
                    WinnersAnswer::NotReady { finished, expected: self.agencies }
                }
                DrawState::Ready(page) => WinnersAnswer::Ready(page),
            });
        }
        let drawn = self.lock()?.drawn();
        let file = match drawn {
            Ok(drawn) => drawn.map_err(StoreError::Storage)?,
            Err((finished, expected)) => {
                return Ok(WinnersAnswer::NotReady { finished, expected });
            }
        };
        let page = file.page(agency, offset, room).map_err(storage)?;
        Ok(WinnersAnswer::Ready(page))
    }

    /// Stops taking requests, commits what was handed in, stops the
    /// committer and closes the files. Idempotent.
    pub fn close(&self) {
        if let Ok(mut state) = self.lock() {
            state.close();
        }
        self.signals.work.notify_all();
        self.signals.room.notify_all();
        let handle = self.committer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                ActionEvent::Failed {
                    action: Action::CloseStorage,
                    error: &"committer thread panicked",
                }
                .error();
            } else {
                ActionEvent::Fields {
                    action: Action::CloseStorage,
                    outcome: Outcome::Success,
                    fields: &self.describe,
                }
                .info();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bet::Bet;
    use crate::storage::{SyncMode, load_bets};
    use crate::store::testing::{acked, bets, open, refs, temp_path};
    use std::collections::BTreeMap;

    #[test]
    fn sequence_rules_store_each_position_once() {
        let path = temp_path("seq");
        let store = open(&path, SyncMode::None, 2);
        let b = bets(1, 10, 3);
        assert_eq!(acked(store.submit_batch(1, 0, &refs(&b[..4])).unwrap()), Ok(4));
        // A resend of the same batch is acknowledged, not stored again.
        assert_eq!(acked(store.submit_batch(1, 0, &refs(&b[..4])).unwrap()), Ok(4));
        // A gap is refused with the expected position.
        assert_eq!(
            store.submit_batch(1, 6, &refs(&b[6..])).unwrap_err(),
            StoreError::Sequence { expected: 4, got: 6 }
        );
        // A position at the end of the range is a gap, not an overflow.
        assert_eq!(
            store.submit_batch(1, u64::MAX, &refs(&b[4..5])).unwrap_err(),
            StoreError::Sequence { expected: 4, got: u64::MAX }
        );
        assert_eq!(acked(store.submit_batch(1, 4, &refs(&b[4..])).unwrap()), Ok(10));
        assert_eq!(store.position(1).unwrap(), (10, false));
        store.close();
        let stored: Vec<Bet> = load_bets(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(stored, b);
    }

    #[test]
    fn the_draw_happens_when_every_agency_is_done_and_survives_restart() {
        let path = temp_path("draw");
        let store = open(&path, SyncMode::Always, 2);
        store.submit_batch(1, 0, &refs(&bets(1, 7, 3))).unwrap().wait().unwrap();
        store.submit_batch(2, 0, &refs(&bets(2, 2, 5))).unwrap().wait().unwrap();
        assert_eq!(
            store.submit_done(1, 3).unwrap_err(),
            StoreError::DoneMismatch { total: 3, stored: 7 }
        );
        store.submit_done(1, 7).unwrap().wait().unwrap();
        store.submit_done(1, 7).unwrap().wait().unwrap(); // repeat: fine
        assert_eq!(
            store.submit_batch(1, 7, &refs(&bets(1, 1, 1))).unwrap_err(),
            StoreError::AlreadyDone
        );
        assert_eq!(
            store.winners(1, 0, ROOM).unwrap(),
            WinnersAnswer::NotReady { finished: 1, expected: 2 }
        );
        store.submit_done(2, 2).unwrap().wait().unwrap();
        // The draw is served as soon as the last DONE is durable...
        assert_eq!(winners(&store, 1), ["1000", "1003", "1006"]);
        store.close();
        // ... and again after a restart.
        let store = open(&path, SyncMode::Always, 2);
        assert_eq!(winners(&store, 1), ["1000", "1003", "1006"]);
        assert_eq!(winners(&store, 2), ["2000"]);
        assert_eq!(store.position(1).unwrap(), (7, true));
        store.close();
    }

    /// The room of a WINNERS frame.
    const ROOM: usize = crate::server::handler::WINNERS_ROOM;

    /// Every winner of `agency`, page by page.
    fn winners(store: &Store, agency: u32) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let WinnersAnswer::Ready(page) = store.winners(agency, all.len() as u32, ROOM).unwrap()
            else {
                panic!("no draw")
            };
            if page.documents.is_empty() {
                assert_eq!(all.len(), page.total as usize);
                return all;
            }
            all.extend(page.documents);
        }
    }

    /// The committer that records the draw announces it and marks it as
    /// announced; a draw made durable without its announcement (the server
    /// died in between: here, committed through the storage alone) is
    /// announced and marked by the next store opened on it.
    #[test]
    fn the_draw_is_marked_as_announced_by_whoever_announces_it() {
        let path = temp_path("announce");
        let store = open(&path, SyncMode::Always, 1);
        store.submit_batch(1, 0, &refs(&bets(1, 10, 2))).unwrap().wait().unwrap();
        assert!(!crate::storage::mark_path(&path).exists());
        store.submit_done(1, 10).unwrap().wait().unwrap();
        store.close();
        let mark = std::fs::read_to_string(crate::storage::mark_path(&path)).unwrap();
        assert!(mark.ends_with(" ganadores=5\n"), "{mark}");

        let path = temp_path("announce-later");
        let (mut storage, _) = crate::storage::Storage::open(&path, SyncMode::Always).unwrap();
        storage.store_bets(&bets(1, 10, 5)).unwrap();
        storage.commit(&[], &[], &[1]).unwrap();
        drop(storage);
        assert!(!crate::storage::mark_path(&path).exists());
        let store = open(&path, SyncMode::Always, 1);
        let mark = std::fs::read_to_string(crate::storage::mark_path(&path)).unwrap();
        assert!(mark.ends_with(" ganadores=2\n"), "{mark}");
        assert_eq!(winners(&store, 1), ["1000", "1005"]);
        store.close();
    }

    /// The store's winners state does not grow with the winners: with
    /// every bet a winner, what the draw keeps in memory is a few bytes per
    /// CHECKPOINT winners.
    #[test]
    fn the_draw_keeps_no_memory_per_winner() {
        let path = temp_path("memory");
        let store = open(&path, SyncMode::None, 2);
        for agency in 1..=2 {
            let all = bets(agency, 20_000, 1);
            for (i, chunk) in all.chunks(500).enumerate() {
                store.submit_batch(agency, i as u64 * 500, &refs(chunk)).unwrap().wait().unwrap();
            }
            store.submit_done(agency, 20_000).unwrap().wait().unwrap();
        }
        let index = {
            let Ok(Ok(file)) = store.lock().unwrap().drawn() else { panic!("no draw") };
            assert_eq!(file.total(), 40_000);
            file.index_bytes()
        };
        let per_checkpoint = 40_000 / crate::storage::CHECKPOINT as usize + 2;
        assert!(index <= 2 * 64 + per_checkpoint * 8, "{index} bytes");
        assert_eq!(winners(&store, 2).len(), 20_000);
        store.close();
    }

    #[test]
    fn concurrent_agencies_share_commits_and_lose_nothing() {
        let path = temp_path("concurrent");
        let store = open(&path, SyncMode::Always, 4);
        let threads: Vec<_> = (1..=4)
            .map(|agency| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let all = bets(agency, 500, 7);
                    for (i, chunk) in all.chunks(25).enumerate() {
                        let t = store.submit_batch(agency, i as u64 * 25, &refs(chunk)).unwrap();
                        t.wait().unwrap();
                    }
                    store.submit_done(agency, 500).unwrap().wait().unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        store.close();
        let mut counts = BTreeMap::new();
        for bet in load_bets(&path).unwrap() {
            *counts.entry(bet.unwrap().agency).or_insert(0) += 1;
        }
        assert_eq!(counts, BTreeMap::from([(1, 500), (2, 500), (3, 500), (4, 500)]));
    }
}
