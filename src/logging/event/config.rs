//! What each binary says about its settings at start, and the warnings for
//! settings that leave the lottery open or idle.

use crate::logging::action::{Action, Outcome};
use crate::logging::line::{AsDebug, LogLine, Text, line};
use log::LevelFilter;
use std::fmt::{self, Debug, Display, Formatter};

/// See the module doc.
#[derive(Clone, Copy)]
pub enum ConfigEvent<'a> {
    /// The server's settings.
    Server {
        port: u16,
        listen_backlog: i32,
        logging_level: LevelFilter,
        agencies: u32,
        workers: usize,
        storage: Text<'a>,
        /// The file backend's `STORAGE_SYNC`.
        sync: Option<&'a dyn Debug>,
    },
    /// The secret the server created, or found where it creates one.
    SecretFile { path: Text<'a>, created: bool },
    /// `SERVER_AUTH=off`.
    ServerAuthOff,
    /// `SERVER_AGENCIES=0`.
    NoAgencies,
    /// The agency's settings.
    Agency { id: u32, server_address: &'a str, batch_max_amount: usize, log_level: LevelFilter },
    /// `CLI_AUTH=off`.
    AgencyAuthOff,
}

impl LogLine for ConfigEvent<'_> {}

impl Display for ConfigEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Action::{Config, Secret};
        use Outcome::Success;
        let line = match *self {
            Self::Server {
                port,
                listen_backlog,
                logging_level,
                agencies,
                workers,
                storage,
                sync,
            } => line(f, Config, Success)
                .field("port", port)
                .field("listen_backlog", listen_backlog)
                .field("logging_level", logging_level)
                .field("agencies", agencies)
                .field("workers", workers)
                .field("storage", storage)
                .field_if("sync", sync.map(AsDebug)),
            Self::SecretFile { path, created } => line(f, Secret, Success)
                .field("path", path)
                .field("created", created)
                .field("keys", "cargo run --bin server -- agency-key N"),
            Self::ServerAuthOff => line(f, Config, Success)
                .field("auth", "off")
                .field("warning", "agencies are not authenticated (SERVER_AUTH=off): anyone who reaches the server can send bets, say DONE and read winners as any agency"),
            Self::NoAgencies => line(f, Config, Success)
                .field("agencies", 0)
                .field("warning", "no agencies (SERVER_AGENCIES=0): every HELLO gets unknown_agency and there is no draw; the server answers ECHO only"),
            Self::Agency {
                id,
                server_address,
                batch_max_amount,
                log_level,
            } => line(f, Config, Success)
                .field("client_id", id)
                .field("server_address", server_address)
                .field("batch_max_amount", batch_max_amount)
                .field("log_level", log_level),
            Self::AgencyAuthOff => line(f, Config, Success)
                .field("auth", "off")
                .field("warning", "this agency accepts a server that does not ask for its key (CLI_AUTH=off): for a server run with SERVER_AUTH=off only"),
        };
        line.end()
    }
}
