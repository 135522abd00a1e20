//! The scripted peer shared by the conformance tests.
//!
//! A test is a conversation: build frames byte by byte with [`Frame`]
//! (masked with the fixed key [`KEY`], as an Autobahn client would send
//! them), hand them to a [`Peer`] in a chosen chunking, and assert what the
//! connection under test wrote back with [`Peer::expect`]. The peer runs the
//! documented call loop ("after every input, drain transmits, then events")
//! as an echo application: every [`Event::Message`] is sent back with
//! `conn.send`, every streamed [`Event::Fragment`] with `conn.send_frame`.
//!
//! Everything the connection writes is decoded by code independent of the
//! code under test (the header with `FrameHeader::parse`, everything else
//! here and in [`inflate`]), and checked against the rules every frame must
//! obey: masking direction, control frame limits, RSV bits, fragmentation
//! order, Close payloads, and nothing at all after a Close frame.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

pub mod inflate;

use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use herald_proto::connection::{MessageKind, State};
use herald_proto::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, Event, FrameHeader, Message,
    OpCode, ProtocolError, UserError,
};

use self::inflate::Inflater;

/// The masking key of every frame the scripted client sends (RFC 6455 5.7).
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opcodes as raw numbers, so reserved ones can be sent too.
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// RSV bits in Autobahn's numbering: `rsv` is the 3-bit field, so 4 is
/// RSV1, 2 is RSV2 and 1 is RSV3.
pub const RSV1: u8 = 4;

// ----- frame builder ------------------------------------------------------

/// A frame as the scripted peer puts it on the wire, encoded here without
/// the crate's encoder.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Frame(op={:#x} fin={} rsv={} mask={:?} {})",
            self.opcode,
            self.fin,
            self.rsv,
            self.mask,
            Abbrev(&self.payload)
        )
    }
}

impl Frame {
    /// A final, masked frame.
    pub fn new(opcode: u8, payload: impl AsRef<[u8]>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(KEY),
            payload: payload.as_ref().to_vec(),
        }
    }
    pub fn text(p: impl AsRef<[u8]>) -> Self {
        Self::new(op::TEXT, p)
    }
    pub fn binary(p: impl AsRef<[u8]>) -> Self {
        Self::new(op::BINARY, p)
    }
    pub fn cont(p: impl AsRef<[u8]>) -> Self {
        Self::new(op::CONT, p)
    }
    pub fn ping(p: impl AsRef<[u8]>) -> Self {
        Self::new(op::PING, p)
    }
    pub fn pong(p: impl AsRef<[u8]>) -> Self {
        Self::new(op::PONG, p)
    }
    /// A Close frame with a status code and a reason.
    pub fn close(code: u16, reason: impl AsRef<[u8]>) -> Self {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_ref());
        Self::new(op::CLOSE, p)
    }
    /// A Close frame with an arbitrary payload.
    pub fn close_raw(p: impl AsRef<[u8]>) -> Self {
        Self::new(op::CLOSE, p)
    }

    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }
    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }
    pub fn unmasked(mut self) -> Self {
        self.mask = None;
        self
    }
    pub fn masked(mut self, key: [u8; 4]) -> Self {
        self.mask = Some(key);
        self
    }

    /// The header alone, claiming a payload of `len` bytes.
    pub fn head(&self, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(14);
        out.push((u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.opcode & 0x0f));
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        if len <= 125 {
            out.push(m | len as u8);
        } else if len <= 0xffff {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(m | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        if let Some(k) = self.mask {
            out.extend_from_slice(&k);
        }
        out
    }

    /// Header and (masked) payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.head(self.payload.len() as u64);
        let start = out.len();
        out.extend_from_slice(&self.payload);
        if let Some(k) = self.mask {
            xor_mask(&mut out[start..], k);
        }
        out
    }
}

/// RFC 6455 5.3, written out independently of the crate's `apply_mask`:
/// octet i of the payload is XORed with octet i MOD 4 of the key. Eight
/// bytes at a time, so debug builds stay fast on 16 MiB payloads.
pub fn xor_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The frames back to back, as one byte string.
pub fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.iter().map(|f| f.payload.len() + 14).sum());
    for f in frames {
        out.extend_from_slice(&f.encode());
    }
    out
}

