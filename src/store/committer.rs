//! The committer thread: one commit per loop, of everything handed in
//! since the last one. It takes the pending group under the lock, writes
//! and syncs it through the [`Backend`] outside the lock, then resolves
//! every ticket of the group at once (group commit).
//!
//! The draw is announced (`sorteo` logged) exactly once per lottery: by
//! the committer after the commit that records it, or at start by a store
//! that finds a durable draw never marked as announced (the storage's
//! mark, see [`Backend::announce`]). However the committer leaves,
//! [`CommitterExit`] fails what it leaves unresolved, so no worker waits
//! for ever.

use super::error::StoreError;
use super::manager::{Group, Signals, StoreManager, lock};
use super::ticket::Commit;
use crate::logging::{Action, ActionEvent, LogLine, StorageEvent};
use crate::storage::{Backend, Committed, DrawnWinners, GroupData, StorageError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Starts the committer thread over `backend`.
///
/// # Errors
/// The thread cannot be started.
pub(super) fn start(
    manager: &Arc<Mutex<StoreManager>>,
    signals: &Arc<Signals>,
    backend: Backend,
) -> Result<JoinHandle<()>, StorageError> {
    let (m, s) = (Arc::clone(manager), Arc::clone(signals));
    std::thread::Builder::new()
        .name("committer".into())
        .spawn(move || run(&m, &s, backend))
        .map_err(|source| StorageError::Io {
            path: "committer".into(),
            action: "start the thread",
            source,
        })
}

/// The draw's line, in the course's grammar.
pub(super) fn log_draw(winners: u64) {
    StorageEvent::Draw { winners }.info();
}

/// Announces the draw if it is durable and not yet marked as announced
/// (see [`Backend::announce`]); a mark that cannot be made is logged (the
/// next start announces the draw again).
pub(super) fn announce(backend: &mut Backend) {
    if let Err(e) = backend.announce(&log_draw) {
        ActionEvent::Failed { action: Action::Sorteo, error: &e }.error();
    }
}

/// Runs when the committer leaves, however it leaves (closing, a poisoned
/// lock, a panic): the store closes and every commit not yet resolved
/// fails, so that no worker waits forever on a ticket or for room, and the
/// server's teardown can join them.
pub(super) struct CommitterExit<'a> {
    pub manager: &'a Mutex<StoreManager>,
    pub signals: &'a Signals,
    /// The group being written, if any.
    pub writing: Option<Arc<Commit>>,
}

impl Drop for CommitterExit<'_> {
    fn drop(&mut self) {
        let mut state = self.manager.lock().unwrap_or_else(|p| p.into_inner());
        state.close();
        let pending = state.pending_commit();
        drop(state);
        if let Some(writing) = self.writing.take() {
            writing.abandon();
        }
        pending.abandon();
        self.signals.room.notify_all();
        self.signals.work.notify_all();
    }
}

/// The committer's loop. The group is taken under the lock; the write and
/// the sync happen outside.
fn run(manager: &Mutex<StoreManager>, signals: &Signals, mut backend: Backend) {
    let mut exit = CommitterExit { manager, signals, writing: None };
    while let Some(group) = next_group(manager, signals) {
        exit.writing = Some(Arc::clone(&group.commit));
        // The next group has room again.
        signals.room.notify_all();
        let (result, drawn) = write(&mut backend, &group);
        let Group { rows, winners, commit, .. } = group;
        let Ok(mut state) = lock(manager) else { return };
        state.written(rows, winners);
        match result {
            Ok(committed) => {
                state.committed(&committed, drawn);
                drop(state);
                if committed.drew.is_some() {
                    announce(&mut backend);
                }
                commit.resolve(Ok(Arc::new(committed.verdicts)));
            }
            Err(e) => {
                if !backend.failed_unreachable() {
                    ActionEvent::Failed { action: Action::Commit, error: &e }.error();
                }
                let later = state.failed();
                drop(state);
                signals.room.notify_all();
                let err = StoreError::Storage(e.to_string());
                commit.resolve(Err(err.clone()));
                later.resolve(Err(err));
            }
        }
        exit.writing = None;
    }
}

/// Waits for a group to commit and takes it; `None` once the store is
/// closing with nothing left to commit (or its lock is poisoned).
fn next_group(manager: &Mutex<StoreManager>, signals: &Signals) -> Option<Group> {
    let mut state = lock(manager).ok()?;
    while state.is_idle() {
        state = signals.work.wait(state).ok()?;
    }
    if state.nothing_pending() {
        return None; // closing, nothing left to commit
    }
    Some(state.take_group())
}

/// Makes the group durable through the backend, and, if this commit
/// recorded the draw, the draw's winners (file backend).
fn write(
    backend: &mut Backend,
    group: &Group,
) -> (Result<Committed, StorageError>, Option<DrawnWinners>) {
    let added: Vec<(u32, u64)> = group.added.iter().map(|(a, n)| (*a, *n)).collect();
    let result = backend.commit(
        &GroupData {
            rows: &group.rows,
            added: &added,
            done: &group.done,
            requests: &group.requests,
        },
        &group.winners,
    );
    let drawn = match &result {
        Ok(committed) if committed.drew.is_some() => backend.drawn_winners(),
        _ => None,
    };
    if let Some(Err(reason)) = &drawn {
        StorageEvent::WinnersUnavailable { error: reason }.error();
    }
    (result, drawn)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{acked, bets, open, refs, temp_path};
    use super::super::ticket::Ticket;
    use super::*;
    use crate::storage::SyncMode;

    /// However the committer leaves, nobody waits forever: the commit it was
    /// writing fails, and so does everything handed in after it.
    #[test]
    fn a_committer_that_leaves_fails_its_commits_and_closes_the_store() {
        let path = temp_path("committer-exit");
        let store = open(&path, SyncMode::None, 1);
        let writing = Arc::new(Commit::default());
        let ticket = Ticket {
            commit: Some(Arc::clone(&writing)),
            request: None,
            first: 0,
            next_seq: 3,
            duplicate: false,
        };
        let waiter = std::thread::spawn(move || acked(ticket));
        drop(CommitterExit {
            manager: &store.manager,
            signals: &store.signals,
            writing: Some(writing),
        });
        assert_eq!(waiter.join().unwrap(), Err(StoreError::Closed));
        let bets = bets(1, 2, 100);
        assert_eq!(
            store.submit_batch(1, 0, &refs(&bets)).map(|t| t.next_seq),
            Err(StoreError::Closed)
        );
        store.close();
    }
}
