//! Bets as rows: the file backend's `bets.csv` rows, CSV written minimally
//! quoted so that any CSV tool reads them, and read back; and the rows the
//! PostgreSQL backend copies into its table with their position, in COPY's
//! binary format.

use super::error::{StorageError, io_err};
use crate::bet::{self, Bet, BetRef, WINNING_NUMBER};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// Appends one CSV row for `bet` to `out`, quoting only fields that need it.
pub fn encode_row<'b>(out: &mut Vec<u8>, bet: impl Into<BetRef<'b>>) {
    encode_fields(out, bet.into());
}

/// Appends the row of `bet` at `position` in its agency's sequence, as the
/// PostgreSQL backend copies it into `bets (agency, position, first_name,
/// last_name, document, birthdate, number)`: one tuple of `COPY ... (FORMAT
/// binary)`, each field its length then its bytes, integers big-endian, the
/// date as days since 2000-01-01. Binary spares the database parsing text
/// (dates above all) on its one busy backend; the workers encode in
/// parallel.
pub fn encode_copy_row<'b>(out: &mut Vec<u8>, bet: impl Into<BetRef<'b>>, position: u64) {
    let bet = bet.into();
    let days = bet.birthdate.signed_duration_since(PG_EPOCH).num_days();
    // 1900..=9999 (the rule of a valid bet) is well inside an i32 of days.
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    out.extend_from_slice(&7i16.to_be_bytes());
    let mut field = |bytes: &[u8]| {
        // Every field is far below 2 GiB: a bet fits in one frame.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(&i64::from(bet.agency).to_be_bytes());
    field(&i64::try_from(position).unwrap_or(i64::MAX).to_be_bytes());
    field(bet.first_name.as_bytes());
    field(bet.last_name.as_bytes());
    field(bet.document.as_bytes());
    field(&days.to_be_bytes());
    field(&i32::from(bet.number).to_be_bytes());
}

/// The day PostgreSQL counts dates from.
const PG_EPOCH: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(day) => day,
    None => panic!("2000-01-01 is a date"),
};

/// What a binary COPY's data starts with: the signature, no flags, no
/// header extension.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// What a binary COPY's data ends with: a tuple of -1 fields.
pub const COPY_TRAILER: &[u8] = &(-1i16).to_be_bytes();

fn encode_fields(out: &mut Vec<u8>, bet: BetRef<'_>) {
    let mut itoa = [0u8; 24];
    let agency = format_u64(&mut itoa, u64::from(bet.agency));
    out.extend_from_slice(agency);
    out.push(b',');
    push_csv_field(out, bet.first_name.as_bytes());
    out.push(b',');
    push_csv_field(out, bet.last_name.as_bytes());
    out.push(b',');
    // A document is digits only: never needs quotes.
    out.extend_from_slice(bet.document.as_bytes());
    out.push(b',');
    push_date(out, bet.birthdate);
    out.push(b',');
    let number = format_u64(&mut itoa, u64::from(bet.number));
    out.extend_from_slice(number);
    out.push(b'\n');
}

/// `YYYY-MM-DD` without chrono's formatter, which interprets its format
/// string on every call (a measurable share of the server's CPU).
fn push_date(out: &mut Vec<u8>, date: chrono::NaiveDate) {
    use chrono::Datelike;
    let (y, m, d) = (date.year().clamp(0, 9999) as u32, date.month(), date.day());
    let digit = |n: u32| b'0' + (n % 10) as u8;
    out.extend_from_slice(&[
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(d / 10),
        digit(d),
    ]);
}

fn format_u64(buf: &mut [u8; 24], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// RFC 4180 quoting, only when the field needs it, so `load_bets` and any
/// CSV tool read it back. The rule is PostgreSQL's for `COPY ... TO ...
/// (FORMAT csv)`: quote a field that is empty or holds a comma, a double
/// quote, CR or LF, and nothing else — so that `\copy (select agency,
/// first_name, ...) from bets) to stdout csv` gives these very bytes. (A
/// leading or trailing space or tab needs no quotes: RFC 4180 keeps spaces
/// as part of the field, and neither the `csv` crate nor PostgreSQL trims
/// them.)
pub(crate) fn push_csv_field(out: &mut Vec<u8>, field: &[u8]) {
    let needs = field.is_empty() || field.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !needs {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Streams the bets stored in the file at `path`, in storage order, with
/// constant memory.
///
/// # Errors
/// Opening the file; each item is an error if its row is not a valid bet.
pub fn load_bets(path: &Path) -> Result<LoadBets, StorageError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    Ok(LoadBets::new(path, file, u64::MAX))
}

/// Iterator over stored bets (see [`load_bets`]).
pub struct LoadBets {
    reader: csv::Reader<io::Take<BufReader<File>>>,
    record: csv::ByteRecord,
    path: PathBuf,
}

impl LoadBets {
    pub(super) fn new(path: &Path, file: File, limit: u64) -> LoadBets {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 16, file).take(limit));
        LoadBets { reader, record: csv::ByteRecord::new(), path: path.to_owned() }
    }

    /// Byte offset just past the last row returned.
    pub(super) fn position(&self) -> u64 {
        self.reader.position().byte()
    }
}