/// A message split into frames of at most `size` bytes (at least one frame).
pub fn fragments(opcode: u8, payload: &[u8], size: usize) -> Vec<Frame> {
    let size = size.max(1);
    let n = payload.len().div_ceil(size).max(1);
    (0..n)
        .map(|i| {
            let piece =
                &payload[(i * size).min(payload.len())..((i + 1) * size).min(payload.len())];
            let code = if i == 0 { opcode } else { op::CONT };
            Frame::new(code, piece).fin(i == n - 1)
        })
        .collect()
}

// ----- deterministic payloads ---------------------------------------------

/// xorshift64*: payloads without a dependency and without a clock.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// `len` bytes of random binary data.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Exactly `len` bytes of valid UTF-8 mixing 1- to 4-byte code points.
pub fn random_text(len: usize, seed: u64) -> Vec<u8> {
    const CHARS: [&str; 8] = ["a", "Z", " ", "é", "κ", "€", "ü", "𝄞"];
    let mut rng = Rng::new(seed);
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let c = CHARS[rng.below(8) as usize];
        if s.len() + c.len() <= len {
            s.push_str(c);
        } else {
            s.push('.');
        }
    }
    s.into_bytes()
}

/// Text that compresses well: words from a small vocabulary.
pub fn prose(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "the ",
        "WebSocket ",
        "protocol ",
        "frame ",
        "κόσμε ",
        "message ",
        "deflate ",
        "window ",
        "peer ",
        "close ",
        "ping ",
        "\n",
    ];
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        v.extend_from_slice(WORDS[rng.below(12) as usize].as_bytes());
    }
    while v.len() > len {
        v.pop();
    }
    // Trimming may have cut a code point: pad back with ASCII.
    while std::str::from_utf8(&v).is_err() {
        v.pop();
    }
    v.resize(len, b'.');
    v
}

// ----- what the connection sent -------------------------------------------

/// Prints payloads short, so a failed assertion on 16 MiB stays readable.
pub struct Abbrev<'a>(pub &'a [u8]);

impl fmt::Display for Abbrev<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 48 {
            match std::str::from_utf8(self.0) {
                Ok(s) => write!(f, "{s:?}"),
                Err(_) => write!(f, "{:02x?}", self.0),
            }
        } else {
            // FNV-1a, to tell two long payloads apart.
            let h = self.0.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            });
            write!(
                f,
                "<{} bytes {:02x?}.. fnv={h:016x}>",
                self.0.len(),
                &self.0[..16]
            )
        }
    }
}

/// One frame the connection sent, decoded and unmasked.
#[derive(Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

impl fmt::Debug for WireFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WireFrame({:?} fin={} rsv1={} mask={:?} {})",
            self.opcode,
            self.fin,
            self.rsv1,
            self.mask,
            Abbrev(&self.payload)
        )
    }
}

/// What the connection sent, at the level a test asserts: whole messages
/// (reassembled, inflated) and control frames. A Close is reduced to its
/// code (`None` for an empty payload); its reason is checked to be valid.
#[derive(Clone, PartialEq, Eq)]
pub enum Out {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>),
}

impl Out {
    pub fn text(p: impl AsRef<[u8]>) -> Self {
        Self::Text(p.as_ref().to_vec())
    }
    pub fn binary(p: impl AsRef<[u8]>) -> Self {
        Self::Binary(p.as_ref().to_vec())
    }
    pub fn ping(p: impl AsRef<[u8]>) -> Self {
        Self::Ping(p.as_ref().to_vec())
    }
    pub fn pong(p: impl AsRef<[u8]>) -> Self {
        Self::Pong(p.as_ref().to_vec())
    }
    pub fn close(code: u16) -> Self {
        Self::Close(Some(code))
    }
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(p) => write!(f, "Text({})", Abbrev(p)),
            Self::Binary(p) => write!(f, "Binary({})", Abbrev(p)),
            Self::Ping(p) => write!(f, "Ping({})", Abbrev(p)),
            Self::Pong(p) => write!(f, "Pong({})", Abbrev(p)),
            Self::Close(c) => write!(f, "Close({c:?})"),
        }
    }
}

