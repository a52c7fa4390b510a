//! Messages: the typed requests and responses carried in frame payloads,
//! with their encoding and decoding side by side.
//!
//! All integers are big-endian. Strings are length-prefixed UTF-8 (u8 length
//! for names and documents, u16 for error texts), so any character,
//! including `,` `|` and newlines, travels safely. The byte-level tables are
//! in `docs/PROTOCOL.md`.

use crate::auth::{self, Nonce, Tag};
use crate::bet::{Bet, BetRef, InvalidBet};
use crate::framing::{self, Frame, FrameError, MAX_PAYLOAD_LEN};
use chrono::{Datelike, NaiveDate};
use std::fmt;

/// Version carried in HELLO; a server refuses versions it does not speak.
pub const PROTOCOL_VERSION: u8 = 1;

/// Frame type bytes.
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const HELLO_OK: u8 = 0x02;
    pub const BATCH: u8 = 0x03;
    pub const ACK: u8 = 0x04;
    pub const ERROR: u8 = 0x05;
    pub const DONE: u8 = 0x06;
    pub const WINNERS_QUERY: u8 = 0x07;
    pub const WINNERS: u8 = 0x08;
    pub const NOT_READY: u8 = 0x09;
    pub const ECHO: u8 = 0x0A;
    pub const BYE: u8 = 0x0B;
    pub const CHALLENGE: u8 = 0x0C;
    pub const AUTH: u8 = 0x0D;
}

/// Bytes of a BATCH payload before the first bet: agency (4), first
/// sequence number (8), count (2).
pub const BATCH_HEADER_LEN: usize = 14;
/// Bytes of a WINNERS payload before the first document: total (4),
/// offset (4), count (2).
pub const WINNERS_HEADER_LEN: usize = 10;

/// Error codes carried by ERROR. Each names one way a request can fail, so a
/// peer (or a test) can tell them apart without parsing the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame header announced more than the size limit.
    FrameTooLarge = 1,
    /// The type byte is not a known message.
    UnknownType = 2,
    /// The payload ended before a field it announces.
    Truncated = 3,
    /// A string field is not valid UTF-8.
    InvalidUtf8 = 4,
    /// The payload has bytes after its last field (wrong field count).
    TrailingBytes = 5,
    /// BATCH, DONE or WINNERS? before HELLO.
    HelloRequired = 6,
    /// A second HELLO on the same connection.
    DuplicateHello = 7,
    /// Agency id outside 1..=SERVER_AGENCIES.
    UnknownAgency = 8,
    /// Protocol version not spoken by the server.
    UnsupportedVersion = 9,
    /// A BATCH names an agency other than the one that said HELLO.
    AgencyMismatch = 10,
    /// A bet in the batch breaks a rule; nothing of the batch was stored.
    InvalidBet = 11,
    /// The batch does not continue the agency's sequence (a gap).
    Sequence = 12,
    /// DONE sent twice on one connection.
    DoneTwice = 13,
    /// DONE's total differs from what the server holds for the agency.
    DoneMismatch = 14,
    /// A batch after the agency said DONE.
    AlreadyDone = 15,
    /// The server could not store the batch durably; nothing was stored.
    Storage = 16,
    /// Too many connections; try again later.
    Busy = 17,
    /// The server is shutting down; try again later.
    ShuttingDown = 18,
    /// A message only the server sends (or only the client) came the wrong way.
    UnexpectedMessage = 19,
    /// The connection was idle or a frame took too long to arrive.
    Timeout = 20,
    /// A WINNERS? offset beyond the agency's list.
    BadOffset = 21,
    /// AUTH did not prove the key of the agency claimed in HELLO, or a
    /// request came between HELLO and a successful AUTH.
    Unauthorized = 22,
    /// A newer connection authenticated as the same agency: an agency has
    /// one session at a time, and the newest wins.
    SessionReplaced = 23,
}

