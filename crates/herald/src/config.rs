//! Settings shared by clients and servers.

use std::time::Duration;

use herald_proto::DeflateConfig;
use herald_proto::handshake::HandshakeLimits;

/// Settings of a WebSocket endpoint. Every limit is finite by default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Protocol limits and timers: frame and message size, keepalive,
    /// idle and close timeouts, buffered or streaming messages.
    pub protocol: herald_proto::Config,
    /// permessage-deflate: offered by a client, accepted by a server.
    /// Default `None` (off): compression costs CPU and about 300 KiB per
    /// connection with context takeover; turn it on where bandwidth matters.
    pub deflate: Option<DeflateConfig>,
    /// Sending waits (and `try_send` reports full) while more than this
    /// many bytes are queued for the peer. Default 64 KiB.
    pub write_high_water: usize,
    /// How much to read at a time. The read buffer exists only while data
    /// is arriving; an idle connection holds none. Default 8 KiB.
    pub read_chunk: usize,
    /// Time allowed for the opening handshake; a peer that connects and
    /// stays silent is dropped after it. Default 10 s.
    pub handshake_timeout: Duration,
    /// Size limits on the handshake's HTTP head.
    pub handshake_limits: HandshakeLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: herald_proto::Config::default(),
            deflate: None,
            write_high_water: 64 << 10,
            read_chunk: 8 << 10,
            handshake_timeout: Duration::from_secs(10),
            handshake_limits: HandshakeLimits::default(),
        }
    }
}

impl Config {
    /// Sets [`Config::protocol`].
    pub fn protocol(mut self, protocol: herald_proto::Config) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets [`Config::deflate`].
    pub fn deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }

    /// Sets [`Config::write_high_water`].
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.write_high_water = bytes;
        self
    }

    /// Sets [`Config::read_chunk`].
    pub fn read_chunk(mut self, bytes: usize) -> Self {
        self.read_chunk = bytes.max(64);
        self
    }

    /// Sets [`Config::handshake_timeout`].
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Sets [`Config::handshake_limits`].
    pub fn handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.handshake_limits = limits;
        self
    }
}
