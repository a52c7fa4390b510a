//! The agency's bets file, read as a stream of valid bets.
//!
//! The file is the course's format: `first_name,last_name,document,
//! birthdate,number`, no header, CRLF or LF, optionally starting with a
//! UTF-8 BOM. Rows are read one at a time (constant memory whatever the
//! file's size); an invalid row is reported with its line number and reason
//! and skipped, so positions count valid bets only and are the same every
//! time the file is read, which is what resuming relies on.

use crate::bet::{BetRef, InvalidBet};
use csv_core::ReadRecordResult;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Bytes read from the file at a time, and the longest row the fast path
/// takes whole (longer rows go through the slow path, which streams).
const BUF_LEN: usize = 1 << 16;

/// Longest row kept, in field bytes. A valid row has at most 538 (two
/// names of 255 bytes, a document, a date, a number); longer rows are
/// skipped as invalid without being kept in memory.
const MAX_ROW_BYTES: usize = 4096;

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
///
/// Reading CSV is most of an agency's work, so rows take one of two paths.
/// A row without quotes (nearly all of them) is split at its commas where
/// it lies in the read buffer: no copy, one UTF-8 check for the three text
/// fields. A row with quotes (or a stray CR, or longer than the buffer)
/// goes through `csv_core`, which unescapes it and may span lines and
/// reads. With the `csv` crate reading every row the client spent ~60% of
/// its CPU there (350 ns a row); the fast path takes about a fifth of that.
pub struct BetsFile {
    file: File,
    path: PathBuf,
    /// Bytes read from the file; `buf[pos..filled]` not yet parsed.
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
    eof: bool,
    /// The slow path's parser and its output: the unescaped fields of the
    /// current row back to back, and where each one ends.
    quoted: Box<csv_core::Reader>,
    fields: Box<[u8]>,
    ends: [usize; 8],
    agency: u32,
    /// Line where the next row starts: 1 + the newlines consumed so far.
    line: u64,
    /// The latest valid birthdate, looked up once per file.
    today: chrono::NaiveDate,
}

