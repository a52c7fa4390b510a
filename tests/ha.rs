//! The lottery on a highly available PostgreSQL (cargo feature `postgres`,
//! needs pg_auto_failover): a monitor, a primary and its synchronous
//! secondary on loopback (`support::ha`, i.e. `scripts/ha_cluster.py`),
//! three servers of the lottery on the two-host URL, five agencies spread
//! over the servers. The primary's whole node is killed (SIGKILL)
//! mid-ingest and the monitor promotes the secondary; then the old
//! primary rejoins as the secondary and the other node is killed in a
//! second lottery; then again, with a lottery server killed during the
//! failover too. Each lottery checks: every agency finishes, every bet is
//! on the new primary exactly once at its position, `sorteo` is logged
//! once across the servers and each agency's winners are its file's.
//!
//! One cluster serves the three lotteries (each in its own database: the
//! schema holds one lottery per database), in one test, to stay within
//! two minutes on a small machine.

#![cfg(feature = "postgres")]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};
use support::ha::HaCluster;
use support::pg::server_at;
use support::*;

const UNREACHABLE: &str = "action: storage | result: in_progress";
const REACHABLE: &str = "action: storage | result: success";
const SORTEO: &str = "action: sorteo | result: success";
const STORED: &str = "action: apuesta_recibida | result: success";
const COMMIT_FAILED: &str = "action: commit | result: fail";
const REFUSED: &str = "action: apuesta_recibida | result: fail";
const AGENCIES: u32 = 5;
/// Bets per agency: enough that a kill lands mid-ingest.
const ROWS: u64 = 40_000;
/// Bets per batch, and batches in flight per agency: small, so that the
/// ingest has many commits to cut and lasts a few seconds.
const BATCH: &str = "50";
const WINDOW: &str = "8";

/// One lottery: its database, the agencies' files, three servers on it.
struct Lottery {
    // The servers drop before the files' directory.
    servers: Vec<Server>,
    files: Vec<(u32, PathBuf)>,
    db: &'static str,
    _dir: TempDir,
}

impl Lottery {
    fn start(cluster: &HaCluster, db: &'static str) -> Lottery {
        let dir = TempDir::new(&format!("ha-{db}"));
        let files = generate(dir.path(), AGENCIES, |_| ROWS);
        let url = cluster.url("lottery", db);
        let servers =
            (0..3).map(|i| server_at(&dir, &url, AGENCIES, &format!("{db}-s{i}"), &[])).collect();
        Lottery { servers, files, db, _dir: dir }
    }

    /// Every agency, with all three servers in its list, agency `a` first
    /// on server `a % 3` (as the compose generator rotates them).
    fn spawn(&self) -> Vec<Child> {
        let addrs: Vec<SocketAddr> = self.servers.iter().map(|s| s.addr).collect();
        spawn_spread(
            &addrs,
            &self.files,
            &[("CLI_BATCH_MAXAMOUNT", BATCH), ("CLI_BATCH_WINDOW", WINDOW)],
        )
    }

    /// How many lines of each `action: A | result: R` the servers logged
    /// (printed after each lottery: what the failover looked like to them).
    fn actions(&self) -> String {
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for line in self.servers.iter().flat_map(|s| s.log.lines()) {
            if let Some(at) = line.find("action: ") {
                let key: Vec<&str> = line[at..].split(" | ").take(2).collect();
                *seen.entry(key.join(" | ")).or_default() += 1;
            }
        }
        seen.iter().map(|(k, n)| format!("  {n:6}  {k}")).collect::<Vec<_>>().join("\n")
    }

    fn count(&self, needle: &str) -> usize {
        self.servers.iter().map(|s| s.log.count(needle)).sum()
    }

    /// Waits until the servers stored `n` batches in all.
    fn wait_stored(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count(STORED) < n {
            assert!(Instant::now() < deadline, "the servers never stored {n} batches");
            // Each server's next line (or 10 ms) re-checks the sum.
            self.servers[0].log.wait_count(STORED, usize::MAX, Duration::from_millis(10));
        }
    }

