//! Framing: bytes ↔ frames, and nothing else.
//!
//! A frame is `type: u8`, `length: u16` big-endian, then `length` bytes of
//! payload; header included, no frame exceeds [`MAX_FRAME_LEN`]. What the
//! payload means is the `message` module's business.
//!
//! [`decode`] is pure: it looks at a buffer and says "here is a frame",
//! "need more bytes" or "this can never be a valid frame". The blocking
//! helpers [`write_frame`] and [`FrameReader`] work over any `Read`/`Write`, so
//! they are tested with readers that hand out one byte at a time, and they
//! loop on short reads and short writes.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};

/// Bytes of the header: type (1) + payload length (2).
pub const HEADER_LEN: usize = 3;
/// Largest frame, header included, that either side sends or accepts.
pub const MAX_FRAME_LEN: usize = 8192;
/// Largest payload of a frame of [`MAX_FRAME_LEN`] bytes.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - HEADER_LEN;

/// One frame: its type byte and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// A complete frame found in a buffer, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub kind: u8,
    pub payload: &'a [u8],
    /// Bytes the frame occupies in the buffer, header included.
    pub len: usize,
}

/// Errors of the framing layer.
#[derive(Debug)]
pub enum FrameError {
    /// The header announces a frame larger than the limit. The stream is
    /// out of sync from here on: the connection must be closed.
    TooLarge { len: usize, max: usize },
    /// The peer closed the stream in the middle of a frame.
    Truncated { buffered: usize },
    /// The underlying reader or writer failed (timeouts included).
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Truncated { buffered } => {
                write!(f, "stream ended inside a frame ({buffered} bytes buffered)")
            }
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Looks for one complete frame at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the frame. The length is checked
/// against `max_frame` as soon as the header is complete, before any payload
/// is waited for, so an oversize frame costs no memory.
///
/// # Errors
/// [`FrameError::TooLarge`] when the header announces more than `max_frame`.
pub fn decode(buf: &[u8], max_frame: usize) -> Result<Option<FrameRef<'_>>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[1], buf[2]]));
    let total = HEADER_LEN + len;
    if total > max_frame {
        return Err(FrameError::TooLarge { len: total, max: max_frame });
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(FrameRef { kind: buf[0], payload: &buf[HEADER_LEN..total], len: total }))
}

/// Appends one encoded frame to `out`.
///
/// # Errors
/// [`FrameError::TooLarge`] when the payload does not fit in one frame.
pub fn encode_into(out: &mut Vec<u8>, kind: u8, payload: &[u8]) -> Result<(), FrameError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(FrameError::TooLarge { len: HEADER_LEN + payload.len(), max: MAX_FRAME_LEN });
    }
    out.reserve(HEADER_LEN + payload.len());
    out.push(kind);
    // Cannot truncate: checked against MAX_PAYLOAD_LEN (< u16::MAX) above.
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Writes one frame, looping over short writes (`write_all` retries
/// `Interrupted` and continues after partial writes).
///
/// # Errors
/// Oversize payloads, and any write error; after an error mid-frame the
/// stream is out of sync and must be closed.
pub fn write_frame<W: Write>(w: &mut W, kind: u8, payload: &[u8]) -> Result<(), FrameError> {
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_into(&mut buf, kind, payload)?;
    w.write_all(&buf)?;
    Ok(())
}

/// Reads frames from a blocking reader, keeping what it has read across
/// calls: a read timeout in the middle of a frame loses nothing, the next
/// call continues where this one stopped.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    start: usize,
    max_frame: usize,
}

