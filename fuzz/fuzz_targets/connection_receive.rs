//! A server and a client `Connection` fed the same arbitrary bytes, split
//! into reads at fuzzer-chosen points, as a real I/O layer would: after
//! each read, `receive` then drain transmits and events, again while
//! `receive` consumes bytes.
//!
//! Input layout (so seeds can be written by hand):
//!
//! ```text
//! byte 0      flags: bit 0 streaming mode, bit 1 small limits (1 KiB),
//!             bit 2 permessage-deflate on, with bit 3 server and bit 4
//!             client no_context_takeover, bits 5-7 both windows' bits - 8
//! byte 1      n = number of read sizes (taken mod 16)
//! n bytes     read sizes, used in turn (0 counts as 1)
//! rest        the byte stream
//! ```
//!
//! Besides "never panics", checks what holds for every input:
//! - a receive error leaves the connection Closed;
//! - every frame we transmit is well formed for our role (masked iff
//!   client, control frames final and <= 125 bytes, Close payload valid),
//!   at most one Close is sent and nothing after it;
//! - `buffered_amount` is the sum of the queued transmits;
//! - `Event::Closed` comes at most once and last; text is UTF-8; no
//!   message exceeds `max_message_size`;
//! - in buffered mode, how the stream is split into reads changes nothing:
//!   the same events, transmits and error as one read of the whole stream.
#![no_main]

use std::time::Instant;

use bytes::BytesMut;
use herald_proto::connection::{MessageKind, State};
use herald_proto::deflate::{DeflateConfig, DeflateParams};
use herald_proto::frame::apply_mask;
use herald_proto::{
    CloseFrame, Config, Connection, Event, FrameHeader, Message, MessageMode, OpCode,
    ProtocolError, Role,
};
use libfuzzer_sys::fuzz_target;

const SMALL_LIMIT: usize = 1024;

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    wire: Vec<u8>,
    error: Option<ProtocolError>,
    state: State,
}

fuzz_target!(|data: &[u8]| {
    let [flags, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(n);

    let mut config = Config::default();
    if flags & 1 != 0 {
        config = config.message_mode(MessageMode::Streaming);
    }
    if flags & 2 != 0 {
        config = config
            .max_frame_size(SMALL_LIMIT)
            .max_message_size(SMALL_LIMIT);
    }

    let deflate = (flags & 4 != 0).then(|| DeflateParams {
        server_no_context_takeover: flags & 8 != 0,
        client_no_context_takeover: flags & 16 != 0,
        server_max_window_bits: 8 + (flags >> 5),
        client_max_window_bits: 8 + (flags >> 5),
    });

    for role in [Role::Server, Role::Client] {
        let split = run(role, &config, deflate, stream, sizes);
        if config.message_mode == MessageMode::Buffered && !sizes.is_empty() {
            let whole = run(role, &config, deflate, stream, &[]);
            assert_eq!(
                split, whole,
                "{role:?}: splitting the reads changed the outcome"
            );
        }
    }
});

fn connection(
    role: Role,
    config: &Config,
    deflate: Option<DeflateParams>,
    now: Instant,
) -> Connection {
    let conn = match role {
        Role::Server => Connection::server(config.clone(), now),
        Role::Client => {
            Connection::client(config.clone(), Box::new(|| [0xA1, 0xB2, 0xC3, 0xD4]), now)
        }
    };
    match deflate {
        Some(params) => conn.with_deflate(params, &DeflateConfig::default()),
        None => conn,
    }
}

/// Feeds `stream` in reads of `sizes` (one read if empty), then EOF.
fn run(
    role: Role,
    config: &Config,
    deflate: Option<DeflateParams>,
    stream: &[u8],
    sizes: &[u8],
) -> Outcome {
    let now = Instant::now();
    let mut conn = connection(role, config, deflate, now);
    let mut check = Checker::new(role, config);
    let mut buf = BytesMut::new();
    let mut error = None;
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let take = if sizes.is_empty() {
            rest.len()
        } else {
            usize::from(sizes[i % sizes.len()]).clamp(1, rest.len())
        };
        i += 1;
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        buf.extend_from_slice(chunk);
        // `receive` stops after each data message: drain, then feed the
        // rest of this read again while it consumes bytes.
        loop {
            let before = buf.len();
            let result = conn.receive(&mut buf, now);
            if let Err(e) = result {
                assert_eq!(
                    conn.state(),
                    State::Closed,
                    "{e:?} left the connection open"
                );
                error.get_or_insert(e);
            }
            if conn.state() == State::Closed {
                assert!(buf.is_empty(), "a closed connection keeps input");
            }
            check.drain(&mut conn);
            if buf.len() == before || buf.is_empty() {
                break;
            }
        }
    }
    let state = conn.state();
    conn.receive_eof();
    assert_eq!(conn.state(), State::Closed);
    check.drain(&mut conn);
    // A failed connection reports its error from `receive`, not as an event.
    assert!(
        check.closed || error.is_some(),
        "EOF without Closed or an error"
    );
    Outcome {
        events: check.events,
        wire: check.wire,
        error,
        state,
    }
}

