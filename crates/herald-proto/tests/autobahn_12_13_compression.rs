//! Autobahn 12.x and 13.x: permessage-deflate (RFC 7692).
//!
//! The scripted peer compresses with its own zlib stream (flate2, as
//! Autobahn uses Python's zlib), and everything the connection sends is
//! inflated by the independent decoder in `support/inflate.rs`, which also
//! checks RFC 7692 7.1.1 and 7.1.2: no back-reference beyond
//! `server_max_window_bits`, and none into an earlier message under
//! `server_no_context_takeover`.
//!
//! 12.x: default parameters, five kinds of data, Autobahn's 18 message
//! sizes / auto-fragment sizes. 13.x: the same with the seven parameter
//! combinations Autobahn negotiates. Autobahn sends 1000 messages per case;
//! here each case sends enough messages to cover ~16 KiB (at least 2), which
//! exercises context takeover.
//!
//! zlib in a debug build compresses at a few MB/s, and with 8- and 9-bit
//! windows much slower (it slides its whole 64 Ki-entry hash table every
//! window's worth of input). So debug builds, the default `cargo test`, cap
//! messages at 32 KiB (4 KiB for 8/9-bit windows); `cargo test --release`
//! runs Autobahn's sizes up to 128 KiB.

mod support;

use herald_proto::{Config, DeflateConfig, DeflateParams, MessageMode, ProtocolError};
use support::inflate::Inflater;
use support::*;

/// Autobahn's MSG_SIZES: (payload length, auto-fragment size; 0 = none).
const MSG_SIZES: [(usize, usize); 18] = [
    (16, 0),
    (64, 0),
    (256, 0),
    (1024, 0),
    (4096, 0),
    (8192, 0),
    (16384, 0),
    (32768, 0),
    (65536, 0),
    (131072, 0),
    (8192, 256),
    (16384, 256),
    (32768, 256),
    (65536, 256),
    (131072, 256),
    (131072, 1024),
    (131072, 4096),
    (131072, 32768),
];

#[derive(Debug, Clone, Copy)]
enum Data {
    /// Human-readable text (12.1: Goethe's Faust).
    Prose,
    /// A low-entropy bitmap (12.2: lena512.bmp), binary.
    Bitmap,
    /// Incompressible binary (12.3: a PDF, already compressed).
    Random,
    /// JSON (12.4: data1.json), text.
    Json,
    /// HTML (12.5: data1.html), text.
    Html,
}

impl Data {
    fn is_text(self) -> bool {
        matches!(self, Self::Prose | Self::Json | Self::Html)
    }

    /// Message `i` of `len` bytes. Autobahn reads consecutive slices of a
    /// file; here consecutive messages share vocabulary, so context
    /// takeover pays off just as it does there.
    fn message(self, len: usize, i: u64) -> Vec<u8> {
        match self {
            Self::Prose => prose(len, i),
            Self::Random => random_bytes(len, i),
            Self::Bitmap => {
                let mut rng = Rng::new(i);
                let mut v = Vec::with_capacity(len);
                while v.len() < len {
                    let value = (rng.below(16) * 16) as u8;
                    let run = 1 + rng.below(40) as usize;
                    v.extend(std::iter::repeat_n(value, run.min(len - v.len())));
                }
                v
            }
            Self::Json | Self::Html => {
                let mut rng = Rng::new(i);
                let mut s = String::with_capacity(len + 128);
                while s.len() < len {
                    let n = rng.below(100_000);
                    if matches!(self, Self::Json) {
                        s.push_str(&format!(
                            r#"{{"id":{n},"name":"user-{n}","tags":["α","β"],"score":0.{}}},"#,
                            n % 97
                        ));
                    } else {
                        s.push_str(&format!(
                            r#"<div class="row" id="r{n}"><span>Größe {n}</span></div>"#
                        ));
                    }
                }
                let mut v = s.into_bytes();
                v.truncate(len);
                while std::str::from_utf8(&v).is_err() {
                    v.pop();
                }
                v.resize(len, b' ');
                v
            }
        }
    }
}

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

