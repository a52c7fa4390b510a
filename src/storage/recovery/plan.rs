//! What a start's [`inspect`](super::inspect) decides: what the files hold
//! and what recovery keeps of them ([`Plan`]), and what it does on damage
//! ([`OnDamage`]).

use super::report::{Recovery, Torn};
use crate::storage::error::StorageError;
use std::collections::{BTreeMap, BTreeSet};

/// What [`inspect`](super::inspect) does on damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::storage) enum OnDamage {
    /// Refuse with [`StorageError::Damaged`] (a start; `storage-check`).
    Refuse,
    /// Keep the whole commits before the first damage and plan to cut the
    /// rest (the operator's `storage-truncate`).
    CutBefore,
}

/// What the files hold and what recovery keeps of them.
#[derive(Debug, Default)]
pub(in crate::storage) struct Plan {
    pub data_exists: bool,
    pub journal_exists: bool,
    /// Lengths now (0 for a missing file).
    pub data_len: u64,
    pub journal_len: u64,
    /// Lengths to cut the files to: the end of the last whole commit.
    pub keep_data: u64,
    pub keep_journal: u64,
    /// Journal lines kept.
    pub commits: u64,
    /// Totals per agency and finished agencies, after the kept commits.
    pub counts: BTreeMap<u32, u64>,
    pub done: BTreeSet<u32>,
    /// Why the tail is cut on a start (a crash).
    pub torn: Option<Torn>,
    /// The first damage ([`OnDamage::CutBefore`] only): the cut starts there.
    pub damage: Option<StorageError>,
}

impl Plan {
    /// Whether following the plan writes anything.
    pub fn cuts(&self) -> bool {
        self.keep_data < self.data_len || self.keep_journal < self.journal_len
    }

    /// What a start following this plan reports.
    pub fn recovery(&self) -> Recovery {
        Recovery {
            dropped_data_bytes: self.data_len - self.keep_data,
            dropped_journal_bytes: self.journal_len - self.keep_journal,
            torn: self.torn,
        }
    }
}
