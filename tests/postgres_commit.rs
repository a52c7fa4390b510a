//! The commits of a server over PostgreSQL and the draw they record
//! (cargo feature `postgres`; a throwaway cluster per test, see
//! `support::pg`): a COMMIT that never reaches the database and one whose
//! answer never reaches the server (`support::pg_proxy` cuts them), and a
//! draw recorded but never announced, logged once by the next server while
//! every agency reads its winners page by page.

#![cfg(feature = "postgres")]

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::pg::{Postgres, server, server_at};
use support::pg_proxy::{CommitCutter, Cut, CutRule};
use support::*;

const SORTEO: &str = "action: sorteo | result: success";

#[test]
fn a_lost_commit_answer_is_learned_from_the_database_on_reconnecting() {
    let Some(pg) = Postgres::start("lost-commit") else {
        return;
    };
    // Between the server and the database: the first COMMIT of a
    // transaction that stores bets never reaches the database, and the
    // answer to the COMMIT that records the draw never reaches the server.
    let never_sent = CutRule { sql: "COPY bets", cut: Cut::Before };
    let answer_lost = CutRule { sql: "INSERT INTO draw", cut: Cut::Answer };
    let cutter = CommitCutter::start(&pg, &[never_sent, answer_lost]);
    let dir = TempDir::new("pg-lost-commit");
    let files = generate(dir.path(), 1, |_| 2_000);
    let s = server_at(&dir, &cutter.url, 1, "s0", &[]);
    let runs = run_agencies(s.addr, &files, &[("CLI_BATCH_MAXAMOUNT", "100")]);
    let cuts = [Duration::ZERO; 2].map(|t| cutter.next_cut(t));
    assert_eq!(cuts, [Some(never_sent), Some(answer_lost)]);
    assert_agencies_finished(&files, &runs);
    assert_bets_exactly(pg.stored_bets(), &files);
    let log = s.log.lines().join("\n");
    // The COMMIT that never arrived failed its batches (the agency sent
    // them again)...
    assert_eq!(s.log.count("committed: false"), 1, "{log}");
    assert_eq!(s.log.count("action: commit | result: fail"), 1, "{log}");
    // ...and the one whose answer was lost did not fail: the server asked
    // the database, found it committed, acknowledged the DONE and logged
    // the draw it recorded.
    assert_eq!(s.log.count("committed: true"), 1, "{log}");
    assert_eq!(s.log.count(SORTEO), 1, "{log}");
}

/// A draw recorded in the database but never announced (its server died
/// between the draw's COMMIT and its `sorteo` line; here: the mark undone
/// by hand) is logged by the next server that starts on it, once: the
/// server after it finds it marked. Meanwhile every agency, with most of
/// its bets winning and the agencies' rows interleaved, reads its winners
/// page by page by rank, in storage order, from any server.
#[test]
fn a_draw_recorded_but_never_announced_is_logged_once_and_winners_page_by_rank() {
    let Some(pg) = Postgres::start("announce") else {
        return;
    };
    let dir = TempDir::new("pg-announce");
    // Most bets win: 3 agencies, about 2,600 winners each, several pages.
    let files: Vec<(u32, PathBuf)> = (1..=3)
        .map(|agency| {
            let path = dir.path().join(format!("agency-{agency}.csv"));
            let rows: String = (0..3_000u32)
                .map(|i| {
                    let document = format!("{}", 10_000_000 + agency * 100_000 + i * 7);
                    let number = if i % 7 == 3 { 1 } else { 7574 };
                    format!("Ana,\"Paz, la\",{document},1990-05-06,{number}\r\n")
                })
                .collect();
            std::fs::write(&path, rows).expect("write an agency file");
            (agency, path)
        })
        .collect();
    let first = server(&dir, &pg, 3, "s0");
    let runs = run_agencies(first.addr, &files, &[("CLI_BATCH_MAXAMOUNT", "40")]);
    assert_agencies_finished(&files, &runs);
    first.log.wait_for(SORTEO, Duration::from_secs(30));
    assert_eq!(first.log.count(SORTEO), 1);
    drop(first);
    pg.client().batch_execute("UPDATE draw SET announced = false").expect("undo the mark");
    let (total, ranked): (i64, i64) = {
        let row = pg
            .client()
            .query_one("SELECT (SELECT winners FROM draw), (SELECT count(*) FROM winners)", &[])
            .expect("read the draw");
        (row.get(0), row.get(1))
    };
    assert_eq!(total, ranked, "every winner has its rank");

    let second = server(&dir, &pg, 3, "s1");
    let third = server(&dir, &pg, 3, "s2");
    // Each logs (or not) before it listens.
    assert_eq!(
        second.log.count(&format!("{SORTEO} | ganadores: {total}")),
        1,
        "the next server logs the draw"
    );
    assert_eq!(third.log.count(SORTEO), 0, "and the one after it does not");
    for s in [&second, &third] {
        for (agency, path) in &files {
            let want: Vec<String> = file_bets(*agency, path)
                .into_iter()
                .filter(lottery::bet::has_won)
                .map(|b| b.document)
                .collect();
            let (got, pages) = winners_paged(s.addr, *agency);
            assert!(got == want, "agency {agency}: winners differ");
            assert!(pages > 2, "{pages} pages");
        }
    }
}
