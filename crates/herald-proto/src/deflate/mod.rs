//! permessage-deflate (RFC 7692): negotiation and the per-message codec.
//!
//! STUB: interface fixed by the connection; bodies to be written.

use bytes::{Bytes, BytesMut};

use crate::{Role, error::ProtocolError};

/// What this endpoint offers (client) or accepts (server), plus tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Ask for / impose `server_no_context_takeover`.
    pub server_no_context_takeover: bool,
    /// Ask for / impose `client_no_context_takeover`.
    pub client_no_context_takeover: bool,
    /// Ask for / impose `server_max_window_bits` (8..=15), `None` for 15.
    pub server_max_window_bits: Option<u8>,
    /// Ask for / impose `client_max_window_bits` (8..=15), `None` for 15.
    pub client_max_window_bits: Option<u8>,
    /// zlib compression level 0..=9.
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

/// The negotiated parameters.
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

/// Compression state of one connection.
#[derive(Debug)]
pub struct PerMessageDeflate {
    _role: Role,
}

impl PerMessageDeflate {
    /// Codec for `role` with the negotiated `params`.
    pub fn new(role: Role, params: DeflateParams, config: &DeflateConfig) -> Self {
        let _ = (params, config);
        Self { _role: role }
    }

    /// Whether a message of `len` bytes should be compressed.
    pub fn should_compress(&self, len: usize) -> bool {
        let _ = len;
        false
    }

    /// Compresses one fragment of an outgoing message.
    pub fn compress(&mut self, payload: &[u8], fin: bool) -> Bytes {
        let _ = (payload, fin);
        unimplemented!()
    }

    /// Inflates one piece of an incoming compressed message into `out`.
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let _ = (input, fin, out, limit);
        unimplemented!()
    }
}
