//! The lottery central. Reads its config (`SERVER_CONFIG`, default
//! `config/server/config.ini`, each key overridable by the environment
//! variable of the same name), binds, and serves until SIGTERM/SIGINT.
//!
//! With no secret configured, the server creates one at its first start
//! (`lottery.secret` beside the bets file; see `lottery::config`).
//! `server agency-key N` prints agency N's key (64 hex characters) for the
//! operator to hand to that agency, reading the secret as the server does.
//!
//! `server storage-check PATH`, `storage-truncate PATH` and
//! `storage-rebuild-journal PATH` are the operator's way out when a start
//! refuses the bets file at PATH and its journal (see `lottery::storage`'s
//! `check`, `truncate` and `rebuild_journal`); run them with the server
//! stopped.

use lottery::config::ServerConfig;
use lottery::logging::{self, Action, ActionEvent, LogLine, Outcome, ServerEvent};
use lottery::shutdown::Shutdown;
use lottery::{server, storage};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: server                               (serve; configured by SERVER_CONFIG and the environment)
       server agency-key N                  (print agency N's key)
       server storage-check PATH            (what a start would do with the bets file PATH and its journal; changes nothing)
       server storage-truncate PATH         (cut both files back to the last whole commit before the first damage; the cut bytes are saved as PATH.cut and PATH.journal.cut)
       server storage-rebuild-journal PATH  (a new journal from PATH's rows as they are; the old one is kept as PATH.journal.old)";

fn main() -> ExitCode {
    let path = std::env::var_os("SERVER_CONFIG")
        .map_or_else(|| PathBuf::from("config/server/config.ini"), PathBuf::from);
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => serve(&path),
        [cmd, agency] if cmd == "agency-key" => agency_key(&path, agency),
        [cmd, file] if cmd == "storage-check" => {
            storage_command(Action::StorageCheck, storage::check(Path::new(file)))
        }
        [cmd, file] if cmd == "storage-truncate" => {
            storage_command(Action::StorageTruncate, storage::truncate(Path::new(file)))
        }
        [cmd, file] if cmd == "storage-rebuild-journal" => storage_command(
            Action::StorageRebuildJournal,
            storage::rebuild_journal(Path::new(file)),
        ),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn agency_key(path: &Path, agency: &str) -> ExitCode {
    match ServerConfig::agency_key(path, std::env::vars(), agency) {
        Ok(key) => {
            println!("{}", key.to_hex());
            ExitCode::SUCCESS
        }
        Err(e) => {
            ActionEvent::Failed { action: Action::AgencyKey, error: &e }.eprint();
            ExitCode::from(2)
        }
    }
}

/// Prints an operator command's outcome as one log line; exit 1 if it failed.
fn storage_command(
    action: Action,
    outcome: Result<impl std::fmt::Display, storage::StorageError>,
) -> ExitCode {
    match outcome {
        Ok(report) => {
            let line = ActionEvent::Fields { action, outcome: Outcome::Success, fields: &report };
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            ActionEvent::Fields { action, outcome: Outcome::Fail, fields: &e.log_fields() }
                .eprint();
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &Path) -> ExitCode {
    let config = match ServerConfig::load(path, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            ActionEvent::Failed { action: Action::Config, error: &e }.eprint();
            return ExitCode::from(2);
        }
    };
    logging::init(config.logging_level);
    config.log_start();
    let shutdown = match Shutdown::on_signals(|| ServerEvent::SignalReceived.info()) {
        Ok(shutdown) => shutdown,
        Err(e) => {
            ActionEvent::Failed { action: Action::SignalHandler, error: &e }.error();
            return ExitCode::FAILURE;
        }
    };
    let listener = match server::bind(&config) {
        Ok(l) => l,
        Err(e) => {
            ActionEvent::Failed { action: Action::Bind, error: &e }.error();
            return ExitCode::FAILURE;
        }
    };
    match server::run(listener, &config, shutdown) {
        Ok(()) => {
            ActionEvent::Succeeded(Action::Shutdown).info();
            ExitCode::SUCCESS
        }
        Err(e) => {
            ActionEvent::Failed { action: Action::Server, error: &e }.error();
            ExitCode::FAILURE
        }
    }
}