/// Close codes a Close frame may carry (RFC 6455 7.4.1, the IANA registry
/// as of 2024, 7.4.2): written out here rather than taken from the crate.
pub fn code_is_sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Decodes what one endpoint sent and checks the rules every frame obeys.
#[derive(Debug)]
pub struct Decoder {
    /// Frames from a client are masked, from a server never.
    pub from_client: bool,
    /// RSV1 allowed (permessage-deflate negotiated): the sender's window
    /// bits and whether it resets its context after every message.
    pub deflate: Option<(u8, bool)>,
    pub inflater: Inflater,
    buf: Vec<u8>,
    /// A data message in progress: its opcode, whether compressed, payload.
    partial: Option<(OpCode, bool, Vec<u8>)>,
    pub close_sent: bool,
    /// Every frame decoded so far, in order.
    pub frames: Vec<WireFrame>,
}

impl Decoder {
    pub fn new(from_client: bool, deflate: Option<(u8, bool)>) -> Self {
        Self {
            from_client,
            deflate,
            inflater: Inflater::new(),
            buf: Vec::new(),
            partial: None,
            close_sent: false,
            frames: Vec::new(),
        }
    }

    /// Decodes `bytes`, which must hold whole frames, into [`Out`]s.
    pub fn decode(&mut self, bytes: &[u8]) -> Vec<Out> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.buf.len() {
            let (h, n) = match FrameHeader::parse(&self.buf[at..]) {
                Ok(Some(x)) => x,
                Ok(None) => panic!("a transmit ended inside a frame header"),
                Err(e) => panic!("sent an unparsable frame header: {e:?}"),
            };
            let len = usize::try_from(h.payload_len).unwrap();
            assert!(
                self.buf.len() - at - n >= len,
                "a transmit ended inside a frame payload"
            );
            let mut payload = self.buf[at + n..at + n + len].to_vec();
            at += n + len;
            assert!(
                !self.close_sent,
                "RFC 6455 5.5.1: sent {:?} after its Close frame",
                h.opcode
            );
            match (self.from_client, h.mask) {
                (true, Some(k)) => xor_mask(&mut payload, k),
                (true, None) => panic!("RFC 6455 5.1: a client frame was not masked"),
                (false, Some(_)) => panic!("RFC 6455 5.1: a server frame was masked"),
                (false, None) => {}
            }
            assert!(!h.rsv2 && !h.rsv3, "sent RSV2/RSV3");
            let frame = WireFrame {
                fin: h.fin,
                rsv1: h.rsv1,
                opcode: h.opcode,
                mask: h.mask,
                payload,
            };
            self.frames.push(frame.clone());
            if let Some(o) = self.on_frame(frame) {
                out.push(o);
            }
        }
        self.buf.drain(..at);
        out
    }

    fn on_frame(&mut self, f: WireFrame) -> Option<Out> {
        if f.opcode.is_control() {
            assert!(f.fin, "sent a fragmented control frame");
            assert!(
                f.payload.len() <= 125,
                "sent a control frame over 125 bytes"
            );
            assert!(!f.rsv1, "sent RSV1 on a control frame");
            return Some(match f.opcode {
                OpCode::Ping => Out::Ping(f.payload),
                OpCode::Pong => Out::Pong(f.payload),
                _ => {
                    self.close_sent = true;
                    Out::Close(check_close_payload(&f.payload))
                }
            });
        }
        if f.rsv1 {
            assert!(
                self.deflate.is_some(),
                "sent RSV1 without permessage-deflate"
            );
        }
        let (opcode, compressed, mut data) = match (f.opcode, self.partial.take()) {
            (OpCode::Continuation, Some(p)) => {
                assert!(!f.rsv1, "RFC 7692 6.1: sent RSV1 on a continuation frame");
                p
            }
            (OpCode::Continuation, None) => panic!("sent a continuation with no message"),
            (_, Some(_)) => panic!("sent a new message inside a fragmented one"),
            (op, None) => (op, f.rsv1, Vec::new()),
        };
        data.extend_from_slice(&f.payload);
        if !f.fin {
            self.partial = Some((opcode, compressed, data));
            return None;
        }
        if compressed {
            let (bits, reset) = self.deflate.expect("checked above");
            data = self
                .inflater
                .message(&data, bits, reset)
                .unwrap_or_else(|e| panic!("sent a compressed message that does not inflate: {e}"));
        }
        Some(match opcode {
            OpCode::Text => {
                assert!(
                    std::str::from_utf8(&data).is_ok(),
                    "sent a text message that is not UTF-8"
                );
                Out::Text(data)
            }
            _ => Out::Binary(data),
        })
    }
}

