//! Finding a few byte values in short byte strings, eight bytes at a time
//! ("SIMD within a register"), in safe, portable code.
//!
//! The agency file's reader (`source.rs`) looks for commas, quotes, CRs
//! and newlines in lines of a few dozen bytes. `memchr` is built for long
//! haystacks and falls back to a byte loop below 32 bytes; comparing a
//! `u64` word at a time looks at eight bytes in a few arithmetic
//! operations.

/// Each byte with its high bit set.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that equals `byte`, exactly: no
/// false positives from borrows between bytes, so the result can be used
/// to locate the bytes, not only to detect them.
pub fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (u64::from(byte) * 0x0101_0101_0101_0101);
    // A byte of x is zero iff neither its low seven bits (+0x7F carries
    // into bit 7) nor its high bit are set.
    !(((x & !HIGH) + !HIGH) | x | !HIGH)
}

/// The eight bytes of `bytes` from `at` as a little-endian word, zero
/// padded past the end.
pub fn word_at(bytes: &[u8], at: usize) -> u64 {
    match bytes[at..].first_chunk::<8>() {
        Some(chunk) => u64::from_le_bytes(*chunk),
        None => {
            let mut chunk = [0u8; 8];
            let tail = &bytes[at..];
            chunk[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(chunk)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_equal_finds_exactly_the_bytes_looked_for() {
        for needle in [b',', b'"', b'\r', b'\n', 0x80, 0xFF] {
            for other in 0..=255u8 {
                let word = u64::from_le_bytes([
                    other,
                    needle,
                    0,
                    0xFF,
                    needle ^ 0x80,
                    needle.wrapping_add(1),
                    needle.wrapping_sub(1),
                    other,
                ]);
                let mut want = 1u64 << 15;
                if other == needle {
                    want |= 1 << 7 | 1 << 63;
                }
                if needle == 0xFF {
                    want |= 1 << 31;
                }
                assert_eq!(bytes_equal(word, needle), want, "needle {needle:#x}, other {other:#x}");
            }
        }
    }
}
