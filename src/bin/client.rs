//! A lottery agency. Reads its config (`CLI_CONFIG`, default
//! `config/client/config.yaml`, overridden by `CLI_*` variables), sends its
//! bets (from `CLI_BETS_FILE`, `/agency.csv`, or one bet from `NOMBRE`,
//! `APELLIDO`, `DOCUMENTO`, `NACIMIENTO`, `NUMERO`), and reports its winners.

use log::{error, info};
use lottery::client::{self, ClientError};
use lottery::config::ClientConfig;
use lottery::logging;
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
            eprintln!(
                "action: config | result: fail | error: {}",
                logging::clean(&e)
            );
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_level);
    config.log_start();
    let shutdown = Shutdown::new();
    let on_signal = shutdown.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.trigger()) {
        error!(
            "action: signal_handler | result: fail | error: {}",
            logging::clean(e)
        );
        return ExitCode::FAILURE;
    }
    match client::run(&config, &shutdown) {
        Ok(summary) => {
            info!(
                "action: resumen | result: success | apuestas_enviadas: {} | apuestas_invalidas: {} | batches: {} | bytes_enviados: {} | segundos: {:.3}",
                summary.sent, summary.skipped, summary.batches, summary.bytes_sent, summary.seconds
            );
            ExitCode::SUCCESS
        }
        Err(ClientError::Shutdown) => {
            info!("action: shutdown | result: success");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(
                "action: client | result: fail | error: {}",
                logging::clean(&e)
            );
            ExitCode::FAILURE
        }
    }
}
