//! What can go wrong in the opening handshake, and the HTTP answer to it.

use std::fmt;

use crate::deflate::ExtensionError;

use super::reject_response;

/// Why an opening handshake failed.
///
/// Three kinds of blame share this enum, as they share the code paths:
///
/// - the client's request, found by a server in
///   [`parse_request`](super::parse_request) / [`Request::from_parts`](super::Request::from_parts)
///   or [`Request::accept`](super::Request::accept): answer it with
///   [`HandshakeError::response`] and close;
/// - the server's response, found by a client in
///   [`ExpectResponse::parse_response`](super::ExpectResponse::parse_response):
///   RFC 6455 4.1 says the client "MUST _Fail the WebSocket Connection_", so
///   close the TCP connection;
/// - the caller's own mistake (an invalid header in a builder, a subprotocol
///   the client did not offer): a bug to fix, answered with 500 on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    // Found in the request (or, for the HTTP-level ones, in the response).
    /// The request method is not `GET` (RFC 6455 4.1: "The method of the
    /// request MUST be GET"). Answered with 405 and `Allow: GET`.
    MethodNotGet,
    /// The message is not HTTP/1.1 or later.
    NotHttp11,
    /// The request target is neither an absolute path nor an absolute
    /// `http(s)`/`ws(s)` URI, or holds bytes that cannot be sent.
    InvalidRequestTarget,
    /// No `Host` field, or an empty one.
    MissingHost,
    /// No `Upgrade` field with the `websocket` token. Answered with 426,
    /// which a plain HTTP client hitting a WebSocket endpoint should see.
    MissingUpgrade,
    /// No `Connection` field with the `Upgrade` token.
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key` field.
    MissingKey,
    /// A `Sec-WebSocket-Key` that is not the base64 encoding of 16 bytes.
    InvalidKey,
    /// A `Sec-WebSocket-Version` other than 13, or none. Answered with 426
    /// and `Sec-WebSocket-Version: 13`, as RFC 6455 4.4 asks.
    UnsupportedVersion,
    /// A field that may appear once appeared twice (`Host`, `Origin`,
    /// `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, `Sec-WebSocket-Accept`,
    /// `Sec-WebSocket-Protocol` in a response). Names the field.
    DuplicateHeader(&'static str),
    /// The head is longer than
    /// [`HandshakeLimits::max_header_bytes`](super::HandshakeLimits::max_header_bytes).
    HeadersTooLarge,
    /// More fields than [`HandshakeLimits::max_headers`](super::HandshakeLimits::max_headers).
    TooManyHeaders,
    /// Not parseable as an HTTP/1.x message head.
    MalformedHttp,
    /// A `Sec-WebSocket-Extensions` field that does not parse, or (client
    /// side) a permessage-deflate answer that does not match our offer.
    InvalidExtension(ExtensionError),

    // Found in the response, by a client.
    /// The server answered with this status instead of 101.
    UnexpectedStatus(u16),
    /// `Sec-WebSocket-Accept` missing or not derived from our key.
    InvalidAccept,
    /// The server selected a subprotocol we did not offer, or several.
    UnrequestedSubprotocol,
    /// The server answered with an extension although we offered none.
    UnrequestedExtension,

    // The caller's mistakes.
    /// The selected subprotocol is not among those the client offered
    /// (RFC 6455 4.2.2: the value "MUST be derived from the client's
    /// handshake").
    SubprotocolNotOffered,
    /// A subprotocol name that is not an RFC 7230 token, or offered twice
    /// (RFC 6455 4.1: elements "MUST all be unique strings").
    InvalidSubprotocol,
    /// A header name that is not a token, a value with CR, LF or another
    /// control character, or a field the handshake writes itself.
    InvalidHeader,
    /// A host that is empty or holds characters that cannot be sent.
    InvalidHost,
}

impl HandshakeError {
    /// The HTTP status a server answers this error with: 405 for the method,
    /// 426 for a missing `Upgrade` or an unsupported version, 431 for heads
    /// over the limits, 500 for the caller's mistakes, 400 for the rest.
    ///
    /// For errors a client finds in a response nothing is sent; they give
    /// 400 here (the server's status, if that was the problem, is in
    /// [`HandshakeError::UnexpectedStatus`]).
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotGet => 405,
            Self::MissingUpgrade | Self::UnsupportedVersion => 426,
            Self::HeadersTooLarge | Self::TooManyHeaders => 431,
            Self::SubprotocolNotOffered
            | Self::InvalidSubprotocol
            | Self::InvalidHeader
            | Self::InvalidHost => 500,
            _ => 400,
        }
    }

    /// One line for the peer: it names the rule broken and nothing about
    /// our internals (the caller's mistakes all read "server error").
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MethodNotGet => "WebSocket handshake must use GET",
            Self::NotHttp11 => "WebSocket handshake requires HTTP/1.1",
            Self::InvalidRequestTarget => "invalid request target",
            Self::MissingHost => "missing Host header",
            Self::MissingUpgrade => "missing Upgrade: websocket header",
            Self::MissingConnectionUpgrade => "missing Connection: Upgrade header",
            Self::MissingKey => "missing Sec-WebSocket-Key header",
            Self::InvalidKey => "invalid Sec-WebSocket-Key header",
            Self::UnsupportedVersion => "unsupported WebSocket version, use 13",
            Self::DuplicateHeader(_) => "duplicate header",
            Self::HeadersTooLarge => "header fields too large",
            Self::TooManyHeaders => "too many header fields",
            Self::MalformedHttp => "malformed HTTP message",
            Self::InvalidExtension(_) => "invalid Sec-WebSocket-Extensions header",
            Self::UnexpectedStatus(_) => "server did not switch protocols",
            Self::InvalidAccept => "invalid Sec-WebSocket-Accept header",
            Self::UnrequestedSubprotocol => "server selected a subprotocol not offered",
            Self::UnrequestedExtension => "server selected an extension not offered",
            Self::SubprotocolNotOffered
            | Self::InvalidSubprotocol
            | Self::InvalidHeader
            | Self::InvalidHost => "server error",
        }
    }

    /// The complete HTTP response a server sends for this error before
    /// closing: see [`reject_response`]. A 405 carries `Allow: GET`; a 426
    /// carries `Upgrade: websocket` (RFC 7231 6.5.15: the server "MUST send
    /// an Upgrade header field"), and for a version mismatch
    /// `Sec-WebSocket-Version: 13` (RFC 6455 4.4).
    pub fn response(&self) -> Vec<u8> {
        let extra: &[(&str, &str)] = match self {
            Self::MethodNotGet => &[("Allow", "GET")],
            Self::MissingUpgrade => &[("Upgrade", "websocket")],
            Self::UnsupportedVersion => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            _ => &[],
        };
        reject_response(self.status(), self.reason(), extra)
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Richer than `reason()`: this is for our logs, not for the peer.
        match self {
            Self::DuplicateHeader(name) => write!(f, "duplicate {name} header"),
            Self::InvalidExtension(e) => write!(f, "invalid Sec-WebSocket-Extensions: {e}"),
            Self::UnexpectedStatus(s) => write!(f, "server answered {s} instead of 101"),
            Self::SubprotocolNotOffered => f.write_str("selected subprotocol was not offered"),
            Self::InvalidSubprotocol => f.write_str("subprotocol is not a unique token"),
            Self::InvalidHeader => f.write_str("invalid or reserved header field"),
            Self::InvalidHost => f.write_str("invalid host"),
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidExtension(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ExtensionError> for HandshakeError {
    fn from(e: ExtensionError) -> Self {
        Self::InvalidExtension(e)
    }
}
