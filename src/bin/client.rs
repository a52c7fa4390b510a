//! A lottery agency. Reads its config (`CLI_CONFIG`, default
//! `config/client/config.yaml`, overridden by `CLI_*` variables), sends its
//! bets (from `CLI_BETS_FILE`, `/agency.csv`, or one bet from `NOMBRE`,
//! `APELLIDO`, `DOCUMENTO`, `NACIMIENTO`, `NUMERO`), and reports its winners.

use lottery::client::{self, ClientError};
use lottery::config::ClientConfig;
use lottery::logging::{self, Action, ActionEvent, AgencyEvent, LogLine};
use lottery::shutdown::Shutdown;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = std::env::var_os("CLI_CONFIG")
        .map_or_else(|| PathBuf::from("config/client/config.yaml"), PathBuf::from);
    let default_file = Path::new("/agency.csv");
    let default_file = default_file.exists().then(|| default_file.to_owned());
    let config = match ClientConfig::load(&path, std::env::vars(), default_file) {
        Ok(c) => c,
        Err(e) => {
            ActionEvent::Failed { action: Action::Config, error: &e }.eprint();
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_level);
    config.log_start();
    let shutdown = match Shutdown::on_signals(|| {}) {
        Ok(shutdown) => shutdown,
        Err(e) => {
            ActionEvent::Failed { action: Action::SignalHandler, error: &e }.error();
            return ExitCode::FAILURE;
        }
    };
    match client::run(&config, &shutdown) {
        Ok(summary) => {
            AgencyEvent::Summary {
                sent: summary.sent,
                invalid: summary.skipped,
                batches: summary.batches,
                bytes: summary.bytes_sent,
                seconds: summary.seconds,
            }
            .info();
            ExitCode::SUCCESS
        }
        Err(ClientError::Shutdown) => {
            ActionEvent::Succeeded(Action::Shutdown).info();
            ExitCode::SUCCESS
        }
        Err(e) => {
            ActionEvent::Failed { action: Action::Client, error: &e }.error();
            ExitCode::FAILURE
        }
    }
}
