//! The file backend's journal: one text line per commit, the commit point.
//!
//! ```text
//! end=4096 data=9f3c01aa counts=1:120,3:80 done=2 crc=1a2b3c4d
//! ```
//!
//! `end`: where `bets.csv` ends after the commit; `data`: CRC-32 of the rows
//! it appended; `counts`: the new totals of the agencies it touched;
//! `done`: the agencies that finished; `crc`: CRC-32 of the line before it,
//! so a torn or damaged line is recognised and never trusted.

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JournalRecord {
    pub end: u64,
    /// CRC-32 of the rows this commit appended (`None`: not recorded, in a
    /// journal an older version rebuilt from an existing file; such rows are
    /// trusted as they are).
    pub data_crc: Option<u32>,
    pub counts: Vec<(u32, u64)>,
    pub done: Vec<u32>,
}

impl JournalRecord {
    fn body(&self) -> String {
        let counts: Vec<String> = self.counts.iter().map(|(a, n)| format!("{a}:{n}")).collect();
        let done: Vec<String> = self.done.iter().map(u32::to_string).collect();
        let or_dash = |v: Vec<String>| {
            if v.is_empty() { "-".to_owned() } else { v.join(",") }
        };
        let data = self.data_crc.map_or_else(|| "-".to_owned(), |c| format!("{c:08x}"));
        format!("end={} data={data} counts={} done={}", self.end, or_dash(counts), or_dash(done))
    }

    pub fn to_line(&self) -> String {
        let body = self.body();
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body} crc={crc:08x}\n")
    }

    /// Parses a line (without its newline); `None` if torn or damaged.
    pub fn parse(line: &[u8]) -> Option<JournalRecord> {
        let line = std::str::from_utf8(line).ok()?;
        let (body, crc) = line.rsplit_once(" crc=")?;
        if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
            return None;
        }
        let mut parts = body.split(' ');
        let end = parts.next()?.strip_prefix("end=")?.parse().ok()?;
        let data_crc = match parts.next()?.strip_prefix("data=")? {
            "-" => None,
            hex => Some(u32::from_str_radix(hex, 16).ok()?),
        };
        let counts_text = parts.next()?.strip_prefix("counts=")?;
        let done_text = parts.next()?.strip_prefix("done=")?;
        if parts.next().is_some() {
            return None;
        }
        let list = |t: &str| -> Vec<String> {
            if t == "-" { Vec::new() } else { t.split(',').map(str::to_owned).collect() }
        };
        let mut counts = Vec::new();
        for item in list(counts_text) {
            let (a, n) = item.split_once(':')?;
            counts.push((a.parse().ok()?, n.parse().ok()?));
        }
        let mut done = Vec::new();
        for item in list(done_text) {
            done.push(item.parse().ok()?);
        }
        Some(JournalRecord { end, data_crc, counts, done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_journal_line_is_not_trusted() {
        let rec = JournalRecord {
            end: 10,
            data_crc: Some(0xDEAD_BEEF),
            counts: vec![(1, 5)],
            done: vec![1],
        };
        let line = rec.to_line();
        let body = line.trim_end().as_bytes();
        assert_eq!(JournalRecord::parse(body), Some(rec));
        let flipped = line.trim_end().replace("end=10", "end=19");
        assert_eq!(JournalRecord::parse(flipped.as_bytes()), None);
    }
}
