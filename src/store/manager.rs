//! The state behind the store's one mutex ([`StoreManager`]): each
//! agency's position, the pending commit group, the finished agencies and
//! the draw's winners. Every method is a few memory operations: nothing
//! here touches a file or a socket, so the lock is never held across I/O.
//!
//! Exactly-once: every agency's bets are numbered from 0 in the order it
//! sends them. A batch says where it starts (`first_seq`); the manager
//! stores it only if it continues the agency's sequence, recognises a
//! resent batch as already stored, and refuses a gap. The positions survive
//! restarts: they are what the storage reports as durable at open.
//!
//! With a database that several servers share, this memory is only a first
//! check: another server may have stored an agency's bets meanwhile. The
//! commit's transaction decides each request again, and what it reports
//! as durable is taken here ([`StoreManager::catch_up`]).

use super::error::StoreError;
use super::ticket::{Commit, Ticket};
use crate::storage::{Committed, DrawnWinners, GroupRequest, RequestKind};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes reserved up front for each of the two row buffers (the group
/// being gathered and the one being written), which are swapped and reused,
/// never grown piecemeal: growing them by doubling on worker threads made
/// the server's memory creep up under load (allocator arenas).
const GROUP_CAPACITY: usize = 8 << 20;

/// Rows a pending group may hold before workers wait for the committer to
/// take it: bounds the server's memory (it stays flat however many agencies
/// send at once) and keeps the group inside its reserved buffer, while
/// leaving agencies enough to send through a slow `fsync` (the figures
/// behind the size are in docs/PERFORMANCE.md).
const MAX_PENDING_ROWS: usize = 6 << 20;

/// What the next commit will contain.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub rows: Vec<u8>,
    /// New bets per agency.
    pub added: BTreeMap<u32, u64>,
    /// Agencies whose DONE the group holds.
    pub done: Vec<u32>,
    /// Winning bets among `rows`, in row order, as records of
    /// [`crate::storage::push_record`] (a few bytes each, no allocation
    /// per winner).
    pub winners: Vec<u8>,
    /// Every request, in order (the backend decides each).
    pub requests: Vec<GroupRequest>,
    pub commit: Arc<Commit>,
}

impl Group {
    /// An empty group gathering rows and winners into reused buffers.
    fn with_rows(rows: Vec<u8>, winners: Vec<u8>) -> Group {
        Group { rows, winners, ..Group::default() }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.done.is_empty()
    }

    fn touches(&self, agency: u32) -> bool {
        self.added.contains_key(&agency) || self.done.contains(&agency)
    }
}

/// The group the committer is writing: which agencies it touches, its
/// commit, and the positions each of its batches covers (by request
/// index), so that a resend arriving meanwhile shares its batch's fate.
#[derive(Debug)]
struct InFlight {
    agencies: BTreeSet<u32>,
    commit: Arc<Commit>,
    batches: Vec<(usize, u32, Range<u64>)>,
}

/// The request among `batches` whose batch of `agency` holds `position`.
fn covering(
    batches: impl Iterator<Item = (usize, u32, Range<u64>)>,
    agency: u32,
    position: u64,
) -> Option<usize> {
    batches
        .filter(|(_, a, range)| *a == agency && range.contains(&position))
        .map(|(i, _, _)| i)
        .last()
}

/// Batch requests of a group as `(index, agency, positions)`.
fn batch_ranges(requests: &[GroupRequest]) -> impl Iterator<Item = (usize, u32, Range<u64>)> + '_ {
    requests.iter().enumerate().filter_map(|(i, r)| match r.kind {
        RequestKind::Batch { first, count, .. } => Some((i, r.agency, first..first + count)),
        RequestKind::Done { .. } => None,
    })
}

/// How the mutex's users wake each other.
#[derive(Debug, Default)]
pub(super) struct Signals {
    /// The committer waits here for a non-empty group (or closing).
    pub work: Condvar,
    /// Workers wait here while the pending group is full.
    pub room: Condvar,
}

/// Takes the state's lock. A panic while holding it is a bug; refuse work
/// rather than trust state it may have left half-updated.
pub(super) fn lock(
    manager: &Mutex<StoreManager>,
) -> Result<MutexGuard<'_, StoreManager>, StoreError> {
    manager.lock().map_err(|_| StoreError::Storage("internal state poisoned".into()))
}

