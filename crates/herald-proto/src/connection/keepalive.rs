//! Keepalive and idle timers, driven by injected time.
//!
//! A Ping goes out when nothing at all was received for `ping_interval`.
//! Any byte received afterwards proves the peer alive (a busy peer's Pong
//! may be queued behind data); if none arrives within `pong_timeout`, the
//! connection is half-dead. So a dead peer is found at most
//! `ping_interval + pong_timeout` after it last spoke.
//!
//! Idle: no data message received or sent for `idle_timeout`. Received
//! messages carry a timestamp; sent ones only set a flag (sending takes no
//! clock), so a connection that only sends is closed between 1x and 2x
//! `idle_timeout` after its last message.

use std::time::Instant;

use bytes::Bytes;

use crate::config::Config;

pub(super) enum Action {
    None,
    Ping(Bytes),
    PongTimeout,
    Idle,
}

/// Durations come from the connection's shared [`Config`] on each call
/// rather than being copied here: this is per-connection memory.
#[derive(Debug)]
pub(super) struct Keepalive {
    /// When to ping if nothing is heard before then or, while
    /// `awaiting_pong`, when to give up on the ping that is out. One field
    /// for both: at most one ping is out at a time, and 16 bytes per idle
    /// connection add up.
    ping_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
    awaiting_pong: bool,
    sent_data: bool,
    pings: u32,
}

impl Keepalive {
    pub(super) fn new(config: &Config, now: Instant) -> Self {
        Self {
            ping_deadline: config.ping_interval.map(|d| now + d),
            idle_deadline: config.idle_timeout.map(|d| now + d),
            awaiting_pong: false,
            sent_data: false,
            pings: 0,
        }
    }

    /// Bytes arrived at `now`.
    pub(super) fn heard(&mut self, config: &Config, now: Instant) {
        self.awaiting_pong = false;
        self.ping_deadline = config.ping_interval.map(|d| now + d);
    }

    /// A data message arrived at `now`.
    pub(super) fn received_data(&mut self, config: &Config, now: Instant) {
        self.idle_deadline = config.idle_timeout.map(|d| now + d);
    }

    /// A data message was queued.
    pub(super) fn sent_data(&mut self) {
        self.sent_data = true;
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        match (self.ping_deadline, self.idle_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn on_timeout(&mut self, config: &Config, now: Instant) -> Action {
        if self.awaiting_pong && self.ping_deadline.is_some_and(|t| now >= t) {
            self.awaiting_pong = false;
            self.ping_deadline = None;
            return Action::PongTimeout;
        }
        if let Some(t) = self.idle_deadline
            && now >= t
        {
            if !std::mem::take(&mut self.sent_data) {
                self.idle_deadline = None;
                return Action::Idle;
            }
            self.idle_deadline = config.idle_timeout.map(|d| now + d);
        }
        if !self.awaiting_pong && self.ping_deadline.is_some_and(|t| now >= t) {
            // One ping at a time: the next is armed when the peer is heard.
            self.awaiting_pong = true;
            self.ping_deadline = Some(now + config.pong_timeout);
            self.pings = self.pings.wrapping_add(1);
            return Action::Ping(Bytes::copy_from_slice(&self.pings.to_be_bytes()));
        }
        Action::None
    }
}
