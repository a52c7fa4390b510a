//! The shared lottery state: what each agency has sent, which agencies are
//! done, and the draw, over one storage
//! [`Backend`](crate::storage::Backend) (the file backend or PostgreSQL)
//! written by one committer thread.
//!
//! The design card's shape: one [`StoreManager`] (positions per agency, the
//! pending commit group, the finished agencies, the winners) behind an
//! `Arc<Mutex<StoreManager>>`, shared by every connection worker through a
//! cloneable [`Store`] handle. Nothing under that lock touches a file or a
//! socket: workers append encoded rows to the pending group, and the
//! committer takes the whole group under the lock and writes and syncs it
//! outside it.
//!
//! - `handle.rs`: the [`Store`] handle, each request's way in, and the
//!   answers it gives;
//! - `manager.rs`: the state under the lock, and the sequence rules that
//!   store each bet exactly once;
//! - `ticket.rs`: what a worker waits on until its request is durable;
//! - `committer.rs`: the committer thread (group commit), and the draw's
//!   announcement;
//! - `error.rs`: why the store refused a request ([`StoreError`]).
//!
//! With a database that several servers share (PostgreSQL), this memory is
//! only a first check: the commit's transaction decides each request again
//! ([`Verdict`](crate::storage::Verdict)s, resolved per ticket), and
//! HELLO's position, the draw and the winners are read from the database
//! ([`Lookup`](crate::storage::Lookup)).
//!
//! The winners are found as bets are stored (`has_won` on every bet of a
//! batch, kept with the commit that stores it as a small record). The file
//! backend keeps them on disk (`bets.csv.winners-log`, regrouped by agency
//! into `bets.csv.winners` at the draw), not here: the server's memory does
//! not grow with them however many there are. The draw is then quick (it
//! regroups the winners, never re-reads the bets), and a page of winners
//! is read from that file outside the lock.

mod committer;
mod error;
mod handle;
mod manager;
mod ticket;

pub use error::StoreError;
pub use handle::{IngestTotals, Store, WinnersAnswer};
pub use manager::StoreManager;
pub use ticket::{Acked, Ticket};

#[cfg(test)]
mod testing;
