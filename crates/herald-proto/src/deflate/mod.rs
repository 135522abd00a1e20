//! permessage-deflate (RFC 7692): negotiation and the per-message codec.
//!
//! ```text
//!  client                                              server
//!  DeflateConfig::offer() ── Sec-WebSocket-Extensions ──▶ DeflateConfig::accept()
//!  DeflateConfig::validate_response() ◀── response ─────┘   │
//!        │ DeflateParams                                     │ DeflateParams
//!        ▼                                                   ▼
//!  PerMessageDeflate::new(Role::Client, ..)    PerMessageDeflate::new(Role::Server, ..)
//!  compress(fragment, fin) ── RSV1 message ──▶ decompress(fragment, fin, out, limit)
//! ```
//!
//! The header grammar itself lives in [`crate::extension`]; this module
//! gives the four RFC 7692 parameters their meaning.
//!
//! ```
//! use bytes::BytesMut;
//! use herald_proto::Role;
//! use herald_proto::deflate::{DeflateConfig, PerMessageDeflate};
//!
//! let client = DeflateConfig::default();
//! let server = DeflateConfig::default().server_max_window_bits(Some(10));
//!
//! let offer = client.offer();
//! assert_eq!(offer, "permessage-deflate; client_max_window_bits");
//! let (agreed, response) = server.accept([offer.as_bytes()])?.expect("accepted");
//! assert_eq!(response, "permessage-deflate; server_max_window_bits=10");
//! assert_eq!(client.validate_response([response.as_bytes()])?, Some(agreed));
//!
//! let mut tx = PerMessageDeflate::new(Role::Server, agreed, &server);
//! let mut rx = PerMessageDeflate::new(Role::Client, agreed, &client);
//! let wire = tx.compress(b"Hello, Hello, Hello", true);
//! let mut out = BytesMut::new();
//! rx.decompress(&wire, true, &mut out, 1 << 20)?;
//! assert_eq!(&out[..], b"Hello, Hello, Hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Memory
//!
//! Nothing is allocated until the first compressed message in each
//! direction. Then, with the zlib-rs backend (memLevel 8, fixed by flate2),
//! measured:
//!
//! | state        | 8-9 bits | 12 bits | 15 bits |
//! |--------------|----------|---------|---------|
//! | compressor   | 245 KiB  | 259 KiB | 371 KiB |
//! | decompressor | 46 KiB   | 46 KiB  | 46 KiB  |
//!
//! The compressor's 128 KiB hash table and 112 KiB of symbol buffers do not
//! shrink with the window; zlib-rs always gives inflate a 32 KiB window.
//!
//! With context takeover this state lives as long as the connection (the
//! next message may refer back into it): a server that accepts browsers
//! with [`DeflateConfig::default`] keeps both for every connection that
//! has sent and received a compressed message. A side whose context is not taken
//! over frees its zlib state at the end of every message instead of
//! resetting it, so an idle connection that negotiated both
//! `server_no_context_takeover` and `client_no_context_takeover` holds no
//! zlib memory at all. The price is building the state again per message:
//! about 6 µs more than a reset for a 15-bit compressor, under 1 µs for a
//! decompressor. [`DeflateConfig::no_context_takeover`] is the server
//! setting for this, and [`PreparedMessage`](crate::PreparedMessage)
//! compresses a message once for all such connections.

mod codec;
mod negotiate;

pub use codec::PerMessageDeflate;
pub(crate) use codec::compress_message;

use std::fmt;

use crate::extension::ParseError;

/// What this endpoint offers (client) or accepts (server), plus tunables.
///
/// The same fields are read from both sides. A client asks for them in its
/// [offer](DeflateConfig::offer); a server imposes them in its
/// [answer](DeflateConfig::accept) whatever the client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Ask for / impose `server_no_context_takeover`: the server starts every
    /// message with an empty window.
    pub server_no_context_takeover: bool,
    /// Ask for / impose `client_no_context_takeover`: the client starts every
    /// message with an empty window.
    pub client_no_context_takeover: bool,
    /// Ask for / impose `server_max_window_bits` (8..=15), `None` for 15.
    pub server_max_window_bits: Option<u8>,
    /// Ask for / impose `client_max_window_bits` (8..=15), `None` for 15.
    /// A server can only impose it on a client that offers the parameter
    /// (RFC 7692 7.1.2.2); other clients are accepted with 15.
    pub client_max_window_bits: Option<u8>,
    /// zlib compression level 0..=9 (larger values act as 9). 0 turns
    /// compression of outgoing messages off while still accepting
    /// compressed incoming ones.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            level: 1,
            threshold: 32,
        }
    }
}

impl DeflateConfig {
    /// A server that sends the same messages to many connections (a push
    /// server, a broadcast): accepts every permessage-deflate offer with
    /// `server_no_context_takeover` and `client_no_context_takeover`, asked
    /// or not (RFC 7692 7.1.1.1 and 7.1.1.2 let the server add both).
    ///
    /// Then no connection holds zlib state between messages, and a message
    /// compressed once suits every connection that agreed the same
    /// `server_max_window_bits`: send it with
    /// [`Connection::send_prepared`](crate::Connection::send_prepared). The
    /// other settings are the defaults.
    ///
    /// ```
    /// use herald_proto::DeflateConfig;
    ///
    /// let (agreed, response) = DeflateConfig::no_context_takeover()
    ///     .accept([&b"permessage-deflate; client_max_window_bits"[..]])?
    ///     .expect("accepted");
    /// assert_eq!(
    ///     response,
    ///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    /// );
    /// assert_eq!(agreed.server_max_window_bits, 15);
    /// # Ok::<(), herald_proto::deflate::ExtensionError>(())
    /// ```
    pub fn no_context_takeover() -> Self {
        Self::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
    }

