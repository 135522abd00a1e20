//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! RFC 6455 8.1: "When an endpoint is to interpret a byte stream as UTF-8 but
//! finds that the byte stream is not, in fact, a valid UTF-8 stream, that
//! endpoint MUST _Fail the WebSocket Connection_." We fail as soon as a piece
//! contains a byte that cannot start or continue a valid sequence, rather
//! than at the end of the message ("fail fast"), so a peer cannot make us
//! buffer a huge message that was invalid from its first frame.

/// Validates a byte stream fed in arbitrary pieces.
///
/// The fast path is one call to `simdutf8` over the whole piece. Only a code
/// point split across pieces (at most 3 pending bytes) is handled here.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// Bytes of a code point cut by the end of the previous piece.
    pending: [u8; 4],
    pending_len: u8,
}

/// The stream is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a stream.
    pub const fn new() -> Self {
        Self {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Validates the next piece of the stream.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        // A short piece that is whole and valid on its own (the usual
        // small text message) needs none of the bookkeeping below.
        if self.pending_len == 0 && input.len() < SHORT && validate_short(input) {
            return Ok(());
        }
        if self.pending_len > 0 {
            // Complete the split code point one byte at a time; at most 3 bytes.
            while self.pending_len > 0 {
                let Some((&b, rest)) = input.split_first() else {
                    return Ok(());
                };
                self.pending[usize::from(self.pending_len)] = b;
                self.pending_len += 1;
                input = rest;
                let seq = &self.pending[..usize::from(self.pending_len)];
                match simdutf8::compat::from_utf8(seq) {
                    Ok(_) => self.pending_len = 0,
                    Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                    Err(_) => {} // still incomplete
                }
            }
        }
        // Split off a code point cut by the end of the piece (at most 3
        // bytes) so the bulk is validated once, by the fast path.
        let cut = incomplete_tail(input);
        let (body, tail) = input.split_at(cut);
        if simdutf8::basic::from_utf8(body).is_err() {
            return Err(InvalidUtf8);
        }
        if !tail.is_empty() {
            // The tail must be a valid start of a code point: F4 90 can
            // never become valid and fails now, not when more arrives.
            match simdutf8::compat::from_utf8(tail) {
                Err(e) if e.error_len().is_none() => {}
                _ => return Err(InvalidUtf8),
            }
            self.pending[..tail.len()].copy_from_slice(tail);
            self.pending_len = tail.len() as u8;
        }
        Ok(())
    }

    /// Ends the stream: a code point still open is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }
}

/// Checks a whole piece at once: [`Utf8Validator::feed`] then
/// [`Utf8Validator::finish`], without the bookkeeping for pieces.
pub fn validate(input: &[u8]) -> Result<(), InvalidUtf8> {
    if input.len() < SHORT {
        return if validate_short(input) {
            Ok(())
        } else {
            Err(InvalidUtf8)
        };
    }
    simdutf8::basic::from_utf8(input)
        .map(drop)
        .map_err(|_| InvalidUtf8)
}

/// Below this, simdutf8 hands over to `std::str::from_utf8`, whose setup
/// for its aligned-word ASCII loop dominates at these sizes.
const SHORT: usize = 64;