/// Checks a sent Close payload (RFC 6455 5.5.1, 7.4) and returns its code.
pub fn check_close_payload(p: &[u8]) -> Option<u16> {
    match p {
        [] => None,
        [_] => panic!("sent a one-byte Close payload"),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            assert!(
                code_is_sendable(code),
                "sent the unsendable close code {code}"
            );
            assert!(
                std::str::from_utf8(reason).is_ok(),
                "sent a close reason that is not UTF-8"
            );
            Some(code)
        }
    }
}

// ----- the scripted peer --------------------------------------------------

/// A connection under test, driven by a scripted peer.
pub struct Peer {
    pub conn: Connection,
    /// The read buffer the caller owns: bytes fed but not yet consumed.
    pub buf: BytesMut,
    pub start: Instant,
    pub now: Instant,
    /// Echo received messages back (on by default).
    pub echo: bool,
    /// Errors `send` returned to the echo application.
    pub echo_errors: Vec<UserError>,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Every byte the connection wrote, in order.
    pub written: Vec<u8>,
    /// Bytes written since the last [`Peer::output`].
    unread: Vec<u8>,
    pub decoder: Decoder,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

/// The instant every test starts at. Only differences matter.
pub fn t0() -> Instant {
    Instant::now()
}

impl Peer {
    /// A server connection with `config`, echoing.
    pub fn server(config: Config) -> Self {
        let start = t0();
        Self::wrap(Connection::server(config, start), start, false, None)
    }

    /// A server with permessage-deflate on with `params`.
    pub fn server_deflate(config: Config, params: DeflateParams, dc: &DeflateConfig) -> Self {
        let start = t0();
        let conn = Connection::server(config, start).with_deflate(params, dc);
        let check = Some((
            params.server_max_window_bits,
            params.server_no_context_takeover,
        ));
        Self::wrap(conn, start, false, check)
    }

    /// A client connection whose masking keys come from `keys`.
    pub fn client(config: Config, keys: impl FnMut() -> [u8; 4] + Send + Sync + 'static) -> Self {
        let start = t0();
        Self::wrap(
            Connection::client(config, Box::new(keys), start),
            start,
            true,
            None,
        )
    }

    /// A client with permessage-deflate on with `params`.
    pub fn client_deflate(
        config: Config,
        keys: impl FnMut() -> [u8; 4] + Send + Sync + 'static,
        params: DeflateParams,
        dc: &DeflateConfig,
    ) -> Self {
        let start = t0();
        let conn = Connection::client(config, Box::new(keys), start).with_deflate(params, dc);
        let check = Some((
            params.client_max_window_bits,
            params.client_no_context_takeover,
        ));
        Self::wrap(conn, start, true, check)
    }

    fn wrap(conn: Connection, start: Instant, client: bool, deflate: Option<(u8, bool)>) -> Self {
        Self {
            conn,
            buf: BytesMut::new(),
            start,
            now: start,
            echo: true,
            echo_errors: Vec::new(),
            events: Vec::new(),
            written: Vec::new(),
            unread: Vec::new(),
            decoder: Decoder::new(client, deflate),
        }
    }

    pub fn no_echo(mut self) -> Self {
        self.echo = false;
        self
    }

    pub fn state(&self) -> State {
        self.conn.state()
    }

    pub fn is_closed(&self) -> bool {
        self.conn.state() == State::Closed
    }

    /// Feeds one read's worth of bytes and runs the call loop.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.buf.extend_from_slice(bytes);
        self.pump()
    }

    /// Feeds `bytes` in reads of `chop` bytes; stops at the first error.
    pub fn feed_chopped(&mut self, bytes: &[u8], chop: usize) -> Result<(), ProtocolError> {
        for piece in bytes.chunks(chop.max(1)) {
            self.feed(piece)?;
        }
        Ok(())
    }