/// The scripted client: compresses per the agreement, then auto-fragments
/// the compressed payload (RSV1 on the first frame only, RFC 7692 6.1).
struct Client {
    deflate: PeerDeflate,
}

impl Client {
    fn new(p: DeflateParams) -> Self {
        Self {
            deflate: PeerDeflate::new(p.client_max_window_bits, p.client_no_context_takeover),
        }
    }

    fn frames(&mut self, text: bool, msg: &[u8], frag: usize) -> Vec<Frame> {
        let compressed = self.deflate.message(msg);
        let op = if text { op::TEXT } else { op::BINARY };
        let size = if frag == 0 {
            compressed.len().max(1)
        } else {
            frag
        };
        let mut frames = fragments(op, &compressed, size);
        frames[0].rsv |= RSV1;
        frames
    }
}

fn out(text: bool, msg: &[u8]) -> Out {
    if text {
        Out::text(msg)
    } else {
        Out::binary(msg)
    }
}

/// One Autobahn 12.x/13.x case: messages of `len` auto-fragmented to
/// `frag`, each echoed before the next is sent, then a clean close.
/// Whether this is an optimized build, where the full sizes are cheap.
const FULL: bool = !cfg!(debug_assertions);

fn echo_case(p: DeflateParams, data: Data, len: usize, frag: usize, mode: MessageMode) {
    let small_window = p.server_max_window_bits.min(p.client_max_window_bits) <= 9;
    let cap = match (FULL, small_window) {
        (true, _) => usize::MAX,
        (false, false) => 32 << 10,
        (false, true) => 4 << 10,
    };
    let len = len.min(cap);
    let count = (16384 / len).clamp(2, 50) as u64;
    let mut server = Peer::server_deflate(quiet().message_mode(mode), p, &DeflateConfig::default());
    let mut client = Client::new(p);
    for i in 0..count {
        let msg = data.message(len, i);
        let frames = client.frames(data.is_text(), &msg, frag);
        assert_eq!(
            server.send(&frames),
            Ok(()),
            "{data:?} len {len} frag {frag} message {i} {p:?}"
        );
        assert_eq!(
            server.output(),
            [out(data.is_text(), &msg)],
            "{data:?} len {len} frag {frag} message {i} {p:?}"
        );
        // At or over the threshold the echo is compressed (RFC 7692 6: RSV1
        // on its first frame).
        let first = server
            .decoder
            .frames
            .iter()
            .rev()
            .find(|f| !f.opcode.is_control() && f.opcode != herald_proto::OpCode::Continuation)
            .expect("a data frame");
        // Streamed echoes go out with send_frame, which compresses whatever
        // the size.
        let compressed = len >= 32 || mode == MessageMode::Streaming;
        assert_eq!(
            first.rsv1, compressed,
            "echo of {len} bytes: RSV1 (threshold 32)"
        );
    }
    server.close_normally();
}

fn all_sizes(p: DeflateParams, data: Data) {
    for (len, frag) in MSG_SIZES {
        echo_case(p, data, len, frag, MessageMode::Buffered);
    }
}

// ----- 12.x: default offer, five data sets ------------------------------------

#[test]
fn case_12_1_x_prose() {
    all_sizes(DeflateParams::default(), Data::Prose);
}

#[test]
fn case_12_2_x_bitmap() {
    all_sizes(DeflateParams::default(), Data::Bitmap);
}

#[test]
fn case_12_3_x_incompressible() {
    all_sizes(DeflateParams::default(), Data::Random);
}

#[test]
fn case_12_4_x_json() {
    all_sizes(DeflateParams::default(), Data::Json);
}

#[test]
fn case_12_5_x_html() {
    all_sizes(DeflateParams::default(), Data::Html);
}

