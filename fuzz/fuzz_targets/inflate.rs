//! permessage-deflate: `PerMessageDeflate::decompress` (server role) on
//! arbitrary compressed messages with a size limit, then a round trip of
//! the same bytes as plain text through `compress` and `decompress`, both
//! ways.
//!
//! Input layout (so seeds can be written by hand):
//!
//! ```text
//! byte 0   negotiated parameters: bit 0 server_no_context_takeover,
//!          bit 1 client_no_context_takeover, bits 2-4 server_max_window_bits
//!          - 8, bits 5-7 client_max_window_bits - 8
//! byte 1   message size limit: n * 64 bytes (255: 1 MiB)
//! byte 2   compression level for the round trip (mod 10)
//! rest     pieces: a byte with FIN in bit 7 and the length in bits 0-6
//!          (127: all that is left), then that many bytes
//! ```
//!
//! Checks, besides "never panics":
//! - inflating never appends more than the limit allows plus one byte (the
//!   documented overshoot that detects "too big"), and nothing past the
//!   limit when it succeeds;
//! - compressing pieces and inflating them gives them back, with a limit of
//!   exactly the message size.
#![no_main]

use bytes::BytesMut;
use herald_proto::deflate::{DeflateConfig, DeflateParams, PerMessageDeflate};
use herald_proto::{ProtocolError, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [params, limit, level, rest @ ..] = data else {
        return;
    };
    let params = DeflateParams {
        server_no_context_takeover: params & 1 != 0,
        client_no_context_takeover: params & 2 != 0,
        server_max_window_bits: 8 + ((params >> 2) & 7),
        client_max_window_bits: 8 + (params >> 5),
    };
    let limit = match limit {
        255 => 1 << 20,
        n => usize::from(*n) * 64,
    };
    let config = DeflateConfig::default().level(u32::from(level % 10));
    let pieces = split(rest);

    inflate_arbitrary(params, &config, limit, &pieces);
    for sender in [Role::Client, Role::Server] {
        round_trip(sender, params, &config, &pieces);
    }
});

/// The pieces of the input, each with its FIN bit.
fn split(mut rest: &[u8]) -> Vec<(&[u8], bool)> {
    let mut pieces = Vec::new();
    while let [head, tail @ ..] = rest {
        let n = usize::from(head & 0x7F);
        let n = if n == 0x7F {
            tail.len()
        } else {
            n.min(tail.len())
        };
        pieces.push((&tail[..n], head & 0x80 != 0));
        rest = &tail[n..];
    }
    pieces
}

fn inflate_arbitrary(
    params: DeflateParams,
    config: &DeflateConfig,
    limit: usize,
    pieces: &[(&[u8], bool)],
) {
    let mut codec = PerMessageDeflate::new(Role::Server, params, config);
    let mut out = BytesMut::new();
    for &(input, fin) in pieces {
        let room = limit - out.len();
        let before = out.len();
        let result = codec.decompress(input, fin, &mut out, room);
        let added = out.len() - before;
        match result {
            Ok(()) => assert!(added <= room, "{added} bytes with room for {room}"),
            Err(ProtocolError::MessageTooBig | ProtocolError::InvalidCompressedData) => {
                assert!(added <= room + 1, "{added} bytes with room for {room}");
                // The connection fails here; the codec is not reused.
                return;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
        if fin {
            out.clear();
        }
    }
}

fn round_trip(
    sender: Role,
    params: DeflateParams,
    config: &DeflateConfig,
    pieces: &[(&[u8], bool)],
) {
    let receiver = match sender {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let mut tx = PerMessageDeflate::new(sender, params, config);
    let mut rx = PerMessageDeflate::new(receiver, params, config);
    let mut message = Vec::new();
    let mut wire = Vec::new();
    for &(plain, fin) in pieces {
        message.extend_from_slice(plain);
        wire.push((tx.compress(plain, fin), fin));
        if !fin {
            continue;
        }
        // The limit is exactly the size: reaching it is allowed.
        let mut out = BytesMut::new();
        for (compressed, fin) in wire.drain(..) {
            let room =
                (message.len().checked_sub(out.len())).expect("inflated more than was compressed");
            rx.decompress(&compressed, fin, &mut out, room)
                .unwrap_or_else(|e| panic!("{sender:?} -> {receiver:?}: {e:?}"));
        }
        assert!(
            out[..] == message[..],
            "{sender:?} -> {receiver:?}: round trip differs"
        );
        message.clear();
    }
}
