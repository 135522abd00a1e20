//! The per-message codec (RFC 7692 7.2).

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{DeflateConfig, DeflateParams, clamp_window_bits};
use crate::{Role, error::ProtocolError};

/// The empty stored block that ends a sync flush. RFC 7692 7.2.1: the
/// sender "Remove[s] 4 octets (that are 0x00 0x00 0xff 0xff) from the tail
/// end"; 7.2.2: the receiver "Append[s] 4 octets of 0x00 0x00 0xff 0xff to
/// the tail end of the payload of the message".
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflate output grows in steps between these bounds, so a compression
/// bomb is noticed within one step of the limit and nothing near the limit
/// is reserved up front.
const MIN_INFLATE_STEP: usize = 1 << 10;
const MAX_INFLATE_STEP: usize = 32 << 10;

/// Compression state of one connection: our compressor and the inflater for
/// the peer's messages, each created on first use.
///
/// See the [module docs](super#memory) for what each costs.
#[derive(Debug)]
pub struct PerMessageDeflate {
    params: DeflateParams,
    deflate: Deflater,
    inflate: Inflater,
    threshold: usize,
}

impl PerMessageDeflate {
    /// Codec for `role` with the negotiated `params`; `config` gives the
    /// level and threshold. Allocates nothing.
    pub fn new(role: Role, params: DeflateParams, config: &DeflateConfig) -> Self {
        let client = (
            params.client_max_window_bits,
            params.client_no_context_takeover,
        );
        let server = (
            params.server_max_window_bits,
            params.server_no_context_takeover,
        );
        let (ours, theirs) = match role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        Self {
            params,
            deflate: Deflater {
                window_bits: zlib_window_bits(ours.0),
                no_context_takeover: ours.1,
                level: config.level.min(9),
                stream: None,
            },
            inflate: Inflater {
                window_bits: zlib_window_bits(theirs.0),
                no_context_takeover: theirs.1,
                state: InflateState::Idle,
                message_has_data: false,
            },
            threshold: config.threshold,
        }
    }

    /// The negotiated parameters.
    pub fn params(&self) -> DeflateParams {
        self.params
    }

    /// Whether any zlib state is held now. Between messages this is `false`
    /// for every direction without context takeover: the state is freed at
    /// the end of each message.
    pub fn holds_state(&self) -> bool {
        self.deflate.stream.is_some() || !matches!(self.inflate.state, InflateState::Idle)
    }

    /// The zlib window our compressor uses, and its level, when our side
    /// has no context takeover: then every message we send is compressed
    /// on its own, and one encoding with these two values suits every
    /// connection that agreed them ([`PreparedMessage`](crate::PreparedMessage)).
    /// `None` with context takeover, where each message depends on the
    /// connection's earlier ones.
    pub(crate) fn shared_encoding(&self) -> Option<(u8, u32)> {
        self.deflate
            .no_context_takeover
            .then_some((self.deflate.window_bits, self.deflate.level))
    }

    /// Whether a message of `len` bytes should be sent compressed: it is at
    /// least [`DeflateConfig::threshold`] long and the level is not 0. Small
    /// messages rarely shrink, and skipping them keeps an idle-ish
    /// connection from ever allocating a compressor.
    pub fn should_compress(&self, len: usize) -> bool {
        self.deflate.level > 0 && len >= self.threshold
    }

    /// Compresses one fragment of an outgoing message into the payload of
    /// its frame. The caller sets RSV1 on the message's first frame only
    /// (RFC 7692 6).
    ///
    /// Each call ends with a sync flush, so every fragment can be inflated as
    /// soon as it arrives. With `fin`, the flush marker is removed (RFC 7692
    /// 7.2.1) and, if our side has no context takeover, the compressor is
    /// released so the next message starts with an empty window.
    pub fn compress(&mut self, payload: &[u8], fin: bool) -> Bytes {
        Bytes::from(self.deflate.compress(payload, fin))
    }

