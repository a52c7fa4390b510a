//! The domain: a bet, the rules that make it valid, and the draw.
//!
//! Validation lives here, not in the client or the server, so that both sides
//! agree on what a valid bet is: the client skips a row the server would
//! reject, and the server still checks everything it receives.

use chrono::{Datelike, NaiveDate};
use std::fmt;

/// The winning number of the draw.
pub const WINNING_NUMBER: u16 = 7574;

/// Longest first or last name accepted, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest document accepted, in digits.
pub const MAX_DOCUMENT_DIGITS: usize = 10;

/// Highest number a bet can be placed on.
pub const MAX_NUMBER: u16 = 9999;

/// One bet placed by a person at an agency.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bet {
    /// Agency (1-based) that took the bet.
    pub agency: u32,
    pub first_name: String,
    pub last_name: String,
    /// National ID: 1 to 10 ASCII digits, kept as text so leading zeros survive.
    pub document: String,
    pub birthdate: NaiveDate,
    pub number: u16,
}

/// A bet whose text fields are borrowed from a buffer (a frame payload, a
/// CSV record): what the hot paths validate and encode without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BetRef<'a> {
    pub agency: u32,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub document: &'a str,
    pub birthdate: NaiveDate,
    pub number: u16,
}

impl BetRef<'_> {
    /// Checks every rule. No rule reads a clock: a bet valid once is valid
    /// forever, on every machine (see [`birthdate_in_range`]).
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), InvalidBet> {
        validate_name("first_name", self.first_name)?;
        validate_name("last_name", self.last_name)?;
        validate_document(self.document)?;
        if !birthdate_in_range(self.birthdate) {
            return Err(InvalidBet::BirthdateOutOfRange { date: self.birthdate });
        }
        if self.number > MAX_NUMBER {
            return Err(InvalidBet::BadNumber { value: self.number.to_string() });
        }
        Ok(())
    }

    /// An owned copy.
    pub fn to_bet(&self) -> Bet {
        Bet {
            agency: self.agency,
            first_name: self.first_name.to_owned(),
            last_name: self.last_name.to_owned(),
            document: self.document.to_owned(),
            birthdate: self.birthdate,
            number: self.number,
        }
    }

    /// Whether the bet wins the draw.
    pub fn has_won(&self) -> bool {
        self.number == WINNING_NUMBER
    }
}

impl<'a> From<&'a Bet> for BetRef<'a> {
    fn from(bet: &'a Bet) -> Self {
        bet.as_ref()
    }
}

impl<'a> From<&BetRef<'a>> for BetRef<'a> {
    fn from(bet: &BetRef<'a>) -> Self {
        *bet
    }
}

/// Why a bet is not valid. The `Display` text is meant for logs and for the
/// ERROR message sent to an agency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidBet {
    EmptyName { field: &'static str },
    NameTooLong { field: &'static str, bytes: usize },
    NameNotUtf8 { field: &'static str },
    NameHasNul { field: &'static str },
    BadDocument { value: String },
    BadBirthdate { value: String },
    BirthdateOutOfRange { date: NaiveDate },
    BadNumber { value: String },
}

impl fmt::Display for InvalidBet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidBet::EmptyName { field } => write!(f, "{field} is empty"),
            InvalidBet::NameTooLong { field, bytes } => {
                write!(f, "{field} is {bytes} bytes long, at most {MAX_NAME_BYTES} allowed")
            }
            InvalidBet::NameNotUtf8 { field } => write!(f, "{field} is not valid UTF-8"),
            InvalidBet::NameHasNul { field } => write!(f, "{field} contains a NUL character"),
            InvalidBet::BadDocument { value } => {
                write!(f, "document {value:?} must be 1 to {MAX_DOCUMENT_DIGITS} digits")
            }
            InvalidBet::BadBirthdate { value } => {
                write!(f, "birthdate {value:?} is not a calendar date YYYY-MM-DD")
            }
            InvalidBet::BirthdateOutOfRange { date } => {
                write!(f, "birthdate {date} is outside 1900-01-01..=9999-12-31")
            }
            InvalidBet::BadNumber { value } => {
                write!(f, "number {value:?} must be an integer in 0..={MAX_NUMBER}")
            }
        }
    }
}

impl std::error::Error for InvalidBet {}

impl Bet {
    /// Builds a bet from text fields (a CSV row or environment variables),
    /// validating every field.
    ///
    /// # Errors
    /// The first field that breaks a rule, with the offending value.
    pub fn parse(
        agency: u32,
        first_name: &str,
        last_name: &str,
        document: &str,
        birthdate: &str,
        number: &str,
    ) -> Result<Bet, InvalidBet> {
        BetRef::parse(agency, first_name, last_name, document, birthdate, number)
            .map(|b| b.to_bet())
    }