impl ErrorCode {
    const ALL: [ErrorCode; 23] = [
        ErrorCode::FrameTooLarge,
        ErrorCode::UnknownType,
        ErrorCode::Truncated,
        ErrorCode::InvalidUtf8,
        ErrorCode::TrailingBytes,
        ErrorCode::HelloRequired,
        ErrorCode::DuplicateHello,
        ErrorCode::UnknownAgency,
        ErrorCode::UnsupportedVersion,
        ErrorCode::AgencyMismatch,
        ErrorCode::InvalidBet,
        ErrorCode::Sequence,
        ErrorCode::DoneTwice,
        ErrorCode::DoneMismatch,
        ErrorCode::AlreadyDone,
        ErrorCode::Storage,
        ErrorCode::Busy,
        ErrorCode::ShuttingDown,
        ErrorCode::UnexpectedMessage,
        ErrorCode::Timeout,
        ErrorCode::BadOffset,
        ErrorCode::Unauthorized,
        ErrorCode::SessionReplaced,
    ];

    /// The code for a number on the wire, if it is one we know.
    pub fn from_u16(n: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| *c as u16 == n)
    }

    /// A short snake_case name for logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Truncated => "truncated",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::TrailingBytes => "trailing_bytes",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::DuplicateHello => "duplicate_hello",
            ErrorCode::UnknownAgency => "unknown_agency",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::AgencyMismatch => "agency_mismatch",
            ErrorCode::InvalidBet => "invalid_bet",
            ErrorCode::Sequence => "sequence",
            ErrorCode::DoneTwice => "done_twice",
            ErrorCode::DoneMismatch => "done_mismatch",
            ErrorCode::AlreadyDone => "already_done",
            ErrorCode::Storage => "storage",
            ErrorCode::Busy => "busy",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::UnexpectedMessage => "unexpected_message",
            ErrorCode::Timeout => "timeout",
            ErrorCode::BadOffset => "bad_offset",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::SessionReplaced => "session_replaced",
        }
    }

    /// Whether a client should reconnect and try again (the request itself
    /// was fine; the server could not take it now).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Storage
                | ErrorCode::Busy
                | ErrorCode::ShuttingDown
                | ErrorCode::Sequence
                | ErrorCode::Timeout
        )
    }
}

/// A batch of bets from one agency. `first_seq` is the position of the
/// first bet in the agency's stream (0-based), which makes a resent batch
/// recognisable: the server stores each position once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub agency: u32,
    pub first_seq: u64,
    pub bets: Vec<Bet>,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client → server, first message: who is speaking.
    Hello { version: u8, agency: u32 },
    /// Server → client: how many of the agency's bets are already accepted
    /// (where to resume) and whether its DONE is recorded.
    HelloOk { next_seq: u64, done: bool },
    /// Client → server: bets to store.
    Batch(Batch),
    /// Server → client: BATCH or DONE durably recorded; `next_seq` is the
    /// agency's position afterwards.
    Ack { next_seq: u64 },
    /// Either way: the request failed.
    Error { code: ErrorCode, message: String },
    /// Client → server: the agency has sent all `total` of its bets.
    Done { total: u64 },
    /// Client → server: the agency's winners, from position `offset`.
    WinnersQuery { offset: u32 },
    /// Server → client: `documents` are winners `offset..offset+len` of `total`.
    Winners {
        total: u32,
        offset: u32,
        documents: Vec<String>,
    },
    /// Server → client: the draw has not happened yet.
    NotReady { finished: u32, expected: u32 },
    /// Either way: the server answers with the same bytes (smoke test).
    Echo(Vec<u8>),
    /// Client → server: closing; no answer.
    Bye,
    /// Server → client, after HELLO when agencies must authenticate: a
    /// fresh nonce to answer with AUTH.
    Challenge { nonce: Nonce },
    /// Client → server: HMAC-SHA256(agency key, nonce ‖ agency ‖ version),
    /// see [`crate::auth`].
    Auth { tag: Tag },
}

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