impl Iterator for LoadBets {
    type Item = Result<Bet, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let corrupt =
            |path: &Path, reason: String| StorageError::Corrupt { path: path.to_owned(), reason };
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.reader.position().line();
                Some(
                    row_to_bet(&self.record)
                        .map_err(|e| corrupt(&self.path, format!("row {line}: {e}"))),
                )
            }
            Err(e) => Some(Err(corrupt(&self.path, e.to_string()))),
        }
    }
}

/// Turns a stored row into a bet (checking every field).
fn row_to_bet(r: &csv::ByteRecord) -> Result<Bet, String> {
    if r.len() != 6 {
        return Err(format!("{} fields, expected 6", r.len()));
    }
    let text = |i: usize| std::str::from_utf8(&r[i]).map_err(|_| format!("field {i} is not UTF-8"));
    let agency: u32 =
        text(0)?.parse().map_err(|_| format!("agency {:?} is not a number", text(0)))?;
    Bet::parse(agency, text(1)?, text(2)?, text(3)?, text(4)?, text(5)?).map_err(|e| e.to_string())
}

/// Calls `on_winner(agency, document)` for every winning bet among the
/// first `len` bytes of the bets file at `path` (its committed part), in
/// storage order: one streaming pass with constant memory, which reads of
/// each row only what the winners need (the number; the agency and the
/// document of a winner). The rows' integrity is the journal's business.
///
/// # Errors
/// The file cannot be read; a row without six fields, or whose number,
/// or a winner's agency or document, is not what this program writes;
/// whatever `on_winner` returns.
pub(super) fn for_each_winner(
    path: &Path,
    len: u64,
    mut on_winner: impl FnMut(u32, &str) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 16, file).take(len));
    let mut record = csv::ByteRecord::new();
    loop {
        let more =
            reader.read_byte_record(&mut record).map_err(|e| corrupt(path, e.to_string()))?;
        if !more {
            return Ok(());
        }
        let row =
            |reason: String| corrupt(path, format!("row {}: {reason}", reader.position().line()));
        if record.len() != 6 {
            return Err(row(format!("{} fields, expected 6", record.len())));
        }
        let number = bet::parse_number(&record[5]).map_err(|e| row(e.to_string()))?;
        if number != WINNING_NUMBER {
            continue;
        }
        let agency = std::str::from_utf8(&record[0])
            .ok()
            .and_then(|a| a.parse::<u32>().ok())
            .ok_or_else(|| row("the agency is not a number".into()))?;
        let document =
            std::str::from_utf8(&record[3]).map_err(|_| row("the document is not text".into()))?;
        bet::validate_document(document).map_err(|e| row(e.to_string()))?;
        on_winner(agency, document)?;
    }
}

fn corrupt(path: &Path, reason: String) -> StorageError {
    StorageError::Corrupt { path: path.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn bet(first: &str) -> Bet {
        Bet {
            agency: 12,
            first_name: first.into(),
            last_name: "Pérez".into(),
            document: "0123".into(),
            birthdate: NaiveDate::from_ymd_opt(1980, 2, 29).unwrap(),
            number: 42,
        }
    }

    #[test]
    fn plain_rows_are_unquoted() {
        let mut out = Vec::new();
        encode_row(&mut out, &bet("Ana"));
        assert_eq!(out, "12,Ana,Pérez,0123,1980-02-29,42\n".as_bytes());
    }

    #[test]
    fn leading_and_trailing_blanks_stay_unquoted_as_postgresql_writes_them() {
        let mut out = Vec::new();
        let mut b = bet(" Ana\t");
        b.last_name = "\tPérez ".into();
        encode_row(&mut out, &b);
        assert_eq!(out, "12, Ana\t,\tPérez ,0123,1980-02-29,42\n".as_bytes());
        // Any CSV reader keeps the blanks: they are part of the field.
        let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(&out[..]);
        let row = r.records().next().unwrap().unwrap();
        assert_eq!(&row[1], " Ana\t");
        assert_eq!(&row[2], "\tPérez ");
    }

    #[test]
    fn a_copy_row_is_one_binary_tuple_of_seven_fields() {
        let mut out = Vec::new();
        let name = "José, \"Pepe\"";
        encode_copy_row(&mut out, &bet(name), 9_000_000_001);
        let mut want = 7i16.to_be_bytes().to_vec();
        let mut field = |bytes: &[u8]| {
            want.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            want.extend_from_slice(bytes);
        };
        field(&12i64.to_be_bytes());
        field(&9_000_000_001i64.to_be_bytes());
        field(name.as_bytes());
        field("Pérez".as_bytes());
        field(b"0123");
        // 1980-02-29 is 7,246 days before 2000-01-01.
        field(&(-7246i32).to_be_bytes());
        field(&42i32.to_be_bytes());
        assert_eq!(out, want);
        assert_eq!(COPY_HEADER.len(), 19, "signature (11), flags (4), extension length (4)");
    }
}