    /// A borrowed view of this bet.
    pub fn as_ref(&self) -> BetRef<'_> {
        BetRef {
            agency: self.agency,
            first_name: &self.first_name,
            last_name: &self.last_name,
            document: &self.document,
            birthdate: self.birthdate,
            number: self.number,
        }
    }
}

impl<'a> BetRef<'a> {
    /// Builds a validated bet from text fields without copying them.
    ///
    /// # Errors
    /// The first field that breaks a rule, with the offending value.
    pub fn parse(
        agency: u32,
        first_name: &'a str,
        last_name: &'a str,
        document: &'a str,
        birthdate: &str,
        number: &str,
    ) -> Result<BetRef<'a>, InvalidBet> {
        Self::parse_fields(
            agency,
            first_name,
            last_name,
            document,
            birthdate.as_bytes(),
            number.as_bytes(),
        )
    }

    /// As [`BetRef::parse`], with the birthdate and number as raw bytes
    /// (they must be ASCII digits anyway, so no UTF-8 check is spent on
    /// them).
    ///
    /// # Errors
    /// The first field that breaks a rule, with the offending value.
    pub fn parse_fields(
        agency: u32,
        first_name: &'a str,
        last_name: &'a str,
        document: &'a str,
        birthdate: &[u8],
        number: &[u8],
    ) -> Result<BetRef<'a>, InvalidBet> {
        let bet = BetRef {
            agency,
            first_name,
            last_name,
            document,
            birthdate: parse_birthdate(birthdate)?,
            number: parse_number(number)?,
        };
        bet.validate()?;
        Ok(bet)
    }
}

/// Whether the bet wins the draw.
pub fn has_won(bet: &Bet) -> bool {
    bet.as_ref().has_won()
}

/// A first or last name: non-empty, at most [`MAX_NAME_BYTES`] bytes, no
/// NUL (valid UTF-8, but no SQL database stores it in text: on the
/// PostgreSQL backend it failed every commit its batch was in, forever).
pub fn validate_name(field: &'static str, name: &str) -> Result<(), InvalidBet> {
    if name.is_empty() {
        return Err(InvalidBet::EmptyName { field });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(InvalidBet::NameTooLong { field, bytes: name.len() });
    }
    if memchr::memchr(0, name.as_bytes()).is_some() {
        return Err(InvalidBet::NameHasNul { field });
    }
    Ok(())
}

/// A document: 1 to [`MAX_DOCUMENT_DIGITS`] ASCII digits.
pub fn validate_document(document: &str) -> Result<(), InvalidBet> {
    let ok = !document.is_empty()
        && document.len() <= MAX_DOCUMENT_DIGITS
        && document.bytes().all(|b| b.is_ascii_digit());
    if ok { Ok(()) } else { Err(InvalidBet::BadDocument { value: document.to_owned() }) }
}

/// The birthdate rule: a calendar date from 1900-01-01 to 9999-12-31 (what
/// `YYYY-MM-DD` can write). It names no "today" on purpose. An agency's
/// bets are numbered by their place among its file's valid rows, and that
/// numbering is what makes resends exactly-once; a rule that read a clock
/// (say, "not born in the future") would make a row invalid on Monday and
/// valid on Wednesday, shift every later position of an ingest resumed in
/// between, and store bets twice. It would also let two machines whose
/// clocks differ by a day disagree on a bet (the server refusing, as fatal,
/// a bet its agency found valid), and a server whose clock went back refuse
/// its own storage. Whether a birthdate is plausible is the agency's
/// business, checked where the bet is taken.
pub fn birthdate_in_range(date: NaiveDate) -> bool {
    (1900..=9999).contains(&date.year())
}

/// Parses `YYYY-MM-DD` strictly: exactly ten characters, a real calendar
/// day. (Whether it is in range is [`BetRef::validate`]'s business.)
pub fn parse_birthdate(text: &[u8]) -> Result<NaiveDate, InvalidBet> {
    let bad = || InvalidBet::BadBirthdate { value: String::from_utf8_lossy(text).into_owned() };
    // Fixed width, digits only, straight from the bytes (chrono's parser
    // would accept "1999-1-2" and is several times slower than this).
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return Err(bad());
    }
    let (Some(y), Some(m), Some(d)) =
        (digits(&text[0..4]), digits(&text[5..7]), digits(&text[8..10]))
    else {
        return Err(bad());
    };
    NaiveDate::from_ymd_opt(y as i32, m, d).ok_or_else(bad)
}

