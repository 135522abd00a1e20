//! WebSocket client and server for tokio (RFC 6455, RFC 7692).
//!
//! The I/O pump around the sans-I/O core [`herald_proto`]: read bytes,
//! feed the core, write what it queued (several frames per vectored
//! write), arm its one timer. Works over any `AsyncRead + AsyncWrite`:
//! TCP, TLS (rustls), or an HTTP upgrade inside hyper/axum (feature
//! `hyper`).
//!
//! ```text
//!  TcpStream / TlsStream / Upgraded
//!        |  poll_read_buf (buffer only while data flows)
//!        v
//!  WebSocket<S> ── herald_proto::Connection ── events ──> recv() / Stream
//!        ^                                  \── frames ──> vectored write
//!        └─ send() / try_send() / Sink ───────^   (waits above the high-water mark)
//! ```
//!
//! # Example: an echo server and a client
//!
//! ```
//! use herald::{Acceptor, Client, CloseCode, Config, Message};
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/", listener.local_addr()?);
//! tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await.unwrap();
//!     let mut ws = Acceptor::new(Config::default()).accept(tcp).await.unwrap();
//!     while let Some(Ok(msg)) = ws.recv().await {
//!         ws.send(msg).await.unwrap();
//!     }
//! });
//!
//! let (mut ws, _response) = Client::new(url).connect().await?;
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
//! let reply = ws.close(CloseCode::NORMAL, "done").await?;
//! assert_eq!(reply.code, CloseCode::NORMAL);
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour worth knowing
//!
//! - **Keepalive** runs while the socket is polled for input: a ping after
//!   [`ProtocolConfig::ping_interval`] of silence; if nothing at all comes
//!   back within `pong_timeout`, a Close 1011 is sent (best effort) and the
//!   socket reports [`CloseCode::ABNORMAL`] (1006) locally, like a browser
//!   does for a connection that died.
//! - **Backpressure**: `send` waits while more than
//!   [`Config::write_high_water`] bytes are queued; `try_send` says
//!   [`TrySendError::Full`] instead; a peer that sends without reading is
//!   not read from until its replies drain.
//! - **Memory**: an idle connection holds no write buffer, and gives back
//!   the last read's buffer and its queues' memory when its timer next
//!   fires; the socket itself is 384 bytes over a `TcpStream`.
//! - **Cancel safety**: `recv` and `recv_fragment` are cancel safe; `send`
//!   is not once its message is queued.
//! - **Out of descriptors**: [`accept_tcp`] and [`AcceptBackoff`] keep a
//!   server's accept loop alive through `EMFILE`/`ENFILE`: it waits, serves
//!   the connections it has, and accepts again once descriptors free up.
//! - **One message to many connections**: frame it once as a
//!   [`PreparedMessage`] and queue it on each with
//!   [`WebSocket::start_send_prepared`] (or [`WebSocket::send_prepared`]):
//!   no copy per connection. A server that accepts permessage-deflate with
//!   [`DeflateConfig::no_context_takeover`] then also compresses it once
//!   per window size rather than once per connection, and keeps no zlib
//!   state between messages (see `examples/broadcast.rs`).
//! - **Errors** are blamed: [`Error::Protocol`] (the peer), [`Error::User`]
//!   (the caller), [`Error::Io`] (the transport). A clean close is `None`
//!   from `recv`, with [`WebSocket::close_frame`] telling why.
//!
//! # Features
//!
//! - `tls` (default): `wss://` with rustls (ring).
//! - `webpki-roots` (default): trust Mozilla's roots; `native-roots`: the
//!   system's.
//! - `hyper`: accept upgrades inside a hyper or axum server.
//! - `event-loop`: [`event_loop`], a server on one epoll loop per thread
//!   with callbacks, for the lowest cost per message (Unix).
#![doc(test(attr(deny(warnings))))]

mod accept;
mod client;
mod config;
mod error;
#[cfg(all(feature = "event-loop", unix))]
pub mod event_loop;
mod server;
mod socket;
mod split;
mod stream;
#[cfg(feature = "hyper")]
pub mod upgrade;

pub use accept::{AcceptAction, AcceptBackoff, accept_tcp};
pub use client::{Client, connect};
pub use config::Config;
pub use error::{Error, Phase};
pub use server::{Acceptor, Decision, Reject, Upgrade, accept};
pub use socket::{TrySendError, WebSocket};
pub use split::{ReadHalf, WriteHalf};
pub use stream::MaybeTlsStream;
#[cfg(feature = "tls")]
pub use stream::{client_config, server_config_from_pem};

/// Protocol limits and timers; see [`Config::protocol`].
pub use herald_proto::Config as ProtocolConfig;
pub use herald_proto::connection::{Fragment, MessageKind};
pub use herald_proto::handshake::{Request, Response};
pub use herald_proto::{
    CloseCode, CloseFrame, DeflateConfig, DeflateParams, Message, PreparedMessage, Utf8Bytes,
};

/// Re-exported so users can name TLS types without a second dependency.
#[cfg(feature = "tls")]
pub use rustls;