/// Drains a connection and checks everything it hands out.
struct Checker {
    role: Role,
    max_message: usize,
    events: Vec<Event>,
    wire: Vec<u8>,
    close_sent: bool,
    closed: bool,
    /// Bytes of the streamed message in progress.
    streamed: usize,
    /// The streamed text message in progress.
    text: Vec<u8>,
}

impl Checker {
    fn new(role: Role, config: &Config) -> Self {
        Self {
            role,
            max_message: config.max_message_size,
            events: Vec::new(),
            wire: Vec::new(),
            close_sent: false,
            closed: false,
            streamed: 0,
            text: Vec::new(),
        }
    }

    fn drain(&mut self, conn: &mut Connection) {
        let queued = conn.buffered_amount();
        let mut sum = 0;
        while let Some(t) = conn.poll_transmit() {
            sum += t.len();
            self.transmit(t.head.as_bytes(), &t.payload);
        }
        assert_eq!(
            sum, queued,
            "buffered_amount is not the sum of the transmits"
        );
        assert_eq!(conn.buffered_amount(), 0);
        while let Some(e) = conn.poll_event() {
            self.event(e);
        }
    }

    fn transmit(&mut self, head: &[u8], payload: &[u8]) {
        assert!(!self.close_sent, "a frame after our Close frame");
        let (h, n) = FrameHeader::parse(head)
            .expect("we send a valid header")
            .expect("a whole header");
        assert_eq!(n, head.len());
        assert_eq!(h.payload_len, payload.len() as u64);
        // RFC 6455 5.1/5.3: a client masks every frame, a server none.
        assert_eq!(h.mask.is_some(), self.role == Role::Client);
        assert!(
            !h.rsv1 && !h.rsv2 && !h.rsv3,
            "RSV bits without an extension"
        );
        // The receive path only ever answers with control frames.
        assert!(h.opcode.is_control(), "unexpected {:?}", h.opcode);
        assert!(h.fin && payload.len() <= 125, "bad control frame");
        self.wire.extend_from_slice(head);
        self.wire.extend_from_slice(payload);
        if h.opcode == OpCode::Close {
            let mut body = payload.to_vec();
            if let Some(key) = h.mask {
                apply_mask(&mut body, key, 0);
            }
            CloseFrame::parse(&body).expect("we send a valid Close payload");
            self.close_sent = true;
        }
    }

    fn event(&mut self, e: Event) {
        assert!(!self.closed, "an event after Closed: {e:?}");
        match &e {
            Event::Message(m) => {
                assert!(m.len() <= self.max_message, "message over the limit");
                if let Message::Text(t) = m {
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                }
            }
            Event::Fragment(f) => {
                self.streamed += f.payload.len();
                assert!(self.streamed <= self.max_message, "message over the limit");
                if f.kind == MessageKind::Text {
                    // Every piece so far is a UTF-8 prefix; the whole is UTF-8.
                    self.text.extend_from_slice(&f.payload);
                    match std::str::from_utf8(&self.text) {
                        Ok(_) => {}
                        Err(e) => assert!(!f.fin && e.error_len().is_none(), "bad text"),
                    }
                }
                if f.fin {
                    self.streamed = 0;
                    self.text.clear();
                }
            }
            Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
            Event::Closed(_) => self.closed = true,
            _ => {}
        }
        self.events.push(e);
    }
}
