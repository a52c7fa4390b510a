//! The lottery central. Reads its config (`SERVER_CONFIG`, default
//! `config/server/config.ini`, each key overridable by the environment
//! variable of the same name), binds, and serves until SIGTERM/SIGINT.

use log::{error, info};
use lottery::config::ServerConfig;
use lottery::shutdown::Shutdown;
use lottery::{logging, server};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = std::env::var_os("SERVER_CONFIG")
        .map_or_else(|| PathBuf::from("config/server/config.ini"), PathBuf::from);
    let config = match ServerConfig::load(&path, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            // The logger is not set up yet (its level is in the config).
            eprintln!(
                "action: config | result: fail | error: {}",
                logging::clean(&e)
            );
            return ExitCode::from(2);
        }
    };
    logging::init(config.logging_level);
    info!(
        "action: config | result: success | port: {} | listen_backlog: {} | logging_level: {} | agencies: {} | workers: {} | storage: {} | sync: {:?}",
        config.port,
        config.listen_backlog,
        config.logging_level,
        config.agencies,
        config.workers,
        config.storage_filepath.display(),
        config.storage_sync,
    );
    let shutdown = Shutdown::new();
    let on_signal = shutdown.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        info!("action: signal | result: success | signal: SIGTERM/SIGINT");
        on_signal.trigger();
    }) {
        error!(
            "action: signal_handler | result: fail | error: {}",
            logging::clean(e)
        );
        return ExitCode::FAILURE;
    }
    let listener = match server::bind(&config) {
        Ok(l) => l,
        Err(e) => {
            error!(
                "action: bind | result: fail | error: {}",
                logging::clean(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    match server::run(listener, &config, shutdown) {
        Ok(()) => {
            info!("action: shutdown | result: success");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(
                "action: server | result: fail | error: {}",
                logging::clean(&e)
            );
            ExitCode::FAILURE
        }
    }
}
