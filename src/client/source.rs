//! The agency's bets file, read as a stream of valid bets.
//!
//! The file is the course's format: `first_name,last_name,document,
//! birthdate,number`, no header, CRLF or LF, optionally starting with a
//! UTF-8 BOM. Rows are read one at a time (constant memory whatever the
//! file's size); an invalid row is reported with its line number and reason
//! and skipped, so positions count valid bets only and are the same every
//! time the file is read, which is what resuming relies on.

use crate::bet::{BetRef, InvalidBet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

/// A row that is not a valid bet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRow {
    /// 1-based line number where the row starts.
    pub line: u64,
    pub reason: String,
}

/// The file could not be read.
#[derive(Debug)]
pub struct SourceError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read bets file {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for SourceError {}

/// Streams an agency's bets file.
pub struct BetsFile {
    reader: csv::Reader<BufReader<File>>,
    record: csv::ByteRecord,
    agency: u32,
    path: PathBuf,
    first: bool,
    /// Line where the next record starts. Counted here because the `csv`
    /// crate miscounts lines of CRLF files.
    line: u64,
    /// The latest valid birthdate, looked up once per file.
    today: chrono::NaiveDate,
}

/// One step of reading. A bet borrows the reader's current record (no
/// allocation per row); `to_bet` makes an owned copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Row<'a> {
    Bet(BetRef<'a>),
    Invalid(InvalidRow),
}

impl BetsFile {
    /// Opens the file for `agency`.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path, agency: u32) -> Result<BetsFile, SourceError> {
        let file = File::open(path).map_err(|source| SourceError {
            path: path.to_owned(),
            source,
        })?;
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 16, file));
        Ok(BetsFile {
            reader,
            record: csv::ByteRecord::new(),
            agency,
            path: path.to_owned(),
            first: true,
            line: 1,
            today: crate::bet::today(),
        })
    }

    /// The next row: a valid bet or the reason it is not; `None` at the end.
    ///
    /// # Errors
    /// Reading the file fails.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, SourceError> {
        let more = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| SourceError {
                path: self.path.clone(),
                source: io::Error::other(e.to_string()),
            })?;
        if !more {
            return Ok(None);
        }
        let line = self.line;
        // Newlines inside quoted fields move the line count too.
        let embedded = self
            .record
            .as_slice()
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.line += 1 + embedded as u64;
        let first = std::mem::replace(&mut self.first, false);
        Ok(Some(
            match parse_row(&self.record, self.agency, first, self.today) {
                Ok(bet) => Row::Bet(bet),
                Err(reason) => Row::Invalid(InvalidRow { line, reason }),
            },
        ))
    }
}

fn parse_row(
    r: &csv::ByteRecord,
    agency: u32,
    first: bool,
    today: chrono::NaiveDate,
) -> Result<BetRef<'_>, String> {
    if r.len() != 5 {
        return Err(format!("expected 5 fields, found {}", r.len()));
    }
    let text = |i: usize, name: &'static str| {
        let mut bytes = &r[i];
        if first && i == 0 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        std::str::from_utf8(bytes).map_err(|_| InvalidBet::NameNotUtf8 { field: name }.to_string())
    };
    BetRef::parse_at(
        today,
        agency,
        text(0, "first_name")?,
        text(1, "last_name")?,
        text(2, "document")?,
        &r[3],
        &r[4],
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("lottery-src-{name}-{}.csv", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Rows as owned values: (bet, or the invalid row).
    fn read_all(path: &Path) -> Vec<Result<crate::bet::Bet, InvalidRow>> {
        let mut f = BetsFile::open(path, 2).unwrap();
        let mut rows = Vec::new();
        while let Some(r) = f.next_row().unwrap() {
            rows.push(match r {
                Row::Bet(b) => Ok(b.to_bet()),
                Row::Invalid(i) => Err(i),
            });
        }
        rows
    }

    #[test]
    fn reads_crlf_bom_quotes_and_reports_bad_rows_by_line() {
        let text = "\u{feff}Ana,Pérez,123,1999-03-17,7574\r\n\
                    \"Gómez, José\",\"O\"\"Neil\",9,2000-01-01,1\r\n\
                    bad,row\r\n\
                    Luz,Sol,12a,2000-01-01,1\r\n\
                    Eva,Paz,1,2000-01-01,2\n";
        let path = write_temp("mixed", text.as_bytes());
        let rows = read_all(&path);
        assert_eq!(rows.len(), 5);
        let Ok(first) = &rows[0] else {
            panic!("{:?}", rows[0])
        };
        assert_eq!(first.first_name, "Ana", "BOM stripped");
        assert_eq!(first.agency, 2);
        let Ok(second) = &rows[1] else {
            panic!("{:?}", rows[1])
        };
        assert_eq!(
            (second.first_name.as_str(), second.last_name.as_str()),
            ("Gómez, José", "O\"Neil")
        );
        assert_eq!(
            rows[2],
            Err(InvalidRow {
                line: 3,
                reason: "expected 5 fields, found 2".into()
            })
        );
        let Err(bad) = &rows[3] else { panic!() };
        assert_eq!(bad.line, 4);
        assert!(bad.reason.contains("document"), "{}", bad.reason);
        assert!(rows[4].is_ok());
    }

    #[test]
    fn invalid_utf8_is_a_bad_row_not_a_crash() {
        let path = write_temp("utf8", b"A\xff,B,1,2000-01-01,1\nC,D,2,2000-01-01,2\n");
        let rows = read_all(&path);
        assert!(matches!(&rows[0], Err(r) if r.reason.contains("UTF-8")));
        assert!(rows[1].is_ok());
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(BetsFile::open(Path::new("/nonexistent/agency.csv"), 1).is_err());
    }
}
