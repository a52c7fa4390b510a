//! The shared lottery state: what each agency has sent, which agencies are
//! done, and the draw, over one [`Storage`] written by one committer thread.
//!
//! The design card's shape: one [`StoreManager`] (positions per agency, the
//! pending commit group, the finished agencies, the winners) behind an
//! `Arc<Mutex<StoreManager>>`, shared by every connection worker through a
//! cloneable [`Store`] handle. Nothing under that lock touches a file or a
//! socket: workers append encoded rows to the pending group, and the
//! committer takes the whole group under the lock and writes and syncs it
//! outside it.
//!
//! Group commit: a worker hands in a batch and gets a [`Ticket`]; the
//! committer takes everything handed in since its last commit, writes and
//! syncs it as one commit, then resolves every ticket of that group at
//! once. A worker blocks on its ticket ([`Ticket::wait`]) — in a blocking
//! thread-pool server that is the point — so batches of all connections
//! waiting at the same time share one `fsync`.
//!
//! Exactly-once: every agency's bets are numbered from 0 in the order it
//! sends them. A batch says where it starts (`first_seq`); the manager
//! stores it only if it continues the agency's sequence, recognises a
//! resent batch as already stored, and refuses a gap. The positions survive
//! restarts (they are the per-agency counts in the journal).
//!
//! With a database that several servers share (the PostgreSQL backend),
//! this memory is only a first check: another server may have stored an
//! agency's bets meanwhile. The commit's transaction then decides each
//! request again against the database ([`Verdict`]s, resolved per ticket),
//! HELLO's position is read from the database, and so are the draw and the
//! winners ([`Lookup`]).
//!
//! The winners are found as bets are stored (`has_won` on every bet of a
//! batch, kept with the commit that stores it as a small record), and the
//! file backend keeps them on disk, not here: the server's memory does not
//! grow with them however many there are (see `storage::winners`). The
//! draw is then quick (it regroups the winners, never re-reads the bets),
//! and a page of winners is read from that file outside the lock.
//!
//! The draw is announced (`sorteo` logged) exactly once per lottery: by the
//! committer after the commit that records it, or at start by a server
//! that finds a durable draw never marked as announced (the storage's mark,
//! see [`Backend::announce`]).

use crate::bet::BetRef;
use crate::logging::clean;
use crate::storage::{
    Backend, Committed, DrawState, DrawnWinners, Entry, EntryKind, GroupData, Location, Lookup,
    OpenReport, StorageError, Verdict, WinnersPage, encode_row, encode_row_at, push_record,
};
use log::{error, info};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

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

impl std::error::Error for StoreError {}

/// What a commit decided: the requests (by index in its group) that were
/// not stored as asked; every other one is durable.
type Verdicts = Arc<BTreeMap<usize, Verdict>>;

/// The result of one commit, shared by every request in its group.
#[derive(Debug, Default)]
struct Commit {
    outcome: Mutex<Option<Result<Verdicts, StoreError>>>,
    resolved: Condvar,
}

impl Commit {
    fn resolve(&self, outcome: Result<Verdicts, StoreError>) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(outcome);
        self.resolved.notify_all();
    }

    /// Fails the commit unless it is already resolved.
    fn abandon(&self) {
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
    commit: Option<Arc<Commit>>,
    /// This request's index in its commit group (its verdict's key).
    entry: Option<usize>,
    /// Where the batch starts (for the error if the database refuses it).
    first: u64,
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
        self.commit.as_ref().is_none_or(|c| {
            c.outcome
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        })
    }

    /// Blocks until the commit holding this request is durable (at once if
    /// nothing of it had to be written).
    ///
    /// # Errors
    /// The commit failed (nothing of it is stored) or the store closed; or
    /// the database refused this request (another server moved the
    /// agency's sequence on).
    pub fn wait(&self) -> Result<Acked, StoreError> {
        let acked = Acked {
            next_seq: self.next_seq,
            duplicate: self.duplicate,
        };
        let Some(commit) = &self.commit else {
            return Ok(acked);
        };
        let mut slot = commit.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(outcome) = slot.as_ref() {
                let verdicts = outcome.clone()?;
                return match self.entry.and_then(|i| verdicts.get(&i)) {
                    None => Ok(acked),
                    Some(Verdict::Duplicate) => Ok(Acked {
                        duplicate: true,
                        ..acked
                    }),
                    Some(Verdict::Sequence { expected }) => Err(StoreError::Sequence {
                        expected: *expected,
                        got: self.first,
                    }),
                    Some(Verdict::AlreadyDone) => Err(StoreError::AlreadyDone),
                    Some(Verdict::DoneMismatch { stored }) => Err(StoreError::DoneMismatch {
                        total: self.next_seq,
                        stored: *stored,
                    }),
                };
            }
            slot = commit
                .resolved
                .wait(slot)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Answer to a winners query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WinnersAnswer {
    /// The draw has not happened: `finished` of `expected` agencies are done.
    NotReady { finished: u32, expected: u32 },
    /// A page of the agency's winners' documents, in storage order.
    Ready(WinnersPage),
}

/// How far the ingest has come (durable figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bets stored, all agencies.
    pub bets: u64,
    /// Agencies whose DONE is stored.
    pub finished: u32,
}

