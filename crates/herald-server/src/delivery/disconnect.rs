//! Why a connection ends, in the protocol's terms.

use std::borrow::Cow;

/// Why a session ends, in the protocol's terms; each transport says it
/// its own way (for WebSocket, `transport::websocket::close_frame`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Disconnect {
    /// The client went away or the transport failed: nothing to tell.
    Gone,
    /// Something that is not a command, with no id to answer (4101).
    BadRequest(Cow<'static, str>),
    /// A missing or invalid token; the reason names the failed check
    /// (4100).
    Unauthorized(&'static str),
    /// No `connect` within the handshake timeout (4004).
    ConnectTimeout,
    /// Kept sending after rate-limit errors (4003).
    RateLimited,
    /// Its outbox overflowed under the `disconnect` policy (4001).
    SlowConsumer,
    /// Its token's `exp` passed without a `refresh` (4005).
    TokenExpired,
    /// Disconnected through the HTTP API (4002).
    Api(String),
    /// The server is shutting down; come back after `retry_ms` (1001).
    Shutdown {
        /// When to come back, in milliseconds.
        retry_ms: u128,
    },
    /// Closed by an endpoint with its own code (4000-4999).
    Endpoint {
        /// The application's code.
        code: u16,
        /// Why.
        reason: String,
    },
    /// A failure on our side: a panic, or a token key that did not load
    /// (1011).
    Internal(&'static str),
}