    /// Sets [`DeflateConfig::server_no_context_takeover`].
    pub fn server_no_context_takeover(mut self, yes: bool) -> Self {
        self.server_no_context_takeover = yes;
        self
    }

    /// Sets [`DeflateConfig::client_no_context_takeover`].
    pub fn client_no_context_takeover(mut self, yes: bool) -> Self {
        self.client_no_context_takeover = yes;
        self
    }

    /// Sets [`DeflateConfig::server_max_window_bits`].
    ///
    /// # Panics
    ///
    /// If `bits` is `Some` value outside 8..=15.
    pub fn server_max_window_bits(mut self, bits: Option<u8>) -> Self {
        assert!(
            bits.is_none_or(valid_window_bits),
            "window bits must be 8..=15"
        );
        self.server_max_window_bits = bits;
        self
    }

    /// Sets [`DeflateConfig::client_max_window_bits`].
    ///
    /// # Panics
    ///
    /// If `bits` is `Some` value outside 8..=15.
    pub fn client_max_window_bits(mut self, bits: Option<u8>) -> Self {
        assert!(
            bits.is_none_or(valid_window_bits),
            "window bits must be 8..=15"
        );
        self.client_max_window_bits = bits;
        self
    }

    /// Sets [`DeflateConfig::level`].
    pub fn level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    /// Sets [`DeflateConfig::threshold`].
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }
}

/// The negotiated agreement: what each side's compressor may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// LZ77 window of the server's compressor, 8..=15.
    pub server_max_window_bits: u8,
    /// LZ77 window of the client's compressor, 8..=15.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// What a bare `permessage-deflate` agrees to: context takeover both
    /// ways, 15-bit windows.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// Why a `Sec-WebSocket-Extensions` header was refused.
///
/// A server only sees [`ExtensionError::Syntax`]: an offer it cannot accept
/// is declined, not an error. A client gets the others when the server's
/// response breaks RFC 6455 9.1 or RFC 7692 7; it MUST then fail the
/// connection (RFC 7692 7: "A client MUST _Fail the WebSocket Connection_
/// if the peer server accepted an extension negotiation offer for this
/// extension with an extension negotiation response meeting any of the
/// following conditions").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The header value does not follow the RFC 6455 9.1 grammar.
    Syntax(ParseError),
    /// The response names an extension the client did not offer.
    UnexpectedExtension {
        /// The extension token as received.
        name: String,
    },
    /// The response accepts permessage-deflate more than once.
    DuplicateExtension,
    /// A parameter RFC 7692 does not define for a response.
    UnknownParameter {
        /// The parameter name as received.
        name: String,
    },
    /// A parameter appears twice in one element.
    DuplicateParameter(&'static str),
    /// A parameter with a missing, forbidden or out-of-range value.
    InvalidParameterValue(&'static str),
    /// The client asked for `server_no_context_takeover` and the response
    /// does not include it (RFC 7692 7.1.1.1: the server "MUST include" it).
    MissingServerNoContextTakeover,
    /// `server_max_window_bits` in the response is larger than the client
    /// asked for (an absent parameter counts as 15).
    ServerWindowTooLarge,
    /// `client_max_window_bits` in the response although the client did not
    /// offer it (RFC 7692 7.1.2.2: the response "MUST NOT include" it then).
    UnexpectedClientMaxWindowBits,
    /// `client_max_window_bits` in the response is larger than the value the
    /// client offered.
    ClientWindowTooLarge,
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Callers prefix the header name; the parse error says where.
            Self::Syntax(e) => write!(f, "{e}"),
            Self::UnexpectedExtension { name } => write!(f, "extension {name:?} was not offered"),
            Self::DuplicateExtension => f.write_str("permessage-deflate accepted twice"),
            Self::UnknownParameter { name } => {
                write!(f, "unknown permessage-deflate parameter {name:?}")
            }
            Self::DuplicateParameter(name) => write!(f, "duplicate parameter {name}"),
            Self::InvalidParameterValue(name) => write!(f, "invalid value for {name}"),
            Self::MissingServerNoContextTakeover => {
                f.write_str("server ignored the requested server_no_context_takeover")
            }
            Self::ServerWindowTooLarge => {
                f.write_str("server_max_window_bits larger than requested")
            }
            Self::UnexpectedClientMaxWindowBits => {
                f.write_str("client_max_window_bits in response but not offered")
            }
            Self::ClientWindowTooLarge => f.write_str("client_max_window_bits larger than offered"),
        }
    }
}

impl std::error::Error for ExtensionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Syntax(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ParseError> for ExtensionError {
    fn from(e: ParseError) -> Self {
        Self::Syntax(e)
    }
}

/// RFC 7692 7.1.2: window bits are "between 8 to 15, inclusive".
fn valid_window_bits(bits: u8) -> bool {
    (8..=15).contains(&bits)
}

/// Brings a window size set directly through a public field into range.
fn clamp_window_bits(bits: u8) -> u8 {
    bits.clamp(8, 15)
}
