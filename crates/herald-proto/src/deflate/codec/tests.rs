//! Codec tests, grouped by RFC 7692 section.

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;

const HELLO: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
const MIB: usize = 1 << 20;

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

/// A server and a client codec for the same agreement.
fn pair(p: DeflateParams, level: u32) -> (PerMessageDeflate, PerMessageDeflate) {
    let config = DeflateConfig::default().level(level);
    (
        PerMessageDeflate::new(Role::Server, p, &config),
        PerMessageDeflate::new(Role::Client, p, &config),
    )
}

fn client(p: DeflateParams) -> PerMessageDeflate {
    pair(p, 1).1
}

fn inflate(codec: &mut PerMessageDeflate, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = BytesMut::new();
    codec.decompress(payload, true, &mut out, usize::MAX)?;
    Ok(out.to_vec())
}

/// Data with matches at every distance up to ~40 KiB, so small windows are
/// actually exercised.
fn sample(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if v.len() > 16 && x & 3 == 0 {
            let dist = 1 + (x as usize >> 8) % v.len().min(40_000);
            let n = 3 + (x as usize >> 4) % 40;
            for _ in 0..n {
                v.push(v[v.len() - dist]);
            }
        } else {
            v.push(b"etaoin shrdlu{}\":,0123"[(x >> 3) as usize % 22]);
        }
    }
    v.truncate(len);
    v
}

// ---- RFC 7692 7.2.3: examples --------------------------------------------

#[test]
fn rfc_7_2_3_1_hello_compresses_to_the_rfc_bytes() {
    for level in 1..=9 {
        let (mut tx, _) = pair(DeflateParams::default(), level);
        assert_eq!(&tx.compress(b"Hello", true)[..], HELLO, "level {level}");
    }
}

#[test]
fn rfc_7_2_3_1_hello_inflates() {
    assert_eq!(
        inflate(&mut client(DeflateParams::default()), HELLO).unwrap(),
        b"Hello"
    );
}

#[test]
fn rfc_7_2_3_1_fragmented_hello_inflates() {
    // "0x41 0x03 0xf2 0x48 0xcd" then "0x80 0x04 0xc9 0xc9 0x07 0x00"
    let mut rx = client(DeflateParams::default());
    let mut out = BytesMut::new();
    rx.decompress(&[0xf2, 0x48, 0xcd], false, &mut out, 100)
        .unwrap();
    let left = 100 - out.len();
    rx.decompress(&[0xc9, 0xc9, 0x07, 0x00], true, &mut out, left)
        .unwrap();
    assert_eq!(&out[..], b"Hello");
}

/// The RFC's second "Hello", a back-reference into the first message.
const HELLO_AGAIN: &[u8] = &[0xf2, 0x00, 0x11, 0x00, 0x00];

#[test]
fn rfc_7_2_3_2_context_takeover_inflates() {
    let mut rx = client(DeflateParams::default());
    assert_eq!(inflate(&mut rx, HELLO).unwrap(), b"Hello");
    assert_eq!(inflate(&mut rx, HELLO_AGAIN).unwrap(), b"Hello");
}

#[test]
fn rfc_7_2_3_2_context_takeover_compresses() {
    // zlib-rs codes the second "Hello" as one length-5 match (4 octets)
    // where the RFC's zlib wrote a literal and a length-4 match (5 octets):
    // both refer back into the first message, which is the point.
    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    let first = tx.compress(b"Hello", true);
    let second = tx.compress(b"Hello", true);
    assert_eq!(&first[..], HELLO);
    assert!(second.len() < first.len(), "{second:x?}");
    assert_eq!(inflate(&mut rx, &first).unwrap(), b"Hello");
    assert_eq!(inflate(&mut rx, &second).unwrap(), b"Hello");
    // Alone, it does not inflate.
    assert_eq!(
        inflate(&mut client(DeflateParams::default()), &second),
        Err(ProtocolError::InvalidCompressedData)
    );
}

#[test]
fn rfc_7_2_3_3_stored_block() {
    let payload = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(
        inflate(&mut client(DeflateParams::default()), &payload).unwrap(),
        b"Hello"
    );
}

