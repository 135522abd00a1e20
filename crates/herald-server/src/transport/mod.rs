//! The transports: each moves command text from a client into its
//! session and pushes from the session's outbox to the client, and says
//! the session's end its own way.
//!
//! - `websocket.rs`: frames both ways.
//! - `stream.rs`: one long HTTP response (NDJSON for `fetch`, SSE for
//!   `EventSource`) out, commands in as POSTs naming the session by a
//!   signed token (`token.rs`).
//! - `poll.rs`: long polling and polling, stateless: each request carries
//!   the client's position in every channel and is answered from the
//!   broker's history, so any node can answer it.
//! - `sse.rs`: SSE without an SDK: channels in the URL, positions in the
//!   event ids, the browser's own reconnect recovers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, StatusCode, header};
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::http::api::{ApiError, origin_allowed};
use crate::protocol::ErrorCode;

pub(crate) mod poll;
pub(crate) mod sse;
pub(crate) mod stream;
pub(crate) mod token;
pub(crate) mod websocket;

/// What the HTTP transports share on a node: its session tokens, the
/// live streams (so a POSTed command finds its session), the pollers.
#[derive(Debug)]
pub(crate) struct Sessions {
    pub(crate) tokens: token::Tokens,
    next: AtomicU64,
    streams: Mutex<HashMap<u64, mpsc::Sender<String>>>,
    pub(crate) pollers: poll::Pollers,
}

impl Sessions {
    /// Sessions of node `node`.
    pub(crate) fn new(config: &ServerConfig, node: &str) -> Self {
        Self {
            tokens: token::Tokens::new(config.transport_secret.as_deref(), node),
            next: AtomicU64::new(1),
            streams: Mutex::default(),
            pollers: poll::Pollers::default(),
        }
    }

    /// A new id for a stream or a poller on this node.
    pub(crate) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<String>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The Origin rule of the WebSocket endpoint, for the HTTP transports:
/// a browser page from another site gets 403.
pub(crate) fn check_origin(headers: &HeaderMap, config: &ServerConfig) -> Result<(), ApiError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if origin_allowed(origin, host, &config.allowed_origins) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            "origin not allowed",
        ))
    }
}

/// The connection limit, before a stream takes a place (503 past it).
pub(crate) fn check_capacity(server: &crate::server::Server) -> Result<(), ApiError> {
    let config = server.hub.config();
    if server.connections.load(Ordering::Relaxed) >= config.max_connections {
        server.hub.metrics().handshake_failure("capacity");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::LimitExceeded,
            "too many connections",
        ));
    }
    Ok(())
}

/// At most `max_commands_per_post` commands in one request (413 past it).
pub(crate) fn check_commands(n: usize, config: &ServerConfig) -> Result<(), ApiError> {
    if n > config.max_commands_per_post {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::LimitExceeded,
            format!(
                "more than {} commands (max_commands_per_post)",
                config.max_commands_per_post
            ),
        ));
    }
    Ok(())
}

/// Transport requests carry JSON as `application/json`, or as
/// `text/plain`, which a browser sends without a CORS preflight.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            let t = t.trim();
            t.eq_ignore_ascii_case("application/json") || t.eq_ignore_ascii_case("text/plain")
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "Content-Type must be application/json or text/plain",
        ))
    }
}

/// Headers that keep proxies from buffering or transforming a stream.
pub(crate) fn streaming_headers(
    content_type: &'static str,
) -> [(header::HeaderName, &'static str); 3] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache, no-transform"),
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ]
}

/// A message's text made safe for one line (NDJSON) or one `data:` line
/// (SSE): JSON has newlines only as whitespace (inside strings they are
/// escaped), so they become spaces.
pub(crate) fn one_line(text: &str, out: &mut Vec<u8>) {
    out.extend(
        text.bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
}

/// What `client`'s outbox holds now, taken.
pub(crate) fn drain(client: &crate::hub::Client) -> Vec<crate::delivery::Item> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut items = Vec::new();
    let _ = client.outbox.poll_take(&mut cx, usize::MAX, &mut items);
    items
}