    /// Inflates one piece (a frame, or part of one) of an incoming
    /// compressed message, appending the output to `out`.
    ///
    /// `limit` is how many more bytes this message may inflate to; going
    /// over it fails with [`ProtocolError::MessageTooBig`] as soon as it
    /// happens. Output is produced in steps of at most 32 KiB and never
    /// reserved ahead, so a compression bomb appends at most `limit + 1`
    /// bytes to `out` (whose capacity grows by `BytesMut`'s usual doubling)
    /// before it is stopped. Data that does not inflate fails with
    /// [`ProtocolError::InvalidCompressedData`].
    ///
    /// With `fin`, the flush marker is fed (RFC 7692 7.2.2) and the inflater
    /// is released if the peer has no context takeover. After an error the
    /// connection must be failed: the inflater state is gone, and later
    /// messages of a peer using context takeover would not inflate.
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.inflate.decompress(input, fin, out, limit)
    }
}

/// The window size zlib gets for a negotiated one.
///
/// zlib and zlib-rs refuse raw deflate with windowBits 8 (flate2 asserts
/// 9..=15 for both directions), so 8 becomes 9. That stays within an 8-bit
/// agreement: zlib never emits a match distance above `2^w - 262` (its
/// `MAX_DIST`: the window minus `MIN_LOOKAHEAD`, 258 + 3 + 1), so a 9-bit
/// compressor reaches back at most 250 bytes, which a 256-byte window
/// holds. Inflating with 9 where 8 was agreed only accepts more.
fn zlib_window_bits(negotiated: u8) -> u8 {
    clamp_window_bits(negotiated).max(9)
}

/// Compresses `payload` as a whole message with a fresh compressor of
/// `window_bits` (as zlib counts them) and `level`, as a side without
/// context takeover does: the result refers to nothing outside itself.
pub(crate) fn compress_message(payload: &[u8], window_bits: u8, level: u32) -> Vec<u8> {
    Deflater {
        window_bits,
        no_context_takeover: true,
        level,
        stream: None,
    }
    .compress(payload, true)
}

#[derive(Debug)]
struct Deflater {
    window_bits: u8,
    no_context_takeover: bool,
    level: u32,
    /// `None` until the first compressed message, and again after each
    /// message when our side has no context takeover. Boxed, as is the
    /// inflater's: between messages a connection without context takeover
    /// pays for a pointer, not for zlib's handle.
    stream: Option<Box<Compress>>,
}

impl Deflater {
    fn compress(&mut self, payload: &[u8], fin: bool) -> Vec<u8> {
        let (level, bits) = (self.level, self.window_bits);
        let stream = self.stream.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(level),
                false,
                bits,
            ))
        });
        // The result may sit in a send queue for a while, so aim for little
        // spare capacity: guess 4:1 (JSON and text usually do better), and
        // when that was too hopeful assume the rest will not shrink at all
        // (deflate's worst case is about 5 bytes per 16 KiB on top).
        let mut out = Vec::with_capacity(payload.len() / 4 + 64);
        let mut consumed = 0;
        loop {
            let (in0, out0) = (stream.total_in(), out.len());
            let status = stream
                .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
                // A raw deflate stream with valid parameters only fails on
                // misuse of the zlib API, which would be a bug here.
                .expect("deflate with valid parameters cannot fail");
            consumed += (stream.total_in() - in0) as usize;
            let full = out.len() == out.capacity();
            // zlib stops short of a complete flush only when it runs out of
            // output space.
            if consumed == payload.len() && !full {
                break;
            }
            if status == Status::BufError && out.len() == out0 && !full {
                break;
            }
            let rest = payload.len() - consumed;
            out.reserve_exact((rest + rest / 1024 + 1024).max(out.capacity() / 4));
        }
        if fin {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            } else {
                // Nothing new since the last sync flush (an empty final
                // fragment after a flushed one), so zlib wrote nothing. The
                // stream is byte-aligned: a lone 0x00 plus the receiver's
                // tail is an empty stored block, as in RFC 7692 7.2.3.6.
                debug_assert!(out.is_empty(), "sync flush output must end with the tail");
                out.push(0x00);
            }
            if self.no_context_takeover {
                // RFC 7692 7.1.1: this side "MUST start compressing each new
                // message with an empty LZ77 sliding window"; freeing
                // the state does that and leaves the idle connection nothing
                // to hold.
                self.stream = None;
            }
        }
        // Very compressible data leaves most of the 4:1 guess unused.
        if out.capacity() - out.len() > out.len() / 2 + 1024 {
            out.shrink_to_fit();
        }
        out
    }
}