    /// Feeds `bytes` cut at the given offsets (sorted, deduplicated here).
    pub fn feed_split(&mut self, bytes: &[u8], cuts: &[usize]) -> Result<(), ProtocolError> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| (*c).min(bytes.len())).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut at = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            if c > at {
                self.feed(&bytes[at..c])?;
                at = c;
            }
        }
        Ok(())
    }

    /// All the frames in one read.
    pub fn send(&mut self, frames: &[Frame]) -> Result<(), ProtocolError> {
        self.feed(&wire(frames))
    }

    /// One read per frame (Autobahn's `sync = True`).
    pub fn send_each(&mut self, frames: &[Frame]) -> Result<(), ProtocolError> {
        for f in frames {
            self.feed(&f.encode())?;
        }
        Ok(())
    }

    /// The frames back to back, in reads of `chop` bytes.
    pub fn send_chopped(&mut self, frames: &[Frame], chop: usize) -> Result<(), ProtocolError> {
        self.feed_chopped(&wire(frames), chop)
    }

    /// The transport hit end of stream.
    pub fn eof(&mut self) {
        self.conn.receive_eof();
        self.drain();
    }

    /// Moves the clock.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Moves the clock to `t` and runs the timers, as the I/O layer would
    /// when the timer armed from `poll_timeout` fires.
    pub fn fire_at(&mut self, t: Instant) {
        self.now = t;
        self.conn.handle_timeout(t);
        self.drain();
    }

    /// Runs the timers at the current time.
    pub fn handle_timeout(&mut self) {
        self.conn.handle_timeout(self.now);
        self.drain();
    }

    /// Where `poll_timeout` points, relative to the start.
    pub fn timeout_in(&self) -> Option<Duration> {
        self.conn.poll_timeout().map(|t| t - self.start)
    }

    fn pump(&mut self) -> Result<(), ProtocolError> {
        // Bounded: each pass either consumes bytes or stops.
        for _ in 0..1_000_000 {
            let before = self.buf.len();
            let r = self.conn.receive(&mut self.buf, self.now);
            self.drain();
            r?;
            if self.buf.is_empty() || self.buf.len() == before {
                return Ok(());
            }
        }
        panic!("receive kept consuming without ending");
    }

    /// Step 2 and 3 of the call loop, with the echo application.
    pub fn drain(&mut self) {
        self.drain_transmits();
        while let Some(ev) = self.conn.poll_event() {
            if self.echo {
                let r = match &ev {
                    Event::Message(m) => self.conn.send(m.clone()),
                    Event::Fragment(f) => self.conn.send_frame(f.kind, f.payload.clone(), f.fin),
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    self.echo_errors.push(e);
                }
            }
            self.events.push(ev);
            self.drain_transmits();
        }
    }

    fn drain_transmits(&mut self) {
        while let Some(t) = self.conn.poll_transmit() {
            assert_eq!(t.len(), t.head.as_bytes().len() + t.payload.len());
            self.written.extend_from_slice(t.head.as_bytes());
            self.written.extend_from_slice(&t.payload);
            self.unread.extend_from_slice(t.head.as_bytes());
            self.unread.extend_from_slice(&t.payload);
        }
        assert_eq!(self.conn.buffered_amount(), 0, "transmits drained");
    }

    /// What the connection sent since the last call, decoded and checked.
    pub fn output(&mut self) -> Vec<Out> {
        let bytes = std::mem::take(&mut self.unread);
        self.decoder.decode(&bytes)
    }

    /// Asserts what the connection sent since the last call.
    #[track_caller]
    pub fn expect(&mut self, expected: &[Out]) {
        let got = self.output();
        assert_eq!(got, expected, "frames sent back");
    }

    /// Asserts that the last input failed the connection with `code`: the
    /// input returned the error, the only frame sent is a Close with that
    /// code, and the connection discards everything from now on.
    #[track_caller]
    pub fn expect_fail(&mut self, r: Result<(), ProtocolError>, code: u16) -> ProtocolError {
        self.expect_fail_after(r, &[], code)
    }

    /// Like [`Peer::expect_fail`], with `before` sent ahead of the Close.
    #[track_caller]
    pub fn expect_fail_after(
        &mut self,
        r: Result<(), ProtocolError>,
        before: &[Out],
        code: u16,
    ) -> ProtocolError {
        let e = match r {
            Err(e) => e,
            Ok(()) => panic!(
                "expected the connection to fail with {code}; it sent {:?}",
                self.output()
            ),
        };
        assert_eq!(e.close_code(), CloseCode(code), "close code of {e:?}");
        assert_eq!(self.state(), State::Closed);
        let mut expected = before.to_vec();
        expected.push(Out::close(code));
        assert_eq!(self.output(), expected, "frames sent back");
        self.assert_dead();
        e
    }

    /// Everything fed from now on is ignored and nothing more is sent.
    #[track_caller]
    pub fn assert_dead(&mut self) {
        assert_eq!(self.state(), State::Closed);
        let events = self.events.len();
        let probe = wire(&[
            Frame::ping("still there?"),
            Frame::text("hello"),
            Frame::close(1000, ""),
        ]);
        assert_eq!(self.feed(&probe), Ok(()));
        assert_eq!(
            self.conn.send(Message::text("late")),
            Err(UserError::AlreadyClosed)
        );
        assert_eq!(self.conn.ping(Bytes::new()), Err(UserError::AlreadyClosed));
        self.drain();
        assert_eq!(self.output(), [], "sent something after closing");
        assert_eq!(self.events.len(), events, "events after closing");
        assert_eq!(self.conn.poll_timeout(), None);
    }

    /// Removes and returns the events so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The data messages received so far (buffered mode).
    pub fn messages(&self) -> Vec<Message> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// The `Closed` event, if any.
    pub fn closed_event(&self) -> Option<(u16, String)> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(f) => Some((f.code.0, f.reason.clone())),
            _ => None,
        })
    }

    /// Closes cleanly from the peer's side, as Autobahn ends a passing case:
    /// the connection must echo the Close and report the handshake done.
    #[track_caller]
    pub fn close_normally(&mut self) {
        assert_eq!(self.send(&[Frame::close(1000, "bye")]), Ok(()));
        assert_eq!(self.output(), [Out::close(1000)]);
        assert_eq!(self.state(), State::Closed);
        assert_eq!(self.closed_event().map(|c| c.0), Some(1000));
    }
}