/// One step of reading. A bet borrows the reader's buffer (no allocation
/// per row); `to_bet` makes an owned copy.
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
        let mut bets = BetsFile {
            file,
            path: path.to_owned(),
            buf: vec![0; BUF_LEN].into_boxed_slice(),
            pos: 0,
            filled: 0,
            eof: false,
            quoted: Box::new(csv_core::Reader::new()),
            fields: vec![0; MAX_ROW_BYTES].into_boxed_slice(),
            ends: [0; 8],
            agency,
            line: 1,
            today: crate::bet::today(),
        };
        // A UTF-8 byte order mark is not part of the first name.
        while bets.filled < 3 && bets.fill()? {}
        if bets.buf[..bets.filled].starts_with(b"\xEF\xBB\xBF") {
            bets.pos = 3;
        }
        Ok(bets)
    }

    /// The next row: a valid bet or the reason it is not; `None` at the end.
    ///
    /// # Errors
    /// Reading the file fails.
    pub fn next_row(&mut self) -> Result<Option<Row<'_>>, SourceError> {
        // Blank lines are skipped (as CSV readers do), but counted.
        loop {
            if self.pos == self.filled && !self.fill()? {
                return Ok(None);
            }
            match self.buf[self.pos] {
                b'\n' => self.line += 1,
                b'\r' => {}
                _ => break,
            }
            self.pos += 1;
        }
        let line = self.line;
        if let Some((end, next)) = self.whole_line()? {
            let text = &self.buf[self.pos..end];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if memchr::memchr2(b'"', b'\r', text).is_none() {
                self.line += u64::from(next > end);
                let start = std::mem::replace(&mut self.pos, next);
                let text = &self.buf[start..start + text.len()];
                return Ok(Some(to_row(
                    plain_fields(text),
                    self.agency,
                    self.today,
                    line,
                )));
            }
        }
        self.quoted_row(line).map(Some)
    }

    /// Where the line at `pos` ends (its `\n`, or the end of the file) and
    /// where the next one starts, reading more if needed; `None` if the line
    /// is longer than the buffer.
    fn whole_line(&mut self) -> Result<Option<(usize, usize)>, SourceError> {
        let mut searched = self.pos;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..self.filled]) {
                let end = searched + i;
                return Ok(Some((end, end + 1)));
            }
            searched = self.filled;
            let before = self.pos;
            if self.filled - self.pos == self.buf.len() {
                return Ok(None);
            }
            if !self.fill()? {
                return Ok(Some((self.filled, self.filled)));
            }
            // `fill` moved the unread bytes to the front.
            searched -= before - self.pos;
        }
    }

    /// The slow path: one row through `csv_core`, which handles quotes,
    /// escaped quotes, newlines inside quotes and rows of any length.
    fn quoted_row(&mut self, line: u64) -> Result<Row<'_>, SourceError> {
        let (mut nout, mut nend, mut extra_fields, mut too_long) = (0, 0, 0, false);
        loop {
            let input = &self.buf[self.pos..self.filled];
            let (result, nin, out, end) =
                self.quoted
                    .read_record(input, &mut self.fields[nout..], &mut self.ends[nend..]);
            self.line += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
            self.pos += nin;
            nout += out;
            nend += end;
            match result {
                // An empty input tells csv_core the file has ended.
                ReadRecordResult::InputEmpty => {
                    self.fill()?;
                }
                // Keep counting, keep nothing: the row is invalid anyway.
                ReadRecordResult::OutputFull => {
                    too_long = true;
                    nout = 0;
                }
                ReadRecordResult::OutputEndsFull => {
                    extra_fields += nend;
                    nend = 0;
                }
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        if too_long {
            return Ok(Row::Invalid(InvalidRow {
                line,
                reason: format!("row is longer than {MAX_ROW_BYTES} bytes"),
            }));
        }
        let fields = match extra_fields {
            0 => unescaped_fields(&self.fields, &self.ends[..nend]),
            _ => Err(extra_fields + nend),
        };
        Ok(to_row(fields, self.agency, self.today, line))
    }

    /// Moves the unread bytes to the front of the buffer and reads more
    /// after them. `false`: nothing more (end of file, or no room).
    fn fill(&mut self) -> Result<bool, SourceError> {
        if self.eof {
            return Ok(false);
        }
        self.buf.copy_within(self.pos..self.filled, 0);
        self.filled -= self.pos;
        self.pos = 0;
        if self.filled == self.buf.len() {
            return Ok(false);
        }
        loop {
            match self.file.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.filled += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SourceError {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// A row's five fields as they lie in a buffer. The three text fields
/// are checked as UTF-8 together (`run` holds them, `ranges` says where):
/// one check instead of three was a third of the fast path's time.
struct Fields<'a> {
    run: &'a [u8],
    ranges: [Range<usize>; 3],
    birthdate: &'a [u8],
    number: &'a [u8],
}

/// The fields of an unquoted line, split at its commas; `Err(n)` when there
/// are not exactly five.
fn plain_fields(text: &[u8]) -> Result<Fields<'_>, usize> {
    let mut commas = [0; 4];
    let mut n = 0;
    for i in memchr::memchr_iter(b',', text) {
        if n == 4 {
            return Err(memchr::memchr_iter(b',', text).count() + 1);
        }
        commas[n] = i;
        n += 1;
    }
    if n != 4 {
        return Err(n + 1);
    }
    let [a, b, c, d] = commas;
    Ok(Fields {
        run: &text[..c],
        ranges: [0..a, a + 1..b, b + 1..c],
        birthdate: &text[c + 1..d],
        number: &text[d + 1..],
    })
}

/// The fields of an unescaped row (`csv_core`'s output: the fields back to
/// back, `ends` where each one ends).
fn unescaped_fields<'a>(fields: &'a [u8], ends: &[usize]) -> Result<Fields<'a>, usize> {
    let &[a, b, c, d, e] = ends else {
        return Err(ends.len());
    };
    Ok(Fields {
        run: &fields[..c],
        ranges: [0..a, a..b, b..c],
        birthdate: &fields[c..d],
        number: &fields[d..e],
    })
}

/// A row from its fields (or how many fields there were).
fn to_row(
    fields: Result<Fields<'_>, usize>,
    agency: u32,
    today: chrono::NaiveDate,
    line: u64,
) -> Row<'_> {
    let parsed = match fields {
        Ok(fields) => parse_bet(fields, agency, today),
        Err(found) => Err(format!("expected 5 fields, found {found}")),
    };
    match parsed {
        Ok(bet) => Row::Bet(bet),
        Err(reason) => Row::Invalid(InvalidRow { line, reason }),
    }
}