#[test]
fn case_12_x_streaming_mode() {
    for (len, frag) in MSG_SIZES.iter().copied().step_by(3) {
        echo_case(
            DeflateParams::default(),
            Data::Json,
            len,
            frag,
            MessageMode::Streaming,
        );
    }
}

// ----- 13.x: the negotiated parameters -----------------------------------------

// (server_no_context_takeover, client_no_context_takeover, server bits,
// client bits) as Autobahn's offers and accepts settle them.
#[test]
fn case_13_1_x_default() {
    all_sizes(params(false, false, 15, 15), Data::Json);
}

#[test]
fn case_13_2_x_no_context_takeover_both_ways() {
    all_sizes(params(true, true, 15, 15), Data::Json);
}

#[test]
fn case_13_3_x_window_bits_8() {
    all_sizes(params(false, false, 8, 8), Data::Json);
}

#[test]
fn case_13_4_x_window_bits_15() {
    all_sizes(params(false, false, 15, 15), Data::Json);
}

#[test]
fn case_13_5_x_no_context_takeover_and_window_bits_8() {
    all_sizes(params(true, true, 8, 8), Data::Json);
}

#[test]
fn case_13_6_x_no_context_takeover_and_window_bits_15() {
    all_sizes(params(true, true, 15, 15), Data::Json);
}

#[test]
fn case_13_7_x_first_of_several_offers() {
    // Autobahn's server accepts the first offer: as 13.5.
    all_sizes(params(true, true, 8, 8), Data::Prose);
}

// ----- windows and context takeover --------------------------------------------

/// Data whose repeats sit at distances from 100 bytes to 20 KiB, so that
/// any window is filled and a compressor that ignores its limit is caught.
fn far_repeats(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = random_bytes(64, seed);
    while v.len() < len {
        if rng.below(3) == 0 {
            v.extend(rng.bytes(16));
        } else {
            let dist = 1 + rng.below(v.len().min(20_000) as u64) as usize;
            for _ in 0..(8 + rng.below(60)) {
                v.push(v[v.len() - dist]);
            }
        }
    }
    v.truncate(len);
    v
}

#[test]
fn window_bits_8_to_15_each_way() {
    for bits in 8..=15u8 {
        for p in [
            params(false, false, bits, bits),
            params(false, false, bits, 15),
            params(false, false, 15, bits),
            params(true, false, bits, 15),
            params(false, true, 15, bits),
        ] {
            let mut server = Peer::server_deflate(quiet(), p, &DeflateConfig::default());
            let mut client = Client::new(p);
            // Eight windows' worth, enough to fill any window.
            let len =
                (8usize << p.server_max_window_bits.min(p.client_max_window_bits)).min(30_000);
            for i in 0..2 {
                let msg = far_repeats(len, u64::from(bits) * 10 + i);
                assert_eq!(server.send(&client.frames(false, &msg, 0)), Ok(()), "{p:?}");
                assert_eq!(server.output(), [Out::binary(&msg)], "{p:?}");
            }
            // The window limit is checked while inflating; this is the
            // largest distance the server actually used.
            let used = server.decoder.inflater.max_distance;
            assert!(
                used <= 1 << p.server_max_window_bits,
                "{p:?}: distance {used}"
            );
            if p.server_max_window_bits >= 12 {
                assert!(
                    used > 256,
                    "{p:?}: a {}-bit window barely used ({used})",
                    p.server_max_window_bits
                );
            }
        }
    }
}

#[test]
fn context_takeover_server_refers_back_to_earlier_messages() {
    let p = params(false, false, 15, 15);
    let mut server = Peer::server_deflate(quiet(), p, &DeflateConfig::default());
    let mut client = Client::new(p);
    let msg = random_bytes(4000, 7);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        assert_eq!(server.send(&client.frames(false, &msg, 0)), Ok(()));
        assert_eq!(server.output(), [Out::binary(&msg)]);
        sizes.push(server.decoder.frames.last().unwrap().payload.len());
    }
    assert!(server.decoder.inflater.cross_message_refs > 0);
    // 4000 random bytes do not compress, unless the previous copy is in
    // the window.
    assert!(sizes[1] < sizes[0] / 10, "compressed sizes {sizes:?}");
}