/// Autobahn 3.2, 4.1.3 and friends send a good message, a bad frame and a
/// Ping in one write. A connection that parses the whole read before the
/// application runs cannot echo the message first: Autobahn grades that
/// NON-STRICT, and accepts it. Either way the Close comes last, the Ping is
/// not answered, and the echo never follows the Close.
#[track_caller]
pub fn fail_after_echo_strict_or_not(
    p: &mut Peer,
    r: Result<(), ProtocolError>,
    echo: Out,
    code: u16,
) {
    let e = r.expect_err("the connection must fail");
    assert_eq!(e.close_code().0, code);
    // `receive` stops after each data message, so even when the bad frame
    // came in the same read, the echo goes out before the Close (Autobahn
    // grades the other order NON-STRICT).
    assert_eq!(p.output(), vec![echo, Out::close(code)], "echo, then Close");
    p.assert_dead();
}

/// A config with keepalive off, so only what a test scripts happens.
pub fn quiet() -> Config {
    Config::default().ping_interval(None)
}

/// Whether a message is text or binary, as streamed fragments say it.
pub fn kind_of(m: &Message) -> MessageKind {
    match m {
        Message::Text(_) => MessageKind::Text,
        Message::Binary(_) => MessageKind::Binary,
    }
}

// ----- the peer's own permessage-deflate ----------------------------------

/// The scripted peer's compressor (RFC 7692 7.2.1): raw DEFLATE, flushed
/// with `Z_SYNC_FLUSH`, the trailing `00 00 ff ff` removed.
pub struct PeerDeflate {
    c: flate2::Compress,
    no_context_takeover: bool,
}

impl PeerDeflate {
    /// zlib cannot make an 8-bit raw window; 9 is what every zlib-based
    /// peer uses for 8, and zlib keeps its distances under
    /// `2^9 - 262 = 250`, inside a 256-byte window.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            c: flate2::Compress::new_with_window_bits(
                flate2::Compression::new(6),
                false,
                window_bits.max(9),
            ),
            no_context_takeover,
        }
    }

    /// One whole message.
    pub fn message(&mut self, data: &[u8]) -> Vec<u8> {
        if self.no_context_takeover {
            self.c.reset();
        }
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let start_in = self.c.total_in();
        loop {
            let consumed = (self.c.total_in() - start_in) as usize;
            out.reserve(4096);
            self.c
                .compress_vec(&data[consumed..], &mut out, flate2::FlushCompress::Sync)
                .expect("deflate");
            let consumed = (self.c.total_in() - start_in) as usize;
            if consumed == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail");
        out.truncate(out.len() - 4);
        out
    }
}
