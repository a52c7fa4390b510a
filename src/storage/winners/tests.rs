//! The winners' log and file together: pages read after a draw, rebuilt
//! from `bets.csv`, and the memory the index keeps.

use super::{CHECKPOINT, WinnersFile, WinnersLog, push_record};
use crate::bet::Bet;
use crate::storage::{Storage, SyncMode, encode_row};
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    crate::testing::temp_dir(&format!("winners-{name}"))
}

/// Agency `agency`'s `i`-th bet; every `win_every`-th wins. Documents
/// vary in length (1 to 10 digits), so pages cut at the byte budget.
fn bet(agency: u32, i: u64, win_every: u64) -> Bet {
    let digits = 1 + (i % 10) as usize;
    let document: String = format!("{agency}{i:010}").chars().rev().take(digits).collect();
    Bet {
        agency,
        first_name: "Ana".into(),
        last_name: "Paz, \"la\"".into(),
        document,
        birthdate: NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
        number: if i.is_multiple_of(win_every) { 7574 } else { 1 },
    }
}

/// Every page an agency reads from `file`, joined, with a page of at
/// most `room` bytes; checks each page's total and budget.
fn read_all(file: &WinnersFile, agency: u32, room: usize) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    loop {
        let offset = all.len() as u32;
        let page = file.page(agency, offset, room).unwrap();
        let used: usize = page.documents.iter().map(|d| 1 + d.len()).sum();
        assert!(used <= room, "a page of {used} bytes for a room of {room}");
        if page.documents.is_empty() {
            assert_eq!(offset, page.total, "an empty page before the end");
            return all;
        }
        all.extend(page.documents);
    }
}

/// The winners of agencies whose bets are interleaved in the file,
/// across many commits, come back per agency in storage order, page by
/// page, from any offset; the same after a rebuild from `bets.csv`.
#[test]
fn pages_give_each_agency_its_winners_in_storage_order() {
    let dir = temp_dir("pages");
    let data = dir.join("bets.csv");
    let (mut storage, _) = Storage::open(&data, SyncMode::None).unwrap();
    let mut log = WinnersLog::rebuild(&data, 0).unwrap();
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    // 3 agencies, commits of a few batches each, interleaved; agency 3
    // wins every bet, agency 1 every third, agency 2 never.
    let win_every = |agency: u32| match agency {
        1 => 3,
        2 => u64::MAX,
        _ => 1,
    };
    let mut next = [0u64; 4];
    for commit in 0..40u64 {
        let (mut rows, mut records) = (Vec::new(), Vec::new());
        let mut added = BTreeMap::new();
        for agency in [1 + (commit % 3) as u32, 3, 1, 2] {
            for _ in 0..(17 + commit % 5) {
                let b = bet(agency, next[agency as usize], win_every(agency));
                next[agency as usize] += 1;
                encode_row(&mut rows, &b);
                *added.entry(agency).or_insert(0u64) += 1;
                if b.as_ref().has_won() {
                    push_record(&mut records, agency, &b.document);
                    expected.entry(agency).or_default().push(b.document);
                }
            }
        }
        let added: Vec<(u32, u64)> = added.into_iter().collect();
        storage.commit(&rows, &added, &[]).unwrap();
        log.append(&records);
    }
    let len = storage.committed_len();
    let total: u64 = expected.values().map(|w| w.len() as u64).sum();
    assert_eq!(log.total(), total);
    let file = log.finish(len).unwrap();
    assert!(!dir.join("bets.csv.winners-log").exists());
    let rebuilt = WinnersLog::rebuild(&data, len).unwrap().finish(len).unwrap();
    assert_eq!(log.total(), 0, "the log is left empty");
    for file in [&file, &rebuilt] {
        assert_eq!(file.total(), total);
        for agency in 1..=4 {
            let want = expected.get(&agency).cloned().unwrap_or_default();
            for room in [11, 64, 1000, 8179] {
                assert_eq!(read_all(file, agency, room), want, "agency {agency}");
            }
            // Any offset, also between checkpoints.
            for offset in [0, 1, 255, 256, 257, 300, want.len()] {
                let page = file.page(agency, offset as u32, 8179).unwrap();
                assert_eq!(page.total as usize, want.len());
                assert!(want[offset.min(want.len())..].starts_with(&page.documents));
            }
        }
    }
    assert!(expected[&3].len() > 3 * CHECKPOINT as usize, "several checkpoints");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The memory bound: what the index keeps grows with the agencies and
/// by 8 bytes per CHECKPOINT winners, not with the winners.
#[test]
fn the_index_keeps_nothing_per_winner() {
    let dir = temp_dir("index");
    let data = dir.join("bets.csv");
    let mut log = WinnersLog::rebuild(&data, 0).unwrap();
    let mut records = Vec::new();
    for i in 0..200_000u64 {
        push_record(&mut records, 1 + (i % 2) as u32, "12345678");
        if records.len() > 1 << 16 {
            log.append(&records);
            records.clear();
        }
    }
    log.append(&records);
    let file = log.finish(0).unwrap();
    assert_eq!(file.total(), 200_000);
    // 2 agencies: 2 regions and 200,000 / 256 checkpoints of 8 bytes.
    let bound = 2 * 64 + (200_000 / CHECKPOINT as usize + 2) * 8;
    assert!(
        file.index_bytes() <= bound,
        "{} bytes of index for 200,000 winners (bound {bound})",
        file.index_bytes()
    );
    let page = file.page(2, 99_990, 8179).unwrap();
    assert_eq!(page.documents, vec!["12345678"; 10]);
    std::fs::remove_dir_all(dir).unwrap();
}