#[test]
fn no_context_takeover_server_never_refers_back() {
    for bits in [8, 11, 15] {
        let p = params(true, false, bits, 15);
        let mut server = Peer::server_deflate(quiet(), p, &DeflateConfig::default());
        let mut client = Client::new(p);
        let msg = prose(3000, 8);
        for _ in 0..4 {
            assert_eq!(server.send(&client.frames(true, &msg, 0)), Ok(()));
            // The decoder resets its window per message and fails on any
            // reference into the previous one.
            assert_eq!(server.output(), [Out::text(&msg)]);
        }
        assert_eq!(server.decoder.inflater.cross_message_refs, 0);
    }
}

#[test]
fn context_takeover_client_references_across_messages_are_inflated() {
    // The peer keeps its context: its second message is mostly a
    // reference into the first. The server must have kept its window.
    for bits in [9, 12, 15] {
        let p = params(false, false, 15, bits);
        let mut server = Peer::server_deflate(quiet(), p, &DeflateConfig::default());
        let mut client = Client::new(p);
        let msg = random_bytes(200, 9);
        for i in 0..20 {
            let frames = client.frames(false, &msg, 0);
            if i > 0 {
                assert!(
                    frames[0].payload.len() < 50,
                    "peer compressor kept no context"
                );
            }
            assert_eq!(server.send(&frames), Ok(()));
            assert_eq!(server.output(), [Out::binary(&msg)]);
        }
    }
}

#[test]
fn context_takeover_many_small_messages_chopped_reads() {
    let p = DeflateParams::default();
    let mut server = Peer::server_deflate(quiet(), p, &DeflateConfig::default());
    let mut client = Client::new(p);
    for i in 0..200 {
        let msg = Data::Json.message(100 + (i % 7) * 50, i as u64 % 5);
        let frames = client.frames(true, &msg, 0);
        assert_eq!(server.send_chopped(&frames, 1 + i % 5), Ok(()));
        assert_eq!(server.output(), [Out::text(&msg)]);
    }
}

// ----- what is and is not compressed --------------------------------------------

#[test]
fn below_the_threshold_echoes_are_not_compressed() {
    let dc = DeflateConfig::default().threshold(100);
    let p = DeflateParams::default();
    let mut server = Peer::server_deflate(quiet(), p, &dc);
    let mut client = Client::new(p);
    for (len, compressed) in [
        (0, false),
        (50, false),
        (99, false),
        (100, true),
        (1000, true),
    ] {
        let msg = prose(len, 10);
        assert_eq!(server.send(&client.frames(true, &msg, 0)), Ok(()));
        assert_eq!(server.output(), [Out::text(&msg)]);
        assert_eq!(
            server.decoder.frames.last().unwrap().rsv1,
            compressed,
            "len {len}"
        );
    }
}

#[test]
fn level_0_sends_plain_but_accepts_compressed() {
    let dc = DeflateConfig::default().level(0);
    let p = DeflateParams::default();
    let mut server = Peer::server_deflate(quiet(), p, &dc);
    let mut client = Client::new(p);
    let msg = prose(5000, 11);
    assert_eq!(server.send(&client.frames(true, &msg, 0)), Ok(()));
    assert_eq!(server.output(), [Out::text(&msg)]);
    assert!(!server.decoder.frames.last().unwrap().rsv1);
}