/// Bytes reserved up front for each of the two row buffers (the group
/// being gathered and the one being written), which are swapped and reused,
/// never grown piecemeal: growing them by doubling on worker threads was
/// what made the server's memory creep up under load (allocator arenas).
const GROUP_CAPACITY: usize = 8 << 20;

/// Rows a pending group may hold before workers wait for the committer to
/// take it: bounds the server's memory (it stays flat however many agencies
/// send at once) and keeps the group inside its reserved buffer. 6 MiB keeps
/// agencies busy through slower fsyncs (measured: 4 MiB gave 30 MiB peak RSS
/// at 10 M bets, 6 MiB 36 MiB and a faster 10x run).
const MAX_PENDING_ROWS: usize = 6 << 20;

/// What the next commit will contain.
#[derive(Debug, Default)]
struct Group {
    rows: Vec<u8>,
    added: BTreeMap<u32, u64>,
    done: Vec<u32>,
    /// Winning bets among `rows`, in row order, as records of
    /// [`push_record`] (a few bytes each, no allocation per winner).
    winners: Vec<u8>,
    /// Every request, in order (the backend decides each).
    entries: Vec<Entry>,
    commit: Arc<Commit>,
}

impl Group {
    /// An empty group gathering rows and winners into reused buffers.
    fn with_rows(rows: Vec<u8>, winners: Vec<u8>) -> Group {
        Group {
            rows,
            winners,
            ..Group::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.done.is_empty()
    }

    fn touches(&self, agency: u32) -> bool {
        self.added.contains_key(&agency) || self.done.contains(&agency)
    }
}

/// The group the committer is writing: which agencies it touches, its
/// commit, and the positions each of its batches covers (by entry index),
/// so that a resend arriving meanwhile shares its batch's fate.
#[derive(Debug)]
struct InFlight {
    agencies: BTreeSet<u32>,
    commit: Arc<Commit>,
    batches: Vec<(usize, u32, Range<u64>)>,
}

/// The entry among `entries` whose batch of `agency` holds `position`.
fn covering(
    entries: impl Iterator<Item = (usize, u32, Range<u64>)>,
    agency: u32,
    position: u64,
) -> Option<usize> {
    entries
        .filter(|(_, a, range)| *a == agency && range.contains(&position))
        .map(|(i, _, _)| i)
        .last()
}

/// Batch entries of a group as `(index, agency, positions)`.
fn batch_ranges(entries: &[Entry]) -> impl Iterator<Item = (usize, u32, Range<u64>)> + '_ {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e.kind {
            EntryKind::Batch { first, count, .. } => Some((i, e.agency, first..first + count)),
            EntryKind::Done { .. } => None,
        })
}

/// The lottery's state, guarded by one mutex (see [`Store`]): every field
/// is plain data, and no method does I/O, so the lock is only ever held
/// for a few memory operations.
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

/// How the mutex's users wake each other.
#[derive(Debug, Default)]
struct Signals {
    /// The committer waits here for a non-empty group (or closing).
    work: Condvar,
    /// Workers wait here while the pending group is full.
    room: Condvar,
}

/// Shared handle to the lottery's state: `Arc<Mutex<StoreManager>>`, the
/// condition variables that go with it, and the committer thread. Cheap to
/// clone; every connection worker holds one.
#[derive(Debug, Clone)]
pub struct Store {
    manager: Arc<Mutex<StoreManager>>,
    /// Agencies that must finish before the draw (fixed at start).
    agencies: u32,
    signals: Arc<Signals>,
    committer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// What workers ask the database directly (nothing for the file backend).
    lookup: Lookup,
    /// The bets live in a database other servers also write: its rows carry
    /// their position, and it finds the winners and decides the draw.
    shared: bool,
    /// The storage, for the close log line.
    describe: String,
}