#[test]
fn rfc_7_2_3_4_bfinal_block_then_more_messages() {
    let payload = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    let mut rx = client(DeflateParams::default());
    assert_eq!(inflate(&mut rx, &payload).unwrap(), b"Hello");
    // The stream ended; the next message starts a new one.
    assert_eq!(inflate(&mut rx, &payload).unwrap(), b"Hello");
    assert_eq!(inflate(&mut rx, HELLO).unwrap(), b"Hello");
}

#[test]
fn rfc_7_2_3_5_two_deflate_blocks() {
    let payload = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(
        inflate(&mut client(DeflateParams::default()), &payload).unwrap(),
        b"Hello"
    );
}

#[test]
fn rfc_7_2_3_6_empty_message() {
    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    assert_eq!(&tx.compress(b"", true)[..], [0x00]);
    assert_eq!(inflate(&mut rx, &[0x00]).unwrap(), b"");
    // The context is intact afterwards.
    let next = tx.compress(b"Hello", true);
    assert_eq!(inflate(&mut rx, &next).unwrap(), b"Hello");
    assert_eq!(&tx.compress(b"", true)[..], [0x00]);
    assert_eq!(inflate(&mut rx, &[0x00]).unwrap(), b"");
}

#[test]
fn a_compressed_message_with_no_payload_is_invalid() {
    let mut rx = client(DeflateParams::default());
    assert_eq!(
        inflate(&mut rx, b""),
        Err(ProtocolError::InvalidCompressedData)
    );
    let mut out = BytesMut::new();
    rx.decompress(b"", false, &mut out, 10).unwrap();
    assert_eq!(
        rx.decompress(b"", true, &mut out, 10),
        Err(ProtocolError::InvalidCompressedData)
    );
}

// ---- RFC 7692 7.1.1: context takeover ------------------------------------

#[test]
fn no_context_takeover_resets_the_compressor() {
    // server_no_context_takeover: the server's every "Hello" is the same.
    let (mut tx, mut rx) = pair(params(true, false, 15, 15), 1);
    for _ in 0..3 {
        let wire = tx.compress(b"Hello", true);
        assert_eq!(&wire[..], HELLO);
        assert_eq!(inflate(&mut rx, &wire).unwrap(), b"Hello");
    }
    // The client's side still takes over its context.
    let mut tx = client(params(true, false, 15, 15));
    assert_eq!(&tx.compress(b"Hello", true)[..], HELLO);
    assert!(tx.compress(b"Hello", true).len() < HELLO.len());
}

#[test]
fn no_context_takeover_resets_the_inflater() {
    // A peer without context takeover cannot refer to the last message;
    // a back-reference into it now points before the start of the stream.
    let mut rx = client(params(true, false, 15, 15));
    assert_eq!(inflate(&mut rx, HELLO).unwrap(), b"Hello");
    assert_eq!(
        inflate(&mut rx, HELLO_AGAIN),
        Err(ProtocolError::InvalidCompressedData)
    );
    // With takeover the same bytes are fine.
    let mut rx = client(DeflateParams::default());
    assert_eq!(inflate(&mut rx, HELLO).unwrap(), b"Hello");
    assert_eq!(inflate(&mut rx, HELLO_AGAIN).unwrap(), b"Hello");
}

#[test]
fn zlib_state_is_allocated_lazily_and_freed_without_takeover() {
    let (mut tx, mut rx) = pair(params(true, true, 15, 15), 1);
    assert!(tx.deflate.stream.is_none() && matches!(tx.inflate.state, InflateState::Idle));
    let wire = tx.compress(b"Hello", false);
    assert!(tx.deflate.stream.is_some(), "kept within a message");
    let mut wire = wire.to_vec();
    wire.extend_from_slice(&tx.compress(b"", true));
    assert!(
        tx.deflate.stream.is_none(),
        "freed at the end of the message"
    );
    assert_eq!(inflate(&mut rx, &wire).unwrap(), b"Hello");
    assert!(matches!(rx.inflate.state, InflateState::Idle));

    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    let wire = tx.compress(b"Hello", true);
    inflate(&mut rx, &wire).unwrap();
    assert!(tx.deflate.stream.is_some());
    assert!(matches!(rx.inflate.state, InflateState::Inflating(_)));
}