#[test]
fn uncompressed_messages_are_accepted_with_deflate_on() {
    let p = DeflateParams::default();
    let mut server = Peer::server_deflate(quiet(), p, &DeflateConfig::default());
    let msg = prose(2000, 12);
    assert_eq!(server.send(&[Frame::text(&msg)]), Ok(()));
    assert_eq!(server.output(), [Out::text(&msg)]);
    // Interleaved with compressed ones, the peer's context is unaffected.
    let mut client = Client::new(p);
    for i in 0..4 {
        let m = prose(500, i);
        let frames = if i % 2 == 0 {
            client.frames(true, &m, 0)
        } else {
            vec![Frame::text(&m)]
        };
        assert_eq!(server.send(&frames), Ok(()));
        assert_eq!(server.output(), [Out::text(&m)]);
    }
}

#[test]
fn empty_compressed_message_as_a_single_zero_byte() {
    // RFC 7692 7.2.3.6: an empty message compressed is the single octet 0x00.
    for text in [true, false] {
        let mut server =
            Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
        let op = if text { op::TEXT } else { op::BINARY };
        assert_eq!(server.send(&[Frame::new(op, [0x00]).rsv(RSV1)]), Ok(()));
        assert_eq!(server.output(), [out(text, b"")]);
        // What the peer's zlib makes of an empty message is accepted too.
        let mut client = Client::new(DeflateParams::default());
        assert_eq!(server.send(&client.frames(text, b"", 0)), Ok(()));
        assert_eq!(server.output(), [out(text, b"")]);
    }
}

#[test]
fn rfc_7692_7_2_3_1_hello_literal_bytes() {
    // "Hello" compressed without context: f2 48 cd c9 c9 07 00.
    let mut server =
        Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
    assert_eq!(
        server.feed(b"\xc1\x87\x00\x00\x00\x00\xf2\x48\xcd\xc9\xc9\x07\x00"),
        Ok(())
    );
    assert_eq!(server.output(), [Out::text("Hello")]);
    // 7.2.3.2: the same with the compressed data split over two frames.
    assert_eq!(
        server.send(&[
            Frame::new(op::TEXT, [0xf2, 0x48, 0xcd])
                .rsv(RSV1)
                .fin(false),
            Frame::cont([0xc9, 0xc9, 0x07, 0x00]),
        ]),
        Ok(())
    );
    // The server's context now holds "Hello": this one refers back to it.
    assert_eq!(server.output(), [Out::text("Hello")]);
}

#[test]
fn rfc_7692_7_2_3_3_stored_block_and_7_2_3_4_bfinal() {
    let mut server =
        Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
    // A stored (uncompressed) DEFLATE block: 00 05 00 fa ff "Hello" 00.
    assert_eq!(
        server.send(&[Frame::text(b"\x00\x05\x00\xfa\xffHello\x00").rsv(RSV1)]),
        Ok(())
    );
    assert_eq!(server.output(), [Out::text("Hello")]);
    // BFINAL set, then one more octet (7.2.3.4): f3 48 cd c9 c9 07 00 00.
    assert_eq!(
        server.send(&[Frame::text(b"\xf3\x48\xcd\xc9\xc9\x07\x00\x00").rsv(RSV1)]),
        Ok(())
    );
    assert_eq!(server.output(), [Out::text("Hello")]);
    // And the connection goes on with a fresh stream.
    let mut client = Client::new(params(false, true, 15, 15));
    assert_eq!(server.send(&client.frames(true, b"after final", 0)), Ok(()));
    assert_eq!(server.output(), [Out::text("after final")]);
}

#[test]
fn the_server_compresses_fragmented_sends_with_rsv1_on_the_first_frame_only() {
    // Streaming mode echoes with send_frame: each piece is compressed and
    // flushed; the decoder asserts RSV1 is on the first frame only.
    let p = DeflateParams::default();
    let config = quiet().message_mode(MessageMode::Streaming);
    let mut server = Peer::server_deflate(config, p, &DeflateConfig::default());
    let mut client = Client::new(p);
    let msg = Data::Html.message(100_000, 13);
    assert_eq!(
        server.send_chopped(&client.frames(true, &msg, 700), 333),
        Ok(())
    );
    assert_eq!(server.output(), [Out::text(&msg)]);
    let data_frames: Vec<_> = server
        .decoder
        .frames
        .iter()
        .filter(|f| !f.opcode.is_control())
        .collect();
    assert!(data_frames.len() > 1, "streamed echo in several frames");
    assert!(data_frames[0].rsv1);
}