/// Why a message could not be encoded.
#[derive(Debug)]
pub enum EncodeError {
    /// A string longer than its length prefix can say.
    FieldTooLong { field: &'static str, len: usize },
    /// The message does not fit in one frame.
    Frame(FrameError),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong { field, len } => {
                write!(f, "field {field} is {len} bytes, too long to encode")
            }
            EncodeError::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EncodeError {}

impl From<FrameError> for EncodeError {
    fn from(e: FrameError) -> Self {
        EncodeError::Frame(e)
    }
}

impl Message {
    /// The frame type byte of this message.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello { .. } => kind::HELLO,
            Message::HelloOk { .. } => kind::HELLO_OK,
            Message::Batch(_) => kind::BATCH,
            Message::Ack { .. } => kind::ACK,
            Message::Error { .. } => kind::ERROR,
            Message::Done { .. } => kind::DONE,
            Message::WinnersQuery { .. } => kind::WINNERS_QUERY,
            Message::Winners { .. } => kind::WINNERS,
            Message::NotReady { .. } => kind::NOT_READY,
            Message::Echo(_) => kind::ECHO,
            Message::Bye => kind::BYE,
            Message::Challenge { .. } => kind::CHALLENGE,
            Message::Auth { .. } => kind::AUTH,
        }
    }

    /// Appends this message, framed, to `out`.
    ///
    /// # Errors
    /// A field too long for its prefix, or a message larger than a frame.
    /// `out` is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut p = Vec::new();
        match self {
            Message::Hello { version, agency } => {
                p.push(*version);
                p.extend_from_slice(&agency.to_be_bytes());
            }
            Message::HelloOk { next_seq, done } => {
                p.extend_from_slice(&next_seq.to_be_bytes());
                p.push(u8::from(*done));
            }
            Message::Batch(batch) => {
                let mut enc = BatchEncoder::new(batch.agency, batch.first_seq);
                for bet in &batch.bets {
                    if !enc.push(bet)? {
                        return Err(EncodeError::Frame(FrameError::TooLarge {
                            len: enc.len() + bet_wire_len(bet),
                            max: framing::MAX_FRAME_LEN,
                        }));
                    }
                }
                p = enc.into_payload();
            }
            Message::Ack { next_seq } => p.extend_from_slice(&next_seq.to_be_bytes()),
            Message::Error { code, message } => {
                p.extend_from_slice(&(*code as u16).to_be_bytes());
                // An error text is advisory: cut it (on a char boundary) to fit.
                let mut end = message.len().min(MAX_PAYLOAD_LEN - 4);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                p.extend_from_slice(&(end as u16).to_be_bytes());
                p.extend_from_slice(&message.as_bytes()[..end]);
            }
            Message::Done { total } => p.extend_from_slice(&total.to_be_bytes()),
            Message::WinnersQuery { offset } => p.extend_from_slice(&offset.to_be_bytes()),
            Message::Winners {
                total,
                offset,
                documents,
            } => {
                p.extend_from_slice(&total.to_be_bytes());
                p.extend_from_slice(&offset.to_be_bytes());
                let count =
                    u16::try_from(documents.len()).map_err(|_| EncodeError::FieldTooLong {
                        field: "documents",
                        len: documents.len(),
                    })?;
                p.extend_from_slice(&count.to_be_bytes());
                for doc in documents {
                    put_str8(&mut p, "document", doc)?;
                }
            }
            Message::NotReady { finished, expected } => {
                p.extend_from_slice(&finished.to_be_bytes());
                p.extend_from_slice(&expected.to_be_bytes());
            }
            Message::Echo(bytes) => p.extend_from_slice(bytes),
            Message::Bye => {}
            Message::Challenge { nonce } => p.extend_from_slice(nonce),
            Message::Auth { tag } => p.extend_from_slice(tag),
        }
        framing::encode_into(out, self.kind(), &p)?;
        Ok(())
    }

    /// This message as one encoded frame.
    ///
    /// # Errors
    /// As [`Message::encode_into`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes a frame's payload.
    ///
    /// # Errors
    /// Unknown types, payloads too short or too long for their fields,
    /// invalid UTF-8, and impossible birthdates.
    pub fn decode(frame_kind: u8, payload: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Cursor { buf: payload };
        let msg = match frame_kind {
            kind::HELLO => Message::Hello {
                version: r.u8("version")?,
                agency: r.u32("agency")?,
            },
            kind::HELLO_OK => Message::HelloOk {
                next_seq: r.u64("next_seq")?,
                done: r.u8("done")? != 0,
            },
            kind::BATCH => Message::Batch(decode_batch(&mut r)?),
            kind::ACK => Message::Ack {
                next_seq: r.u64("next_seq")?,
            },
            kind::ERROR => {
                let n = r.u16("code")?;
                let code = ErrorCode::from_u16(n).ok_or(DecodeError::UnknownErrorCode(n))?;
                let len = usize::from(r.u16("message length")?);
                let message = r.str(len, "message")?.to_owned();
                Message::Error { code, message }
            }
            kind::DONE => Message::Done {
                total: r.u64("total")?,
            },
            kind::WINNERS_QUERY => Message::WinnersQuery {
                offset: r.u32("offset")?,
            },
            kind::WINNERS => {
                let total = r.u32("total")?;
                let offset = r.u32("offset")?;
                let count = r.u16("count")?;
                let mut documents = Vec::with_capacity(usize::from(count).min(payload.len()));
                for _ in 0..count {
                    documents.push(r.str8("document")?.to_owned());
                }
                Message::Winners {
                    total,
                    offset,
                    documents,
                }
            }
            kind::NOT_READY => Message::NotReady {
                finished: r.u32("finished")?,
                expected: r.u32("expected")?,
            },
            kind::ECHO => Message::Echo(r.take(r.buf.len(), "bytes")?.to_vec()),
            kind::BYE => Message::Bye,
            kind::CHALLENGE => Message::Challenge {
                nonce: r.array::<{ auth::LEN }>("nonce")?,
            },
            kind::AUTH => Message::Auth {
                tag: r.array::<{ auth::LEN }>("tag")?,
            },
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
        bets.push(BetRef {
            agency,
            first_name,
            last_name,
            document,
            birthdate,
            number,
        });
    }
    Ok(BatchView {
        agency,
        first_seq,
        bets,
    })
}

