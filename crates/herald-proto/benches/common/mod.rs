//! Shared by the bench targets: criterion settings and frame builders.
//! (`benches/common/mod.rs` is not picked up as a bench target itself.)
#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;
use herald_proto::frame::apply_mask;
use herald_proto::{FrameHeader, OpCode};

/// Settings that keep a full `cargo bench -p herald-proto` short on 2 cores.
pub(crate) fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// Number of frames in one parse batch.
pub(crate) const FRAMES: usize = 10_000;

/// 20 bytes of binary payload.
pub(crate) const BINARY_20: [u8; 20] =
    *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xfe\xff";

/// 20 bytes of UTF-8 with 2-byte code points ("κόσμε" is 11 bytes).
pub(crate) const TEXT_20: &str = "Hello-UTF κόσμε";

/// The masking key of frame `i`: a different one per frame, as a real
/// client would send.
pub(crate) fn key(i: usize) -> [u8; 4] {
    [i as u8, (i >> 8) as u8, 0x5a, 0xa5]
}

/// One masked client-to-server frame carrying `payload`.
pub(crate) fn masked_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], key: [u8; 4]) {
    let head = FrameHeader {
        mask: Some(key),
        ..FrameHeader::new(opcode, payload.len() as u64)
    }
    .encode();
    out.extend_from_slice(head.as_bytes());
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
}

/// `n` masked frames back to back, as one read from the socket would hold.
pub(crate) fn masked_frames(n: usize, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    assert_eq!(payload.len(), 20);
    let mut out = Vec::with_capacity(n * (6 + payload.len()));
    for i in 0..n {
        masked_frame(&mut out, opcode, payload, key(i));
    }
    out
}