// ----- failures -------------------------------------------------------------------

#[test]
fn rsv1_on_a_continuation_frame_fails_with_1002() {
    let mut server =
        Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
    let mut client = Client::new(DeflateParams::default());
    let mut frames = client.frames(true, &prose(2000, 14), 50);
    assert!(frames.len() > 1);
    frames[1].rsv |= RSV1;
    let r = server.send(&frames);
    assert_eq!(r, Err(ProtocolError::UnexpectedCompressionBit));
    server.expect_fail(r, 1002);
}

#[test]
fn rsv1_on_a_continuation_of_an_uncompressed_message_fails_with_1002() {
    let mut server =
        Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
    let r = server.send(&[Frame::text("abc").fin(false), Frame::cont("def").rsv(RSV1)]);
    server.expect_fail(r, 1002);
}

#[test]
fn rsv1_on_control_frames_fails_with_1002() {
    for f in [Frame::ping("p"), Frame::pong("p"), Frame::close(1000, "")] {
        let mut server =
            Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
        let r = server.send(&[f.rsv(RSV1)]);
        server.expect_fail(r, 1002);
    }
}

#[test]
fn rsv2_and_rsv3_fail_with_1002_even_with_deflate() {
    for rsv in [1, 2, 3, 5, 6, 7] {
        let mut server =
            Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
        let r = server.send(&[Frame::text("x").rsv(rsv)]);
        server.expect_fail(r, 1002);
    }
}

#[test]
fn rsv1_without_deflate_negotiated_fails_with_1002() {
    let mut server = Peer::server(quiet());
    let mut client = Client::new(DeflateParams::default());
    let r = server.send(&client.frames(true, b"Hello", 0));
    server.expect_fail(r, 1002);
}

#[test]
fn invalid_deflate_data_fails_with_1007() {
    let bad: [&[u8]; 3] = [
        b"\xff\xff\xff\xff",          // BTYPE 11, reserved
        b"\x00\x05\x00\x00\x00Hello", // stored block, LEN != ~NLEN
        b"\xfc",                      // dynamic block, garbage tables
    ];
    for (i, payload) in bad.iter().enumerate() {
        for text in [true, false] {
            let mut server =
                Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
            let op = if text { op::TEXT } else { op::BINARY };
            let r = server.send(&[Frame::new(op, payload).rsv(RSV1)]);
            assert_eq!(r, Err(ProtocolError::InvalidCompressedData), "payload {i}");
            server.expect_fail(r, 1007);
        }
    }
}

#[test]
fn an_empty_compressed_payload_is_not_a_message() {
    // Empty payload + 00 00 ff ff is a stored block header announcing
    // 0xff00 bytes that never come: not decompressible.
    let mut server =
        Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
    let r = server.send(&[Frame::text("").rsv(RSV1)]);
    server.expect_fail(r, 1007);
}

#[test]
fn compressed_text_that_is_not_utf8_fails_with_1007() {
    let mut server =
        Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
    let mut client = Client::new(DeflateParams::default());
    let bad = [
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5".as_slice(),
        b"\xed\xa0\x80edited",
    ]
    .concat();
    let r = server.send(&client.frames(true, &bad, 0));
    assert_eq!(r, Err(ProtocolError::InvalidUtf8));
    server.expect_fail(r, 1007);
}

