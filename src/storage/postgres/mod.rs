//! The PostgreSQL backend: several lottery servers share one database, so
//! any of them can take any agency's batches and give any agency its
//! position, and losing a server loses nothing acknowledged.
//!
//! The database is the truth; each server's memory is only a first check.
//!
//! - `open.rs`: opening at start ([`open`]): connect, prepare the schema,
//!   read where every agency is;
//! - `link.rs`: `STORAGE_URL`, the timeouts a server relies on, and a
//!   connection opened when needed;
//! - `schema.rs`: the tables, created at start if missing or upgraded, and
//!   the checks that refuse a database this server must not use (the
//!   database records the lottery's `SERVER_AGENCIES` and `SERVER_AUTH`,
//!   and a server that says otherwise refuses to start);
//! - `storage.rs` and `commit.rs`: the committer's connection
//!   ([`PgStorage`]); one commit group, one transaction
//!   ([`PgStorage::commit`]), and what a server whose COMMIT answer was
//!   lost learns from the database;
//! - `lookup.rs`: what the workers ask directly: positions and pages of
//!   winners ([`PgLookup`]);
//! - `announce.rs`: the draw's `sorteo` line, logged once;
//! - `error.rs`: the database's errors as the storage's.
//!
//! Every statement here also runs on CockroachDB and YugabyteDB (see
//! docs/ARCHITECTURE.md for the choices). The draw's row says whether it
//! was announced (`sorteo` logged): one server logs it and marks it, under
//! the row's lock (`announce.rs`).
//!
//! The `postgres` crate is the synchronous client of rust-postgres: it
//! drives a small tokio runtime of its own inside each connection. That is
//! why this backend is behind the cargo feature `postgres`.

mod announce;
mod commit;
mod error;
mod link;
mod lookup;
mod open;
mod schema;
mod storage;

pub use lookup::PgLookup;
pub(super) use open::open;
pub use storage::PgStorage;
