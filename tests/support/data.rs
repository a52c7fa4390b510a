//! The data of a test: agencies' files generated, their bets read back,
//! what storage holds, and the assertions that compare them.

use super::client::ClientRun;
use chrono::NaiveDate;
use lottery::bet::Bet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Writes synthetic files for agencies `1..=n` with `rows(agency)` bets.
pub fn generate(dir: &Path, n: u32, rows: impl Fn(u32) -> u64) -> Vec<(u32, PathBuf)> {
    (1..=n)
        .map(|agency| {
            lottery::dataset::write_agency_file(dir, agency, rows(agency), 42).expect("write data");
            (agency, dir.join(format!("agency-{agency}.csv")))
        })
        .collect()
}

/// Every valid bet of an agency's file.
pub fn file_bets(agency: u32, path: &Path) -> Vec<Bet> {
    use lottery::client::source::{BetsFile, Row};
    let mut f = BetsFile::open(path, agency).expect("open bets file");
    let mut bets = Vec::new();
    while let Some(row) = f.next_row().expect("read bets file") {
        if let Row::Bet(b) = row {
            bets.push(b.to_bet());
        }
    }
    bets
}

/// Multiset of bets: bet → how many times.
pub fn multiset(bets: impl IntoIterator<Item = Bet>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for b in bets {
        let key = format!("{b:?}");
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

pub fn stored_bets(path: &Path) -> Vec<Bet> {
    if !path.exists() {
        return Vec::new();
    }
    lottery::storage::load_bets(path)
        .expect("open storage")
        .map(|b| b.expect("valid stored row"))
        .collect()
}

/// Asserts that storage holds exactly the files' bets, each once.
pub fn assert_stored_exactly(storage: &Path, files: &[(u32, PathBuf)]) {
    assert_bets_exactly(stored_bets(storage), files);
}

/// Asserts that `stored` holds exactly the files' bets, each once.
pub fn assert_bets_exactly(stored: Vec<Bet>, files: &[(u32, PathBuf)]) {
    let input: Vec<Bet> = files.iter().flat_map(|(a, p)| file_bets(*a, p)).collect();
    let (n_in, n_stored) = (input.len(), stored.len());
    let (want, got) = (multiset(input), multiset(stored));
    let missing = want.iter().filter(|(k, n)| got.get(*k) < Some(n)).count();
    let extra = got.iter().filter(|(k, n)| want.get(*k) < Some(n)).count();
    println!(
        "compared {n_in} input bets with {n_stored} stored rows: {missing} missing, {extra} duplicated or foreign"
    );
    assert_eq!((missing, extra, n_in), (0, 0, n_stored));
}

/// Asserts that every agency's client exited 0 and reported exactly the
/// winners its file holds.
pub fn assert_agencies_finished(files: &[(u32, PathBuf)], runs: &[ClientRun]) {
    for ((agency, file), run) in files.iter().zip(runs) {
        assert!(run.status.success(), "agency {agency} failed:\n{}", run.log.join("\n"));
        assert_eq!(run.winners(), file_winners(*agency, file), "winners of agency {agency}");
    }
}

/// Winners in an agency's file.
pub fn file_winners(agency: u32, path: &Path) -> usize {
    file_bets(agency, path).iter().filter(|b| lottery::bet::has_won(b)).count()
}

/// A valid bet of `agency` whose number and first name come from `n`: for
/// tests that build batches by hand.
pub fn bet(agency: u32, n: u16) -> Bet {
    Bet {
        agency,
        first_name: format!("Ana{n}"),
        last_name: "Paz".into(),
        document: "123".into(),
        birthdate: NaiveDate::from_ymd_opt(1990, 5, 6).unwrap(),
        number: n,
    }
}