impl<R: Read> FrameReader<R> {
    /// A reader accepting frames up to [`MAX_FRAME_LEN`] bytes.
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_FRAME_LEN)
    }

    /// A reader accepting frames up to `max_frame` bytes.
    pub fn with_limit(inner: R, max_frame: usize) -> Self {
        FrameReader { inner, buf: Vec::with_capacity(2 * MAX_FRAME_LEN), start: 0, max_frame }
    }

    /// The reader underneath, to adjust it between reads (the client sets
    /// a deadline on it). Reading from it directly would skip bytes the
    /// frames need.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Whether a whole frame (or an error) is buffered already: the next
    /// `read_frame` returns without reading.
    pub fn has_frame(&self) -> bool {
        !matches!(decode(&self.buf[self.start..], self.max_frame), Ok(None))
    }

    /// Reads the next frame. `Ok(None)` is a clean end of stream (the peer
    /// closed between frames).
    ///
    /// # Errors
    /// Oversize frames, an end of stream inside a frame, and I/O errors,
    /// including `WouldBlock`/`TimedOut` from a read timeout, after which
    /// the call may simply be repeated.
    pub fn read_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(found) = decode(&self.buf[self.start..], self.max_frame)? {
                let frame = Frame { kind: found.kind, payload: found.payload.to_vec() };
                self.start += found.len;
                return Ok(Some(frame));
            }
            // Compact before reading so the buffer never grows past two frames.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + MAX_FRAME_LEN, 0);
            let n = loop {
                match self.inner.read(&mut self.buf[old..]) {
                    Ok(n) => break Ok(n),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(FrameError::Io(e));
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated { buffered: self.buf.len() })
                };
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Hands out at most one byte per `read`/`write`: the worst short
    /// read/write a kernel may produce.
    pub(crate) struct OneByte<T>(pub T);

    impl<R: Read> Read for OneByte<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    impl<W: Write> Write for OneByte<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.write(&buf[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    /// Fails with `err` once `budget` bytes have gone through, then works
    /// again: a timeout or a reset in the middle of a frame.
    struct FailAfter<R> {
        inner: R,
        budget: usize,
        failed: bool,
        err: ErrorKind,
    }

    impl<R: Read> Read for FailAfter<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.budget == 0 && !self.failed {
                self.failed = true;
                return Err(io::Error::from(self.err));
            }
            let n = if self.failed { buf.len() } else { buf.len().min(self.budget) };
            let n = self.inner.read(&mut buf[..n])?;
            self.budget = self.budget.saturating_sub(n);
            Ok(n)
        }
    }

    impl<W: Write> Write for FailAfter<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::from(self.err));
            }
            let n = self.inner.write(&buf[..buf.len().min(self.budget)])?;
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frames() -> Vec<(u8, Vec<u8>)> {
        vec![
            (1, vec![]),
            (2, b"hello".to_vec()),
            (3, vec![0xAB; MAX_PAYLOAD_LEN]),
            (4, vec![0, 1, 2]),
        ]
    }

    #[test]
    fn byte_at_a_time_round_trip() {
        let mut wire = Vec::new();
        for (kind, payload) in frames() {
            write_frame(&mut OneByte(&mut wire), kind, &payload).unwrap();
        }
        let mut reader = FrameReader::new(OneByte(&wire[..]));
        for (kind, payload) in frames() {
            let frame = reader.read_frame().unwrap().expect("a frame");
            assert_eq!((frame.kind, frame.payload), (kind, payload));
        }
        assert!(reader.read_frame().unwrap().is_none(), "clean end of stream");
    }

    #[test]
    fn decode_needs_more_bytes_until_complete() {
        let mut wire = Vec::new();
        encode_into(&mut wire, 9, b"abc").unwrap();
        for cut in 0..wire.len() {
            assert!(decode(&wire[..cut], MAX_FRAME_LEN).unwrap().is_none());
        }
        let found = decode(&wire, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!((found.kind, found.payload, found.len), (9, &b"abc"[..], 6));
    }

    #[test]
    fn truncated_stream_is_an_error_not_a_frame() {
        let mut wire = Vec::new();
        encode_into(&mut wire, 2, b"hello").unwrap();
        wire.truncate(5);
        let err = FrameReader::new(&wire[..]).read_frame().unwrap_err();
        assert!(matches!(err, FrameError::Truncated { buffered: 5 }), "{err}");
    }

    #[test]
    fn oversize_header_is_rejected_before_reading_the_payload() {
        // 0xFFFF announced, only the header sent: rejected at once.
        let wire = [7u8, 0xFF, 0xFF];
        let err = FrameReader::new(&wire[..]).read_frame().unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 65538, max: 8192 }));
        // Exactly at the limit is fine; one more byte is not.
        let at = [7u8, 0x1F, 0xFD];
        assert!(decode(&at, MAX_FRAME_LEN).unwrap().is_none());
        let over = [7u8, 0x1F, 0xFE];
        assert!(decode(&over, MAX_FRAME_LEN).is_err());
        // A lower configured limit applies too.
        assert!(decode(&[1, 0, 100], 64).is_err());
    }

    #[test]
    fn encoding_an_oversize_payload_fails() {
        let mut out = Vec::new();
        assert!(encode_into(&mut out, 1, &vec![0; MAX_PAYLOAD_LEN + 1]).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn a_timeout_mid_frame_loses_no_bytes() {
        let mut wire = Vec::new();
        encode_into(&mut wire, 5, b"payload").unwrap();
        encode_into(&mut wire, 6, b"next").unwrap();
        let flaky =
            FailAfter { inner: &wire[..], budget: 4, failed: false, err: ErrorKind::WouldBlock };
        let mut reader = FrameReader::new(flaky);
        let err = reader.read_frame().unwrap_err();
        assert!(matches!(err, FrameError::Io(ref e) if e.kind() == ErrorKind::WouldBlock));
        let frame = reader.read_frame().unwrap().unwrap();
        assert_eq!(frame.payload, b"payload");
        assert_eq!(reader.read_frame().unwrap().unwrap().payload, b"next");
    }

    #[test]
    fn has_frame_says_whether_read_frame_would_read() {
        let mut bytes = Vec::new();
        encode_into(&mut bytes, 7, b"abc").unwrap();
        encode_into(&mut bytes, 8, b"").unwrap();
        let mut r = FrameReader::new(OneByte(&bytes[..]));
        assert!(!r.has_frame(), "nothing read yet");
        assert_eq!(r.read_frame().unwrap().unwrap().kind, 7);
        assert!(!r.has_frame(), "one byte at a time: the next is not buffered");
        let mut r = FrameReader::new(&bytes[..]);
        assert_eq!(r.read_frame().unwrap().unwrap().kind, 7);
        assert!(r.has_frame(), "read together with the first");
        assert_eq!(r.read_frame().unwrap().unwrap().kind, 8);
        assert!(!r.has_frame());
    }

    #[test]
    fn a_write_failing_mid_frame_reports_the_error() {
        let mut sink = Vec::new();
        let mut w = FailAfter {
            inner: &mut sink,
            budget: 4,
            failed: false,
            err: ErrorKind::ConnectionReset,
        };
        let err = write_frame(&mut w, 2, b"hello").unwrap_err();
        assert!(matches!(err, FrameError::Io(ref e) if e.kind() == ErrorKind::ConnectionReset));
        assert_eq!(sink.len(), 4, "the bytes before the failure went out");
    }
}
