//! The agency's bets file, read as a stream of valid bets.
//!
//! The file is the course's format: `first_name,last_name,document,
//! birthdate,number`, no header, CRLF or LF, optionally starting with a
//! UTF-8 BOM. Rows are read one at a time (constant memory whatever the
//! file's size); an invalid row is reported with its line number and reason
//! and skipped, so positions count valid bets only and are the same every
//! time the file is read, which is what resuming relies on.

use super::swar::{bytes_equal, word_at};
use crate::bet::{BetRef, InvalidBet};
use csv_core::ReadRecordResult;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Bytes read from the file at a time; also the longest line the fast
/// path takes (longer ones go through the slow path, which streams).
const BLOCK_LEN: usize = 1 << 16;

/// Longest row kept, in field bytes. A valid row's fields hold at most 534
/// (two names of 255 bytes, a document of 10 digits, a date of 10 bytes, a
/// number of 4 digits); longer rows are skipped as invalid without being
/// kept in memory.
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
        write!(f, "cannot read bets file {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for SourceError {}

/// Streams an agency's bets file.
///
/// Reading CSV is most of an agency's work, so it is done in blocks of
/// whole lines. Each block is checked as UTF-8 once, as a whole, which
/// costs much less than checking each row's names on their own. A row
/// without quotes (nearly all of them) is split at its commas where it lies
/// in the block, found eight bytes at a time, and its names are slices of
/// the checked block: no copy, no allocation. A row with quotes, a stray
/// CR, or longer than a block goes through `csv_core`, which unescapes it
/// and may span lines and blocks. What each step saved, measured, is in
/// `docs/PERFORMANCE.md`.
pub struct BetsFile {
    file: File,
    path: PathBuf,
    /// Whole lines read from the file; `block[pos..]` not parsed yet.
    block: Block,
    pos: usize,
    /// Bytes read past the block (the start of its next line).
    rest: Vec<u8>,
    eof: bool,
    /// The slow path's parser and its output: the unescaped fields of the
    /// current row back to back, and where each one ends.
    quoted: Box<csv_core::Reader>,
    fields: Box<[u8]>,
    ends: [usize; 8],
    agency: u32,
    /// Line where the next row starts: 1 + the newlines consumed so far.
    line: u64,
}

/// A block of the file: checked UTF-8 text, or bytes that are not (their
/// rows are checked one by one, to report the bad ones).
enum Block {
    Text(String),
    Bytes(Vec<u8>),
}

impl Block {
    fn bytes(&self) -> &[u8] {
        match self {
            Block::Text(text) => text.as_bytes(),
            Block::Bytes(bytes) => bytes,
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        match self {
            Block::Text(text) => text.into_bytes(),
            Block::Bytes(bytes) => bytes,
        }
    }
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
        let file =
            File::open(path).map_err(|source| SourceError { path: path.to_owned(), source })?;
        let mut bets = BetsFile {
            file,
            path: path.to_owned(),
            block: Block::Bytes(Vec::with_capacity(BLOCK_LEN)),
            pos: 0,
            rest: Vec::with_capacity(BLOCK_LEN),
            eof: false,
            quoted: Box::new(csv_core::Reader::new()),
            fields: vec![0; MAX_ROW_BYTES].into_boxed_slice(),
            ends: [0; 8],
            agency,
            line: 1,
        };
        bets.next_block()?;
        // A UTF-8 byte order mark is not part of the first name.
        if bets.block.bytes().starts_with(b"\xEF\xBB\xBF") {
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
            let Some(&byte) = self.block.bytes().get(self.pos) else {
                if self.next_block()? {
                    continue;
                }
                return Ok(None);
            };
            match byte {
                b'\n' => self.line += 1,
                b'\r' => {}
                _ => break,
            }
            self.pos += 1;
        }
        let line = self.line;
        let bytes = self.block.bytes();
        let scan = scan_line(bytes, self.pos);
        // A line that runs to the block's end is whole only at the end of
        // the file (blocks are cut after a newline, or when full).
        let complete = scan.end < bytes.len() || self.eof;
        if complete && !scan.odd {
            let (start, end) = (self.pos, scan.text_end);
            self.pos = (scan.end + 1).min(bytes.len());
            self.line += u64::from(scan.end < bytes.len());
            let fields = match scan.commas() {
                Some([a, b, c, d]) => Ok(([start..a, a + 1..b, b + 1..c], c + 1..d, d + 1..end)),
                None => Err(scan.count + 1),
            };
            return Ok(Some(self.plain_row(fields, line)));
        }
        self.quoted_row(line).map(Some)
    }

    /// A row split at its commas (or how many fields it has): its names are
    /// slices of the block, checked as UTF-8 here only if the block was not.
    fn plain_row(&self, fields: Result<Spans, usize>, line: u64) -> Row<'_> {
        let bytes = self.block.bytes();
        let fields = fields.map(|(names, birthdate, number)| {
            let texts = match &self.block {
                Block::Text(text) => {
                    let [a, b, c] = &names;
                    match (text.get(a.clone()), text.get(b.clone()), text.get(c.clone())) {
                        (Some(a), Some(b), Some(c)) => Ok([a, b, c]),
                        _ => texts_at(bytes, names),
                    }
                }
                Block::Bytes(_) => texts_at(bytes, names),
            };
            (texts, &bytes[birthdate], &bytes[number])
        });
        to_row(fields, self.agency, line)
    }

    /// The slow path: one row through `csv_core`, which handles quotes,
    /// escaped quotes, newlines inside quotes and rows of any length.
    fn quoted_row(&mut self, line: u64) -> Result<Row<'_>, SourceError> {
        let (mut nout, mut nend, mut extra_fields, mut too_long) = (0, 0, 0, false);
        loop {
            let input = &self.block.bytes()[self.pos..];
            let (result, nin, out, end) =
                self.quoted.read_record(input, &mut self.fields[nout..], &mut self.ends[nend..]);
            self.line += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
            self.pos += nin;
            nout += out;
            nend += end;
            match result {
                // An empty input (no next block) tells csv_core the file
                // has ended.
                ReadRecordResult::InputEmpty => {
                    self.next_block()?;
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
        let fields = match (extra_fields, &self.ends[..nend]) {
            (0, &[a, b, c, d, e]) => {
                let f = &self.fields;
                Ok((texts(&f[..c], [0..a, a..b, b..c]), &f[c..d], &f[d..e]))
            }
            _ => Err(extra_fields + nend),
        };
        Ok(to_row(fields, self.agency, line))
    }

    /// Replaces the parsed block with the next one: the line it left
    /// unfinished, then more of the file up to the last newline read.
    /// `false` at the end of the file.
    fn next_block(&mut self) -> Result<bool, SourceError> {
        let mut raw = std::mem::take(&mut self.rest);
        // The old block's buffer takes the next block's leftover.
        let mut spare = std::mem::replace(&mut self.block, Block::Bytes(Vec::new())).into_bytes();
        spare.clear();
        let mut searched = 0;
        while !self.eof && raw.len() < BLOCK_LEN && !raw[searched..].contains(&b'\n') {
            searched = raw.len();
            let want = (BLOCK_LEN - raw.len()) as u64;
            let got = (&mut self.file)
                .take(want)
                .read_to_end(&mut raw)
                .map_err(|source| SourceError { path: self.path.clone(), source })?;
            self.eof = (got as u64) < want;
        }
        let cut = match memchr::memrchr(b'\n', &raw) {
            Some(i) if !self.eof => i + 1,
            _ => raw.len(),
        };
        spare.extend_from_slice(&raw[cut..]);
        raw.truncate(cut);
        self.rest = spare;
        self.pos = 0;
        let more = !raw.is_empty();
        self.block = match String::from_utf8(raw) {
            Ok(text) => Block::Text(text),
            Err(e) => Block::Bytes(e.into_bytes()),
        };
        Ok(more)
    }
}

/// Where a line ends and where its commas are, found eight bytes at a time.
struct Scan {
    /// Index of the line's `\n` (or the end of the block).
    end: usize,
    /// Where the line's text ends: `end`, or before a final `\r`.
    text_end: usize,
    commas: [usize; 4],
    count: usize,
    /// A quote or a CR inside the line: the slow path's business.
    odd: bool,
}

impl Scan {
    /// The four commas of a five-field row.
    fn commas(&self) -> Option<[usize; 4]> {
        (self.count == 4).then_some(self.commas)
    }
}

/// Scans the line that starts at `start` in `bytes`, a word at a time
/// (see `swar.rs`): on lines this short, one pass over words costs less
/// than a `memchr` call per field.
fn scan_line(bytes: &[u8], start: usize) -> Scan {
    let mut scan =
        Scan { end: bytes.len(), text_end: bytes.len(), commas: [0; 4], count: 0, odd: false };
    let (mut cr_count, mut last_cr) = (0, 0);
    let mut i = start;
    while i < bytes.len() {
        let word = word_at(bytes, i);
        let newline = bytes_equal(word, b'\n');
        let before = match newline {
            0 => u64::MAX,
            n => (1u64 << n.trailing_zeros()) - 1,
        };
        let mut commas = bytes_equal(word, b',') & before;
        while commas != 0 {
            if let Some(slot) = scan.commas.get_mut(scan.count) {
                *slot = i + (commas.trailing_zeros() / 8) as usize;
            }
            scan.count += 1;
            commas &= commas - 1;
        }
        scan.odd |= bytes_equal(word, b'"') & before != 0;
        let crs = bytes_equal(word, b'\r') & before;
        if crs != 0 {
            cr_count += crs.count_ones();
            last_cr = i + ((63 - crs.leading_zeros()) / 8) as usize;
        }
        if newline != 0 {
            scan.end = i + (newline.trailing_zeros() / 8) as usize;
            break;
        }
        i += 8;
    }
    scan.text_end = scan.end;
    match cr_count {
        0 => {}
        1 if last_cr + 1 == scan.end => scan.text_end = last_cr,
        _ => scan.odd = true,
    }
    scan
}

/// Where a plain row's fields lie in its block: the three text fields,
/// the birthdate, the number.
type Spans = ([Range<usize>; 3], Range<usize>, Range<usize>);

/// A row's three text fields, its birthdate and number.
type Fields<'a> = (Result<[&'a str; 3], String>, &'a [u8], &'a [u8]);

