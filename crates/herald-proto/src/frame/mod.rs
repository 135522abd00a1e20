//! Base framing protocol (RFC 6455 section 5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! This module only reads and writes headers; what a header *means* for the
//! connection (masking direction, control frame rules, fragmentation) is
//! decided in [`crate::connection`].

mod mask;

pub use mask::apply_mask;

use crate::error::ProtocolError;

/// The largest header: 2 bytes + 8 bytes of length + 4 bytes of masking key.
pub const MAX_HEAD_LEN: usize = 14;

/// Frame opcode (RFC 6455 section 5.2, section 11.8).
///
/// Reserved opcodes are not representable: [`OpCode::from_u8`] rejects them,
/// so a value of this type is always one the connection understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// `%x0`: continues a fragmented message.
    Continuation = 0x0,
    /// `%x1`: first frame of a text message.
    Text = 0x1,
    /// `%x2`: first frame of a binary message.
    Binary = 0x2,
    /// `%x8`: connection close.
    Close = 0x8,
    /// `%x9`: ping.
    Ping = 0x9,
    /// `%xA`: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Decodes the 4-bit opcode field; `None` for the reserved values
    /// `%x3-7` and `%xB-F`.
    pub const fn from_u8(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// Control frames have the most significant opcode bit set (section 5.5).
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded frame header. The payload follows it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1: owned by permessage-deflate ("Per-Message Compressed" bit).
    pub rsv1: bool,
    /// RSV2: no extension defined here uses it.
    pub rsv2: bool,
    /// RSV3: no extension defined here uses it.
    pub rsv3: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// Masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header for an unmasked, final frame without RSV bits.
    pub const fn new(opcode: OpCode, payload_len: u64) -> Self {
        Self {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len,
        }
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header; the
    /// caller keeps the bytes and calls again with more. On success returns
    /// the header and its length in bytes; nothing is consumed either way.
    ///
    /// Only wire-level errors are detected here: reserved opcodes and a 64-bit
    /// length with its most significant bit set. Everything that depends on
    /// the connection (RSV bits, masking, control frame rules) is checked by
    /// the caller.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpCode)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut len) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let n = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                    // RFC 6455 5.2: "the most significant bit MUST be 0".
                    if n >> 63 != 0 {
                        return Err(ProtocolError::InvalidPayloadLength);
                    }
                    (n, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            match buf.get(len..len + 4) {
                Some(k) => {
                    len += 4;
                    Some([k[0], k[1], k[2], k[3]])
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((
            Self {
                fin: b0 & 0x80 != 0,
                rsv1: b0 & 0x40 != 0,
                rsv2: b0 & 0x20 != 0,
                rsv3: b0 & 0x10 != 0,
                opcode,
                mask,
                payload_len,
            },
            len,
        )))
    }

    /// Encodes the header with the shortest length encoding, as RFC 6455 5.2
    /// requires ("the minimal number of bytes MUST be used").
    pub fn encode(&self) -> Head {
        let mut buf = [0u8; MAX_HEAD_LEN];
        buf[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            n @ 0..=125 => {
                buf[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                buf[1] = mask_bit | 126;
                buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                buf[1] = mask_bit | 127;
                buf[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            buf[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        Head {
            buf,
            len: len as u8,
        }
    }
}

/// An encoded frame header kept on the stack, so that header and payload can
/// be written with one vectored write and the payload is never copied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Head {
    buf: [u8; MAX_HEAD_LEN],
    len: u8,
}

impl Head {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Head({:02x?})", self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_headers_consume_nothing() {
        let full = FrameHeader {
            mask: Some([1, 2, 3, 4]),
            ..FrameHeader::new(OpCode::Binary, 70_000)
        }
        .encode();
        let bytes = full.as_bytes();
        assert_eq!(bytes.len(), 14);
        for n in 0..bytes.len() {
            assert_eq!(FrameHeader::parse(&bytes[..n]), Ok(None), "prefix {n}");
        }
        let (h, n) = FrameHeader::parse(bytes).unwrap().unwrap();
        assert_eq!((h.payload_len, h.mask, n), (70_000, Some([1, 2, 3, 4]), 14));
    }

    #[test]
    fn length_encodings_are_minimal() {
        for (len, head_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let head = FrameHeader::new(OpCode::Text, len).encode();
            assert_eq!(head.as_bytes().len(), head_len, "len {len}");
            let (h, _) = FrameHeader::parse(head.as_bytes()).unwrap().unwrap();
            assert_eq!(h.payload_len, len);
        }
    }

    #[test]
    fn rfc_5_7_examples() {
        // A single-frame unmasked text message "Hello".
        let (h, n) = FrameHeader::parse(b"\x81\x05Hello").unwrap().unwrap();
        assert!(h.fin && h.opcode == OpCode::Text && h.payload_len == 5 && n == 2);
        // A single-frame masked text message "Hello".
        let (h, n) = FrameHeader::parse(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
            .unwrap()
            .unwrap();
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        // 256 bytes binary message in a single unmasked frame.
        let (h, n) = FrameHeader::parse(b"\x82\x7E\x01\x00").unwrap().unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        // 64KiB binary message in a single unmasked frame.
        let (h, n) = FrameHeader::parse(b"\x82\x7F\0\0\0\0\0\x01\0\0")
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn reserved_opcodes_and_huge_lengths_are_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpCode)
            );
        }
        assert_eq!(
            FrameHeader::parse(b"\x82\x7F\x80\0\0\0\0\0\0\0"),
            Err(ProtocolError::InvalidPayloadLength)
        );
    }
}
