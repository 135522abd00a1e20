//! Sans-I/O WebSocket: RFC 6455 with permessage-deflate (RFC 7692).
//!
//! (crate docs to be completed)
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod close;
mod config;
pub mod connection;
pub mod deflate;
mod error;
pub mod frame;
pub mod handshake;
mod message;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, MessageMode};
pub use connection::{Connection, Event, Fragment, Transmit};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{ProtocolError, UserError};
pub use frame::{FrameHeader, OpCode};
pub use message::{Message, Utf8Bytes};

/// Which end of the connection this is. It decides the masking direction
/// (RFC 6455 5.1: clients mask, servers do not) and who closes TCP first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake.
    Client,
    /// The end that answered it.
    Server,
}