/// A BATCH payload decoded without copying: the bets borrow the payload.
/// The server's hot path; [`Message::decode`] builds an owned [`Batch`]
/// from the same decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchView<'a> {
    pub agency: u32,
    pub first_seq: u64,
    pub bets: Vec<BetRef<'a>>,
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

    /// Checks every bet with the shared rules.
    ///
    /// # Errors
    /// The position in the batch and the reason of the first invalid bet.
    pub fn validate(&self) -> Result<(), (usize, InvalidBet)> {
        for (i, b) in self.bets.iter().enumerate() {
            b.validate().map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// An owned copy.
    pub fn to_batch(&self) -> Batch {
        Batch {
            agency: self.agency,
            first_seq: self.first_seq,
            bets: self.bets.iter().map(BetRef::to_bet).collect(),
        }
    }
}

impl Batch {
    /// A borrowed view of this batch.
    pub fn view(&self) -> BatchView<'_> {
        BatchView {
            agency: self.agency,
            first_seq: self.first_seq,
            bets: self.bets.iter().map(Bet::as_ref).collect(),
        }
    }
}

/// Bytes a bet takes inside a BATCH payload.
pub fn bet_wire_len<'b>(bet: impl Into<BetRef<'b>>) -> usize {
    let bet = bet.into();
    3 + bet.first_name.len() + bet.last_name.len() + bet.document.len() + 4 + 2
}

/// Builds a BATCH payload bet by bet, refusing the bet that would make the
/// frame exceed [`framing::MAX_FRAME_LEN`], so a client can cut batches by
/// size as well as by count.
#[derive(Debug)]
pub struct BatchEncoder {
    payload: Vec<u8>,
    count: u16,
}

impl BatchEncoder {
    /// An empty batch for `agency` starting at position `first_seq`.
    pub fn new(agency: u32, first_seq: u64) -> Self {
        let mut payload = Vec::with_capacity(MAX_PAYLOAD_LEN);
        payload.extend_from_slice(&agency.to_be_bytes());
        payload.extend_from_slice(&first_seq.to_be_bytes());
        payload.extend_from_slice(&0u16.to_be_bytes());
        BatchEncoder { payload, count: 0 }
    }

