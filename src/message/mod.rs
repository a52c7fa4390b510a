//! Messages: the typed requests and responses carried in frame payloads,
//! with their encoding and decoding side by side.
//!
//! All integers are big-endian. Strings are length-prefixed UTF-8 (u8 length
//! for names and documents, u16 for error texts), so any character,
//! including `,` `|` and newlines, travels safely. The byte-level tables are
//! in `docs/PROTOCOL.md`.
//!
//! - `types.rs`: the version, the type bytes ([`kind`]) and [`Message`];
//! - `error_code.rs`: the [`ErrorCode`] an ERROR carries;
//! - `batch.rs`: a BATCH's bets, owned ([`Batch`]) or borrowed from the
//!   payload ([`BatchView`]);
//! - `encode.rs` and `decode.rs`: each direction, including the ERROR every
//!   refusal sends ([`encode_error`]) and the zero-copy BATCH decoder.
//!
//! Everything is re-exported here: users write `crate::message::Message`.

mod batch;
mod decode;
mod encode;
mod error_code;
mod types;

pub use batch::{BATCH_HEADER_LEN, Batch, BatchView};
pub use decode::DecodeError;
pub use encode::{BatchEncoder, EncodeError, bet_wire_len, encode_error};
pub use error_code::ErrorCode;
pub use types::{Message, PROTOCOL_VERSION, WINNERS_HEADER_LEN, kind};

#[cfg(test)]
mod tests;
