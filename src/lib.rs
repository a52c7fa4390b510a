//! Lotería Nacional: agencies send bets to a central server, which stores
//! them durably, runs the draw once every agency is done, and tells each
//! agency its own winners.
//!
//! Layers, each talking only to the one below:
//! - [`framing`]: bytes ↔ frames (`type`, `length`, `payload`), no I/O of its own;
//! - [`message`]: frames ↔ typed requests and responses;
//! - `client`'s connection module and `server`'s accept loop, registry
//!   and connection modules: the only code that reads and writes sockets;
//! - the domain: [`bet`] (a bet and its rules), [`storage`] (`bets.csv`
//!   with its journal and winners, or PostgreSQL), [`store`] (shared
//!   state, group commit, the draw).
//!
//! [`server`] and [`client`] put them together; [`auth`] (keys and the
//! handshake's MAC), [`config`], [`logging`] and [`shutdown`] serve both
//! binaries; [`dataset`] generates agency files.

#![forbid(unsafe_code)]

pub mod auth;
pub mod bet;
pub mod client;
pub mod config;
pub mod dataset;
pub mod framing;
pub mod logging;
pub mod message;
pub mod server;
pub mod shutdown;
pub mod storage;
pub mod store;
#[cfg(test)]
mod testing;