    /// Checks the end of a lottery: every agency finished with its
    /// winners, every bet stored once at its position, one draw logged,
    /// each agency's winners in the database are its file's.
    fn check(&self, cluster: &HaCluster, runs: &[ClientRun]) {
        println!("the servers' log lines of lottery {}:\n{}", self.db, self.actions());
        assert_agencies_finished(&self.files, runs);
        let mut stored = cluster.stored_bets(self.db);
        let mut winners = cluster.winners(self.db);
        for (agency, file) in &self.files {
            let want = file_bets(*agency, file);
            let got = stored.remove(agency).unwrap_or_default();
            let positions: Vec<i64> = got.iter().map(|(p, _)| *p).collect();
            let expected: Vec<i64> = (0..want.len() as i64).collect();
            assert!(
                positions == expected,
                "agency {agency}: {} rows stored for {} bets, positions {:?}..{:?} (each position once, from 0)",
                got.len(),
                want.len(),
                positions.first(),
                positions.last()
            );
            for ((position, bet), wanted) in got.iter().zip(&want) {
                assert_eq!(
                    format!("{bet:?}"),
                    format!("{wanted:?}"),
                    "agency {agency}, position {position}"
                );
            }
            let documents: Vec<String> = want
                .iter()
                .filter(|b| lottery::bet::has_won(b))
                .map(|b| b.document.clone())
                .collect();
            assert_eq!(
                winners.remove(agency).unwrap_or_default(),
                documents,
                "agency {agency}'s winners (documents of its bets on the winning number)"
            );
        }
        assert!(stored.is_empty(), "bets of other agencies stored: {:?}", stored.keys());
        assert!(winners.is_empty(), "winners of other agencies: {:?}", winners.keys());
        assert_eq!(self.count(SORTEO), 1, "the draw is logged by exactly one server");
    }
}

/// What dies mid-ingest.
#[derive(Clone, Copy, PartialEq)]
enum Kill {
    /// The primary's whole node (keeper and postmaster), as a machine
    /// dying: the monitor promotes the standby.
    Node,
    /// The same, and a lottery server right after it, while the standby is
    /// not promoted yet.
    NodeAndServer,
    /// The primary's postmaster alone: its keeper restarts PostgreSQL in
    /// place within a second, racing the monitor, so the standby is
    /// promoted only sometimes; either way nothing may be lost.
    Postmaster,
}

/// Kills the primary once `lottery` is part way through its ingest, and
/// checks that it still was when the node died (no agency done, no draw,
/// batches left); returns the killed node and the instant of the kill.
fn kill_mid_ingest(
    cluster: &HaCluster,
    lottery: &Lottery,
    clients: &mut [Child],
    kill: Kill,
) -> (String, Instant) {
    let total = (AGENCIES as u64 * ROWS).div_ceil(BATCH.parse::<u64>().expect("batch")) as usize;
    let at = somewhere(total / 10, total / 4);
    lottery.wait_stored(at);
    let (node, _) = cluster.kill_primary(false, kill == Kill::Postmaster);
    // The kill is done when the script returns.
    let kill = Instant::now();
    let stored = lottery.count(STORED);
    println!("killed {node}, the primary, after {stored} of {total} batches stored");
    for c in clients.iter_mut() {
        assert!(
            c.try_wait().expect("client status").is_none(),
            "an agency finished before the kill"
        );
    }
    assert_eq!(lottery.count(SORTEO), 0, "the draw came before the kill");
    assert!(stored < total, "every batch was stored before the kill");
    (node, kill)
}

