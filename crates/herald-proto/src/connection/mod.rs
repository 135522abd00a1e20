//! The connection state machine: frames in, events and frames out.
//!
//! The call loop, once for all:
//!
//! 1. Feed what the transport read: [`Connection::receive`] (again, after
//!    step 3, while it still consumes bytes), or the end of the stream:
//!    [`Connection::receive_eof`].
//! 2. Drain frames to write with [`Connection::poll_transmit`] and write them.
//! 3. Drain [`Connection::poll_event`] and act on each event.
//! 4. Arm a timer for [`Connection::poll_timeout`]; when it fires, call
//!    [`Connection::handle_timeout`] and go to 2.
//!
//! Sending ([`Connection::send`], [`Connection::ping`],
//! [`Connection::close`]...) only queues frames: go to 2 after it.

mod keepalive;
mod recv;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use self::keepalive::Keepalive;
use self::recv::Receiver;
use crate::Role;
use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::deflate::{DeflateConfig, DeflateParams, PerMessageDeflate};
use crate::error::{ProtocolError, UserError};
use crate::frame::{FrameHeader, Head, OpCode, apply_mask};
use crate::message::Message;
use crate::prepared::PreparedMessage;

/// Source of client masking keys.
///
/// RFC 6455 5.3: "The masking key MUST be derived from a strong source of
/// entropy". The core has no RNG of its own, so the caller supplies one.
pub type MaskSource = Box<dyn FnMut() -> [u8; 4] + Send + Sync>;

/// Something the caller must act on, drained with [`Connection::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete data message ([`MessageMode::Buffered`](crate::MessageMode)).
    Message(Message),
    /// A piece of a data message ([`MessageMode::Streaming`](crate::MessageMode)).
    Fragment(Fragment),
    /// A Ping arrived; the Pong is already queued.
    Ping(Bytes),
    /// A Pong arrived.
    Pong(Bytes),
    /// The connection is closed: the close handshake completed (code from
    /// the peer's Close frame, [`CloseCode::NO_STATUS_RECEIVED`] if it had
    /// none), or it ended without one ([`CloseCode::ABNORMAL`]: the stream
    /// ended, the close or keepalive timer fired). Nothing more will be
    /// received. A server should now close the transport; a client should
    /// wait briefly for the server to close it (RFC 6455 7.1.1). A
    /// connection that failed (an `Err` from [`Connection::receive`]) ends
    /// with that error instead, without this event.
    Closed(CloseFrame),
}

/// Whether a data message is text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
}

/// A piece of a data message, in streaming mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Text or binary, as set by the message's first frame.
    pub kind: MessageKind,
    /// Payload bytes, unmasked and inflated. For text, every piece taken
    /// so far is a valid UTF-8 prefix, but a code point may be split
    /// between two pieces.
    pub payload: Bytes,
    /// This is the last piece of the message.
    pub fin: bool,
}

/// A frame to write: header and payload, for one vectored write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The encoded frame header.
    pub head: Head,
    /// The payload, already masked for a client.
    pub payload: Bytes,
}

impl Transmit {
    /// Header plus payload length.
    pub fn len(&self) -> usize {
        self.head.as_bytes().len() + self.payload.len()
    }

    /// Always false: a frame has at least a 2-byte header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Where the connection is in its life (RFC 6455 4.1 and 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Data flows both ways.
    Open,
    /// We sent a Close frame and are waiting for the peer's.
    CloseSent {
        /// When we stop waiting.
        deadline: Instant,
    },
    /// The close handshake completed or the connection failed; all further
    /// input is discarded.
    Closed,
}

