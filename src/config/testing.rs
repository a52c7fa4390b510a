//! What the unit tests of both configs share.

use std::path::Path;

pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Tests read no files.
pub fn no_files(p: &Path) -> Result<String, String> {
    Err(format!("{}: no files in tests", p.display()))
}
