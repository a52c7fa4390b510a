//! What the unit tests of the store's files share: a store on a temporary
//! directory, agencies' bets, and a ticket's acknowledged position.

use super::error::StoreError;
use super::handle::Store;
use super::ticket::Ticket;
use crate::bet::{Bet, BetRef};
use crate::storage::{Location, SyncMode};
use chrono::NaiveDate;
use std::path::{Path, PathBuf};

pub fn open(path: &Path, sync: SyncMode, agencies: u32) -> Store {
    let location = Location::File { path: path.to_owned(), sync };
    Store::open(&location, agencies).unwrap().0
}

/// The position a ticket acknowledges once durable.
pub fn acked(ticket: Ticket) -> Result<u64, StoreError> {
    ticket.wait().map(|a| a.next_seq)
}

pub fn refs(bets: &[Bet]) -> Vec<BetRef<'_>> {
    bets.iter().map(Bet::as_ref).collect()
}

pub fn temp_path(name: &str) -> PathBuf {
    crate::testing::temp_dir(&format!("store-{name}")).join("bets.csv")
}

pub fn bets(agency: u32, n: usize, winner_every: usize) -> Vec<Bet> {
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
