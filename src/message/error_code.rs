//! The error codes an ERROR carries: one per way a request can fail, so a
//! peer (or a test) tells them apart without parsing the text.

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
    /// Every code, in wire order.
    pub(super) const ALL: [ErrorCode; 23] = [
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