/// A row from its fields (or how many fields there were).
fn to_row(fields: Result<Fields<'_>, usize>, agency: u32, line: u64) -> Row<'_> {
    let parsed = match fields {
        Ok((texts, birthdate, number)) => texts.and_then(|[first, last, document]| {
            BetRef::parse_fields(agency, first, last, document, birthdate, number)
                .map_err(|e| e.to_string())
        }),
        Err(found) => Err(format!("expected 5 fields, found {found}")),
    };
    match parsed {
        Ok(bet) => Row::Bet(bet),
        Err(reason) => Row::Invalid(InvalidRow { line, reason }),
    }
}

/// As [`texts`], for fields that lie at `ranges` in `bytes`.
fn texts_at(bytes: &[u8], ranges: [Range<usize>; 3]) -> Result<[&str; 3], String> {
    let base = ranges[0].start;
    let run = &bytes[base..ranges[2].end];
    texts(run, ranges.map(|r| r.start - base..r.end - base))
}

/// The three text fields, which lie at `ranges` in `run`, as `&str`: one
/// UTF-8 check of `run`, or of each field to name the one that fails.
fn texts(run: &[u8], ranges: [Range<usize>; 3]) -> Result<[&str; 3], String> {
    if let Ok(text) = std::str::from_utf8(run)
        && let [Some(a), Some(b), Some(c)] = ranges.clone().map(|r| text.get(r))
    {
        return Ok([a, b, c]);
    }
    let mut out = [""; 3];
    for ((slot, range), field) in
        out.iter_mut().zip(ranges).zip(["first_name", "last_name", "document"])
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
        let path = crate::testing::temp_dir("src").join(format!("{name}.csv"));
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
        let Ok(first) = &rows[0] else { panic!("{:?}", rows[0]) };
        assert_eq!(first.first_name, "Ana", "BOM stripped");
        assert_eq!(first.agency, 2);
        let Ok(second) = &rows[1] else { panic!("{:?}", rows[1]) };
        assert_eq!(
            (second.first_name.as_str(), second.last_name.as_str()),
            ("Gómez, José", "O\"Neil")
        );
        assert_eq!(
            rows[2],
            Err(InvalidRow { line: 3, reason: "expected 5 fields, found 2".into() })
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
            Err(InvalidRow { line: 5, reason: "expected 5 fields, found 1".into() })
        );
        let Ok(multi) = &rows[2] else { panic!("{:?}", rows[2]) };
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
            .map(|r| r.as_ref().map(|b| b.document.clone()).map_err(|e| e.reason.clone()))
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
        for i in 0..(2 * BLOCK_LEN / 280) {
            text.push_str(&format!("{long_name},P,{i},2000-01-01,1\n"));
        }
        let huge = "x".repeat(3 * BLOCK_LEN);
        text.push_str(&format!(
            "{huge},P,1,2000-01-01,1\n\"{huge}\",P,1,2000-01-01,1\nA,B,7,2000-01-01,7\n"
        ));
        let path = write_temp("long", text.as_bytes());
        let rows = read_all(&path);
        let n = 2 * BLOCK_LEN / 280;
        assert_eq!(rows.len(), n + 3);
        for (i, row) in rows[..n].iter().enumerate() {
            let Ok(bet) = row else { panic!("row {i}: {row:?}") };
            assert_eq!(
                (bet.first_name.as_str(), bet.document.clone()),
                (long_name.as_str(), i.to_string())
            );
        }
        for row in &rows[n..n + 2] {
            assert!(matches!(row, Err(r) if r.reason.contains("longer than")), "{row:?}");
        }
        assert!(matches!(&rows[n + 2], Ok(b) if b.document == "7"));
    }

    #[test]
    fn invalid_utf8_is_named_by_field_on_both_paths() {
        let path = write_temp("utf8b", b"A,B\xff,1,2000-01-01,1\n\"A\",\"\xc3\",1,2000-01-01,1\n");
        let rows = read_all(&path);
        for row in &rows {
            assert!(matches!(row, Err(r) if r.reason == "last_name is not valid UTF-8"), "{row:?}");
        }
    }

    /// Random rows (quoted or not, with commas, quotes, CRs, newlines,
    /// accents, bad UTF-8, wrong field counts, blank lines) read by this
    /// reader and by the `csv` crate: the same bets, in the same order.
    #[test]
    fn agrees_with_the_csv_crate_on_random_rows() {
        let mut rng = crate::dataset::Rng::new(7);
        let pieces: [&[u8]; 12] = [
            b"Ana",
            b"\xC3\xB1",
            b",",
            b"\"",
            b"\r",
            b"\n",
            b" ",
            b"12",
            b"\xFF",
            b"x",
            b"2000-01-01",
            b"7",
        ];
        let mut text = Vec::new();
        for _ in 0..20_000 {
            let fields = if rng.below(10) == 0 { 4 + rng.below(3) } else { 5 };
            for f in 0..fields {
                if f > 0 {
                    text.push(b',');
                }
                let value: Vec<u8> = match (f, rng.below(8)) {
                    (_, 0) => (0..rng.below(4))
                        .flat_map(|_| pieces[rng.below(12) as usize].to_vec())
                        .collect(),
                    (0 | 1, _) => ["Ana", "Pérez", "de la Peña"][rng.below(3) as usize].into(),
                    (2, _) => rng.below(99_999).to_string().into(),
                    (3, _) => b"1999-03-17".to_vec(),
                    _ => rng.below(10_000).to_string().into(),
                };
                if rng.below(6) == 0 || value.iter().any(|b| b"\",\r\n".contains(b)) {
                    text.push(b'"');
                    for &b in &value {
                        if b == b'"' {
                            text.push(b'"');
                        }
                        text.push(b);
                    }
                    text.push(b'"');
                } else {
                    text.extend_from_slice(&value);
                }
            }
            text.extend_from_slice([&b"\n"[..], b"\r\n", b"\r\n\r\n"][rng.below(3) as usize]);
        }
        let path = write_temp("random", &text);
        let mine: Vec<_> = read_all(&path).into_iter().filter_map(Result::ok).collect();
        let mut reader =
            csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&text[..]);
        let theirs: Vec<_> = reader
            .byte_records()
            .map(|r| r.expect("csv reads it"))
            .filter(|r| r.len() == 5)
            .filter_map(|r| {
                let t = |i: usize| std::str::from_utf8(&r[i]).ok();
                BetRef::parse_fields(2, t(0)?, t(1)?, t(2)?, &r[3], &r[4]).ok().map(|b| b.to_bet())
            })
            .collect();
        assert!(theirs.len() > 10_000, "enough valid rows: {}", theirs.len());
        assert_eq!(mine.len(), theirs.len());
        assert!(mine == theirs);
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(BetsFile::open(Path::new("/nonexistent/agency.csv"), 1).is_err());
    }
}
