//! Sans-I/O WebSocket: RFC 6455 with permessage-deflate (RFC 7692).
//!
//! The whole protocol as a deterministic state machine: bytes and time go
//! in, events and bytes to write come out. No sockets, no async runtime, no
//! clock, no random numbers of its own (time is passed in as `Instant`,
//! client masking keys come from a caller-supplied source), so every
//! behaviour is testable as a byte transcript. The `herald` crate drives
//! it with tokio.
//!
//! ```text
//!            handshake::parse_request / ClientHandshake   (RFC 6455 4)
//!                               |
//!                               v
//!  bytes in ──> Connection::receive ──> poll_event ──> Message, Ping, Closed...
//!                  | frame::FrameHeader::parse     (5.2)
//!                  | unmask (5.3), UTF-8 (8.1), inflate (RFC 7692)
//!                  | fragments (5.4), control frames (5.5), close (7)
//!  send(Message) ──> Connection ──> poll_transmit ──> header [u8; 14] + payload
//!  time ──> poll_timeout / handle_timeout: keepalive, idle, close timers
//! ```
//!
//! # The call loop
//!
//! After every input (`receive`, `receive_eof`, `handle_timeout`, `send`,
//! `close`...), drain [`Connection::poll_event`] and act on each event,
//! then drain [`Connection::poll_transmit`] and write each frame, then
//! re-arm a timer for [`Connection::poll_timeout`]. `receive` stops after
//! each complete data message (so the application answers it before a
//! later frame in the same read can fail the connection): while it still
//! consumes bytes, call it again before reading more.
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use herald_proto::{Config, Connection, Event, Message};
//!
//! let now = Instant::now();
//! let mut server = Connection::server(Config::default(), now);
//! // A masked text frame "Hello" from a client (RFC 6455 5.7).
//! let mut buf = BytesMut::from(&b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"[..]);
//! server.receive(&mut buf, now)?;
//! while let Some(event) = server.poll_event() {
//!     if let Event::Message(msg) = event {
//!         assert_eq!(msg, Message::text("Hello"));
//!         server.send(msg)?; // echo
//!     }
//! }
//! let frame = server.poll_transmit().unwrap();
//! assert_eq!(frame.head.as_bytes(), b"\x81\x05");
//! assert_eq!(&frame.payload[..], b"Hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sending one message to many connections
//!
//! [`PreparedMessage`] frames a message once; [`Connection::send_prepared`]
//! queues that frame on each connection without copying it. Accept
//! permessage-deflate with [`DeflateConfig::no_context_takeover`] and the
//! message is compressed once per window size too, rather than once per
//! connection, and no connection keeps zlib state between messages.
//!
//! # Errors
//!
//! A peer that breaks the protocol makes [`Connection::receive`] return a
//! [`ProtocolError`]; the Close frame with the matching code (1002, 1007,
//! 1009) is already queued, and further input is discarded. That `Err` is
//! the end of the connection: no [`Event::Closed`] follows it. The caller's
//! mistakes (sending after close) are [`UserError`]s. A clean close is not
//! an error: it is [`Event::Closed`].
//!
//! # Limits
//!
//! [`Config`] bounds frame size (16 MiB), message size after inflating
//! (64 MiB, enforced while inflating), and [`handshake::HandshakeLimits`]
//! the handshake head (8 KiB, 64 fields). Keepalive is on by default
//! (ping after 30 s of silence, fail after 20 s more).
//!
//! # Non-features
//!
//! - Extensions other than permessage-deflate; RSV2 and RSV3 are always
//!   refused.
//! - HTTP beyond the upgrade: no redirects, no authentication challenges,
//!   no HTTP/2 (RFC 8441) or HTTP/3 (RFC 9220) bootstrapping.
//! - I/O of any kind.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod close;
mod config;
pub mod connection;
pub mod deflate;
mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
mod message;
mod prepared;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, MessageMode};
pub use connection::{Connection, Event, Fragment, Transmit};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{ProtocolError, UserError};
pub use frame::{FrameHeader, OpCode};
pub use message::{Message, Utf8Bytes};
pub use prepared::PreparedMessage;

/// Which end of the connection this is. It decides the masking direction
/// (RFC 6455 5.1: clients mask, servers do not) and who closes TCP first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake.
    Client,
    /// The end that answered it.
    Server,
}