/// A WebSocket connection after the opening handshake.
pub struct Connection {
    role: Role,
    /// Shared by every connection of an endpoint: settings are per
    /// endpoint, and 88 bytes per idle connection add up.
    config: Arc<Config>,
    state: State,
    receiver: Receiver,
    /// Boxed: connections without compression do not pay for it.
    deflate: Option<Box<PerMessageDeflate>>,
    /// A message sent with [`Connection::send_frame`] is in progress;
    /// `true` if it is compressed.
    sending: Option<bool>,
    transmits: VecDeque<Transmit>,
    /// Bytes of the first transmit already written (see
    /// [`Connection::advance_transmit`]).
    transmitted: usize,
    buffered: usize,
    events: VecDeque<Event>,
    keepalive: Keepalive,
    /// Boxed again: a thin pointer, as servers have none.
    mask: Option<Box<MaskSource>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("deflate", &self.deflate.is_some())
            .field("transmits", &self.transmits.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The server end of a connection whose handshake completed at `now`.
    ///
    /// Pass an `Arc<Config>` to share one configuration among many
    /// connections.
    pub fn server(config: impl Into<Arc<Config>>, now: Instant) -> Self {
        Self::new(Role::Server, config.into(), None, now)
    }

    /// The client end; `mask` supplies a fresh masking key per frame.
    pub fn client(config: impl Into<Arc<Config>>, mask: MaskSource, now: Instant) -> Self {
        Self::new(Role::Client, config.into(), Some(mask), now)
    }

    fn new(role: Role, config: Arc<Config>, mask: Option<MaskSource>, now: Instant) -> Self {
        Self {
            role,
            keepalive: Keepalive::new(&config, now),
            receiver: Receiver::default(),
            config,
            state: State::Open,
            deflate: None,
            sending: None,
            transmits: VecDeque::new(),
            transmitted: 0,
            buffered: 0,
            events: VecDeque::new(),
            mask: mask.map(Box::new),
        }
    }

    /// Enables permessage-deflate with the parameters the handshake agreed.
    pub fn with_deflate(mut self, params: DeflateParams, config: &DeflateConfig) -> Self {
        self.deflate = Some(Box::new(PerMessageDeflate::new(self.role, params, config)));
        self
    }

    /// This end's role.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is in its life.
    #[inline]
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether permessage-deflate is in use.
    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// The permessage-deflate parameters the handshake agreed, if it is in
    /// use. `server_max_window_bits` says which compressed frame of a
    /// [`PreparedMessage`] a server connection sends.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|d| d.params())
    }

