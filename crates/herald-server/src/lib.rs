//! Herald's push server: real-time channels over WebSocket for any web
//! application, with no WebSocket code to write.
//!
//! ```text
//!  browsers (web/herald.js)          backends
//!        |  WebSocket, JSON             |  POST /api/publish {channel, data}
//!        v  /connection/websocket       v  (Authorization: apikey ...)
//!   session (one task each) <----> Hub <---- endpoint logic (Rust, in process)
//!     outbox: bounded queue,        this node's subscribers
//!     slow-consumer policy           |  ^ every publication: broker.publish,
//!                                    v  |   then delivered back for fan-out
//!                                   Broker (in memory by default): epochs,
//!                                   offsets, history (size, TTL), presence
//! ```
//!
//! - **Channels** are multiplexed over one connection; a channel's
//!   namespace (the part before `:`) sets who may publish, presence,
//!   history size and TTL, and the slow-consumer policy.
//! - **No lost messages across reconnects**: every publication has an
//!   offset in its channel's epoch; a client that reconnects with
//!   (epoch, offset) gets what it missed, or is told the gap cannot be
//!   filled.
//! - **One serialization per publication**, shared by all subscribers,
//!   and with permessage-deflate one compression too (`deflate =
//!   "shared"`: no context takeover, no zlib state per connection).
//! - **One path per publication** through a broker seam (`broker/`):
//!   the broker assigns offsets and keeps history and presence, then
//!   hands publications back to each node's hub for fan-out. In memory
//!   by default; with `[broker] url`, in Redis (`broker/redis/`), shared
//!   by several nodes behind any load balancer: one offset sequence per
//!   channel, gaps filled from history, presence with expiry, requests
//!   between nodes (`nodes.rs`), channels sharded over several Redis.
//! - **HTTP transports** for clients without WebSocket (`transport/`):
//!   HTTP streaming and SSE with commands as POSTs, stateless long
//!   polling and polling from history, SSE without an SDK.
//! - **Sessions know no socket**: `session.rs` handles commands and ends
//!   with a typed `Disconnect`; `transport/websocket.rs` pumps frames
//!   and turns that into a close code, so HTTP transports can sit beside
//!   it (DESIGN.md has the layout).
//! - **At the door**: Origin allowlist, connection limit, per-connection
//!   command rate limit, message size limit, JWT tokens (HS256/384/512,
//!   RS256, ES256; the algorithm fixed by configuration) with expiry and
//!   refresh on a live connection, handshake timeout; HTTP header, body
//!   and idle timeouts and a head size cap; out of descriptors, it waits
//!   and keeps serving.
//! - **TLS** (`tls_cert`, `tls_key`): https:// and wss:// with rustls.
//! - **Operations**: Prometheus `/metrics`, `/health`, graceful drain on
//!   shutdown; optionally the API and metrics on a separate
//!   `admin_listen` address.
//!
//! The wire protocol is specified in `docs/protocol.md`; the design in
//! `crates/herald-server/DESIGN.md`.
//!
//! # Non-features (yet)
//!
//! NATS as a broker; Redis Cluster is untested (keys share hash tags,
//! but node keys are not per channel).

mod auth;
mod broker;
mod config;
mod delivery;
mod demo;
mod demo_qr;
mod endpoint;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod hub;
mod limits;
mod metrics;
mod nodes;
pub mod protocol;
mod server;
mod session;
mod threads;
mod transport;

pub use auth::{
    Claims, TokenAlgorithm, TokenError, TokenVerifier, sign as sign_token,
    sign_with as sign_token_with, unix_now, verify as verify_token,
};
pub use config::{BrokerConfig, DeflateMode, NamespaceConfig, QueuePolicy, ServerConfig};
pub use demo::{ARENA, SYMBOLS};
pub use endpoint::{Endpoint, Session};
pub use hub::{History, Hub, Published};
pub use metrics::Metrics;
pub use server::{Server, WEBSOCKET_PATH, bind_threads};