#[test]
fn compressed_text_fails_fast_on_the_fragment_that_inflates_to_bad_utf8() {
    for mode in [MessageMode::Buffered, MessageMode::Streaming] {
        let mut server = Peer::server_deflate(
            quiet().message_mode(mode),
            DeflateParams::default(),
            &DeflateConfig::default(),
        );
        // Fragment by fragment, each flushed, as our own send_frame does.
        let mut c = flate2::Compress::new(flate2::Compression::new(6), false);
        let mut piece = |data: &[u8]| {
            let mut out = Vec::with_capacity(data.len() + 64);
            c.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            out
        };
        let f1 = piece(&prose(1000, 15));
        let f2 = piece(b"ok \xff bad");
        let f3 = piece(&prose(1000, 16));
        assert_eq!(
            server.send(&[Frame::text(f1).rsv(RSV1).fin(false)]),
            Ok(()),
            "{mode:?}"
        );
        let r = server.send(&[Frame::cont(f2).fin(false)]);
        server.expect_fail(r, 1007);
        let _ = f3;
    }
}

#[test]
fn compression_bomb_over_max_message_size_fails_with_1009() {
    for mode in [MessageMode::Buffered, MessageMode::Streaming] {
        let config = quiet().max_message_size(256 << 10).message_mode(mode);
        let mut server =
            Peer::server_deflate(config, DeflateParams::default(), &DeflateConfig::default());
        let mut client = Client::new(DeflateParams::default());
        let frames = client.frames(false, &vec![0u8; 4 << 20], 0);
        assert!(
            frames[0].payload.len() < 8 << 10,
            "4 MiB of zeros compresses well"
        );
        let r = server.send(&frames);
        assert_eq!(r, Err(ProtocolError::MessageTooBig), "{mode:?}");
        server.expect_fail(r, 1009);
    }
}

#[test]
fn compression_bomb_fails_before_the_rest_of_the_message_arrives() {
    let config = quiet().max_message_size(256 << 10);
    let mut server =
        Peer::server_deflate(config, DeflateParams::default(), &DeflateConfig::default());
    let mut client = Client::new(DeflateParams::default());
    let frames = client.frames(false, &vec![b'a'; 4 << 20], 32);
    let n = frames.len();
    for (i, f) in frames.iter().enumerate() {
        let r = server.send(std::slice::from_ref(f));
        if r.is_err() {
            assert!(i < n / 2, "only failed at frame {i} of {n}");
            server.expect_fail(r, 1009);
            return;
        }
    }
    panic!("a 4 MiB message passed a 256 KiB limit");
}

#[test]
fn a_compressed_message_of_exactly_max_message_size_is_accepted() {
    let config = quiet().max_message_size(100_000);
    let mut server =
        Peer::server_deflate(config, DeflateParams::default(), &DeflateConfig::default());
    let mut client = Client::new(DeflateParams::default());
    let msg = prose(100_000, 17);
    assert_eq!(server.send(&client.frames(true, &msg, 4096)), Ok(()));
    assert_eq!(server.output(), [Out::text(&msg)]);
    let r = server.send(&client.frames(true, &prose(100_001, 18), 4096));
    server.expect_fail(r, 1009);
}

#[test]
fn echo_queued_before_a_bad_compressed_frame_goes_out_first() {
    let mut server =
        Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default());
    let mut client = Client::new(DeflateParams::default());
    let msg = prose(500, 19);
    let good = client.frames(true, &msg, 0);
    assert_eq!(server.send(&good), Ok(()));
    let r = server.send(&[Frame::binary(b"\xff\xff").rsv(RSV1)]);
    server.expect_fail_after(r, &[Out::text(&msg)], 1007);
}

// ----- the support decoder itself -------------------------------------------------