#[derive(Debug)]
struct Inflater {
    window_bits: u8,
    no_context_takeover: bool,
    state: InflateState,
    /// Whether the message in progress has had any input yet.
    message_has_data: bool,
}

#[derive(Debug)]
enum InflateState {
    /// No zlib state: before the first message, or between messages of a
    /// peer without context takeover.
    Idle,
    Inflating(Box<Decompress>),
    /// The message contained a DEFLATE block with BFINAL set (RFC 7692
    /// 7.2.3.4). The stream is over until the end of the message.
    Finished,
}

impl Inflater {
    fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.message_has_data |= !input.is_empty();
        let result = self.feed(input, out, limit).and_then(|produced| {
            if !fin {
                return Ok(());
            }
            // A compressed message holds at least one octet (RFC 7692
            // 7.2.3.6 sends 0x00 for an empty one). The tail alone would
            // leave the inflater inside a stored block, swallowing the next
            // message.
            if !std::mem::take(&mut self.message_has_data) {
                return Err(ProtocolError::InvalidCompressedData);
            }
            self.feed(&TAIL, out, limit - produced).map(drop)
        });
        if result.is_err() {
            self.state = InflateState::Idle;
            self.message_has_data = false;
        } else if fin && (self.no_context_takeover || matches!(self.state, InflateState::Finished))
        {
            // RFC 7692 7.1.1: with the peer's no_context_takeover we "MAY
            // decompress each new message with an empty LZ77 sliding window";
            // freeing the state does that and holds nothing while idle. After
            // a final block the peer's next message starts a new stream,
            // which needs a fresh inflater too.
            self.state = InflateState::Idle;
        }
        result
    }

    /// Inflates `input` into `out`, producing at most `limit + 1` bytes.
    /// Returns how many it produced.
    fn feed(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<usize, ProtocolError> {
        // zlib holds no output back once it has stopped with room to
        // spare, so an empty piece has nothing to give.
        if input.is_empty() {
            return Ok(0);
        }
        let mut produced = 0;
        let mut consumed = 0;
        let mut step = input
            .len()
            .saturating_mul(4)
            .clamp(MIN_INFLATE_STEP, MAX_INFLATE_STEP);
        loop {
            let stream = match &mut self.state {
                // RFC 7692 7.2.3.4 puts one more octet after a final block so
                // that such a message ends like any other, and our tail
                // follows: what comes after the end of the stream is
                // ignored, as zlib does.
                InflateState::Finished => return Ok(produced),
                state @ InflateState::Idle => {
                    *state = InflateState::Inflating(Box::new(Decompress::new_with_window_bits(
                        false,
                        self.window_bits,
                    )));
                    continue;
                }
                InflateState::Inflating(stream) => stream,
            };
            // One byte past the limit is enough to know it was exceeded.
            let room = step.min(limit.saturating_sub(produced).saturating_add(1));
            let start = out.len();
            out.resize(start + room, 0);
            let in0 = stream.total_in();
            let out0 = stream.total_out();
            let status =
                stream.decompress(&input[consumed..], &mut out[start..], FlushDecompress::Sync);
            let n_in = (stream.total_in() - in0) as usize;
            let n_out = (stream.total_out() - out0) as usize;
            out.truncate(start + n_out);
            consumed += n_in;
            produced += n_out;
            let status = status.map_err(|_| ProtocolError::InvalidCompressedData)?;
            if produced > limit {
                return Err(ProtocolError::MessageTooBig);
            }
            match status {
                Status::StreamEnd => self.state = InflateState::Finished,
                _ if n_out == room => step = (step * 2).min(MAX_INFLATE_STEP),
                // Output space left: zlib stopped for lack of input.
                _ if consumed == input.len() => return Ok(produced),
                // Input and output space left yet no progress: cannot happen
                // with zlib; refuse rather than spin.
                _ if n_in == 0 && n_out == 0 => return Err(ProtocolError::InvalidCompressedData),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
