//! Every line the server, the agency and the operator's commands write,
//! each a variant of one of these enums, grouped by subject:
//!
//! | enum | what it tells |
//! | --- | --- |
//! | [`ConfigEvent`] | each binary's settings at start, and their warnings |
//! | [`ServerEvent`] | the server's life: listening, accepting, the ingest's progress, the teardown |
//! | [`ConnectionEvent`] | one connection: its handshake, its refusals, how it closed |
//! | [`RequestEvent`] | an agency's requests on the server: batches, DONE, winners |
//! | [`StorageEvent`] | recovery, the database, the draw |
//! | [`AgencyEvent`] | the agency: connecting, sending, its progress, its winners |
//! | [`ActionEvent`] | what any action may say: it succeeded, it failed, a report |
//!
//! A variant names its fields; its `Display` writes the line with
//! [`Line`](super::line::Line), each key once, in order. The level is the
//! caller's ([`LogLine`](super::LogLine)). Text from outside is taken as
//! `&dyn Display` and cleaned when written; a `code` is an
//! `ErrorCode::name()`.

mod agency;
mod config;
mod connection;
mod request;
mod server;
mod storage;

pub use agency::AgencyEvent;
pub use config::ConfigEvent;
pub use connection::ConnectionEvent;
pub use request::RequestEvent;
pub use server::ServerEvent;
pub use storage::StorageEvent;

use super::action::{Action, Outcome};
use super::line::{LogLine, Text, line};
use std::fmt::{self, Display, Formatter};

