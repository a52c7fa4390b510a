//! Messages → frames: [`Message::encode_into`], the ERROR every refusal
//! sends ([`encode_error`]), and [`BatchEncoder`], which builds a BATCH bet
//! by bet up to the frame limit.

use super::error_code::ErrorCode;
use super::types::{Message, kind};
use crate::bet::BetRef;
use crate::framing::{self, FrameError, MAX_PAYLOAD_LEN};
use chrono::Datelike;
use std::fmt;

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
            Message::Error { code, message } => put_error(&mut p, *code, message),
            Message::Done { total } => p.extend_from_slice(&total.to_be_bytes()),
            Message::WinnersQuery { offset } => p.extend_from_slice(&offset.to_be_bytes()),
            Message::Winners { total, offset, documents } => {
                p.extend_from_slice(&total.to_be_bytes());
                p.extend_from_slice(&offset.to_be_bytes());
                let count = u16::try_from(documents.len()).map_err(|_| {
                    EncodeError::FieldTooLong { field: "documents", len: documents.len() }
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
}

/// Appends an ERROR frame to `out`: the answer of every refusal, from the
/// handler and from the connection that closes. Its text is cut to fit a
/// frame, so unlike [`Message::encode_into`] this cannot fail.
pub fn encode_error(out: &mut Vec<u8>, code: ErrorCode, message: &str) {
    let mut p = Vec::new();
    put_error(&mut p, code, message);
    // `put_error` keeps the payload within a frame: framing has nothing to
    // refuse.
    let _ = framing::encode_into(out, kind::ERROR, &p);
}

/// An ERROR's payload. The text is advisory: it is cut (on a char
/// boundary) so that the payload fits a frame.
fn put_error(p: &mut Vec<u8>, code: ErrorCode, message: &str) {
    p.extend_from_slice(&(code as u16).to_be_bytes());
    let mut end = message.len().min(MAX_PAYLOAD_LEN - 4);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    p.extend_from_slice(&(end as u16).to_be_bytes());
    p.extend_from_slice(&message.as_bytes()[..end]);
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
    let len =
        u8::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong { field, len: s.len() })?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}
