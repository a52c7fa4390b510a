//! The protocol's vocabulary: its version, the frame type bytes, and
//! [`Message`], every request and response as one type.

use super::batch::Batch;
use super::error_code::ErrorCode;
use crate::auth::{Nonce, Tag};

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

/// Bytes of a WINNERS payload before the first document: total (4),
/// offset (4), count (2).
pub const WINNERS_HEADER_LEN: usize = 10;

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
    Winners { total: u32, offset: u32, documents: Vec<String> },
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
}