/// Lines any action may write.
#[derive(Clone, Copy)]
pub enum ActionEvent<'a> {
    /// `<action> | success`, nothing more to say (a close, the shutdown).
    Succeeded(Action),
    /// `<action> | fail | error: …`.
    Failed { action: Action, error: Text<'a> },
    /// A line whose fields their owner writes, already in the grammar (a
    /// storage report, `StorageError::log_fields`).
    Fields { action: Action, outcome: Outcome, fields: Text<'a> },
}

impl LogLine for ActionEvent<'_> {}

impl Display for ActionEvent<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let line = match *self {
            Self::Succeeded(action) => line(f, action, Outcome::Success),
            Self::Failed { action, error } => line(f, action, Outcome::Fail).field("error", error),
            Self::Fields { action, outcome, fields } => line(f, action, outcome).fields(fields),
        };
        line.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::check_line;
    use log::LevelFilter;
    use std::net::SocketAddr;

    /// Text from outside at its worst: a separator and a line break.
    const T: &str = "a | b\nc";

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    /// One of every line of the vocabulary, enum by enum: give a new
    /// variant its sample here.
    fn samples() -> Vec<Box<dyn Display>> {
        let mut all = action_samples();
        all.extend(config_samples());
        all.extend(server_samples());
        all.extend(connection_samples());
        all.extend(request_samples());
        all.extend(storage_samples());
        all.extend(agency_samples());
        all
    }

    fn boxed<E: Display + 'static>(events: Vec<E>) -> Vec<Box<dyn Display>> {
        events.into_iter().map(|e| Box::new(e) as Box<dyn Display>).collect()
    }

    fn action_samples() -> Vec<Box<dyn Display>> {
        let t: &'static dyn Display = &T;
        let all = vec![
            ActionEvent::Succeeded(Action::Shutdown),
            ActionEvent::Failed { action: Action::Bind, error: t },
            ActionEvent::Fields {
                action: Action::StorageCheck,
                outcome: Outcome::Success,
                fields: &"path: x | commits: 3",
            },
        ];
        boxed(all)
    }

    fn config_samples() -> Vec<Box<dyn Display>> {
        let t: &'static dyn Display = &T;
        let all = vec![
            ConfigEvent::Server {
                port: 12345,
                listen_backlog: 5,
                logging_level: LevelFilter::Info,
                agencies: 5,
                workers: 128,
                storage: t,
                sync: Some(&"Always"),
            },
            ConfigEvent::SecretFile { path: t, created: true },
            ConfigEvent::ServerAuthOff,
            ConfigEvent::NoAgencies,
            ConfigEvent::Agency {
                id: 1,
                server_address: T,
                batch_max_amount: 200,
                log_level: LevelFilter::Debug,
            },
            ConfigEvent::AgencyAuthOff,
        ];
        boxed(all)
    }

    fn server_samples() -> Vec<Box<dyn Display>> {
        let t: &'static dyn Display = &T;
        let all = vec![
            ServerEvent::SignalReceived,
            ServerEvent::Listening { address: peer() },
            ServerEvent::Accepted { peer: peer() },
            ServerEvent::AcceptFailed { peer: peer(), error: t },
            ServerEvent::ListenerFailed { error: t, unlogged: 3 },
            ServerEvent::Ingest { bets: 10, rate: 2.5, active_agencies: 2, finished: 1 },
            ServerEvent::PoolClosed { workers: 4 },
            ServerEvent::ConnectionsClosed { count: 0 },
        ];
        boxed(all)
    }

    fn connection_samples() -> Vec<Box<dyn Display>> {
        let t: &'static dyn Display = &T;
        let all = vec![
            ConnectionEvent::Refused {
                action: Action::Hello,
                peer: peer(),
                code: "unknown_agency",
                error: t,
            },
            ConnectionEvent::Challenged { agency: 1, peer: peer() },
            ConnectionEvent::ChallengeFailed { agency: 1, peer: peer(), error: t },
            ConnectionEvent::AuthRefused { agency: 1, peer: peer() },
            ConnectionEvent::Welcomed { agency: 1, peer: peer(), next_seq: 0, done: false },
            ConnectionEvent::RequestPanicked { peer: peer() },
            ConnectionEvent::Bye { peer: peer() },
            ConnectionEvent::Closed { peer: peer(), agency: None, reason: T },
            ConnectionEvent::ClosedAtShutdown { peer: peer(), agency: Some(2) },
            ConnectionEvent::ClosedOnError {
                peer: peer(),
                agency: None,
                code: "timeout",
                error: t,
            },
        ];
        boxed(all)
    }

    fn request_samples() -> Vec<Box<dyn Display>> {
        let t: &'static dyn Display = &T;
        let all = vec![
            RequestEvent::BatchStored { count: 200, agency: 1 },
            RequestEvent::BatchDuplicate { count: 200, agency: 1 },
            RequestEvent::BetStored { document: T, number: 7574 },
            RequestEvent::BatchInvalid { count: 2, agency: 1, bet: 1, error: t },
            RequestEvent::BatchFailed { count: 2, agency: 1, code: "sequence", error: t },
            RequestEvent::AgencyDone { agency: 1, bets: 9 },
            RequestEvent::DoneFailed { agency: 1, code: "done_mismatch", error: t },
            RequestEvent::WinnersNotReady { agency: 1, finished: 0 },
            RequestEvent::WinnersSent { agency: 1, winners: 3 },
        ];
        boxed(all)
    }

    fn storage_samples() -> Vec<Box<dyn Display>> {
        let t: &'static dyn Display = &T;
        let all = vec![
            StorageEvent::Recovered {
                path: t,
                dropped_bytes: 0,
                journal_dropped_bytes: 0,
                reason: t,
                finished: 0,
            },
            StorageEvent::DatabaseWaiting { database: t, error: t },
            StorageEvent::Unreachable { database: t, error: t, repeated: Some(3) },
            StorageEvent::Reachable { database: t, seconds: 4.25 },
            StorageEvent::DatabaseUpgraded { database: t, version: 3, auth: "required" },
            StorageEvent::DatabaseReady { database: t, version: 3 },
            StorageEvent::DatabaseOpened { database: t, schema_version: 3, finished: 0 },
            StorageEvent::CommitAnswerLost { commit: t, error: t },
            StorageEvent::CommitLookupRetry { commit: t, error: t },
            StorageEvent::CommitFound { commit: t, committed: true },
            StorageEvent::Draw { winners: 12 },
            StorageEvent::WinnersUnavailable { error: t },
        ];
        boxed(all)
    }

    fn agency_samples() -> Vec<Box<dyn Display>> {
        let t: &'static dyn Display = &T;
        let all = vec![
            AgencyEvent::Connected { server: T },
            AgencyEvent::GaveUp { server: T, error: t },
            AgencyEvent::Reconnecting {
                reason: "connect",
                server: T,
                detail: t,
                repeated: Some(4),
            },
            AgencyEvent::ServerRefused { reason: "no_challenge", server: T, detail: t },
            AgencyEvent::AuthSkipped,
            AgencyEvent::BatchSent { next_seq: 10 },
            AgencyEvent::BetSent { document: T, number: 1 },
            AgencyEvent::BetInvalid { line: 4, error: t },
            AgencyEvent::Progress { sent: 4000, acked: 3000, rate: 1500.4 },
            AgencyEvent::WinnersPending { finished: 1, expected: 5 },
            AgencyEvent::WinnersReceived { winners: 3 },
            AgencyEvent::Summary { sent: 10, invalid: 1, batches: 2, bytes: 400, seconds: 0.5 },
        ];
        boxed(all)
    }

    /// Whatever the values, every line of the vocabulary keeps the grammar.
    #[test]
    fn every_line_of_the_vocabulary_keeps_the_grammar() {
        for event in samples() {
            let line = format!("2026-11-29 18:20:00 [INFO] {event}");
            if let Err(e) = check_line(&line) {
                panic!("{e}: {line}");
            }
        }
    }

    /// A few lines word for word, as the course and the scripts read them.
    #[test]
    fn lines_read_as_the_course_writes_them() {
        let lines = [
            (
                RequestEvent::BatchStored { count: 200, agency: 3 }.to_string(),
                "action: apuesta_recibida | result: success | cantidad: 200 | agencia: 3",
            ),
            (
                StorageEvent::Draw { winners: 12 }.to_string(),
                "action: sorteo | result: success | ganadores: 12",
            ),
            (
                AgencyEvent::WinnersReceived { winners: 3 }.to_string(),
                "action: consulta_ganadores | result: success | cant_ganadores: 3",
            ),
            (
                ConnectionEvent::ClosedOnError {
                    peer: peer(),
                    agency: None,
                    code: "timeout",
                    error: &"no whole | first frame",
                }
                .to_string(),
                "action: close_connection | result: fail | peer: 127.0.0.1:40000 | agencia: - | code: timeout | error: no whole / first frame",
            ),
            (
                ActionEvent::Succeeded(Action::CloseListener).to_string(),
                "action: close_listener | result: success",
            ),
        ];
        for (got, want) in lines {
            assert_eq!(got, want);
        }
    }
}