/// Takes the state's lock. A panic while holding it is a bug; refuse work
/// rather than trust state it may have left half-updated.
fn lock(manager: &Mutex<StoreManager>) -> Result<MutexGuard<'_, StoreManager>, StoreError> {
    manager
        .lock()
        .map_err(|_| StoreError::Storage("internal state poisoned".into()))
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
        let shared = opened.lookup.is_shared();
        let winners = opened.backend.drawn_winners();
        // A draw that is durable but was never announced (the server that
        // recorded it died before logging it) is announced now.
        announce(&mut opened.backend);
        let manager = Arc::new(Mutex::new(StoreManager {
            agencies,
            next_seq: opened.counts.clone(),
            durable_seq: opened.counts,
            done: opened.done.clone(),
            durable_done: opened.done,
            pending: Group::with_rows(Vec::with_capacity(GROUP_CAPACITY), Vec::new()),
            in_flight: None,
            winners,
            closing: false,
            spare_rows: Vec::new(),
            spare_winners: Vec::new(),
        }));
        let backend = opened.backend;
        let describe = backend.describe();
        let signals = Arc::new(Signals::default());
        let (m, s) = (Arc::clone(&manager), Arc::clone(&signals));
        let committer = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || run_committer(&m, &s, backend))
            .map_err(|source| StorageError::Io {
                path: "committer".into(),
                action: "start the thread",
                source,
            })?;
        Ok((
            Store {
                manager,
                agencies,
                signals,
                committer: Arc::new(Mutex::new(Some(committer))),
                lookup: opened.lookup,
                shared,
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
        let known_done = {
            let state = self.lock()?;
            state.durable_done.contains(&agency).then(|| {
                let next = state.durable_seq.get(&agency).copied().unwrap_or(0);
                (next, true)
            })
        };
        let read = match known_done {
            Some(answer) => return Ok(answer),
            None => self
                .lookup
                .position(agency)
                .map_err(|e| StoreError::Storage(e.to_string()))?,
        };
        let mut state = self.lock()?;
        if let Some(durable) = read {
            state.catch_up(agency, durable);
        }
        Ok((
            state.next_seq.get(&agency).copied().unwrap_or(0),
            state.done.contains(&agency),
        ))
    }

    /// Durable bets and finished agencies so far.
    ///
    /// # Errors
    /// Only a poisoned internal lock.
    pub fn progress(&self) -> Result<Progress, StoreError> {
        let state = self.lock()?;
        Ok(Progress {
            bets: state.durable_seq.values().sum(),
            finished: state.durable_done.len() as u32,
        })
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
            rows.clear();
            winners.clear();
            if self.shared {
                for (position, bet) in (first_seq..).zip(bets) {
                    encode_row_at(rows, bet, position);
                }
            } else {
                for bet in bets {
                    encode_row(rows, bet);
                }
            }
            // A shared database finds the winners itself.
            if !self.shared {
                for bet in bets.iter().filter(|bet| bet.has_won()) {
                    push_record(winners, agency, bet.document);
                }
            }
            let mut state = self.lock()?;
            // Wait for room (the committer takes the group and signals),
            // unless the group is empty: a batch always fits an empty one.
            while !state.closing
                && !state.pending.rows.is_empty()
                && state.pending.rows.len() + rows.len() > MAX_PENDING_ROWS
            {
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
        let read = self
            .lookup
            .draw(agency, offset, room, &log_draw)
            .map_err(storage)?;
        if let Some(state) = read {
            return Ok(match state {
                DrawState::NotReady { finished } => WinnersAnswer::NotReady {
                    finished,
                    expected: self.agencies,
                },
                DrawState::Ready(page) => WinnersAnswer::Ready(page),
            });
        }
        let drawn = {
            let state = self.lock()?;
            match &state.winners {
                Some(drawn) => drawn.clone(),
                None => {
                    return Ok(WinnersAnswer::NotReady {
                        finished: state.durable_done.len() as u32,
                        expected: state.agencies,
                    });
                }
            }
        };
        let file = drawn.map_err(StoreError::Storage)?;
        let page = file.page(agency, offset, room).map_err(storage)?;
        Ok(WinnersAnswer::Ready(page))
    }

    /// Stops taking requests, commits what was handed in, stops the
    /// committer and closes the files. Idempotent.
    pub fn close(&self) {
        if let Ok(mut state) = self.lock() {
            state.closing = true;
        }
        self.signals.work.notify_all();
        self.signals.room.notify_all();
        let handle = self
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                error!("action: close_storage | result: fail | error: committer thread panicked");
            } else {
                info!(
                    "action: close_storage | result: success | {}",
                    self.describe
                );
            }
        }
    }
}