/// The lottery's state, guarded by one mutex (see [`super::Store`]):
/// every field is plain data, and no method does I/O, so the lock is only
/// ever held for a few memory operations.
#[derive(Debug)]
pub struct StoreManager {
    /// Agencies that must finish before the draw (ids 1..=agencies).
    agencies: u32,
    /// Next position per agency, counting bets not yet durable.
    next_seq: BTreeMap<u32, u64>,
    /// Durable position per agency.
    durable_seq: BTreeMap<u32, u64>,
    /// Agencies whose DONE is accepted (durable or pending).
    done: BTreeSet<u32>,
    /// The finished-agencies counter: agencies whose DONE is durable.
    durable_done: BTreeSet<u32>,
    pending: Group,
    /// The group being written right now.
    in_flight: Option<InFlight>,
    /// The draw's winners (file backend), once every agency is done: an
    /// index of a file on disk, whose size does not grow with the winners.
    winners: Option<DrawnWinners>,
    closing: bool,
    /// The rows buffer of the last commit, emptied, to be the next group's:
    /// the two big buffers are reused instead of allocated per commit.
    spare_rows: Vec<u8>,
    /// The same for the winners' records.
    spare_winners: Vec<u8>,
}

impl StoreManager {
    /// The state of a store whose storage holds `counts` bets per agency,
    /// the DONEs of `done`, and (file backend) the draw's `winners`.
    pub(super) fn new(
        agencies: u32,
        counts: BTreeMap<u32, u64>,
        done: BTreeSet<u32>,
        winners: Option<DrawnWinners>,
    ) -> StoreManager {
        StoreManager {
            agencies,
            next_seq: counts.clone(),
            durable_seq: counts,
            done: done.clone(),
            durable_done: done,
            pending: Group::with_rows(Vec::with_capacity(GROUP_CAPACITY), Vec::new()),
            in_flight: None,
            winners,
            closing: false,
            spare_rows: Vec::new(),
            spare_winners: Vec::new(),
        }
    }

    /// The agency's durable position if its DONE is durable: a recorded
    /// DONE never changes, so nobody needs to ask the database.
    pub(super) fn finished_at(&self, agency: u32) -> Option<u64> {
        self.durable_done
            .contains(&agency)
            .then(|| self.durable_seq.get(&agency).copied().unwrap_or(0))
    }

    /// Where the agency resumes (counting what is on its way to the disk)
    /// and whether its DONE is accepted.
    pub(super) fn position(&self, agency: u32) -> (u64, bool) {
        (self.next_seq.get(&agency).copied().unwrap_or(0), self.done.contains(&agency))
    }

    /// Durable bets, all agencies, and agencies whose DONE is durable.
    pub(super) fn durable_totals(&self) -> (u64, u32) {
        (self.durable_seq.values().sum(), self.durable_done.len() as u32)
    }

    /// The draw's winners (file backend) once drawn; until then, how many
    /// of how many agencies are done.
    pub(super) fn drawn(&self) -> Result<DrawnWinners, (u32, u32)> {
        match &self.winners {
            Some(drawn) => Ok(drawn.clone()),
            None => Err((self.durable_done.len() as u32, self.agencies)),
        }
    }

    /// Whether a worker with `len` bytes of rows must wait for the
    /// committer to take the pending group. A batch always fits an empty
    /// group; a closing store never makes anyone wait.
    pub(super) fn is_full_for(&self, len: usize) -> bool {
        !self.closing
            && !self.pending.rows.is_empty()
            && self.pending.rows.len() + len > MAX_PENDING_ROWS
    }

    /// Stops taking requests.
    pub(super) fn close(&mut self) {
        self.closing = true;
    }

