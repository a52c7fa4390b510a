//! Far more agencies than workers and than the connection limit: the real
//! server binary, and the agencies as the client library on threads (a
//! thousand client processes would measure `fork`, not the lottery).
//!
//! Each worker owns one connection at a time, so this is what the blocking
//! pool must get right: no worker waits for the draw (WINNERS? before it is
//! NOT_READY and the connection is released), an agency told `busy` keeps
//! trying, and the lobby serves whoever has something to say.

mod support;

use lottery::client::{self, Summary};
use lottery::config::ClientConfig;
use lottery::shutdown::Shutdown;
use std::path::PathBuf;
use std::time::Instant;
use support::*;

fn agency_config(addr: std::net::SocketAddr, agency: u32, file: &std::path::Path) -> ClientConfig {
    let env = [
        ("CLI_ID", agency.to_string()),
        ("CLI_SERVER_ADDRESS", addr.to_string()),
        ("CLI_BETS_FILE", file.display().to_string()),
        ("CLI_RETRY_TIMEOUT", "20s".to_owned()),
        ("CLI_KEY", agency_key(agency).to_hex()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    ClientConfig::load(&repo().join("config/client/config.yaml"), env, None).expect("client config")
}

#[test]
fn a_thousand_agencies_on_eight_workers_all_finish_with_their_winners() {
    const AGENCIES: u32 = 1000;
    let dir = TempDir::new("thousand");
    let server = Server::start(
        dir.path(),
        &[("SERVER_AGENCIES", &AGENCIES.to_string()), ("SERVER_WORKERS", "8")],
    );
    let files: Vec<(u32, PathBuf)> = generate(dir.path(), AGENCIES, |_| 100);
    let shutdown = Shutdown::new();
    let start = Instant::now();
    let agencies: Vec<_> = files
        .iter()
        .map(|(agency, file)| {
            let config = agency_config(server.addr, *agency, file);
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client::run(&config, &shutdown))
                .expect("start agency thread")
        })
        .collect();
    let summaries: Vec<Summary> = agencies
        .into_iter()
        .zip(&files)
        .map(|(thread, (agency, _))| {
            thread
                .join()
                .expect("agency thread")
                .unwrap_or_else(|e| panic!("agency {agency} failed: {e}"))
        })
        .collect();
    println!("{AGENCIES} agencies of 100 bets on 8 workers: all finished in {:?}", start.elapsed());
    for ((agency, file), summary) in files.iter().zip(&summaries) {
        assert_eq!(summary.winners.len(), file_winners(*agency, file), "agency {agency}'s winners");
    }
    assert_stored_exactly(&server.storage, &files);
    assert_eq!(server.log.count("action: sorteo"), 1, "the draw runs once");
}