/// One lottery on database `db` while the primary, `primary`, dies
/// mid-ingest as `kill` says: every agency finishes, every bet is stored
/// once, one draw, the right winners.
fn failover_round(cluster: &HaCluster, db: &'static str, primary: &str, kill: Kill) {
    let other = if primary == "node1" { "node2" } else { "node1" };
    if db != "lottery" {
        cluster.create_database(db);
    }
    let mut lottery = Lottery::start(cluster, db);
    let mut clients = lottery.spawn();
    let (node, killed) = kill_mid_ingest(cluster, &lottery, &mut clients, kill);
    assert_eq!(node, primary);
    let victim = (kill == Kill::NodeAndServer).then(|| somewhere(0, 3));
    if let Some(victim) = victim {
        signal(lottery.servers[victim].child.id(), "KILL");
        lottery.servers[victim].wait(Duration::from_secs(10)).expect("the killed server exits");
        println!(
            "{db}: killed lottery server {victim} {} ms after the primary",
            killed.elapsed().as_millis()
        );
    }
    cluster.wait_writable(Duration::from_secs(60));
    let outage = killed.elapsed();
    println!("{db}: writes accepted again {} ms after the kill of {node}", outage.as_millis());
    let runs: Vec<ClientRun> = clients.into_iter().map(finish_client).collect();
    println!("{db}: kill -> last agency done in {} ms", killed.elapsed().as_millis());
    let now = cluster.primary();
    if kill == Kill::Postmaster {
        let how = if now == other { "the standby was promoted" } else { "restarted in place" };
        println!("{db}: {node}'s postmaster killed: {how}");
    } else {
        assert_eq!(now, other, "the standby was promoted");
    }
    lottery.check(cluster, &runs);
    // The servers met the outage: a commit failed, a batch was refused, or
    // the database was unreachable.
    let failed = lottery.count(COMMIT_FAILED) + lottery.count(REFUSED) + lottery.count(UNREACHABLE);
    assert!(failed > 0, "no request met the failover");
    for (i, s) in lottery.servers.iter_mut().enumerate() {
        if Some(i) != victim {
            assert!(s.child.try_wait().expect("server status").is_none(), "server {i} exited");
            // No primary: said at most once a second.
            let lines = s.log.count(UNREACHABLE);
            let most = outage.as_secs() as usize + 2;
            assert!(lines <= most, "server {i}: {lines} outage lines in {outage:?}");
        }
    }
    // ... then that it is back, by a server that used the database again
    // (one whose agencies all moved on may not).
    if lottery.count(UNREACHABLE) > 0 {
        assert!(lottery.count(REACHABLE) > 0, "no server said the database is back");
    }
}

/// The old primary runs again and becomes the secondary.
fn rejoin(cluster: &HaCluster, node: &str) {
    let since = Instant::now();
    cluster.rejoin(node);
    println!("{node} rejoined as the secondary in {} ms", since.elapsed().as_millis());
}

#[test]
fn failovers_mid_ingest_lose_and_double_nothing() {
    let wall = Instant::now();
    let Some(cluster) = HaCluster::start() else {
        return;
    };
    println!("cluster up in {} ms", wall.elapsed().as_millis());
    assert_eq!(cluster.primary(), "node1");
    // 1. node1 dies mid-ingest; node2 is promoted.
    failover_round(&cluster, "lottery", "node1", Kill::Node);
    // 2. node1 comes back as the secondary; a second lottery, node2 dies
    //    mid-ingest, node1 is promoted.
    rejoin(&cluster, "node1");
    failover_round(&cluster, "lottery2", "node2", Kill::Node);
    // 3. node2 back; a third lottery, node1 dies mid-ingest and a lottery
    //    server dies during that failover.
    rejoin(&cluster, "node2");
    failover_round(&cluster, "lottery3", "node1", Kill::NodeAndServer);
    // 4. node1 back; a fourth lottery, node2's postmaster alone is killed.
    rejoin(&cluster, "node1");
    failover_round(&cluster, "lottery4", "node2", Kill::Postmaster);
    drop(cluster);
    println!("whole HA test: {} ms", wall.elapsed().as_millis());
}
