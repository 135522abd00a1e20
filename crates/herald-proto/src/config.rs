//! Limits and timers of a connection, with safe defaults.

use std::time::Duration;

/// How received data messages are handed to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageMode {
    /// Each message is reassembled and delivered whole as
    /// [`Event::Message`](crate::Event::Message).
    #[default]
    Buffered,
    /// Payload is delivered as it arrives, as
    /// [`Event::Fragment`](crate::Event::Fragment) pieces, without holding
    /// the whole message: for messages too large to buffer. UTF-8 and the
    /// size limit are still checked, piece by piece.
    Streaming,
}

/// Settings of a [`Connection`](crate::Connection).
///
/// The defaults are safe for a server facing the internet: every limit is
/// finite, and keepalive is on so half-dead connections are found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload of one received frame. Default 16 MiB.
    pub max_frame_size: usize,
    /// Largest received message, counted after decompression and enforced
    /// while inflating, so a compression bomb stops early. Default 64 MiB.
    pub max_message_size: usize,
    /// How received messages are delivered. Default [`MessageMode::Buffered`].
    pub message_mode: MessageMode,
    /// Send a Ping after this long without receiving anything. Default 30 s;
    /// `None` turns keepalive off.
    pub ping_interval: Option<Duration>,
    /// Fail the connection (1011) when nothing arrives this long after a
    /// keepalive Ping. Default 20 s.
    pub pong_timeout: Duration,
    /// Close the connection (1001) when no data message was sent or
    /// received for this long. Default `None` (no idle timeout).
    pub idle_timeout: Option<Duration>,
    /// How long to wait for the peer's Close frame after sending ours before
    /// giving up on the close handshake. Default 10 s.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            message_mode: MessageMode::Buffered,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(20),
            idle_timeout: None,
            close_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }

    /// Sets [`Config::message_mode`].
    pub fn message_mode(mut self, mode: MessageMode) -> Self {
        self.message_mode = mode;
        self
    }

    /// Sets [`Config::ping_interval`].
    pub fn ping_interval(mut self, d: Option<Duration>) -> Self {
        self.ping_interval = d;
        self
    }

    /// Sets [`Config::pong_timeout`].
    pub fn pong_timeout(mut self, d: Duration) -> Self {
        self.pong_timeout = d;
        self
    }

    /// Sets [`Config::idle_timeout`].
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Sets [`Config::close_timeout`].
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }
}