// ---- round trips ---------------------------------------------------------

#[test]
fn round_trip_every_window_size_and_takeover_setting() {
    let messages: Vec<Vec<u8>> = (0..3)
        .map(|i| sample(10_000 + 8_000 * i, i as u32))
        .collect();
    for bits in 8..=15 {
        for no_takeover in [false, true] {
            let p = params(no_takeover, no_takeover, bits, bits);
            // zlib-rs's four strategies: quick, fast, medium, slow.
            for level in [1, 2, 5, 9] {
                let (mut server, mut client) = pair(p, level);
                for m in &messages {
                    let wire = server.compress(m, true);
                    assert_eq!(
                        &inflate(&mut client, &wire).unwrap(),
                        m,
                        "s->c {bits} {level}"
                    );
                    let wire = client.compress(m, true);
                    assert_eq!(
                        &inflate(&mut server, &wire).unwrap(),
                        m,
                        "c->s {bits} {level}"
                    );
                }
            }
        }
    }
}

#[test]
fn round_trip_asymmetric_windows() {
    let m = sample(50_000, 9);
    let (mut server, mut client) = pair(params(false, true, 8, 15), 6);
    for _ in 0..3 {
        let wire = server.compress(&m, true);
        assert_eq!(inflate(&mut client, &wire).unwrap(), m);
        let wire = client.compress(&m, true);
        assert_eq!(inflate(&mut server, &wire).unwrap(), m);
    }
}

#[test]
fn fragments_inflate_to_the_whole_message() {
    let (a, b) = (sample(3000, 1), sample(5000, 2));
    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    for _ in 0..2 {
        let f1 = tx.compress(&a, false);
        let f2 = tx.compress(&b, true);
        // Frame by frame...
        let mut out = BytesMut::new();
        rx.decompress(&f1, false, &mut out, usize::MAX).unwrap();
        assert_eq!(&out[..], &a[..], "a fragment inflates on arrival");
        rx.decompress(&f2, true, &mut out, usize::MAX).unwrap();
        assert_eq!(out.len(), a.len() + b.len());
        assert_eq!(&out[..a.len()], &a[..]);
        assert_eq!(&out[a.len()..], &b[..]);
    }
    // ...or concatenated.
    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    let mut wire = tx.compress(&a, false).to_vec();
    wire.extend_from_slice(&tx.compress(&b, true));
    assert_eq!(inflate(&mut rx, &wire).unwrap(), [a, b].concat());
}

#[test]
fn empty_fragments() {
    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    let mut out = BytesMut::new();
    for (data, fin) in [
        (&b""[..], false),
        (b"Hello", false),
        (b"", false),
        (b"", true),
    ] {
        let wire = tx.compress(data, fin);
        rx.decompress(&wire, fin, &mut out, usize::MAX).unwrap();
    }
    assert_eq!(&out[..], b"Hello");
    // The stream is still in step.
    let wire = tx.compress(b"Hello again", true);
    assert_eq!(inflate(&mut rx, &wire).unwrap(), b"Hello again");
}

#[test]
fn input_split_at_every_byte() {
    let m = sample(2000, 5);
    let (mut tx, _) = pair(DeflateParams::default(), 6);
    let wire = tx.compress(&m, true);
    for cut in 0..=wire.len() {
        let mut rx = client(DeflateParams::default());
        let mut out = BytesMut::new();
        rx.decompress(&wire[..cut], false, &mut out, usize::MAX)
            .unwrap();
        rx.decompress(&wire[cut..], true, &mut out, usize::MAX)
            .unwrap();
        assert_eq!(out, m, "cut at {cut}");
    }
}

