//! Shared helpers for the end-to-end tests: start the real binaries on
//! loopback (`server.rs`, `client.rs`), watch their logs, talk raw protocol
//! (`raw.rs`), compare stored rows (`data.rs`); `setup.rs` holds what they
//! all start from; PostgreSQL clusters for the `postgres` feature's tests
//! are in `pg.rs` (one server) and `ha.rs` (pg_auto_failover). Everything
//! is re-exported here: tests write `use support::*`.
//!
//! Tests wait on events (a log line, a process exit), never on fixed sleeps.
//!
//! Servers run authenticated by default (secret [`TEST_SECRET`]) and each
//! agency gets its own key ([`agency_key`]); a test opts out by setting
//! the keys itself (`SERVER_AUTH=off`, another `CLI_KEY`, ...).

// Each test binary uses only some of the helpers.
#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod ha;
#[cfg(feature = "postgres")]
pub mod pg;
#[cfg(feature = "postgres")]
pub mod pg_proxy;

mod client;
mod data;
mod raw;
mod server;
mod setup;
mod swarm;

#[allow(unused_imports)]
pub use {client::*, data::*, raw::*, server::*, setup::*, swarm::*};