impl StoreManager {
    /// Adds `n` encoded bets (`rows`) of `agency` at `first_seq` to the
    /// pending group, if they continue the agency's sequence.
    fn append(
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
                EntryKind::Batch {
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
        Err(StoreError::Sequence {
            expected: next,
            got: first_seq,
        })
    }

    /// Adds the agency's DONE to the pending group.
    fn finish(&mut self, agency: u32, total: u64) -> Result<Ticket, StoreError> {
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
        Ok(self.pending_ticket(agency, EntryKind::Done { total }, total, total))
    }

    /// Records a request in the pending group and returns its ticket.
    fn pending_ticket(
        &mut self,
        agency: u32,
        kind: EntryKind,
        first: u64,
        next_seq: u64,
    ) -> Ticket {
        self.pending.entries.push(Entry { agency, kind });
        Ticket {
            commit: Some(Arc::clone(&self.pending.commit)),
            entry: Some(self.pending.entries.len() - 1),
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
        let holder = covering(batch_ranges(&self.pending.entries), agency, last)
            .map(|i| (Arc::clone(&self.pending.commit), i))
            .or_else(|| {
                let flight = self.in_flight.as_ref()?;
                covering(flight.batches.iter().cloned(), agency, last)
                    .map(|i| (Arc::clone(&flight.commit), i))
            });
        match holder {
            Some((commit, i)) => Ticket {
                commit: Some(commit),
                entry: Some(i),
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
        Ticket {
            commit,
            entry: None,
            first: next_seq,
            next_seq,
            duplicate,
        }
    }

    /// Whether a commit not yet resolved holds some of the agency's requests.
    fn busy(&self, agency: u32) -> bool {
        self.pending.touches(agency)
            || self
                .in_flight
                .as_ref()
                .is_some_and(|flight| flight.agencies.contains(&agency))
    }

    /// Takes what the storage says is durable for `agency` (its position
    /// and DONE): a shared database may be ahead of this memory. Requests
    /// still on their way keep their place; they are decided at commit.
    fn catch_up(&mut self, agency: u32, (position, done): (u64, bool)) {
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
    fn take_group(&mut self) -> Group {
        let mut spare = std::mem::take(&mut self.spare_rows);
        spare.reserve(GROUP_CAPACITY);
        let winners = std::mem::take(&mut self.spare_winners);
        let group = std::mem::replace(&mut self.pending, Group::with_rows(spare, winners));
        self.in_flight = Some(InFlight {
            agencies: group.entries.iter().map(|e| e.agency).collect(),
            commit: Arc::clone(&group.commit),
            batches: batch_ranges(&group.entries).collect(),
        });
        group
    }

    /// After a durable commit: the durable figures, and the draw's
    /// winners if this commit recorded the draw (file backend; a shared
    /// database serves them itself).
    fn committed(&mut self, committed: &Committed, drawn: Option<DrawnWinners>) {
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
    fn failed(&mut self) -> Arc<Commit> {
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

/// The draw's line, in the course's grammar.
fn log_draw(winners: u64) {
    info!("action: sorteo | result: success | ganadores: {winners}");
}

/// Announces the draw if it is durable and not yet marked as announced
/// (see [`Backend::announce`]); a mark that cannot be made is logged (the
/// next start announces the draw again).
fn announce(backend: &mut Backend) {
    if let Err(e) = backend.announce(&log_draw) {
        error!("action: sorteo | result: fail | error: {}", clean(&e));
    }
}

/// Runs when the committer leaves, however it leaves (closing, a poisoned
/// lock, a panic): the store closes and every commit not yet resolved
/// fails, so that no worker waits forever on a ticket or for room, and the
/// server's teardown can join them.
struct CommitterExit<'a> {
    manager: &'a Mutex<StoreManager>,
    signals: &'a Signals,
    /// The group being written, if any.
    writing: Option<Arc<Commit>>,
}

impl Drop for CommitterExit<'_> {
    fn drop(&mut self) {
        let mut state = self.manager.lock().unwrap_or_else(|p| p.into_inner());
        state.closing = true;
        let pending = Arc::clone(&state.pending.commit);
        drop(state);
        if let Some(writing) = self.writing.take() {
            writing.abandon();
        }
        pending.abandon();
        self.signals.room.notify_all();
        self.signals.work.notify_all();
    }
}

/// The committer: one commit per loop, everything handed in since the last.
/// The group is taken under the lock; the write and the sync happen outside.
fn run_committer(manager: &Mutex<StoreManager>, signals: &Signals, mut backend: Backend) {
    let mut exit = CommitterExit {
        manager,
        signals,
        writing: None,
    };
    loop {
        let group = {
            let Ok(mut state) = lock(manager) else { return };
            while state.pending.is_empty() && !state.closing {
                state = match signals.work.wait(state) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            if state.pending.is_empty() {
                return; // closing, nothing left to commit
            }
            state.take_group()
        };
        exit.writing = Some(Arc::clone(&group.commit));
        // The next group has room again.
        signals.room.notify_all();

        let added: Vec<(u32, u64)> = group.added.iter().map(|(a, n)| (*a, *n)).collect();
        let result = backend.commit(
            &GroupData {
                rows: &group.rows,
                added: &added,
                done: &group.done,
                entries: &group.entries,
            },
            &group.winners,
        );
        let drawn = match &result {
            Ok(committed) if committed.drew.is_some() => backend.drawn_winners(),
            _ => None,
        };
        if let Some(Err(reason)) = &drawn {
            error!(
                "action: ganadores | result: fail | error: the draw's winners cannot be served until a restart: {}",
                clean(reason)
            );
        }

        let Group {
            mut rows,
            mut winners,
            commit,
            ..
        } = group;
        let Ok(mut state) = lock(manager) else { return };
        state.in_flight = None;
        rows.clear();
        state.spare_rows = rows;
        winners.clear();
        state.spare_winners = winners;
        match result {
            Ok(committed) => {
                state.committed(&committed, drawn);
                drop(state);
                if committed.drew.is_some() {
                    announce(&mut backend);
                }
                commit.resolve(Ok(Arc::new(committed.verdicts)));
                exit.writing = None;
            }
            Err(e) => {
                error!("action: commit | result: fail | error: {}", clean(&e));
                let later = state.failed();
                drop(state);
                signals.room.notify_all();
                let err = StoreError::Storage(e.to_string());
                commit.resolve(Err(err.clone()));
                later.resolve(Err(err));
                exit.writing = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bet::Bet;
    use crate::storage::{SyncMode, load_bets};
    use chrono::NaiveDate;
    use std::path::{Path, PathBuf};

    fn open(path: &Path, sync: SyncMode, agencies: u32) -> Store {
        let location = Location::File {
            path: path.to_owned(),
            sync,
        };
        Store::open(&location, agencies).unwrap().0
    }

    /// The position a ticket acknowledges once durable.
    fn acked(ticket: Ticket) -> Result<u64, StoreError> {
        ticket.wait().map(|a| a.next_seq)
    }

    fn refs(bets: &[Bet]) -> Vec<BetRef<'_>> {
        bets.iter().map(Bet::as_ref).collect()
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lottery-store-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("bets.csv")
    }

    fn bets(agency: u32, n: usize, winner_every: usize) -> Vec<Bet> {
        (0..n)
            .map(|i| Bet {
                agency,
                first_name: format!("N{i}"),
                last_name: "L".into(),
                document: format!("{}", agency * 1000 + i as u32),
                birthdate: NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
                number: if i % winner_every == 0 { 7574 } else { 1 },
            })
            .collect()
    }

    /// A resend of a batch still waiting for its commit shares that batch's
    /// verdict: if the database refuses the batch, the resend is refused
    /// too, not acknowledged for bets that were never stored.
    #[test]
    fn a_resend_shares_the_verdict_of_the_batch_it_repeats() {
        let mut m = StoreManager {
            agencies: 1,
            next_seq: BTreeMap::new(),
            durable_seq: BTreeMap::new(),
            done: BTreeSet::new(),
            durable_done: BTreeSet::new(),
            pending: Group::with_rows(Vec::new(), Vec::new()),
            in_flight: None,
            winners: None,
            closing: false,
            spare_rows: Vec::new(),
            spare_winners: Vec::new(),
        };
        let original = m.append(1, 0, 2, b"rows", &[]).unwrap();
        let pending_resend = m.append(1, 0, 2, b"rows", &[]).unwrap();
        let group = m.take_group();
        let flight_resend = m.append(1, 0, 2, b"rows", &[]).unwrap();
        let refused = BTreeMap::from([(0, Verdict::Sequence { expected: 5 })]);
        group.commit.resolve(Ok(Arc::new(refused)));
        for ticket in [original, pending_resend, flight_resend] {
            assert_eq!(
                acked(ticket),
                Err(StoreError::Sequence {
                    expected: 5,
                    got: 0
                })
            );
        }
    }

    /// However the committer leaves, nobody waits forever: the commit it was
    /// writing fails, and so does everything handed in after it.
    #[test]
    fn a_committer_that_leaves_fails_its_commits_and_closes_the_store() {
        let path = temp_path("committer-exit");
        let store = open(&path, SyncMode::None, 1);
        let writing = Arc::new(Commit::default());
        let ticket = Ticket {
            commit: Some(Arc::clone(&writing)),
            entry: None,
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

    #[test]
    fn sequence_rules_store_each_position_once() {
        let path = temp_path("seq");
        let store = open(&path, SyncMode::None, 2);
        let b = bets(1, 10, 3);
        assert_eq!(
            acked(store.submit_batch(1, 0, &refs(&b[..4])).unwrap()),
            Ok(4)
        );
        // A resend of the same batch is acknowledged, not stored again.
        assert_eq!(
            acked(store.submit_batch(1, 0, &refs(&b[..4])).unwrap()),
            Ok(4)
        );
        // A gap is refused with the expected position.
        assert_eq!(
            store.submit_batch(1, 6, &refs(&b[6..])).unwrap_err(),
            StoreError::Sequence {
                expected: 4,
                got: 6
            }
        );
        // A position at the end of the range is a gap, not an overflow.
        assert_eq!(
            store
                .submit_batch(1, u64::MAX, &refs(&b[4..5]))
                .unwrap_err(),
            StoreError::Sequence {
                expected: 4,
                got: u64::MAX
            }
        );
        assert_eq!(
            acked(store.submit_batch(1, 4, &refs(&b[4..])).unwrap()),
            Ok(10)
        );
        assert_eq!(store.position(1).unwrap(), (10, false));
        store.close();
        let stored: Vec<Bet> = load_bets(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(stored, b);
    }

    #[test]
    fn the_draw_happens_when_every_agency_is_done_and_survives_restart() {
        let path = temp_path("draw");
        let store = open(&path, SyncMode::Always, 2);
        store
            .submit_batch(1, 0, &refs(&bets(1, 7, 3)))
            .unwrap()
            .wait()
            .unwrap();
        store
            .submit_batch(2, 0, &refs(&bets(2, 2, 5)))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(
            store.submit_done(1, 3).unwrap_err(),
            StoreError::DoneMismatch {
                total: 3,
                stored: 7
            }
        );
        store.submit_done(1, 7).unwrap().wait().unwrap();
        store.submit_done(1, 7).unwrap().wait().unwrap(); // repeat: fine
        assert_eq!(
            store.submit_batch(1, 7, &refs(&bets(1, 1, 1))).unwrap_err(),
            StoreError::AlreadyDone
        );
        assert_eq!(
            store.winners(1, 0, ROOM).unwrap(),
            WinnersAnswer::NotReady {
                finished: 1,
                expected: 2
            }
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
        store
            .submit_batch(1, 0, &refs(&bets(1, 10, 2)))
            .unwrap()
            .wait()
            .unwrap();
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
                store
                    .submit_batch(agency, i as u64 * 500, &refs(chunk))
                    .unwrap()
                    .wait()
                    .unwrap();
            }
            store.submit_done(agency, 20_000).unwrap().wait().unwrap();
        }
        let index = {
            let state = store.lock().unwrap();
            let Some(Ok(file)) = &state.winners else {
                panic!("no draw")
            };
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
                        let t = store
                            .submit_batch(agency, i as u64 * 25, &refs(chunk))
                            .unwrap();
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
        assert_eq!(
            counts,
            BTreeMap::from([(1, 500), (2, 500), (3, 500), (4, 500)])
        );
    }
}
