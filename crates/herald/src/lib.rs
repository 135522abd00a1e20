//! WebSocket client and server for tokio (RFC 6455, RFC 7692).
//!
//! (crate docs to be completed)
#![doc(test(attr(deny(warnings))))]

mod client;
mod config;
mod error;
mod server;
mod socket;
mod split;
mod stream;

pub use client::{Client, connect};
pub use config::Config;
pub use error::{Error, Phase};
pub use server::{Acceptor, Decision, Reject, Upgrade, accept};
pub use socket::{TrySendError, WebSocket};
pub use split::{ReadHalf, WriteHalf};
#[cfg(feature = "tls")]
pub use stream::client_config;
pub use stream::MaybeTlsStream;

pub use herald_proto::connection::{Fragment, MessageKind};
pub use herald_proto::handshake::{Request, Response};
pub use herald_proto::{CloseCode, CloseFrame, DeflateConfig, Message, Utf8Bytes};
/// Protocol limits and timers; see [`Config::protocol`].
pub use herald_proto::Config as ProtocolConfig;

/// Re-exported so users can name TLS types without a second dependency.
#[cfg(feature = "tls")]
pub use rustls;