#[test]
fn incompressible_data_round_trips() {
    let mut x = 0x1234_5678u32;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let (mut tx, mut rx) = pair(DeflateParams::default(), 9);
    let wire = tx.compress(&noise, true);
    assert!(wire.len() < noise.len() + noise.len() / 100);
    assert_eq!(inflate(&mut rx, &wire).unwrap(), noise);
}

// ---- limits and bad input ------------------------------------------------

#[test]
fn compression_bomb_stops_at_the_limit() {
    let zeros = vec![0u8; 10 * MIB];
    let (mut tx, mut rx) = pair(DeflateParams::default(), 9);
    let wire = tx.compress(&zeros, true);
    assert!(wire.len() < 20_000, "{}", wire.len());
    let mut out = BytesMut::new();
    assert_eq!(
        rx.decompress(&wire, true, &mut out, MIB),
        Err(ProtocolError::MessageTooBig)
    );
    assert!(out.len() <= MIB + 1, "{}", out.len());
    // BytesMut grows by doubling; no more than that.
    assert!(
        out.capacity() <= 2 * MIB + MAX_INFLATE_STEP,
        "{}",
        out.capacity()
    );
}

#[test]
fn limit_is_counted_across_fragments_by_the_caller() {
    let m = sample(100_000, 3);
    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    let f1 = tx.compress(&m[..60_000], false);
    let f2 = tx.compress(&m[60_000..], true);
    let mut out = BytesMut::new();
    let limit = 99_999;
    rx.decompress(&f1, false, &mut out, limit).unwrap();
    let left = limit - out.len();
    assert_eq!(
        rx.decompress(&f2, true, &mut out, left),
        Err(ProtocolError::MessageTooBig)
    );
}

#[test]
fn a_message_exactly_at_the_limit_is_fine() {
    let m = sample(70_000, 4);
    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    let wire = tx.compress(&m, true);
    let mut out = BytesMut::new();
    rx.decompress(&wire, true, &mut out, m.len()).unwrap();
    assert_eq!(out, m);
    let wire = tx.compress(&m, true);
    let mut out = BytesMut::new();
    assert_eq!(
        rx.decompress(&wire, true, &mut out, m.len() - 1),
        Err(ProtocolError::MessageTooBig)
    );
}

#[test]
fn corrupt_input_is_invalid_compressed_data() {
    for bad in [
        &[0xff, 0xff, 0xff, 0xff][..],
        // BFINAL=1, BTYPE=11 (reserved)
        &[0x07],
        // Stored block whose NLEN is not the complement of LEN
        &[
            0x00, 0x05, 0x00, 0x00, 0x00, b'H', b'e', b'l', b'l', b'o', 0x00,
        ],
        // A back-reference before the start of the stream
        HELLO_AGAIN,
    ] {
        let mut rx = client(DeflateParams::default());
        assert_eq!(
            inflate(&mut rx, bad),
            Err(ProtocolError::InvalidCompressedData),
            "{bad:x?}"
        );
    }
}

#[test]
fn threshold_and_level_zero() {
    let config = DeflateConfig::default().threshold(10);
    let codec = PerMessageDeflate::new(Role::Client, DeflateParams::default(), &config);
    assert!(!codec.should_compress(9));
    assert!(codec.should_compress(10));
    let config = DeflateConfig::default().level(0);
    let codec = PerMessageDeflate::new(Role::Client, DeflateParams::default(), &config);
    assert!(!codec.should_compress(1 << 20));
    // Defaults: level 1, threshold 32.
    let codec = client(DeflateParams::default());
    assert!(!codec.should_compress(31));
    assert!(codec.should_compress(32));
}

// ---- window bits 8 (compressed with zlib's 9) ----------------------------