#[test]
fn support_inflater_agrees_with_zlib() {
    for bits in 9..=15u8 {
        for level in [0, 1, 6, 9] {
            let mut c = flate2::Compress::new_with_window_bits(
                flate2::Compression::new(level),
                false,
                bits,
            );
            let mut inflater = Inflater::new();
            for i in 0..3 {
                let data = if i == 1 {
                    random_bytes(3000, 20)
                } else {
                    far_repeats(20_000, i)
                };
                let mut z = Vec::with_capacity(data.len() * 2 + 64);
                c.compress_vec(&data, &mut z, flate2::FlushCompress::Sync)
                    .unwrap();
                assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
                z.truncate(z.len() - 4);
                let got = inflater.message(&z, bits, false).expect("inflates");
                assert_eq!(got, data, "bits {bits} level {level}");
            }
            // zlib's MAX_DIST: the window minus 262.
            assert!(inflater.max_distance <= (1 << bits) - 262, "bits {bits}");
        }
    }
}

#[test]
fn support_inflater_rejects_what_it_should() {
    let mut c = flate2::Compress::new_with_window_bits(flate2::Compression::new(6), false, 15);
    let data = far_repeats(20_000, 21);
    let mut z = Vec::with_capacity(data.len() + 64);
    c.compress_vec(&data, &mut z, flate2::FlushCompress::Sync)
        .unwrap();
    z.truncate(z.len() - 4);
    // Distances over 256 used by a 15-bit compressor break an 8-bit window.
    assert!(Inflater::new().message(&z, 8, false).is_err());
    // A second message referring to the first fails without the context.
    let mut z2 = Vec::with_capacity(data.len() + 64);
    c.compress_vec(&data, &mut z2, flate2::FlushCompress::Sync)
        .unwrap();
    z2.truncate(z2.len() - 4);
    let mut i = Inflater::new();
    assert_eq!(i.message(&z, 15, false).unwrap(), data);
    assert!(i.message(&z2, 15, true).is_err());
    let mut i = Inflater::new();
    i.message(&z, 15, false).unwrap();
    assert_eq!(i.message(&z2, 15, false).unwrap(), data);
}

#[test]
fn config_default_limits_apply_with_deflate() {
    // The default 64 MiB message limit is enforced after inflating.
    assert_eq!(Config::default().max_message_size, 64 << 20);
}

#[test]
fn pings_between_compressed_fragments() {
    let p = DeflateParams::default();
    for mode in [MessageMode::Buffered, MessageMode::Streaming] {
        let mut server =
            Peer::server_deflate(quiet().message_mode(mode), p, &DeflateConfig::default());
        let mut client = Client::new(p);
        let msg = prose(20_000, 22);
        let mut frames = Vec::new();
        let mut pongs = Vec::new();
        for (i, f) in client.frames(true, &msg, 300).into_iter().enumerate() {
            let last = f.fin;
            frames.push(f);
            if !last {
                frames.push(Frame::ping(format!("{i}")));
                pongs.push(Out::pong(format!("{i}")));
            }
        }
        assert_eq!(server.send(&frames), Ok(()), "{mode:?}");
        let out = server.output();
        let (got_pongs, rest): (Vec<Out>, Vec<Out>) =
            out.into_iter().partition(|o| matches!(o, Out::Pong(_)));
        assert_eq!(got_pongs, pongs, "{mode:?}");
        assert_eq!(rest, [Out::text(&msg)], "{mode:?}");
    }
}

#[test]
fn a_compressed_message_may_start_with_an_empty_frame() {
    // RSV1 on an empty first frame; the compressed data follows in
    // continuations (RFC 7692 6.1 only puts RSV1 on the first frame).
    let p = DeflateParams::default();
    let mut server = Peer::server_deflate(quiet(), p, &DeflateConfig::default());
    let mut client = Client::new(p);
    let msg = prose(1000, 23);
    let compressed = client.deflate.message(&msg);
    let mut frames = vec![Frame::text("").rsv(RSV1).fin(false)];
    frames.extend(fragments(op::CONT, &compressed, 100));
    assert_eq!(server.send(&frames), Ok(()));
    assert_eq!(server.output(), [Out::text(&msg)]);
}