    /// Adds `bet` if it fits; `Ok(false)` when the frame would overflow.
    ///
    /// # Errors
    /// A field longer than its u8 length prefix (an unvalidated bet).
    pub fn push<'b>(&mut self, bet: impl Into<BetRef<'b>>) -> Result<bool, EncodeError> {
        let bet = bet.into();
        if self.payload.len() + bet_wire_len(bet) > MAX_PAYLOAD_LEN || self.count == u16::MAX {
            return Ok(false);
        }
        let mark = self.payload.len();
        let pushed = put_str8(&mut self.payload, "first_name", bet.first_name)
            .and_then(|()| put_str8(&mut self.payload, "last_name", bet.last_name))
            .and_then(|()| put_str8(&mut self.payload, "document", bet.document));
        if let Err(e) = pushed {
            self.payload.truncate(mark);
            return Err(e);
        }
        // Dates come from NaiveDate; validated bets have 1900 <= year <= 9999.
        let year = u16::try_from(bet.birthdate.year()).unwrap_or(0);
        self.payload.extend_from_slice(&year.to_be_bytes());
        self.payload.push(bet.birthdate.month() as u8);
        self.payload.push(bet.birthdate.day() as u8);
        self.payload.extend_from_slice(&bet.number.to_be_bytes());
        self.count += 1;
        Ok(true)
    }

    /// Bets in the batch so far.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// Payload bytes so far.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether no bet has been added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished payload (count filled in).
    pub fn into_payload(mut self) -> Vec<u8> {
        self.payload[12..14].copy_from_slice(&self.count.to_be_bytes());
        self.payload
    }
}