#[test]
fn window_bits_8_compresses_within_256_bytes() {
    // zlib refuses a raw 8-bit window, and flate2 refuses one for inflate as
    // well, so the claim that a 9-bit zlib compressor never reaches back
    // more than 2^9 - 262 = 250 bytes is checked by decoding the stream
    // with the reference inflater below, which tracks distances.
    let m = sample(60_000, 11);
    for level in 1..=9 {
        let (mut tx, mut rx) = pair(params(false, false, 8, 8), level);
        let mut stream = Vec::new();
        let mut out = BytesMut::new();
        for chunk in m.chunks(20_000) {
            let wire = tx.compress(chunk, true);
            // Our own inflater for an 8-bit agreement takes it...
            rx.decompress(&wire, true, &mut out, usize::MAX).unwrap();
            stream.extend_from_slice(&wire);
            stream.extend_from_slice(&TAIL);
        }
        assert_eq!(out, m);
        // ...and so would a true 8-bit one.
        let (data, max_dist) = reference_inflate(&stream).unwrap();
        assert_eq!(data, m);
        assert!(max_dist <= 250, "level {level}: distance {max_dist}");
        assert!(
            max_dist > 200,
            "level {level}: the data should tempt long matches"
        );
    }
}

#[test]
fn reference_inflater_agrees_with_zlib() {
    let m = sample(100_000, 12);
    let (mut tx, _) = pair(DeflateParams::default(), 6);
    let mut stream = tx.compress(&m, true).to_vec();
    stream.extend_from_slice(&TAIL);
    let (data, max_dist) = reference_inflate(&stream).unwrap();
    assert_eq!(data, m);
    assert!(max_dist > 30_000, "{max_dist}");
    assert_eq!(reference_inflate(HELLO_AGAIN), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip(
        snct in any::<bool>(),
        cnct in any::<bool>(),
        sbits in 8u8..=15,
        cbits in 8u8..=15,
        level in 1u32..=9,
        messages in prop::collection::vec(
            (prop::collection::vec(prop::collection::vec(0u8..4, 0..3000), 1..4), any::<u64>()),
            1..6,
        ),
    ) {
        let (server, client) = pair(params(snct, cnct, sbits, cbits), level);
        // [server -> client, client -> server]
        let mut codecs = [server, client];
        for (fragments, seed) in messages {
            let whole = fragments.concat();
            for direction in [0, 1] {
                let [a, b] = &mut codecs;
                let (tx, rx) = if direction == 0 { (a, b) } else { (b, a) };
                let mut out = BytesMut::new();
                for (i, f) in fragments.iter().enumerate() {
                    let fin = i + 1 == fragments.len();
                    let wire = tx.compress(f, fin);
                    // Feed each compressed frame in two arbitrary pieces.
                    let cut = (seed as usize) % (wire.len() + 1);
                    rx.decompress(&wire[..cut], false, &mut out, usize::MAX).unwrap();
                    rx.decompress(&wire[cut..], fin, &mut out, usize::MAX).unwrap();
                }
                prop_assert_eq!(&out[..], &whole[..]);
            }
        }
    }

    #[test]
    fn prop_garbage_never_panics(
        data in prop::collection::vec(any::<u8>(), 0..200),
        limit in 0usize..10_000,
    ) {
        let mut rx = client(DeflateParams::default());
        let mut out = BytesMut::new();
        if rx.decompress(&data, true, &mut out, limit).is_ok() {
            prop_assert!(out.len() <= limit);
        } else {
            prop_assert!(out.len() <= limit + 1);
        }
    }
}

// ---- a reference inflater (RFC 1951), for checking distances -------------

/// Decodes a raw DEFLATE stream that ends on a block boundary, as a
/// permessage-deflate stream does once its tail is put back. Returns the
/// data and the longest match distance used, or `None` if malformed.
fn reference_inflate(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    const LEN_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];

    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
    }
    impl Bits<'_> {
        fn bits(&mut self, n: u8) -> Option<usize> {
            let mut v = 0;
            for i in 0..n {
                let byte = *self.data.get(self.pos / 8)?;
                v |= usize::from((byte >> (self.pos % 8)) & 1) << i;
                self.pos += 1;
            }
            Some(v)
        }
    }

    /// Canonical Huffman code, decoded bit by bit (as zlib's puff does).
    struct Huffman {
        counts: [usize; 16],
        symbols: Vec<usize>,
    }
    impl Huffman {
        fn new(lengths: &[u8]) -> Self {
            let mut counts = [0; 16];
            for &l in lengths {
                counts[usize::from(l)] += 1;
            }
            counts[0] = 0;
            let mut symbols: Vec<usize> = (0..lengths.len()).filter(|&s| lengths[s] != 0).collect();
            symbols.sort_by_key(|&s| lengths[s]);
            Self { counts, symbols }
        }
        fn decode(&self, b: &mut Bits<'_>) -> Option<usize> {
            let (mut code, mut first, mut index) = (0, 0, 0);
            for len in 1..16 {
                code |= b.bits(1)?;
                let count = self.counts[len];
                if code < first + count {
                    return self
                        .symbols
                        .get((index + code).checked_sub(first)?)
                        .copied();
                }
                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
            None
        }
    }

    let mut b = Bits { data, pos: 0 };
    let mut out: Vec<u8> = Vec::new();
    let mut max_dist = 0;
    while b.pos < data.len() * 8 {
        let last = b.bits(1)?;
        let (lit, dist) = match b.bits(2)? {
            0 => {
                b.pos = b.pos.div_ceil(8) * 8;
                let len = b.bits(16)?;
                if b.bits(16)? != !len & 0xffff {
                    return None;
                }
                for _ in 0..len {
                    out.push(b.bits(8)? as u8);
                }
                if last == 1 {
                    break;
                }
                continue;
            }
            1 => {
                let mut l = [8u8; 288];
                l[144..256].fill(9);
                l[256..280].fill(7);
                (Huffman::new(&l), Huffman::new(&[5; 30]))
            }
            2 => {
                let (nlen, ndist, ncode) = (b.bits(5)? + 257, b.bits(5)? + 1, b.bits(4)? + 4);
                let mut cl = [0u8; 19];
                for &i in &ORDER[..ncode] {
                    cl[i] = b.bits(3)? as u8;
                }
                let cl = Huffman::new(&cl);
                let mut lengths = Vec::new();
                while lengths.len() < nlen + ndist {
                    match cl.decode(&mut b)? {
                        s @ 0..=15 => lengths.push(s as u8),
                        16 => {
                            let prev = *lengths.last()?;
                            for _ in 0..3 + b.bits(2)? {
                                lengths.push(prev);
                            }
                        }
                        17 => lengths.extend(std::iter::repeat_n(0, 3 + b.bits(3)?)),
                        _ => lengths.extend(std::iter::repeat_n(0, 11 + b.bits(7)?)),
                    }
                }
                (
                    Huffman::new(&lengths[..nlen]),
                    Huffman::new(&lengths[nlen..nlen + ndist]),
                )
            }
            _ => return None,
        };
        loop {
            let sym = lit.decode(&mut b)?;
            match sym {
                0..=255 => out.push(sym as u8),
                256 => break,
                _ => {
                    let i = sym - 257;
                    let len = usize::from(*LEN_BASE.get(i)?) + b.bits(*LEN_EXTRA.get(i)?)?;
                    let d = dist.decode(&mut b)?;
                    let d = usize::from(*DIST_BASE.get(d)?) + b.bits(*DIST_EXTRA.get(d)?)?;
                    if d > out.len() {
                        return None;
                    }
                    max_dist = max_dist.max(d);
                    for _ in 0..len {
                        out.push(out[out.len() - d]);
                    }
                }
            }
        }
        if last == 1 {
            break;
        }
    }
    Some((out, max_dist))
}

#[test]
fn compressed_output_has_little_spare_capacity() {
    let (mut tx, mut rx) = pair(DeflateParams::default(), 1);
    let mut x = 7u32;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    for m in [
        sample(1 << 20, 21),
        noise,
        vec![b'a'; 1 << 20],
        b"Hello".to_vec(),
    ] {
        let wire = tx.deflate.compress(&m, true);
        let spare = wire.capacity() - wire.len();
        assert!(
            spare <= wire.len() / 2 + 1100,
            "{} of {}",
            spare,
            wire.len()
        );
        assert_eq!(inflate(&mut rx, &wire).unwrap(), m);
    }
}
