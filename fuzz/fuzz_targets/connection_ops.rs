//! A sequence of operations on one `Connection` (after quinn's `streams`
//! target): reads, sends, control frames, timers and drains in any order,
//! with an injected mask source and a fake clock.
//!
//! Invariants checked after every operation:
//! - once the connection is not Open, every send returns an error and
//!   queues nothing; once it is Closed, nothing queues anything;
//! - a failed send changes nothing; a receive error leaves it Closed;
//! - `buffered_amount` is the sum of the queued transmits, and what
//!   `transmit_slices` offers; a partial write (`advance_transmit`) takes
//!   exactly what was written;
//! - at most one Close frame is sent, and nothing after it;
//! - `Event::Closed` comes at most once and last;
//! - the timers settle: `handle_timeout` at a deadline moves it on;
//! - everything we transmit is valid WebSocket: it is fed to a peer
//!   `Connection` of the other role, which must accept every byte and
//!   receive exactly the data messages we sent, in order.
#![no_main]

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use herald_proto::connection::{MessageKind, State};
use herald_proto::deflate::{DeflateConfig, DeflateParams, PerMessageDeflate};
use herald_proto::frame::apply_mask;
use herald_proto::{
    CloseCode, CloseFrame, Config, Connection, Event, FrameHeader, Message, MessageMode, OpCode,
    PreparedMessage, Role, UserError,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct Setup {
    client: bool,
    streaming: bool,
    small_limits: bool,
    /// Timers in milliseconds, so `HandleTimeout` can reach them.
    ping_interval: Option<u16>,
    pong_timeout: u16,
    idle_timeout: Option<u16>,
    close_timeout: u16,
    mask_seed: u32,
    deflate: Option<DeflateSetup>,
}

/// permessage-deflate, as both ends agreed it.
#[derive(Arbitrary, Debug)]
struct DeflateSetup {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// 8 + n % 8.
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    /// Our compression level, n % 10 (0 sends everything uncompressed).
    level: u8,
    /// Our threshold in bytes.
    threshold: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes from the peer.
    Receive(Vec<u8>),
    /// A well-formed frame from the peer (masked if it is a client).
    ReceiveFrame {
        opcode: WireOpCode,
        fin: bool,
        rsv1: bool,
        payload: Vec<u8>,
    },
    /// A data message from the peer, compressed by the peer's own codec
    /// (RSV1 set even if deflate was not negotiated: then it is an error).
    ReceiveCompressed(Data),
    /// A Close frame from the peer: no body, or a code and a reason.
    ReceiveClose(Option<(u16, String)>),
    ReceiveEof,
    Send(Data),
    /// One frame of a message sent in pieces; text pieces are strings so
    /// the whole message stays UTF-8, as the caller must ensure.
    SendFrame {
        binary: bool,
        payload: String,
        fin: bool,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close {
        code: u16,
        reason: String,
    },
    /// Advance the clock, then run the timers.
    HandleTimeout {
        advance_ms: u16,
    },
    /// Jump to the next deadline and run the timers until none is due.
    FireTimer,
    /// Take one whole frame with `poll_transmit` (finishing a partly
    /// written one first, as its docs ask).
    PollTransmit,
    /// Drain every frame and event.
    PollAll,
    /// One vectored write through `transmit_slices` into at most `slots`
    /// slices, of which the socket takes `max_bytes`, then
    /// `advance_transmit`: a partial write.
    Write {
        slots: u8,
        max_bytes: u16,
    },
    /// A message framed once for many connections (`send_prepared`):
    /// shared compressed frames must interleave with the connection's own.
    SendPrepared(Data),
}

#[derive(Arbitrary, Debug)]
enum Data {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum WireOpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl From<WireOpCode> for OpCode {
    fn from(op: WireOpCode) -> Self {
        match op {
            WireOpCode::Continuation => OpCode::Continuation,
            WireOpCode::Text => OpCode::Text,
            WireOpCode::Binary => OpCode::Binary,
            WireOpCode::Close => OpCode::Close,
            WireOpCode::Ping => OpCode::Ping,
            WireOpCode::Pong => OpCode::Pong,
        }
    }
}

const SMALL_LIMIT: usize = 1024;
/// More timer runs than this at one instant is a busy loop.
const MAX_TIMER_RUNS: usize = 16;

fuzz_target!(|input: Input| {
    let mut h = Harness::new(&input.setup);
    for op in input.ops {
        h.apply(op);
    }
    h.poll_all();
    assert!(
        h.expected.is_empty(),
        "the peer never received {:?}",
        h.expected
    );
});

struct Harness {
    conn: Connection,
    role: Role,
    now: Instant,
    /// Bytes read from the peer and not yet consumed.
    read_buf: BytesMut,
    close_sent: bool,
    closed_event: bool,
    /// On the wire: is a fragmented message open?
    wire_fragmented: bool,
    /// Bytes written that do not yet make a whole frame.
    wire: Vec<u8>,
    deflate: bool,
    /// The peer's compressor, for `ReceiveCompressed`.
    peer_deflate: PerMessageDeflate,

    /// The other end, fed everything we transmit.
    peer: Connection,
    peer_buf: BytesMut,
    /// Data messages we queued that the peer has not yet received.
    expected: VecDeque<Message>,
    /// A message being sent with `send_frame`: its kind and bytes so far.
    partial: Option<(MessageKind, Vec<u8>)>,
}

impl Harness {
    fn new(s: &Setup) -> Self {
        let ms = |n: u16| Duration::from_millis(u64::from(n));
        let mut config = Config::default()
            .ping_interval(s.ping_interval.map(ms))
            .pong_timeout(ms(s.pong_timeout))
            .idle_timeout(s.idle_timeout.map(ms))
            .close_timeout(ms(s.close_timeout));
        if s.streaming {
            config = config.message_mode(MessageMode::Streaming);
        }
        if s.small_limits {
            config = config
                .max_frame_size(SMALL_LIMIT)
                .max_message_size(SMALL_LIMIT);
        }
        let now = Instant::now();
        let peer_config = Config::default().ping_interval(None);
        let params = s.deflate.as_ref().map(|d| DeflateParams {
            server_no_context_takeover: d.server_no_context_takeover,
            client_no_context_takeover: d.client_no_context_takeover,
            server_max_window_bits: 8 + d.server_max_window_bits % 8,
            client_max_window_bits: 8 + d.client_max_window_bits % 8,
        });
        let ours = s.deflate.as_ref().map_or_else(DeflateConfig::default, |d| {
            DeflateConfig::default()
                .level(u32::from(d.level % 10))
                .threshold(usize::from(d.threshold))
        });
        let theirs = DeflateConfig::default().threshold(0);
        let (role, conn, peer) = if s.client {
            let mut x = s.mask_seed;
            let mask = Box::new(move || {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                x.to_le_bytes()
            });
            (
                Role::Client,
                Connection::client(config, mask, now),
                Connection::server(peer_config, now),
            )
        } else {
            let mask = Box::new(|| [0x37, 0xfa, 0x21, 0x3d]);
            (
                Role::Server,
                Connection::server(config, now),
                Connection::client(peer_config, mask, now),
            )
        };
        let peer_role = match role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        let peer_deflate = PerMessageDeflate::new(peer_role, params.unwrap_or_default(), &theirs);
        let (conn, peer) = match params {
            Some(p) => (conn.with_deflate(p, &ours), peer.with_deflate(p, &theirs)),
            None => (conn, peer),
        };
        Self {
            conn,
            role,
            now,
            read_buf: BytesMut::new(),
            close_sent: false,
            closed_event: false,
            wire_fragmented: false,
            wire: Vec::new(),
            deflate: params.is_some(),
            peer_deflate,
            peer,
            peer_buf: BytesMut::new(),
            expected: VecDeque::new(),
            partial: None,
        }
    }

    fn apply(&mut self, op: Op) {
        let state = self.conn.state();
        let queued = self.conn.buffered_amount();
        match op {
            Op::Receive(bytes) => self.receive(&bytes),
            Op::ReceiveFrame {
                opcode,
                fin,
                rsv1,
                payload,
            } => {
                let frame = self.peer_frame(opcode.into(), fin, rsv1, &payload);
                self.receive(&frame);
            }
            Op::ReceiveCompressed(data) => {
                let (opcode, plain) = match &data {
                    Data::Text(t) => (OpCode::Text, t.as_bytes()),
                    Data::Binary(b) => (OpCode::Binary, &b[..]),
                };
                let compressed = self.peer_deflate.compress(plain, true);
                let frame = self.peer_frame(opcode, true, true, &compressed);
                self.receive(&frame);
            }
            Op::ReceiveClose(body) => {
                let payload = match body {
                    Some((code, reason)) => {
                        let mut p = code.to_be_bytes().to_vec();
                        p.extend_from_slice(reason.as_bytes());
                        p.truncate(125);
                        p
                    }
                    None => Vec::new(),
                };
                let frame = self.peer_frame(OpCode::Close, true, false, &payload);
                self.receive(&frame);
            }
            Op::ReceiveEof => {
                self.conn.receive_eof();
                assert_eq!(self.conn.state(), State::Closed);
            }
            Op::Send(data) => {
                let message = match data {
                    Data::Text(t) => Message::text(t),
                    Data::Binary(b) => Message::binary(b),
                };
                let result = self.conn.send(message.clone());
                if self.partial.is_some() && state == State::Open {
                    assert_eq!(result, Err(UserError::FragmentOutOfOrder));
                }
                self.check_send(state, queued, result.is_ok());
                if result.is_ok() {
                    self.expected.push_back(message);
                }
            }
            Op::SendPrepared(data) => {
                let message = match data {
                    Data::Text(t) => Message::text(t),
                    Data::Binary(b) => Message::binary(b),
                };
                let prepared = PreparedMessage::new(message.clone());
                let result = self.conn.send_prepared(&prepared);
                if self.partial.is_some() && state == State::Open {
                    assert_eq!(result, Err(UserError::FragmentOutOfOrder));
                }
                self.check_send(state, queued, result.is_ok());
                if result.is_ok() {
                    self.expected.push_back(message);
                }
            }
            Op::SendFrame {
                binary,
                payload,
                fin,
            } => {
                let kind = if binary {
                    MessageKind::Binary
                } else {
                    MessageKind::Text
                };
                let payload = Bytes::from(payload.into_bytes());
                let result = self.conn.send_frame(kind, payload.clone(), fin);
                self.check_send(state, queued, result.is_ok());
                if result.is_ok() {
                    let (kind, mut bytes) = self.partial.take().unwrap_or((kind, Vec::new()));
                    bytes.extend_from_slice(&payload);
                    if fin {
                        self.expected.push_back(match kind {
                            MessageKind::Text => {
                                Message::text(String::from_utf8(bytes).expect("pieces are strings"))
                            }
                            MessageKind::Binary => Message::binary(bytes),
                        });
                    } else {
                        self.partial = Some((kind, bytes));
                    }
                }
            }
            Op::Ping(payload) => {
                let too_long = payload.len() > 125;
                let result = self.conn.ping(Bytes::from(payload));
                if too_long && state == State::Open {
                    assert_eq!(result, Err(UserError::ControlFrameTooLong));
                }
                self.check_send(state, queued, result.is_ok());
            }
            Op::Pong(payload) => {
                let too_long = payload.len() > 125;
                let result = self.conn.pong(Bytes::from(payload));
                if too_long && state == State::Open {
                    assert_eq!(result, Err(UserError::ControlFrameTooLong));
                }
                self.check_send(state, queued, result.is_ok());
            }
            Op::Close { code, reason } => {
                let code = CloseCode(code);
                let result = self.conn.close(code, &reason, self.now);
                if state == State::Open
                    && !code.is_sendable()
                    && code != CloseCode::NO_STATUS_RECEIVED
                {
                    assert_eq!(result, Err(UserError::InvalidCloseCode));
                }
                self.check_send(state, queued, result.is_ok());
                if result.is_ok() {
                    assert!(matches!(self.conn.state(), State::CloseSent { .. }));
                    self.partial = None;
                }
            }
            Op::HandleTimeout { advance_ms } => {
                self.now += Duration::from_millis(u64::from(advance_ms));
                self.conn.handle_timeout(self.now);
            }
            Op::FireTimer => {
                if let Some(deadline) = self.conn.poll_timeout() {
                    self.now = self.now.max(deadline);
                }
                let mut runs = 0;
                while self.conn.poll_timeout().is_some_and(|t| t <= self.now) {
                    runs += 1;
                    assert!(runs <= MAX_TIMER_RUNS, "timers do not settle");
                    self.conn.handle_timeout(self.now);
                }
            }
            Op::PollTransmit => {
                self.finish_frame();
                let queued = self.conn.buffered_amount();
                if let Some(t) = self.conn.poll_transmit() {
                    assert_eq!(self.conn.buffered_amount(), queued - t.len());
                    self.written(&[t.head.as_bytes(), &t.payload[..]].concat());
                } else {
                    assert_eq!(queued, 0, "buffered_amount with nothing queued");
                }
            }
            Op::PollAll => self.poll_all(),
            Op::Write { slots, max_bytes } => {
                self.write(usize::from(slots), usize::from(max_bytes));
            }
        }
        if self.conn.state() != State::Open {
            self.partial = None;
        }
        if state == State::Closed {
            assert_eq!(self.conn.state(), State::Closed, "left Closed");
            assert!(self.conn.buffered_amount() <= queued, "queued after Closed");
            assert_eq!(self.conn.poll_timeout(), None, "a timer after Closed");
        }
    }

    /// After a send: an error means nothing happened; only Open sends.
    fn check_send(&self, state: State, queued: usize, ok: bool) {
        if state != State::Open {
            assert!(!ok, "a send succeeded in state {state:?}");
        }
        if ok {
            assert!(
                self.conn.buffered_amount() > queued,
                "a send queued nothing"
            );
        } else {
            assert_eq!(self.conn.buffered_amount(), queued, "a failed send queued");
            assert_eq!(self.conn.state(), state, "a failed send changed state");
        }
    }

    /// One read: `receive` until it consumes nothing more (it stops after
    /// each data message). Events are left for `PollAll`.
    fn receive(&mut self, bytes: &[u8]) {
        self.read_buf.extend_from_slice(bytes);
        loop {
            let before = self.read_buf.len();
            if self.conn.receive(&mut self.read_buf, self.now).is_err() {
                assert_eq!(self.conn.state(), State::Closed, "an error left it open");
            }
            if self.conn.state() == State::Closed {
                assert!(self.read_buf.is_empty(), "a closed connection keeps input");
            }
            if self.read_buf.len() == before || self.read_buf.is_empty() {
                break;
            }
        }
    }

    /// A frame as the peer would send it to us.
    fn peer_frame(&self, opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        let mut payload = payload.to_vec();
        if self.role == Role::Server {
            let key = [0x11, 0x22, 0x33, 0x44];
            header.mask = Some(key);
            apply_mask(&mut payload, key, 0);
        }
        let mut frame = header.encode().as_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame
    }

    /// A vectored write of at most `slots` slices and `max` bytes.
    fn write(&mut self, slots: usize, max: usize) -> usize {
        let queued = self.conn.buffered_amount();
        assert_eq!(self.conn.has_transmits(), queued > 0);
        // With a slot for every slice (each frame is at least 2 bytes, in
        // at most 2 slices), the slices are exactly what is queued.
        let mut all = vec![IoSlice::new(&[]); queued + 2];
        let n = self.conn.transmit_slices(&mut all);
        assert!(n < all.len());
        let offered: usize = all[..n].iter().map(|s| s.len()).sum();
        assert_eq!(
            offered, queued,
            "transmit_slices differs from buffered_amount"
        );

        let mut some = vec![IoSlice::new(&[]); slots];
        let n = self.conn.transmit_slices(&mut some);
        assert!(n <= slots);
        let mut data = Vec::new();
        for slice in &some[..n] {
            let take = slice.len().min(max - data.len());
            data.extend_from_slice(&slice[..take]);
        }
        drop(some);
        self.conn.advance_transmit(data.len());
        assert_eq!(self.conn.buffered_amount(), queued - data.len());
        self.written(&data);
        data.len()
    }

    /// Writes the rest of a partly written frame.
    fn finish_frame(&mut self) {
        while !self.wire.is_empty() {
            let need = match FrameHeader::parse(&self.wire) {
                Ok(Some((h, n))) => n + h.payload_len as usize - self.wire.len(),
                _ => 1,
            };
            let slots = self.conn.buffered_amount() + 2;
            let wrote = self.write(slots, need);
            assert!(wrote > 0, "half a frame queued and nothing to finish it");
        }
    }

    fn poll_all(&mut self) {
        self.finish_frame();
        let queued = self.conn.buffered_amount();
        let mut sum = 0;
        while let Some(t) = self.conn.poll_transmit() {
            sum += t.len();
            self.written(&[t.head.as_bytes(), &t.payload[..]].concat());
        }
        assert_eq!(
            sum, queued,
            "buffered_amount is not the sum of the transmits"
        );
        assert_eq!(self.conn.buffered_amount(), 0);
        while let Some(e) = self.conn.poll_event() {
            assert!(!self.closed_event, "an event after Closed: {e:?}");
            match e {
                Event::Closed(_) => self.closed_event = true,
                Event::Message(Message::Text(t)) => {
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                }
                _ => {}
            }
        }
    }

    /// Bytes we wrote: to the peer, and each whole frame to `frame`.
    fn written(&mut self, bytes: &[u8]) {
        self.peer_buf.extend_from_slice(bytes);
        loop {
            let before = self.peer_buf.len();
            if let Err(e) = self.peer.receive(&mut self.peer_buf, self.now) {
                panic!("the peer rejected our output: {e:?}");
            }
            while self.peer.poll_transmit().is_some() {}
            while let Some(e) = self.peer.poll_event() {
                if let Event::Message(m) = e {
                    let want = self.expected.pop_front();
                    assert_eq!(Some(&m), want.as_ref(), "the peer received another message");
                }
            }
            if self.peer_buf.len() == before || self.peer_buf.is_empty() {
                break;
            }
        }

        self.wire.extend_from_slice(bytes);
        loop {
            let parsed = FrameHeader::parse(&self.wire).expect("we send valid headers");
            let Some((h, n)) = parsed else {
                return;
            };
            let end = n + h.payload_len as usize;
            if self.wire.len() < end {
                return;
            }
            let frame: Vec<u8> = self.wire.drain(..end).collect();
            self.frame(&frame[..n], &frame[n..]);
        }
    }

    /// One whole frame we wrote.
    fn frame(&mut self, head: &[u8], payload: &[u8]) {
        assert!(!self.close_sent, "a frame after our Close frame");
        let (h, n) = FrameHeader::parse(head)
            .expect("we send a valid header")
            .expect("a whole header");
        assert_eq!(n, head.len());
        assert_eq!(h.payload_len, payload.len() as u64);
        assert_eq!(h.mask.is_some(), self.role == Role::Client);
        assert!(!h.rsv2 && !h.rsv3, "RSV2/RSV3 set");
        // RFC 7692 6: RSV1 marks the first frame of a compressed message.
        let first_data = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        assert!(
            !h.rsv1 || (self.deflate && first_data),
            "RSV1 on {:?}",
            h.opcode
        );
        if h.opcode.is_control() {
            assert!(h.fin && payload.len() <= 125, "bad control frame");
        } else {
            // RFC 6455 5.4: a continuation only inside a fragmented message,
            // a new message only outside one.
            assert_eq!(h.opcode == OpCode::Continuation, self.wire_fragmented);
            self.wire_fragmented = !h.fin;
        }
        if h.opcode == OpCode::Close {
            let mut body = payload.to_vec();
            if let Some(key) = h.mask {
                apply_mask(&mut body, key, 0);
            }
            CloseFrame::parse(&body).expect("we send a valid Close payload");
            self.close_sent = true;
        }
    }
}
