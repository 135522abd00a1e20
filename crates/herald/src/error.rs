//! Errors, blamed in three: the peer, the caller, the transport.

use std::{fmt, io};

use herald_proto::handshake::HandshakeError;
use herald_proto::{ProtocolError, UserError};

/// What went wrong. A clean close is not an error: the stream ends with
/// `None` and [`WebSocket::close_frame`](crate::WebSocket::close_frame)
/// tells why.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol or a limit; a Close frame with the
    /// matching code (1002, 1007, 1009...) was sent.
    Protocol(ProtocolError),
    /// The opening handshake failed: the peer's request or response was
    /// invalid, or the server refused us (see
    /// [`HandshakeError::UnexpectedStatus`]).
    Handshake(HandshakeError),
    /// A server hook refused the request with this status and reason.
    Rejected {
        /// HTTP status sent.
        status: u16,
        /// One-line reason sent.
        reason: String,
    },
    /// The caller asked for something the protocol forbids.
    User(UserError),
    /// The transport failed.
    Io(io::Error),
    /// A phase did not finish in time.
    Timeout(Phase),
    /// The URL cannot be connected to.
    InvalidUrl(&'static str),
}

/// Which phase timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// TCP connect (and TLS handshake, for wss://).
    Connect,
    /// The HTTP upgrade.
    Handshake,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Handshake(e) => write!(f, "handshake failed: {e}"),
            Self::Rejected { status, reason } => write!(f, "rejected with {status}: {reason}"),
            Self::User(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Timeout(Phase::Connect) => f.write_str("connect timed out"),
            Self::Timeout(Phase::Handshake) => f.write_str("handshake timed out"),
            Self::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(e) => Some(e),
            Self::Handshake(e) => Some(e),
            Self::User(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<UserError> for Error {
    fn from(e: UserError) -> Self {
        Self::User(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}
