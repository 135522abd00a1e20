//! Errors, blamed in three: the peer ([`ProtocolError`]), the caller
//! ([`UserError`]), and, in the I/O layers above, the transport.
//!
//! The core performs no I/O, so it has no transport error; the tokio layer
//! adds one. A clean close is not an error: it is an
//! [`Event::Closed`](crate::Event::Closed).

use crate::close::CloseCode;

/// The peer broke RFC 6455 or RFC 7692, or exceeded one of our limits.
///
/// Each variant maps to the close code sent to the peer through
/// [`ProtocolError::close_code`]: the only place that mapping is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode in `%x3-7` or `%xB-F`.
    ReservedOpCode,
    /// RSV1 set without permessage-deflate, or RSV2/RSV3 set at all.
    ReservedBitsSet,
    /// RSV1 set on a control frame or a continuation frame.
    UnexpectedCompressionBit,
    /// A 64-bit length with its most significant bit set.
    InvalidPayloadLength,
    /// A client frame without a mask (RFC 6455 5.1: the server MUST close).
    UnmaskedFrame,
    /// A server frame with a mask (RFC 6455 5.1: the client MUST close).
    MaskedFrame,
    /// A control frame longer than 125 bytes.
    ControlFrameTooLong,
    /// A control frame without FIN.
    FragmentedControlFrame,
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A Close payload of exactly one byte.
    InvalidClosePayload,
    /// A Close frame with a code that may not be sent.
    InvalidCloseCode,
    /// A text message or a close reason that is not UTF-8.
    InvalidUtf8,
    /// A compressed message that does not inflate.
    InvalidCompressedData,
    /// A frame larger than [`Config::max_frame_size`](crate::Config::max_frame_size).
    FrameTooBig,
    /// A message larger than [`Config::max_message_size`](crate::Config::max_message_size),
    /// counted after decompression.
    MessageTooBig,
}

impl ProtocolError {
    /// The close code sent to the peer when the connection fails with this error.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooBig | Self::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            Self::ReservedOpCode
            | Self::ReservedBitsSet
            | Self::UnexpectedCompressionBit
            | Self::InvalidPayloadLength
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::ControlFrameTooLong
            | Self::FragmentedControlFrame
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::InvalidClosePayload
            | Self::InvalidCloseCode => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the Close frame. It names the rule broken and
    /// nothing about our internals.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::ReservedOpCode => "reserved opcode",
            Self::ReservedBitsSet => "reserved bits set",
            Self::UnexpectedCompressionBit => "RSV1 on control or continuation frame",
            Self::InvalidPayloadLength => "invalid payload length",
            Self::UnmaskedFrame => "client frame not masked",
            Self::MaskedFrame => "server frame masked",
            Self::ControlFrameTooLong => "control frame too long",
            Self::FragmentedControlFrame => "fragmented control frame",
            Self::UnexpectedContinuation => "continuation without a message",
            Self::ExpectedContinuation => "new message inside a fragmented message",
            Self::InvalidClosePayload => "invalid close payload",
            Self::InvalidCloseCode => "invalid close code",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::InvalidCompressedData => "invalid compressed data",
            Self::FrameTooBig => "frame too big",
            Self::MessageTooBig => "message too big",
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ProtocolError {}

/// The caller asked for something the protocol does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserError {
    /// Sending after a Close frame was sent (RFC 6455 5.5.1: "The application
    /// MUST NOT send any more data frames after sending a Close frame").
    AlreadyClosed,
    /// A control frame payload over 125 bytes.
    ControlFrameTooLong,
    /// A close code that may not be sent (1004-1006, 1015, or unassigned).
    InvalidCloseCode,
    /// A data frame sent with [`Connection::send_frame`](crate::Connection::send_frame)
    /// out of order: a continuation with no message started, or a new
    /// message while one is in progress.
    FragmentOutOfOrder,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AlreadyClosed => "connection already closing or closed",
            Self::ControlFrameTooLong => "control frame payload over 125 bytes",
            Self::InvalidCloseCode => "close code may not be sent",
            Self::FragmentOutOfOrder => "fragment sent out of order",
        })
    }
}

impl std::error::Error for UserError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_closes_with_a_sendable_code_and_a_short_reason() {
        use ProtocolError::*;
        for e in [
            ReservedOpCode,
            ReservedBitsSet,
            UnexpectedCompressionBit,
            InvalidPayloadLength,
            UnmaskedFrame,
            MaskedFrame,
            ControlFrameTooLong,
            FragmentedControlFrame,
            UnexpectedContinuation,
            ExpectedContinuation,
            InvalidClosePayload,
            InvalidCloseCode,
            InvalidUtf8,
            InvalidCompressedData,
            FrameTooBig,
            MessageTooBig,
        ] {
            assert!(e.close_code().is_sendable());
            assert!(e.reason().len() <= crate::close::MAX_REASON_LEN);
        }
    }
}