    /// Whether the committer has nothing to do and should wait.
    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty() && !self.closing
    }

    /// Whether the pending group holds nothing to commit.
    pub(super) fn nothing_pending(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pending group's commit (to fail it when the committer leaves).
    pub(super) fn pending_commit(&self) -> Arc<Commit> {
        Arc::clone(&self.pending.commit)
    }

    /// Adds `n` encoded bets (`rows`) of `agency` at `first_seq` to the
    /// pending group, if they continue the agency's sequence.
    pub(super) fn append(
        &mut self,
        agency: u32,
        first_seq: u64,
        n: u64,
        rows: &[u8],
        winners: &[u8],
    ) -> Result<Ticket, StoreError> {
        if self.closing {
            return Err(StoreError::Closed);
        }
        let next = self.next_seq.get(&agency).copied().unwrap_or(0);
        // A resend of stored bets is acknowledged even after DONE: with
        // servers sharing a database, a second connection of the agency
        // may still be resending what the first one stored.
        if n > 0
            && let Some(end) = first_seq.checked_add(n).filter(|end| *end <= next)
        {
            return Ok(self.resend_ticket(agency, first_seq, end));
        }
        if self.done.contains(&agency) {
            return Err(StoreError::AlreadyDone);
        }
        if first_seq == next {
            if n == 0 {
                return Ok(self.ticket_for(agency, next, false));
            }
            let start = self.pending.rows.len();
            self.pending.rows.extend_from_slice(rows);
            self.pending.winners.extend_from_slice(winners);
            *self.pending.added.entry(agency).or_insert(0) += n;
            self.next_seq.insert(agency, next + n);
            return Ok(self.pending_ticket(
                agency,
                RequestKind::Batch {
                    first: first_seq,
                    count: n,
                    rows: start..self.pending.rows.len(),
                },
                first_seq,
                next + n,
            ));
        }
        // A hostile `first_seq` near u64::MAX must not overflow.
        if let Some(end) = first_seq.checked_add(n).filter(|end| *end <= next) {
            return Ok(self.resend_ticket(agency, first_seq, end));
        }
        Err(StoreError::Sequence { expected: next, got: first_seq })
    }

    /// Adds the agency's DONE to the pending group.
    pub(super) fn finish(&mut self, agency: u32, total: u64) -> Result<Ticket, StoreError> {
        let stored = self.next_seq.get(&agency).copied().unwrap_or(0);
        if total != stored {
            return Err(StoreError::DoneMismatch { total, stored });
        }
        if self.done.contains(&agency) {
            return Ok(self.ticket_for(agency, total, true));
        }
        if self.closing {
            return Err(StoreError::Closed);
        }
        self.done.insert(agency);
        self.pending.done.push(agency);
        Ok(self.pending_ticket(agency, RequestKind::Done { total }, total, total))
    }

    /// Records a request in the pending group and returns its ticket.
    fn pending_ticket(
        &mut self,
        agency: u32,
        kind: RequestKind,
        first: u64,
        next_seq: u64,
    ) -> Ticket {
        self.pending.requests.push(GroupRequest { agency, kind });
        Ticket {
            commit: Some(Arc::clone(&self.pending.commit)),
            request: Some(self.pending.requests.len() - 1),
            first,
            next_seq,
            duplicate: false,
        }
    }

    /// A ticket for a resent batch (`first..end`, all accepted already).
    /// If a commit still on its way holds the batch that accepted its last
    /// bet, the resend shares that batch's verdict: a shared database may
    /// still refuse it, and then the resend must not be acknowledged.
    fn resend_ticket(&self, agency: u32, first: u64, end: u64) -> Ticket {
        let last = end.saturating_sub(1);
        let holder = covering(batch_ranges(&self.pending.requests), agency, last)
            .map(|i| (Arc::clone(&self.pending.commit), i))
            .or_else(|| {
                let flight = self.in_flight.as_ref()?;
                covering(flight.batches.iter().cloned(), agency, last)
                    .map(|i| (Arc::clone(&flight.commit), i))
            });
        match holder {
            Some((commit, i)) => Ticket {
                commit: Some(commit),
                request: Some(i),
                first,
                next_seq: end,
                duplicate: true,
            },
            None => self.ticket_for(agency, end, true),
        }
    }

    /// A ticket for a request already accepted for `agency`: it resolves
    /// with whatever commit still holds the agency's data, or at once.
    fn ticket_for(&self, agency: u32, next_seq: u64, duplicate: bool) -> Ticket {
        let commit = if self.pending.touches(agency) {
            Some(Arc::clone(&self.pending.commit))
        } else {
            match &self.in_flight {
                Some(flight) if flight.agencies.contains(&agency) => {
                    Some(Arc::clone(&flight.commit))
                }
                _ => None,
            }
        };
        Ticket { commit, request: None, first: next_seq, next_seq, duplicate }
    }

    /// Whether a commit not yet resolved holds some of the agency's requests.
    fn busy(&self, agency: u32) -> bool {
        self.pending.touches(agency)
            || self.in_flight.as_ref().is_some_and(|flight| flight.agencies.contains(&agency))
    }

    /// Takes what the storage says is durable for `agency` (its position
    /// and DONE): a shared database may be ahead of this memory. Requests
    /// still on their way keep their place; they are decided at commit.
    pub(super) fn catch_up(&mut self, agency: u32, (position, done): (u64, bool)) {
        let durable = self.durable_seq.entry(agency).or_insert(0);
        *durable = (*durable).max(position);
        let durable = *durable;
        let busy = self.busy(agency);
        let next = self.next_seq.entry(agency).or_insert(0);
        *next = if busy { (*next).max(durable) } else { durable };
        if done {
            self.done.insert(agency);
            self.durable_done.insert(agency);
        }
    }

    /// Takes the pending group for the committer (leaving an empty one in
    /// the spare buffer) and records it as in flight.
    pub(super) fn take_group(&mut self) -> Group {
        let mut spare = std::mem::take(&mut self.spare_rows);
        spare.reserve(GROUP_CAPACITY);
        let winners = std::mem::take(&mut self.spare_winners);
        let group = std::mem::replace(&mut self.pending, Group::with_rows(spare, winners));
        self.in_flight = Some(InFlight {
            agencies: group.requests.iter().map(|r| r.agency).collect(),
            commit: Arc::clone(&group.commit),
            batches: batch_ranges(&group.requests).collect(),
        });
        group
    }

    /// The group in flight is written (or failed): nothing is in flight,
    /// and its buffers, emptied, become the spares of the next group.
    pub(super) fn written(&mut self, mut rows: Vec<u8>, mut winners: Vec<u8>) {
        self.in_flight = None;
        rows.clear();
        self.spare_rows = rows;
        winners.clear();
        self.spare_winners = winners;
    }

    /// After a durable commit: the durable figures, and the draw's
    /// winners if this commit recorded the draw (file backend; a shared
    /// database serves them itself).
    pub(super) fn committed(&mut self, committed: &Committed, drawn: Option<DrawnWinners>) {
        for &(agency, position, done) in &committed.agencies {
            self.catch_up(agency, (position, done));
        }
        if drawn.is_some() {
            self.winners = drawn;
        }
    }

    /// After a failed commit: bets handed in after the failed group were
    /// numbered on top of it, so they fail too, and every agency resumes
    /// from what is durable. Returns the later group's commit to fail.
    pub(super) fn failed(&mut self) -> Arc<Commit> {
        let mut later = std::mem::take(&mut self.pending);
        let mut rows = std::mem::take(&mut later.rows);
        let mut winners = std::mem::take(&mut later.winners);
        rows.clear();
        winners.clear();
        // Its buffers are kept for the next group.
        self.pending = Group::with_rows(rows, winners);
        self.next_seq = self.durable_seq.clone();
        self.done = self.durable_done.clone();
        later.commit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Verdict;

    /// A resend of a batch still waiting for its commit shares that batch's
    /// verdict: if the database refuses the batch, the resend is refused
    /// too, not acknowledged for bets that were never stored.
    #[test]
    fn a_resend_shares_the_verdict_of_the_batch_it_repeats() {
        let mut m = StoreManager::new(1, BTreeMap::new(), BTreeSet::new(), None);
        let original = m.append(1, 0, 2, b"rows", &[]).unwrap();
        let pending_resend = m.append(1, 0, 2, b"rows", &[]).unwrap();
        let group = m.take_group();
        let flight_resend = m.append(1, 0, 2, b"rows", &[]).unwrap();
        let refused = BTreeMap::from([(0, Verdict::Sequence { expected: 5 })]);
        group.commit.resolve(Ok(Arc::new(refused)));
        for ticket in [original, pending_resend, flight_resend] {
            assert_eq!(
                ticket.wait().map(|a| a.next_seq),
                Err(StoreError::Sequence { expected: 5, got: 0 })
            );
        }
    }
}