fn parse_bet(f: Fields<'_>, agency: u32, today: chrono::NaiveDate) -> Result<BetRef<'_>, String> {
    let [first, last, document] = texts(f.run, f.ranges)?;
    BetRef::parse_at(today, agency, first, last, document, f.birthdate, f.number)
        .map_err(|e| e.to_string())
}

/// The three text fields as `&str`, or which one is not UTF-8.
fn texts(run: &[u8], ranges: [Range<usize>; 3]) -> Result<[&str; 3], String> {
    if let Ok(text) = std::str::from_utf8(run)
        && let [Some(a), Some(b), Some(c)] = ranges.clone().map(|r| text.get(r))
    {
        return Ok([a, b, c]);
    }
    let mut out = [""; 3];
    for ((slot, range), field) in
        out.iter_mut()
            .zip(ranges)
            .zip(["first_name", "last_name", "document"])
    {
        *slot = std::str::from_utf8(&run[range])
            .map_err(|_| InvalidBet::NameNotUtf8 { field }.to_string())?;
    }
    Ok(out)
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
    fn blank_lines_are_skipped_and_line_numbers_stay_true() {
        let text = "\r\nA,B,1,2000-01-01,1\r\n\r\n\nbad\r\n\"C\nD\",E,2,2000-01-01,2\nx,y\n";
        let path = write_temp("blank", text.as_bytes());
        let rows = read_all(&path);
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert!(rows[0].is_ok());
        assert_eq!(
            rows[1],
            Err(InvalidRow {
                line: 5,
                reason: "expected 5 fields, found 1".into()
            })
        );
        let Ok(multi) = &rows[2] else {
            panic!("{:?}", rows[2])
        };
        assert_eq!(multi.first_name, "C\nD", "newline inside quotes");
        assert!(matches!(&rows[3], Err(r) if r.line == 8), "{:?}", rows[3]);
    }

    #[test]
    fn odd_rows_take_the_slow_path_and_agree_with_csv() {
        // A lone CR ends a row (as the csv crate reads it); a quote in an
        // unquoted field is a character; six fields are too many.
        let text = "A,B,1,2000-01-01,1\rC,D,2,2000-01-01,2\nE\"e,F,3,2000-01-01,3\n\
                    G,H,4,2000-01-01,4,5\nI,J,5,2000-01-01,5";
        let path = write_temp("odd", text.as_bytes());
        let rows = read_all(&path);
        let docs: Vec<_> = rows
            .iter()
            .map(|r| {
                r.as_ref()
                    .map(|b| b.document.clone())
                    .map_err(|e| e.reason.clone())
            })
            .collect();
        assert_eq!(
            docs,
            [
                Ok("1".into()),
                Ok("2".into()),
                Ok("3".into()),
                Err("expected 5 fields, found 6".into()),
                Ok("5".into()),
            ]
        );
        let Ok(quote) = &rows[2] else { panic!() };
        assert_eq!(quote.first_name, "E\"e");
    }

    #[test]
    fn rows_longer_than_the_buffer_are_read_and_huge_ones_refused() {
        let long_name = "ñ".repeat(127); // 254 bytes: valid
        let mut text = String::new();
        // Enough rows that some straddle every refill of the buffer.
        for i in 0..(2 * BUF_LEN / 280) {
            text.push_str(&format!("{long_name},P,{i},2000-01-01,1\n"));
        }
        let huge = "x".repeat(3 * BUF_LEN);
        text.push_str(&format!(
            "{huge},P,1,2000-01-01,1\n\"{huge}\",P,1,2000-01-01,1\nA,B,7,2000-01-01,7\n"
        ));
        let path = write_temp("long", text.as_bytes());
        let rows = read_all(&path);
        let n = 2 * BUF_LEN / 280;
        assert_eq!(rows.len(), n + 3);
        for (i, row) in rows[..n].iter().enumerate() {
            let Ok(bet) = row else {
                panic!("row {i}: {row:?}")
            };
            assert_eq!(
                (bet.first_name.as_str(), bet.document.clone()),
                (long_name.as_str(), i.to_string())
            );
        }
        for row in &rows[n..n + 2] {
            assert!(
                matches!(row, Err(r) if r.reason.contains("longer than")),
                "{row:?}"
            );
        }
        assert!(matches!(&rows[n + 2], Ok(b) if b.document == "7"));
    }

    #[test]
    fn invalid_utf8_is_named_by_field_on_both_paths() {
        let path = write_temp(
            "utf8b",
            b"A,B\xff,1,2000-01-01,1\n\"A\",\"\xc3\",1,2000-01-01,1\n",
        );
        let rows = read_all(&path);
        for row in &rows {
            assert!(
                matches!(row, Err(r) if r.reason == "last_name is not valid UTF-8"),
                "{row:?}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(BetsFile::open(Path::new("/nonexistent/agency.csv"), 1).is_err());
    }
}