fn put_str8(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), EncodeError> {
    let len = u8::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong {
        field,
        len: s.len(),
    })?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
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
            && let (Some(first), Some(last), Some(doc)) = (
                run.get(1..1 + l1),
                run.get(2 + l1..end2),
                run.get(end2 + 1..end),
            )
        {
            self.buf = &b[end..];
            return Ok((first, last, doc));
        }
        Ok((
            self.str8("first_name")?,
            self.str8("last_name")?,
            self.str8("document")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bet(first: &str, last: &str, doc: &str, number: u16) -> Bet {
        Bet {
            agency: 3,
            first_name: first.into(),
            last_name: last.into(),
            document: doc.into(),
            birthdate: NaiveDate::from_ymd_opt(1999, 3, 17).unwrap(),
            number,
        }
    }

    fn round_trip(msg: Message) {
        let bytes = msg.to_bytes().unwrap();
        let found = framing::decode(&bytes, framing::MAX_FRAME_LEN)
            .unwrap()
            .unwrap();
        assert_eq!(found.len, bytes.len());
        assert_eq!(Message::decode(found.kind, found.payload).unwrap(), msg);
    }

    #[test]
    fn every_message_round_trips() {
        let all = vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                agency: 7,
            },
            Message::HelloOk {
                next_seq: 1 << 40,
                done: true,
            },
            Message::Batch(Batch {
                agency: 3,
                first_seq: 12,
                bets: vec![
                    bet("José, \"Pepe\"", "Núñez|O'Brien", "0012", 7574),
                    bet("Ana\nMaría", "Li\r\n", "9999999999", 0),
                ],
            }),
            Message::Batch(Batch {
                agency: 3,
                first_seq: 0,
                bets: vec![],
            }),
            Message::Ack { next_seq: 99 },
            Message::Error {
                code: ErrorCode::InvalidBet,
                message: "bet 3: número inválido".into(),
            },
            Message::Done { total: 26936 },
            Message::WinnersQuery { offset: 5 },
            Message::Winners {
                total: 3,
                offset: 1,
                documents: vec!["30904465".into(), "1".into()],
            },
            Message::NotReady {
                finished: 2,
                expected: 5,
            },
            Message::Echo(b"\x00\xffhola".to_vec()),
            Message::Echo(vec![]),
            Message::Bye,
            Message::Challenge {
                nonce: std::array::from_fn(|i| i as u8),
            },
            Message::Auth { tag: [0xAB; 32] },
        ];
        for msg in all {
            round_trip(msg);
        }
    }

    #[test]
    fn every_error_code_round_trips() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
            round_trip(Message::Error {
                code,
                message: code.name().into(),
            });
        }
        assert_eq!(ErrorCode::from_u16(0), None);
    }

    #[test]
    fn hostile_payloads_are_decode_errors() {
        use DecodeError as D;
        assert_eq!(Message::decode(0x7F, &[]), Err(D::UnknownType(0x7F)));
        assert!(matches!(
            Message::decode(kind::HELLO, &[1, 0, 0]),
            Err(D::Truncated { field: "agency" })
        ));
        assert_eq!(
            Message::decode(kind::BYE, &[0]),
            Err(D::TrailingBytes { extra: 1 })
        );
        // A nonce or a tag is exactly 32 bytes.
        assert_eq!(
            Message::decode(kind::CHALLENGE, &[0; 31]),
            Err(D::Truncated { field: "nonce" })
        );
        assert_eq!(
            Message::decode(kind::AUTH, &[0; 33]),
            Err(D::TrailingBytes { extra: 1 })
        );
        assert_eq!(
            Message::decode(kind::AUTH, &[]),
            Err(D::Truncated { field: "tag" })
        );
        // A batch announcing 2 bets but carrying 1.
        let mut p = BatchEncoder::new(1, 0);
        p.push(&bet("A", "B", "1", 1)).unwrap();
        let mut payload = p.into_payload();
        payload[13] = 2;
        assert!(matches!(
            Message::decode(kind::BATCH, &payload),
            Err(D::Truncated { .. })
        ));
        // Invalid UTF-8 in a name.
        let mut p = BatchEncoder::new(1, 0);
        p.push(&bet("AB", "C", "1", 1)).unwrap();
        let mut payload = p.into_payload();
        payload[BATCH_HEADER_LEN + 1] = 0xFF;
        assert_eq!(
            Message::decode(kind::BATCH, &payload),
            Err(D::InvalidUtf8 {
                field: "first_name"
            })
        );
        // February 30th.
        let mut p = BatchEncoder::new(1, 0);
        p.push(&bet("A", "B", "1", 1)).unwrap();
        let mut payload = p.into_payload();
        let at = payload.len() - 4; // day byte sits before the u16 number
        payload[at - 1] = 2;
        payload[at] = 30;
        assert!(matches!(
            Message::decode(kind::BATCH, &payload),
            Err(D::InvalidBet(_))
        ));
        // A huge count with no bytes behind it allocates nothing and fails.
        let mut payload = BatchEncoder::new(1, 0).into_payload();
        payload[12] = 0xFF;
        payload[13] = 0xFF;
        assert!(matches!(
            Message::decode(kind::BATCH, &payload),
            Err(D::Truncated { .. })
        ));
    }

    #[test]
    fn batch_encoder_stops_at_the_frame_limit() {
        let long = "x".repeat(255);
        let b = bet(&long, &long, "1234567890", 1);
        let mut enc = BatchEncoder::new(1, 0);
        while enc.push(&b).unwrap() {}
        let n = enc.count();
        assert_eq!(n, (MAX_PAYLOAD_LEN - BATCH_HEADER_LEN) / bet_wire_len(&b));
        let frame = Message::Batch(Batch {
            agency: 1,
            first_seq: 0,
            bets: vec![b; n],
        })
        .to_bytes()
        .unwrap();
        assert!(frame.len() <= framing::MAX_FRAME_LEN);
    }

    #[test]
    fn an_oversize_field_is_refused_and_leaves_the_batch_intact() {
        let mut enc = BatchEncoder::new(1, 0);
        enc.push(&bet("A", "B", "1", 1)).unwrap();
        let before = enc.len();
        assert!(enc.push(&bet(&"x".repeat(256), "B", "1", 1)).is_err());
        assert_eq!(enc.len(), before);
        assert_eq!(enc.count(), 1);
    }

    #[test]
    fn long_error_texts_are_cut_to_fit_on_a_char_boundary() {
        let msg = Message::Error {
            code: ErrorCode::Storage,
            message: "ñ".repeat(10_000),
        };
        let bytes = msg.to_bytes().unwrap();
        assert!(bytes.len() <= framing::MAX_FRAME_LEN);
        let found = framing::decode(&bytes, framing::MAX_FRAME_LEN)
            .unwrap()
            .unwrap();
        assert!(matches!(
            Message::decode(found.kind, found.payload),
            Ok(Message::Error { .. })
        ));
    }

    #[test]
    fn validate_batch_names_the_bad_bet() {
        let mut b = Batch {
            agency: 1,
            first_seq: 0,
            bets: vec![bet("A", "B", "1", 1), bet("", "B", "1", 1)],
        };
        let (i, e) = b.view().validate().unwrap_err();
        assert_eq!(i, 1);
        assert_eq!(e.to_string(), "first_name is empty");
        b.bets.pop();
        assert!(b.view().validate().is_ok());
    }

    #[test]
    fn the_worked_example_of_docs_protocol_md() {
        let hello = Message::Hello {
            version: 1,
            agency: 3,
        };
        assert_eq!(hello.to_bytes().unwrap(), [1, 0, 5, 1, 0, 0, 0, 3]);
        let mut b = bet("Ana", "Paz", "123", 7574);
        b.birthdate = NaiveDate::from_ymd_opt(1990, 5, 6).unwrap();
        let batch = Message::Batch(Batch {
            agency: 3,
            first_seq: 0,
            bets: vec![b],
        });
        let want: Vec<u8> = [
            &[0x03, 0x00, 0x20][..],
            &[0, 0, 0, 3],
            &[0; 8],
            &[0, 1],
            b"\x03Ana\x03Paz\x03123",
            &[0x07, 0xC6, 0x05, 0x06, 0x1D, 0x96],
        ]
        .concat();
        assert_eq!(batch.to_bytes().unwrap(), want);
        assert_eq!(
            Message::Ack { next_seq: 1 }.to_bytes().unwrap(),
            [4, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            Message::Echo(b"hello".to_vec()).to_bytes().unwrap(),
            b"\x0a\x00\x05hello"
        );
    }

    /// The handshake of docs/PROTOCOL.md: secret 00 01 .. 1f, agency 3,
    /// nonce 20 21 .. 3f.
    #[test]
    fn the_worked_handshake_of_docs_protocol_md() {
        let secret = auth::Secret::from_hex(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        )
        .unwrap();
        let key = secret.agency_key(3);
        assert_eq!(
            key.to_hex(),
            "63bcf7d7cb3fab3edcf35fc6bae7701d164a2f8e55e0ef44ea903541e04dc446"
        );
        let nonce: Nonce = std::array::from_fn(|i| 0x20 + i as u8);
        let challenge = Message::Challenge { nonce }.to_bytes().unwrap();
        assert_eq!(challenge[..3], [0x0C, 0x00, 0x20]);
        assert_eq!(challenge[3..], nonce);
        // What the MAC covers: nonce, then agency 3 (u32), then version 1.
        let mut covered = nonce.to_vec();
        covered.extend_from_slice(&[0, 0, 0, 3, 1]);
        assert_eq!(covered.len(), 37);
        let tag = key.tag(&nonce, 3, PROTOCOL_VERSION);
        let auth = Message::Auth { tag }.to_bytes().unwrap();
        assert_eq!(auth[..3], [0x0D, 0x00, 0x20]);
        assert_eq!(
            auth::to_hex(&tag),
            "8a1ff715c769a6760201737c5ee0b9ba0b4d284789eb56518ae58e02055773dc"
        );
        assert_eq!(
            Message::Error {
                code: ErrorCode::Unauthorized,
                message: "no".into()
            }
            .to_bytes()
            .unwrap(),
            [0x05, 0x00, 0x06, 0x00, 0x16, 0x00, 0x02, b'n', b'o']
        );
    }
}
