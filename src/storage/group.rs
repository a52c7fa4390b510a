//! A commit group as the committer hands it to a backend ([`GroupData`]:
//! its requests in order and their rows), and what the backend answers
//! ([`Committed`], with a [`Verdict`] for each request it did not store as
//! asked).

use std::collections::BTreeMap;
use std::ops::Range;

/// One request of a commit group, in the order it was handed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRequest {
    pub agency: u32,
    pub kind: RequestKind,
}

/// What a request asks to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// `count` bets at positions `first..first + count`, encoded in
    /// `rows` (a range of the group's row bytes).
    Batch { first: u64, count: u64, rows: Range<usize> },
    /// The agency says it sent `total` bets.
    Done { total: u64 },
}

/// A commit group as the committer hands it to the backend.
#[derive(Debug, Clone, Copy)]
pub struct GroupData<'a> {
    /// Every batch's rows, in request order.
    pub rows: &'a [u8],
    /// New bets per agency (the file backend's journal wants totals).
    pub added: &'a [(u32, u64)],
    /// Agencies whose DONE the group holds.
    pub done: &'a [u32],
    /// The requests, in order (indexes of [`Committed::verdicts`]).
    pub requests: &'a [GroupRequest],
}

/// Why a request of a committed group was not stored as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Already stored (by another server, or an earlier resend): acknowledge.
    Duplicate,
    /// The batch does not continue the agency's sequence, which is at `expected`.
    Sequence { expected: u64 },
    /// The agency's DONE is recorded: no more bets.
    AlreadyDone,
    /// DONE says `total`, the database holds `stored`.
    DoneMismatch { stored: u64 },
}

/// What a successful commit made durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Each touched agency: (agency, durable position, DONE recorded).
    pub agencies: Vec<(u32, u64, bool)>,
    /// Requests (by index in [`GroupData::requests`]) not stored as asked;
    /// every other request of the group is stored.
    pub verdicts: BTreeMap<usize, Verdict>,
    /// `Some(winners)` when this commit recorded the draw: it recorded
    /// the last agency's DONE.
    pub drew: Option<u64>,
}
