//! What a worker holds while its request waits for the disk: a [`Ticket`]
//! on the [`Commit`] that every request of one group shares, resolved once
//! by the committer, and what a durable request answers ([`Acked`]).
//!
//! A worker blocks on its ticket ([`Ticket::wait`]): in a blocking
//! thread-pool server that is the point, and the batches of every
//! connection waiting at the same time share one commit and one `fsync`.

use super::error::StoreError;
use crate::storage::Verdict;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};

/// What a commit decided: the requests (by index in its group) that were
/// not stored as asked; every other one is durable.
pub(super) type Verdicts = Arc<BTreeMap<usize, Verdict>>;

/// The outcome of one commit, shared by every request in its group: empty
/// until the committer resolves it, then durable (with its verdicts) or
/// failed.
#[derive(Debug, Default)]
pub(super) struct Commit {
    outcome: Mutex<Option<Result<Verdicts, StoreError>>>,
    resolved: Condvar,
}

impl Commit {
    /// Resolves the commit and wakes everyone waiting on it.
    pub(super) fn resolve(&self, outcome: Result<Verdicts, StoreError>) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(outcome);
        self.resolved.notify_all();
    }

    /// Fails the commit unless it is already resolved.
    pub(super) fn abandon(&self) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(Err(StoreError::Closed));
            self.resolved.notify_all();
        }
    }
}

/// A promise that a request will be durable (or has failed).
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The commit holding the request; `None`: nothing had to be written.
    pub(super) commit: Option<Arc<Commit>>,
    /// This request's index in its commit group (its verdict's key).
    pub(super) request: Option<usize>,
    /// Where the batch starts (for the error if the database refuses it).
    pub(super) first: u64,
    /// The agency's position once this request is durable.
    pub next_seq: u64,
    /// The request was already accepted earlier (a resend); nothing new is stored.
    pub duplicate: bool,
}

/// A request made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The agency's position after it (its total, for a DONE).
    pub next_seq: u64,
    /// It was already stored (resent, or stored by another server).
    pub duplicate: bool,
}

impl Ticket {
    /// Whether the commit holding this request is resolved (durable or
    /// failed), without waiting.
    pub fn is_resolved(&self) -> bool {
        self.commit
            .as_ref()
            .is_none_or(|c| c.outcome.lock().unwrap_or_else(|p| p.into_inner()).is_some())
    }

    /// Blocks until the commit holding this request is durable (at once if
    /// nothing of it had to be written).
    ///
    /// # Errors
    /// The commit failed (nothing of it is stored) or the store closed; or
    /// the database refused this request (another server moved the
    /// agency's sequence on).
    pub fn wait(&self) -> Result<Acked, StoreError> {
        let Some(commit) = &self.commit else {
            return Ok(self.acked());
        };
        let mut slot = commit.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(outcome) = slot.as_ref() {
                let verdicts = outcome.clone()?;
                return self.answer(self.request.and_then(|i| verdicts.get(&i)));
            }
            slot = commit.resolved.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The answer of a request stored as asked.
    fn acked(&self) -> Acked {
        Acked { next_seq: self.next_seq, duplicate: self.duplicate }
    }

    /// The answer of a durable commit to this request: stored as asked
    /// (no verdict), or as its verdict says.
    fn answer(&self, verdict: Option<&Verdict>) -> Result<Acked, StoreError> {
        match verdict {
            None => Ok(self.acked()),
            Some(Verdict::Duplicate) => Ok(Acked { duplicate: true, ..self.acked() }),
            Some(Verdict::Sequence { expected }) => {
                Err(StoreError::Sequence { expected: *expected, got: self.first })
            }
            Some(Verdict::AlreadyDone) => Err(StoreError::AlreadyDone),
            Some(Verdict::DoneMismatch { stored }) => {
                Err(StoreError::DoneMismatch { total: self.next_seq, stored: *stored })
            }
        }
    }
}
