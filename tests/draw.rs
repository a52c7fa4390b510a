//! The draw and its winners, end to end on the real server binary:
//!
//! - the draw is logged (`sorteo`) exactly once per lottery, even when the
//!   server died between the durable draw and its log line;
//! - every agency gets exactly its winners, in storage order, page by
//!   page, with agencies interleaved in `bets.csv`, also after a restart;
//! - the server's memory does not grow with the winners: a restart on a
//!   store where every bet wins peaks where one on a store without winners
//!   does.
//!
//! The stores are built with the library (`Storage`), committing every
//! agency's bets and DONEs directly: that is the state a server killed
//! right after the commit that recorded the last DONE leaves behind (the
//! draw durable, nothing logged), with no fault hook in the binary.

mod support;

use chrono::NaiveDate;
use lottery::bet::Bet;
use lottery::storage::{Storage, SyncMode};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use support::*;

const SORTEO: &str = "action: sorteo | result: success";
const LONG: Duration = Duration::from_secs(60);

/// Bet `i` of `agency`; a winner unless `losers`. Documents of 1 to 10
/// digits, so pages are cut at the frame's byte budget, not at a count.
fn bet_of(agency: u32, i: u64, losers: bool) -> Bet {
    let digits = 1 + (i % 10) as usize;
    let document: String = format!("{:010}", u64::from(agency) * 1_000_003 + i * 7)
        .chars()
        .rev()
        .take(digits)
        .collect();
    Bet {
        agency,
        first_name: "Ana María".into(),
        last_name: "Paz, \"la\"".into(),
        document,
        birthdate: NaiveDate::from_ymd_opt(1990, 5, 6).unwrap(),
        number: if losers || i % 7 == 3 { 1 } else { 7574 },
    }
}

/// Builds at `path` a finished lottery of `agencies` agencies with `per`
/// bets each, the agencies' rows interleaved (batches of a few rows in
/// turn, as concurrent agencies' commits interleave them), every agency's
/// DONE recorded: the draw is durable and nothing has logged it. Returns
/// each agency's winners in storage order.
fn finished_lottery(
    path: &Path,
    agencies: u32,
    per: u64,
    losers: bool,
) -> BTreeMap<u32, Vec<String>> {
    let (mut storage, _) = Storage::open(path, SyncMode::None).expect("open storage");
    let mut winners: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut commit = Vec::new();
    let mut next = vec![0u64; agencies as usize + 1];
    let mut turn = 0u64;
    while next[1..].iter().any(|n| *n < per) {
        for agency in 1..=agencies {
            let take = (3 + (turn + u64::from(agency)) % 11).min(per - next[agency as usize]);
            for _ in 0..take {
                let bet = bet_of(agency, next[agency as usize], losers);
                next[agency as usize] += 1;
                if lottery::bet::has_won(&bet) {
                    winners.entry(agency).or_default().push(bet.document.clone());
                }
                commit.push(bet);
            }
        }
        turn += 1;
        if commit.len() >= 20_000 {
            storage.store_bets(&commit).expect("commit bets");
            commit.clear();
        }
    }
    storage.store_bets(&commit).expect("commit bets");
    let all: Vec<u32> = (1..=agencies).collect();
    storage.commit(&[], &[], &all).expect("commit the DONEs");
    winners
}

fn start(path: &Path, agencies: u32) -> Server {
    Server::start_with_storage(
        path,
        &[("SERVER_AGENCIES", &agencies.to_string()), ("SERVER_PROGRESS_INTERVAL", "0")],
    )
}

/// Stops the server with SIGTERM and returns its whole log.
fn stop(mut server: Server) -> Vec<String> {
    server.terminate();
    let status = server.wait(LONG).expect("server exited");
    assert!(status.success(), "exit status {status}");
    server.log.wait_for("action: close_storage", LONG);
    server.log.lines()
}

/// A server killed between the durable draw and its `sorteo` line: the
/// next server logs the draw (once, with the winners' count), and the one
/// after it does not log it again. Every agency meanwhile gets its winners
/// in storage order, across many pages, agencies interleaved in the file.
#[test]
fn a_draw_never_logged_is_logged_once_by_the_next_server_and_pages_stay_right() {
    let dir = TempDir::new("draw-once");
    let path = dir.path().join("bets.csv");
    let expected = finished_lottery(&path, 3, 6_000, false);
    let total: usize = expected.values().map(Vec::len).sum();

    let mut logged = 0;
    for life in 1..=2 {
        let server = start(&path, 3);
        for (&agency, want) in &expected {
            let (got, pages) = winners_paged(server.addr, agency);
            assert!(got == *want, "life {life}, agency {agency}: winners differ");
            assert!(pages > 3, "agency {agency}'s winners took {pages} pages");
        }
        let lines = stop(server);
        let sorteos: Vec<&String> = lines.iter().filter(|l| l.contains(SORTEO)).collect();
        if life == 1 {
            assert_eq!(sorteos.len(), 1, "the first server logs the draw: {sorteos:?}");
            assert!(
                sorteos[0]
                    .ends_with(&format!("action: sorteo | result: success | ganadores: {total}")),
                "{}",
                sorteos[0]
            );
        }
        logged += sorteos.len();
    }
    assert_eq!(logged, 1, "sorteo logged once over both servers");
}

/// The memory bound: a server restarted on a store where all 480,000 bets
/// win (and serving every winner) peaks within a few MiB of one restarted
/// on a store of the same size without winners. Before, it loaded every
/// winner's document at start: tens of MiB more, growing with the winners.
#[test]
fn a_restart_on_a_store_of_winners_keeps_the_memory_of_one_without() {
    let peak = |losers: bool| -> u64 {
        let dir = TempDir::new(if losers { "rss-losers" } else { "rss-winners" });
        let path = dir.path().join("bets.csv");
        let expected = finished_lottery(&path, 4, 120_000, losers);
        let server = start(&path, 4);
        for agency in 1..=4 {
            let (got, _) = winners_paged(server.addr, agency);
            assert_eq!(got.len(), expected.get(&agency).map_or(0, Vec::len));
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
            .expect("the server's /proc status");
        stop(server);
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    };
    let without = peak(true);
    let with = peak(false);
    println!("peak RSS: {without} KiB without winners, {with} KiB with 4 x 102,857 winners");
    assert!(
        with <= without + 8 * 1024,
        "peak RSS {with} KiB with every bet winning, {without} KiB without winners"
    );
}
