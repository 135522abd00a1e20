//! `Utf8Validator` (one `feed` + `finish`, the whole-frame case) against
//! `simdutf8::basic::from_utf8` called directly, and `std::str::from_utf8`.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald_proto::utf8::Utf8Validator;

mod common;

const MIXED: &str = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 日本語 🎉";

/// `unit` repeated up to `len` bytes, cut at a code point boundary.
fn repeat_to(unit: &str, len: usize) -> Vec<u8> {
    let mut s = unit.repeat(len / unit.len() + 1);
    let mut cut = len;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.into_bytes()
}

fn utf8(c: &mut Criterion) {
    let ascii_unit = "The quick brown fox jumps over the lazy dog. 0123456789\n";
    let inputs: [(&str, Vec<u8>); 4] = [
        ("ascii_64KiB", repeat_to(ascii_unit, 64 * 1024)),
        ("mixed_64KiB", repeat_to(MIXED, 64 * 1024)),
        ("ascii_20B", repeat_to(ascii_unit, 20)),
        ("mixed_20B", repeat_to(MIXED, 20)),
    ];
    for (name, data) in &inputs {
        assert!(std::str::from_utf8(data).is_ok());
        let mut g = c.benchmark_group(format!("utf8/{name}"));
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter("Utf8Validator"),
            data,
            |b, d| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    let r = v.feed(black_box(d)).and_then(|()| v.finish());
                    black_box(r)
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::from_parameter("simdutf8_basic"),
            data,
            |b, d| {
                b.iter(|| black_box(simdutf8::basic::from_utf8(black_box(d)).is_ok()));
            },
        );
        g.bench_with_input(BenchmarkId::from_parameter("std"), data, |b, d| {
            b.iter(|| black_box(std::str::from_utf8(black_box(d)).is_ok()));
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = utf8
}
criterion_main!(benches);