/// Parses a bet number: 1 to 4 decimal digits (0..=9999).
pub fn parse_number(text: &[u8]) -> Result<u16, InvalidBet> {
    // Length first: `digits` of a long field would overflow.
    match (1..=4).contains(&text.len()).then(|| digits(text)).flatten() {
        Some(n) => Ok(n as u16),
        None => Err(InvalidBet::BadNumber { value: String::from_utf8_lossy(text).into_owned() }),
    }
}

/// The value of a run of ASCII digits (`None` if any byte is not one).
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Bet {
        Bet::parse(1, "Ana", "Pérez", "30904465", "1999-03-17", "7574").expect("valid bet")
    }

    #[test]
    fn parses_a_valid_bet() {
        let bet = ok();
        assert_eq!(bet.birthdate, NaiveDate::from_ymd_opt(1999, 3, 17).unwrap());
        assert_eq!(bet.number, 7574);
        assert!(has_won(&bet));
    }

    #[test]
    fn only_7574_wins() {
        let mut bet = ok();
        bet.number = 7573;
        assert!(!has_won(&bet));
    }

    #[test]
    fn rejects_each_bad_field_with_a_precise_reason() {
        let cases = [
            (("", "P", "1", "2000-01-01", "1"), "first_name is empty"),
            (("A", "", "1", "2000-01-01", "1"), "last_name is empty"),
            (("A\0B", "P", "1", "2000-01-01", "1"), "first_name contains a NUL"),
            (("A", "\0", "1", "2000-01-01", "1"), "last_name contains a NUL"),
            (("A", "P", "", "2000-01-01", "1"), "document \"\" must be"),
            (("A", "P", "12345678901", "2000-01-01", "1"), "must be 1 to 10"),
            (("A", "P", "12a", "2000-01-01", "1"), "document \"12a\""),
            (("A", "P", "1", "2000-02-30", "1"), "not a calendar date"),
            (("A", "P", "1", "2000-1-1", "1"), "not a calendar date"),
            (("A", "P", "1", "2000-01-1x", "1"), "not a calendar date"),
            (("A", "P", "1", "+200-01-01", "1"), "not a calendar date"),
            (("A", "P", "1", "1899-12-31", "1"), "outside 1900-01-01"),
            (("A", "P", "1", "99999-01-01", "1"), "not a calendar date"),
            (("A", "P", "1", "2000-01-01", "10000"), "number \"10000\""),
            (("A", "P", "1", "2000-01-01", "-1"), "number \"-1\""),
            (("A", "P", "1", "2000-01-01", ""), "number \"\""),
            (("A", "P", "1", "2000-01-01", "99999999999999"), "number \"99999999999999\""),
        ];
        for ((f, l, d, b, n), want) in cases {
            let err = Bet::parse(1, f, l, d, b, n).expect_err(want);
            assert!(err.to_string().contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn name_length_is_counted_in_bytes() {
        let exactly = "ñ".repeat(127) + "a"; // 255 bytes
        assert!(Bet::parse(1, &exactly, "P", "1", "2000-01-01", "0").is_ok());
        let over = "ñ".repeat(128); // 256 bytes
        let err = Bet::parse(1, &over, "P", "1", "2000-01-01", "0").unwrap_err();
        assert_eq!(err, InvalidBet::NameTooLong { field: "first_name", bytes: 256 });
    }

    #[test]
    fn accepts_the_edges() {
        assert!(Bet::parse(1, "A", "B", "0", "1900-01-01", "0").is_ok());
        assert!(Bet::parse(1, "A", "B", "9999999999", "2000-02-29", "9999").is_ok());
        assert!(Bet::parse(1, "A", "B", "0", "9999-12-31", "0").is_ok());
    }

    /// Validity reads no clock: a birthdate after today, and any date a
    /// clock could be set to, is as valid as it will be tomorrow.
    #[test]
    fn validity_does_not_depend_on_the_date() {
        let tomorrow = chrono::Utc::now().date_naive() + chrono::Days::new(1);
        let text = tomorrow.format("%Y-%m-%d").to_string();
        assert!(Bet::parse(1, "A", "B", "0", &text, "0").is_ok());
        assert!(Bet::parse(1, "A", "B", "0", "2999-01-01", "0").is_ok());
        let far = BetRef {
            agency: 1,
            first_name: "A",
            last_name: "B",
            document: "0",
            birthdate: NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap(),
            number: 0,
        };
        assert_eq!(far.validate(), Err(InvalidBet::BirthdateOutOfRange { date: far.birthdate }));
    }
}