/// UTF-8 check for short input (RFC 3629 section 4, the same table as
/// `std`): ASCII eight bytes at a time from any alignment, other code points
/// one at a time. About half the instructions of `std` on a 20-byte JSON
/// message with one accented letter.
fn validate_short(s: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i < s.len() {
        if let Some(word) = s.get(i..i + 8)
            && u64::from_ne_bytes(word.try_into().expect("8 bytes")) & HIGH == 0
        {
            i += 8;
            continue;
        }
        let b = s[i];
        if b < 0x80 {
            i += 1;
            continue;
        }
        // The first byte sets the length and the range of the second byte,
        // which excludes overlong forms, surrogates and code points above
        // U+10FFFF.
        let (width, lo, hi) = match b {
            0xC2..=0xDF => (2, 0x80, 0xBF),
            0xE0 => (3, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
            0xED => (3, 0x80, 0x9F),
            0xF0 => (4, 0x90, 0xBF),
            0xF1..=0xF3 => (4, 0x80, 0xBF),
            0xF4 => (4, 0x80, 0x8F),
            _ => return false,
        };
        let Some(seq) = s.get(i..i + width) else {
            return false;
        };
        if !(lo..=hi).contains(&seq[1]) || seq[2..].iter().any(|&c| c & 0xC0 != 0x80) {
            return false;
        }
        i += width;
    }
    true
}

/// Where a multi-byte sequence that the end of `input` cuts short begins;
/// `input.len()` if the input ends on a boundary (or with invalid bytes,
/// which the full check then reports).
fn incomplete_tail(input: &[u8]) -> usize {
    let n = input.len();
    for back in 1..=3.min(n) {
        let b = input[n - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return n,
        };
        return if needed > back { n - back } else { n };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_agrees_with_std_on_every_sequence_of_up_to_three_bytes() {
        let mut buf = Vec::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for len in 1..=2 {
                    buf.clear();
                    buf.extend_from_slice(&[a, b][..len]);
                    assert_eq!(
                        validate(&buf).is_ok(),
                        std::str::from_utf8(&buf).is_ok(),
                        "{buf:x?}"
                    );
                }
                for c in [
                    0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xF4, 0xFF,
                ] {
                    buf.clear();
                    buf.extend_from_slice(&[a, b, c]);
                    assert_eq!(
                        validate(&buf).is_ok(),
                        std::str::from_utf8(&buf).is_ok(),
                        "{buf:x?}"
                    );
                }
            }
        }
    }

    #[test]
    fn validate_agrees_with_std_around_the_word_loop_and_the_simd_cutover() {
        let samples: [&[u8]; 6] = [
            "zoë héllo wörld ✓ 𝄞".as_bytes(),
            b"plain ascii text only",
            &[0xF0, 0x9F, 0x98, 0x80],
            &[0xED, 0xA0, 0x80],
            &[0xE2, 0x82],
            &[0xC0, 0xAF],
        ];
        for sample in samples {
            for pad in 0..70 {
                for at in [0, pad / 2, pad] {
                    let mut buf = vec![b'a'; pad];
                    buf.splice(at..at, sample.iter().copied());
                    assert_eq!(
                        validate(&buf).is_ok(),
                        std::str::from_utf8(&buf).is_ok(),
                        "{buf:x?}"
                    );
                }
            }
        }
    }

    fn split_everywhere(bytes: &[u8]) -> Result<(), InvalidUtf8> {
        let whole = {
            let mut v = Utf8Validator::new();
            v.feed(bytes).and_then(|_| v.finish())
        };
        for cut in 0..=bytes.len() {
            let mut v = Utf8Validator::new();
            let r = v
                .feed(&bytes[..cut])
                .and_then(|_| v.feed(&bytes[cut..]))
                .and_then(|_| v.finish());
            assert_eq!(r, whole, "cut at {cut}");
        }
        let mut v = Utf8Validator::new();
        let r = bytes
            .iter()
            .try_for_each(|b| v.feed(std::slice::from_ref(b)))
            .and_then(|_| v.finish());
        assert_eq!(r, whole, "byte by byte");
        whole
    }

    #[test]
    fn agrees_with_std_under_every_split() {
        let cases: &[&[u8]] = &[
            b"",
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "κόσμε".as_bytes(),
            b"\xf0\x90\x80\x80",
            b"\xf4\x8f\xbf\xbf",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xe0\x80\xaf",
            b"\x80",
            b"\xfe",
            b"\xf0\x90\x80",
        ];
        for case in cases {
            assert_eq!(
                split_everywhere(case).is_ok(),
                std::str::from_utf8(case).is_ok(),
                "{case:02x?}"
            );
        }
    }

    #[test]
    fn fails_at_the_first_invalid_byte() {
        let mut v = Utf8Validator::new();
        // Autobahn 6.4.1: a valid prefix, then 0xF4 0x90 which can never be
        // completed (above U+10FFFF). Fails without waiting for more.
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(b"\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }
}