    /// Whether permessage-deflate holds zlib state now (a compressor or an
    /// inflater). Between messages, a side without context takeover holds
    /// none; with [`DeflateConfig::no_context_takeover`] neither does.
    pub fn holds_deflate_state(&self) -> bool {
        self.deflate.as_ref().is_some_and(|d| d.holds_state())
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- input --------------------------------------------------------

    /// Processes bytes read from the transport.
    ///
    /// Complete frames are taken from the front of `buf`, up to and
    /// including the first one that completes a data message; the rest
    /// stays in `buf`. So after draining events, call `receive` again while
    /// it consumes bytes, before reading more: the application then answers
    /// each message before a later frame in the same read can fail the
    /// connection. An incomplete frame is left in `buf` (already unmasked
    /// and UTF-8 checked as far as it goes) until more bytes are appended.
    /// Payloads are split off `buf` without copying.
    ///
    /// On a protocol error the connection fails: a Close frame with the
    /// matching code is queued, the state becomes [`State::Closed`], and the
    /// error is returned. Drain [`Connection::poll_transmit`] (to send that
    /// Close) and events either way.
    #[inline]
    pub fn receive(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), ProtocolError> {
        if matches!(self.state, State::Closed) {
            // RFC 6455 5.5.1: after the Close handshake, or after failing
            // the connection, nothing more is processed.
            buf.clear();
            return Ok(());
        }
        if !buf.is_empty() {
            self.keepalive.heard(&self.config, now);
        }
        let result = recv::receive(self, buf, now);
        if let Err(e) = result {
            self.fail(e);
            buf.clear();
        }
        result
    }

    /// The transport reached end of stream.
    ///
    /// If the close handshake had not completed, the connection closed
    /// abnormally: an [`Event::Closed`] with [`CloseCode::ABNORMAL`] follows.
    pub fn receive_eof(&mut self) {
        if !matches!(self.state, State::Closed) {
            self.state = State::Closed;
            self.events.push_back(Event::Closed(CloseFrame::new(
                CloseCode::ABNORMAL,
                "connection closed without a close frame",
            )));
        }
    }

    /// When [`Connection::handle_timeout`] should next be called.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open => self.keepalive.next_deadline(),
            State::CloseSent { deadline } => Some(deadline),
            State::Closed => None,
        }
    }

    /// Runs the timers due at `now`: keepalive pings, the pong timeout,
    /// the idle timeout and the close timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => {}
            State::CloseSent { deadline } => {
                if now >= deadline {
                    self.state = State::Closed;
                    self.events.push_back(Event::Closed(CloseFrame::new(
                        CloseCode::ABNORMAL,
                        "close handshake timed out",
                    )));
                }
            }
            State::Open => match self.keepalive.on_timeout(&self.config, now) {
                keepalive::Action::None => {}
                keepalive::Action::Ping(payload) => self.queue_control(OpCode::Ping, payload),
                keepalive::Action::PongTimeout => {
                    // Best effort: the peer is probably gone, but if it is
                    // merely slow it learns why we left.
                    let frame =
                        CloseFrame::new(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
                    self.queue_control(OpCode::Close, frame.encode());
                    self.state = State::Closed;
                    self.events.push_back(Event::Closed(CloseFrame::new(
                        CloseCode::ABNORMAL,
                        "keepalive ping timeout",
                    )));
                }
                keepalive::Action::Idle => {
                    let _ = self.close(CloseCode::GOING_AWAY, "idle timeout", now);
                }
            },
        }
    }

    // ----- output -------------------------------------------------------

    /// The next frame to write, if any.
    ///
    /// Either take whole frames with this, or write in place with
    /// [`Connection::transmit_slices`] and [`Connection::advance_transmit`];
    /// after a partial `advance_transmit`, this returns the rest of the
    /// frame's payload only if the header was written whole, so finish
    /// the frame with `advance_transmit` first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        self.buffered -= t.len() - std::mem::take(&mut self.transmitted);
        Some(t)
    }

    /// Fills `out` with the queued bytes, oldest first (header and payload
    /// of each frame as separate slices), for one vectored write without
    /// copying. Returns how many slices were filled. Then report what the
    /// write took with [`Connection::advance_transmit`].
    #[inline]
    pub fn transmit_slices<'a>(&'a self, out: &mut [std::io::IoSlice<'a>]) -> usize {
        // The common case, one whole frame, without the general loop.
        if let ([t], [], 0, [head, body, ..]) = (
            self.transmits.as_slices().0,
            self.transmits.as_slices().1,
            self.transmitted,
            &mut *out,
        ) {
            *head = std::io::IoSlice::new(t.head.as_bytes());
            *body = std::io::IoSlice::new(&t.payload);
            return 1 + usize::from(!t.payload.is_empty());
        }
        let mut n = 0;
        let mut skip = self.transmitted;
        for t in &self.transmits {
            for part in [t.head.as_bytes(), &t.payload[..]] {
                if n == out.len() {
                    return n;
                }
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                out[n] = std::io::IoSlice::new(&part[skip..]);
                skip = 0;
                n += 1;
            }
        }
        n
    }

    /// Marks `n` bytes from [`Connection::transmit_slices`] as written.
    #[inline]
    pub fn advance_transmit(&mut self, mut n: usize) {
        n = n.min(self.buffered);
        self.buffered -= n;
        if self.buffered == 0 {
            // All written (the common case): no walk through the queue.
            self.transmits.clear();
            self.transmitted = 0;
            return;
        }
        while n > 0 {
            let Some(front) = self.transmits.front() else {
                break;
            };
            let left = front.len() - self.transmitted;
            if n < left {
                self.transmitted += n;
                return;
            }
            n -= left;
            self.transmitted = 0;
            self.transmits.pop_front();
        }
    }

    /// How many frames are waiting to be written.
    #[inline]
    pub fn transmit_count(&self) -> usize {
        self.transmits.len()
    }

    /// Whether frames are waiting to be written.
    #[inline]
    pub fn has_transmits(&self) -> bool {
        !self.transmits.is_empty()
    }

    /// Frees the memory of empty queues; for an I/O layer to call when the
    /// connection goes idle, so that an idle connection holds only this
    /// struct.
    pub fn shrink_to_fit(&mut self) {
        if self.transmits.is_empty() {
            self.transmits = VecDeque::new();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    /// The next event, if any.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes queued for writing, for write backpressure.
    #[inline]
    pub fn buffered_amount(&self) -> usize {
        self.buffered
    }

    /// Queues a data message, compressed if permessage-deflate is on and
    /// the message is over the threshold. Drain
    /// [`Connection::poll_transmit`] next.
    #[inline]
    pub fn send(&mut self, message: Message) -> Result<(), UserError> {
        self.check_open()?;
        if self.sending.is_some() {
            return Err(UserError::FragmentOutOfOrder);
        }
        let (opcode, payload) = match message {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        self.keepalive.sent_data();
        match &mut self.deflate {
            Some(d) if d.should_compress(payload.len()) => {
                let compressed = d.compress(&payload, true);
                self.queue_frame(opcode, true, true, compressed);
            }
            _ => self.queue_frame(opcode, true, false, payload),
        }
        Ok(())
    }

    /// Queues a message framed once for many connections, without copying
    /// it. Drain [`Connection::poll_transmit`] next.
    ///
    /// The frame sent is the one this connection agreed to:
    /// - no permessage-deflate, or a message under
    ///   [`DeflateConfig::threshold`]: the plain frame;
    /// - `server_no_context_takeover` (a server) agreed: the frame
    ///   compressed for this connection's window size, shared with every
    ///   other connection of that size (compressed now if none asked for
    ///   it before);
    /// - context takeover: the message is compressed by this connection,
    ///   as [`Connection::send`] does.
    ///
    /// A client masks every frame with a fresh key, so it cannot share one:
    /// it sends the message as [`Connection::send`] does.
    #[inline]
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), UserError> {
        if self.mask.is_some() {
            return self.send(message.to_message());
        }
        self.check_open()?;
        if self.sending.is_some() {
            return Err(UserError::FragmentOutOfOrder);
        }
        self.keepalive.sent_data();
        let transmit = match &mut self.deflate {
            Some(d) if d.should_compress(message.len()) => match d.shared_encoding() {
                Some((window_bits, level)) => message
                    .compressed(window_bits, level)
                    .unwrap_or_else(|| message.plain()),
                None => {
                    let compressed = d.compress(message.payload(), true);
                    self.queue_frame(message.opcode(), true, true, compressed);
                    return Ok(());
                }
            },
            _ => message.plain(),
        };
        self.buffered += transmit.len();
        self.transmits.push_back(transmit);
        Ok(())
    }

    /// Queues one frame of a message sent in pieces, so a large message
    /// need not be held whole. The first call starts a message of `kind`;
    /// the call with `fin` ends it. Control frames may be sent in between;
    /// other data messages may not. With permessage-deflate on, the whole
    /// message is compressed.
    ///
    /// For text, the caller is responsible for the concatenated pieces
    /// being UTF-8; a piece may split a code point.
    pub fn send_frame(
        &mut self,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), UserError> {
        self.check_open()?;
        self.keepalive.sent_data();
        let (opcode, compressed) = match self.sending {
            Some(compressed) => (OpCode::Continuation, compressed),
            None => {
                let opcode = match kind {
                    MessageKind::Text => OpCode::Text,
                    MessageKind::Binary => OpCode::Binary,
                };
                (opcode, self.deflate.is_some())
            }
        };
        let payload = match (&mut self.deflate, compressed) {
            (Some(d), true) => d.compress(&payload, fin),
            _ => payload,
        };
        // RFC 7692 6.1: RSV1 is set on the first frame of a compressed
        // message only.
        let rsv1 = compressed && opcode != OpCode::Continuation;
        self.queue_frame(opcode, fin, rsv1, payload);
        self.sending = if fin { None } else { Some(compressed) };
        Ok(())
    }

    /// Queues a Ping with `payload` (at most 125 bytes).
    pub fn ping(&mut self, payload: Bytes) -> Result<(), UserError> {
        self.check_open()?;
        self.check_control_len(&payload)?;
        self.queue_control(OpCode::Ping, payload);
        Ok(())
    }

    /// Queues an unsolicited Pong (a unidirectional heartbeat, RFC 6455 5.5.3).
    pub fn pong(&mut self, payload: Bytes) -> Result<(), UserError> {
        self.check_open()?;
        self.check_control_len(&payload)?;
        self.queue_control(OpCode::Pong, payload);
        Ok(())
    }

    /// Starts the close handshake: queues a Close frame and waits up to
    /// [`Config::close_timeout`] for the peer's. [`Event::Closed`] follows.
    ///
    /// `code` must be sendable ([`CloseCode::is_sendable`]), except
    /// [`CloseCode::NO_STATUS_RECEIVED`], which sends a Close frame with an
    /// empty payload. A reason over 123 bytes is cut.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) -> Result<(), UserError> {
        self.check_open()?;
        let payload = if code == CloseCode::NO_STATUS_RECEIVED {
            Bytes::new()
        } else if code.is_sendable() {
            CloseFrame::new(code, reason).encode()
        } else {
            return Err(UserError::InvalidCloseCode);
        };
        self.queue_control(OpCode::Close, payload);
        self.state = State::CloseSent {
            deadline: now + self.config.close_timeout,
        };
        Ok(())
    }

    // ----- internals ----------------------------------------------------

    fn check_open(&self) -> Result<(), UserError> {
        match self.state {
            State::Open => Ok(()),
            _ => Err(UserError::AlreadyClosed),
        }
    }

    fn check_control_len(&self, payload: &[u8]) -> Result<(), UserError> {
        if payload.len() > 125 {
            return Err(UserError::ControlFrameTooLong);
        }
        Ok(())
    }

    /// Fails the connection (RFC 6455 7.1.7): send a Close with the error's
    /// code unless we already sent one, then discard everything.
    fn fail(&mut self, e: ProtocolError) {
        if matches!(self.state, State::Open) {
            let frame = CloseFrame::new(e.close_code(), e.reason());
            self.queue_control(OpCode::Close, frame.encode());
        }
        self.state = State::Closed;
    }

    fn queue_control(&mut self, opcode: OpCode, payload: Bytes) {
        self.queue_frame(opcode, true, false, payload);
    }

    fn queue_frame(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Bytes) {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        let payload = match &mut self.mask {
            // RFC 6455 5.3: "The masking key MUST be derived from a strong
            // source of entropy", fresh for each frame.
            Some(next_key) => {
                let key = next_key();
                header.mask = Some(key);
                // Mask in place when we hold the only reference; copy
                // otherwise, since the caller's bytes must stay intact.
                let mut owned = payload
                    .try_into_mut()
                    .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                apply_mask(&mut owned, key, 0);
                owned.freeze()
            }
            None => payload,
        };
        let t = Transmit {
            head: header.encode(),
            payload,
        };
        self.buffered += t.len();
        self.transmits.push_back(t);
    }
}

#[cfg(test)]
mod tests;
