//! `apply_mask` against `memcpy` of the same buffer.
//!
//! Both touch every byte once: `apply_mask` reads and writes one buffer in
//! place, `copy_from_slice` reads one and writes another. Throughput is the
//! payload size for both, so the ratio is "unmask vs plain copy".
//!
//! `off` is both the start of the slice relative to a 64-byte aligned
//! address (0 = aligned, 1 = unaligned) and the masking `offset` argument
//! (so off 1 also exercises the rotated key).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald_proto::frame::apply_mask;

mod common;

const SIZES: [usize; 4] = [20, 1024, 16 * 1024, 64 * 1024];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A buffer of `len + 64` bytes and the index of its first 64-byte aligned
/// byte, so every slice `buf[base + off..][..len]` has a known alignment.
fn aligned(len: usize, fill: u8) -> (Vec<u8>, usize) {
    let buf: Vec<u8> = (0..len + 128).map(|i| (i as u8) ^ fill).collect();
    let base = buf.as_ptr().align_offset(64);
    (buf, base)
}

fn mask(c: &mut Criterion) {
    for &len in &SIZES {
        let mut g = c.benchmark_group(format!("mask/{len}B"));
        g.throughput(Throughput::Bytes(len as u64));
        for off in [0usize, 1] {
            let (mut buf, base) = aligned(len, 0);
            g.bench_function(BenchmarkId::new("apply_mask", format!("off{off}")), |b| {
                let s = &mut buf[base + off..base + off + len];
                b.iter(|| apply_mask(black_box(&mut *s), black_box(KEY), black_box(off)));
            });
            let (src, sbase) = aligned(len, 0x55);
            let (mut dst, dbase) = aligned(len, 0);
            g.bench_function(BenchmarkId::new("memcpy", format!("off{off}")), |b| {
                let s = &src[sbase + off..sbase + off + len];
                let d = &mut dst[dbase + off..dbase + off + len];
                b.iter(|| black_box(&mut *d).copy_from_slice(black_box(s)));
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = mask
}
criterion_main!(benches);
