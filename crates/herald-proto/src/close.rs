//! Close frames and status codes (RFC 6455 sections 5.5.1 and 7.4).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// A close status code. Every `u16` is representable, so a code read off the
/// wire can always be reported, but only [`CloseCode::is_sendable`] codes
/// may appear in a Close frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: an endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the endpoint received a frame that violates the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS_RECEIVED: Self = Self(1005);
    /// 1006: the connection closed without a Close frame. Never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: message data was inconsistent with its type (e.g. non-UTF-8 text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response upstream.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: TLS handshake failure. Never sent on the wire.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether this code may appear in a Close frame: 1000-1003, 1007-1014
    /// (registered in the IANA registry), and 3000-4999 (libraries,
    /// frameworks and applications). 1004-1006 and 1015 are reserved or
    /// "MUST NOT be set as a status code in a Close control frame".
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl std::fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

/// The body of a Close frame: a status code and a UTF-8 reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason; at most 123 bytes so the payload fits a control frame.
    pub reason: String,
}

/// Control frame payloads are at most 125 bytes; 2 of them hold the code.
pub const MAX_REASON_LEN: usize = 123;

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// Parses a Close frame payload (section 5.5.1).
    ///
    /// An empty payload is valid and means "no status code" (`Ok(None)`); a
    /// one-byte payload, an unsendable code, or a reason that is not UTF-8 is
    /// a protocol error.
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolError> {
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode);
                }
                // RFC 6455 7.1.6 / 8.1: a Close reason is UTF-8, and invalid
                // UTF-8 fails the connection.
                let reason =
                    simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(Self::new(code, reason)))
            }
        }
    }

    /// Encodes the payload. The reason is cut at a character boundary to fit
    /// in 123 bytes rather than producing an oversized control frame.
    pub fn encode(&self) -> Bytes {
        let reason = truncate_utf8(&self.reason, MAX_REASON_LEN);
        let mut buf = BytesMut::with_capacity(2 + reason.len());
        buf.put_u16(self.code.0);
        buf.put_slice(reason.as_bytes());
        buf.freeze()
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes() {
        let sendable: Vec<u16> = (0..=5000).filter(|c| CloseCode(*c).is_sendable()).collect();
        assert_eq!(sendable.len(), 4 + 8 + 2000);
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(c).is_sendable(), "{c}");
        }
    }

    #[test]
    fn parse_payloads() {
        assert_eq!(CloseFrame::parse(b""), Ok(None));
        assert_eq!(
            CloseFrame::parse(b"\x03"),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8bye"),
            Ok(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
        );
        assert_eq!(
            CloseFrame::parse(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode)
        );
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let frame = CloseFrame::new(CloseCode::NORMAL, "é".repeat(100));
        let payload = frame.encode();
        assert!(payload.len() <= 125);
        assert!(CloseFrame::parse(&payload).unwrap().is_some());
    }
}
