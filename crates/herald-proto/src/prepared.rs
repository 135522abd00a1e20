//! Encode once, send to many: [`PreparedMessage`].

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::connection::Transmit;
use crate::deflate::compress_message;
use crate::frame::{FrameHeader, OpCode};
use crate::message::Message;

/// zlib window sizes a compressor can use (an agreed 8 is compressed with
/// 9, see the codec), so one slot each.
const WINDOWS: usize = 7;
const MIN_WINDOW: u8 = 9;

/// A data message framed once for many connections: the unmasked frame
/// a server sends, and, made on first use and then shared, its
/// permessage-deflate frame for each window size connections agreed.
///
/// Use it when the same message goes to many connections (a broadcast, a
/// push server's publication): [`Connection::send_prepared`] queues the
/// prepared frame by reference count, without copying or compressing,
/// where [`Connection::send`] would compress for each connection.
/// Compression is shared with connections that agreed
/// `server_no_context_takeover` (accept with
/// [`DeflateConfig::no_context_takeover`](crate::DeflateConfig::no_context_takeover));
/// a connection with context takeover compresses the message itself, as
/// [`Connection::send`] does.
///
/// Cloning is cheap (a reference count); it is `Send` and `Sync`, so
/// connections on several threads can share one. The first connection
/// that needs a window size compresses for it, with its own
/// [`DeflateConfig::level`](crate::DeflateConfig::level); the others
/// wanting that size meanwhile wait for the result. A compressed frame
/// that would not be smaller than the message is not used: the plain
/// one goes instead (RFC 7692 6: a message may be sent uncompressed).
///
/// ```
/// use std::time::Instant;
/// use herald_proto::{Config, Connection, DeflateConfig, DeflateParams, Message, PreparedMessage};
///
/// let now = Instant::now();
/// let deflate = DeflateConfig::no_context_takeover();
/// let params = DeflateParams {
///     server_no_context_takeover: true,
///     client_no_context_takeover: true,
///     ..DeflateParams::default()
/// };
/// let mut plain = Connection::server(Config::default(), now);
/// let mut compressed = Connection::server(Config::default(), now).with_deflate(params, &deflate);
///
/// let news = PreparedMessage::new(Message::text("news, news, news, news, news, news, news"));
/// plain.send_prepared(&news)?;
/// compressed.send_prepared(&news)?;
/// assert_eq!(plain.poll_transmit().unwrap().head.as_bytes(), b"\x81\x28");
/// let frame = compressed.poll_transmit().unwrap();
/// assert_eq!(frame.head.as_bytes()[0], 0xc1); // FIN, RSV1, text
/// assert!(frame.payload.len() < news.len());
/// # Ok::<(), herald_proto::UserError>(())
/// ```
///
/// [`Connection::send_prepared`]: crate::Connection::send_prepared
/// [`Connection::send`]: crate::Connection::send
#[derive(Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

struct Inner {
    opcode: OpCode,
    plain: Transmit,
    /// By zlib window bits minus 9. `None` inside: compressing did not
    /// make it smaller.
    compressed: [OnceLock<Option<Transmit>>; WINDOWS],
}

impl PreparedMessage {
    /// Frames `message` (a single unmasked frame). Compression waits until
    /// a connection needs it.
    pub fn new(message: Message) -> Self {
        let (opcode, payload) = match message {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        let plain = Transmit {
            head: FrameHeader::new(opcode, payload.len() as u64).encode(),
            payload,
        };
        Self {
            inner: Arc::new(Inner {
                opcode,
                plain,
                compressed: Default::default(),
            }),
        }
    }

    /// The message's payload, uncompressed.
    pub fn payload(&self) -> &Bytes {
        &self.inner.plain.payload
    }

    /// The payload length in bytes, uncompressed.
    pub fn len(&self) -> usize {
        self.inner.plain.payload.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message, sharing its payload.
    pub fn to_message(&self) -> Message {
        let payload = self.inner.plain.payload.clone();
        match self.inner.opcode {
            OpCode::Text => Message::Text(crate::message::Utf8Bytes::from_validated(payload)),
            _ => Message::Binary(payload),
        }
    }

    /// The opcode of the frame (text or binary).
    pub(crate) fn opcode(&self) -> OpCode {
        self.inner.opcode
    }

    /// The frame without compression.
    pub(crate) fn plain(&self) -> Transmit {
        self.inner.plain.clone()
    }

    /// The frame compressed without context takeover with a zlib window of
    /// `window_bits` (9..=15) at `level`, compressed now if no connection
    /// asked for this window before; `None` if compression does not make
    /// it smaller.
    pub(crate) fn compressed(&self, window_bits: u8, level: u32) -> Option<Transmit> {
        let window_bits = window_bits.clamp(MIN_WINDOW, 15);
        let slot = usize::from(window_bits - MIN_WINDOW);
        self.inner.compressed[slot]
            .get_or_init(|| {
                let payload = &self.inner.plain.payload;
                let compressed = compress_message(payload, window_bits, level);
                (compressed.len() < payload.len()).then(|| {
                    let mut header = FrameHeader::new(self.inner.opcode, compressed.len() as u64);
                    // RFC 7692 6: RSV1 on the first (here the only) frame.
                    header.rsv1 = true;
                    Transmit {
                        head: header.encode(),
                        payload: Bytes::from(compressed),
                    }
                })
            })
            .clone()
    }
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let windows: Vec<_> = (MIN_WINDOW..)
            .zip(&self.inner.compressed)
            .filter_map(|(bits, slot)| Some((bits, slot.get()?.as_ref().map(Transmit::len))))
            .collect();
        f.debug_struct("PreparedMessage")
            .field("opcode", &self.inner.opcode)
            .field("len", &self.len())
            .field("compressed", &windows)
            .finish()
    }
}

impl From<Message> for PreparedMessage {
    fn from(message: Message) -> Self {
        Self::new(message)
    }
}
