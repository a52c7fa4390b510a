//! Frames → messages: [`Message::decode`], and [`BatchView::decode`], the
//! same BATCH decoder without copying the bets' strings.

use super::batch::{Batch, BatchView};
use super::error_code::ErrorCode;
use super::types::{Message, kind};
use crate::auth;
use crate::bet::{BetRef, InvalidBet};
use crate::framing::Frame;
use chrono::NaiveDate;
use std::fmt;

/// Why a payload is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    UnknownType(u8),
    Truncated { field: &'static str },
    InvalidUtf8 { field: &'static str },
    TrailingBytes { extra: usize },
    UnknownErrorCode(u16),
    InvalidBet(InvalidBet),
}

impl DecodeError {
    /// The ERROR code a server answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownType(_) => ErrorCode::UnknownType,
            DecodeError::Truncated { .. } => ErrorCode::Truncated,
            DecodeError::InvalidUtf8 { .. } => ErrorCode::InvalidUtf8,
            DecodeError::TrailingBytes { .. } => ErrorCode::TrailingBytes,
            DecodeError::UnknownErrorCode(_) => ErrorCode::UnexpectedMessage,
            DecodeError::InvalidBet(_) => ErrorCode::InvalidBet,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            DecodeError::Truncated { field } => write!(f, "payload ends before field {field}"),
            DecodeError::InvalidUtf8 { field } => write!(f, "field {field} is not valid UTF-8"),
            DecodeError::TrailingBytes { extra } => {
                write!(f, "{extra} unexpected bytes after the last field")
            }
            DecodeError::UnknownErrorCode(c) => write!(f, "unknown error code {c}"),
            DecodeError::InvalidBet(e) => write!(f, "invalid bet: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Message {
    /// Decodes a frame's payload.
    ///
    /// # Errors
    /// Unknown types, payloads too short or too long for their fields,
    /// invalid UTF-8, and impossible birthdates.
    pub fn decode(frame_kind: u8, payload: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Cursor { buf: payload };
        let msg = match frame_kind {
            kind::HELLO => Message::Hello { version: r.u8("version")?, agency: r.u32("agency")? },
            kind::HELLO_OK => {
                Message::HelloOk { next_seq: r.u64("next_seq")?, done: r.u8("done")? != 0 }
            }
            kind::BATCH => Message::Batch(decode_batch(&mut r)?),
            kind::ACK => Message::Ack { next_seq: r.u64("next_seq")? },
            kind::ERROR => {
                let n = r.u16("code")?;
                let code = ErrorCode::from_u16(n).ok_or(DecodeError::UnknownErrorCode(n))?;
                let len = usize::from(r.u16("message length")?);
                let message = r.str(len, "message")?.to_owned();
                Message::Error { code, message }
            }
            kind::DONE => Message::Done { total: r.u64("total")? },
            kind::WINNERS_QUERY => Message::WinnersQuery { offset: r.u32("offset")? },
            kind::WINNERS => {
                let total = r.u32("total")?;
                let offset = r.u32("offset")?;
                let count = r.u16("count")?;
                let mut documents = Vec::with_capacity(usize::from(count).min(payload.len()));
                for _ in 0..count {
                    documents.push(r.str8("document")?.to_owned());
                }
                Message::Winners { total, offset, documents }
            }
            kind::NOT_READY => {
                Message::NotReady { finished: r.u32("finished")?, expected: r.u32("expected")? }
            }
            kind::ECHO => Message::Echo(r.take(r.buf.len(), "bytes")?.to_vec()),
            kind::BYE => Message::Bye,
            kind::CHALLENGE => Message::Challenge { nonce: r.array::<{ auth::LEN }>("nonce")? },
            kind::AUTH => Message::Auth { tag: r.array::<{ auth::LEN }>("tag")? },
            other => return Err(DecodeError::UnknownType(other)),
        };
        if !r.buf.is_empty() {
            return Err(DecodeError::TrailingBytes { extra: r.buf.len() });
        }
        Ok(msg)
    }

    /// Decodes a frame.
    ///
    /// # Errors
    /// As [`Message::decode`].
    pub fn from_frame(frame: &Frame) -> Result<Message, DecodeError> {
        Message::decode(frame.kind, &frame.payload)
    }
}

impl<'a> BatchView<'a> {
    /// Decodes a BATCH payload.
    ///
    /// # Errors
    /// As [`Message::decode`] for a BATCH.
    pub fn decode(payload: &'a [u8]) -> Result<BatchView<'a>, DecodeError> {
        let mut r = Cursor { buf: payload };
        let view = decode_batch_view(&mut r)?;
        if !r.buf.is_empty() {
            return Err(DecodeError::TrailingBytes { extra: r.buf.len() });
        }
        Ok(view)
    }
}

fn decode_batch(r: &mut Cursor<'_>) -> Result<Batch, DecodeError> {
    decode_batch_view(r).map(|view| view.to_batch())
}

fn decode_batch_view<'a>(r: &mut Cursor<'a>) -> Result<BatchView<'a>, DecodeError> {
    let agency = r.u32("agency")?;
    let first_seq = r.u64("first_seq")?;
    let count = r.u16("count")?;
    // Never trust a count for an allocation: each bet takes >= 9 bytes.
    let mut bets = Vec::with_capacity(usize::from(count).min(r.buf.len() / 9));
    for _ in 0..count {
        let (first_name, last_name, document) = r.bet_strings()?;
        let year = r.u16("birthdate")?;
        let month = r.u8("birthdate")?;
        let day = r.u8("birthdate")?;
        let number = r.u16("number")?;
        let birthdate = NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day))
            .ok_or_else(|| {
                DecodeError::InvalidBet(InvalidBet::BadBirthdate {
                    value: format!("{year:04}-{month:02}-{day:02}"),
                })
            })?;
        bets.push(BetRef { agency, first_name, last_name, document, birthdate, number });
    }
    Ok(BatchView { agency, first_seq, bets })
}

/// Reads fields off the front of a payload.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn str(&mut self, len: usize, field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(len, field)?).map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    fn str8(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u8(field)?);
        self.str(len, field)
    }

    /// A bet's three strings (first name, last name, document). They sit
    /// next to each other with their u8 lengths between them; when those
    /// lengths are below 128 (ASCII bytes themselves) the whole run is
    /// checked as UTF-8 at once instead of three times, the largest cost of
    /// decoding a batch. Any failure is located field by field.
    fn bet_strings(&mut self) -> Result<(&'a str, &'a str, &'a str), DecodeError> {
        let b = self.buf;
        let l1 = usize::from(*b.first().unwrap_or(&0));
        let l2 = usize::from(*b.get(1 + l1).unwrap_or(&0));
        let end2 = 2 + l1 + l2;
        let l3 = usize::from(*b.get(end2).unwrap_or(&0));
        let end = end2 + 1 + l3;
        if end <= b.len()
            && l1 < 0x80
            && l2 < 0x80
            && l3 < 0x80
            && let Ok(run) = std::str::from_utf8(&b[..end])
            && let (Some(first), Some(last), Some(doc)) =
                (run.get(1..1 + l1), run.get(2 + l1..end2), run.get(end2 + 1..end))
        {
            self.buf = &b[end..];
            return Ok((first, last, doc));
        }
        Ok((self.str8("first_name")?, self.str8("last_name")?, self.str8("document")?))
    }
}
