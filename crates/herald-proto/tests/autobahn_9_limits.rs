//! Autobahn 9.x: limits and performance, run here for correctness only
//! (timing lives in benchmarks). Large messages up to the default limits
//! are echoed intact; frames and messages over `max_frame_size` /
//! `max_message_size` fail with 1009 as soon as the header announcing them
//! arrives, before any of their payload.

mod support;

use herald_proto::{Config, MessageMode, ProtocolError};
use support::*;

const K: usize = 1 << 10;
const M: usize = 1 << 20;

/// A payload of exactly `len` bytes, cheap to build in debug builds. Text
/// is ASCII, as Autobahn's 9.x payloads are (`"*" * len`); multi-byte text
/// (`multibyte_text`) is used where reads cut code points.
fn payload(text: bool, len: usize) -> Vec<u8> {
    let pattern: Vec<u8> = if text {
        b"Autobahn 9.x: *** large messages *** ".repeat(111)
    } else {
        random_bytes(4099, 92)
    };
    repeat_to(&pattern, len, text)
}

/// Text with 2- to 4-byte code points, so that every read boundary cuts
/// some; validating it is slow in debug builds, so used for 1 MiB.
fn multibyte_text(len: usize) -> Vec<u8> {
    repeat_to(&random_text(4099, 91), len, true)
}

fn repeat_to(pattern: &[u8], len: usize, text: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = (len - v.len()).min(pattern.len());
        v.extend_from_slice(&pattern[..n]);
    }
    if text {
        // The cut may split a code point: pad with ASCII.
        while std::str::from_utf8(&v).is_err() {
            v.pop();
        }
        v.resize(len, b'.');
    }
    v
}

fn opcode(text: bool) -> u8 {
    if text { op::TEXT } else { op::BINARY }
}

fn expected(text: bool, p: &[u8]) -> Out {
    if text { Out::text(p) } else { Out::binary(p) }
}

/// 9.1.x / 9.2.x: one frame of `len`, read 64 KiB at a time.
fn single_frame(text: bool, len: usize) {
    let data = payload(text, len);
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send_chopped(&[Frame::new(opcode(text), &data)], 64 * K),
        Ok(())
    );
    p.expect(&[expected(text, &data)]);
    p.close_normally();
}

/// 9.3.x / 9.4.x: a 4 MiB message in frames of `frame` bytes.
fn fragmented(text: bool, frame: usize) {
    let data = payload(text, 4 * M);
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send_chopped(&fragments(opcode(text), &data, frame), 64 * K),
        Ok(())
    );
    p.expect(&[expected(text, &data)]);
    p.close_normally();
}

/// 9.5.x / 9.6.x: a 1 MiB message in one frame, read `chop` bytes at a time.
fn chopped(text: bool, chop: usize) {
    let data = if text {
        multibyte_text(M)
    } else {
        payload(false, M)
    };
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send_chopped(&[Frame::new(opcode(text), &data)], chop),
        Ok(())
    );
    p.expect(&[expected(text, &data)]);
    p.close_normally();
}

/// 9.7.x / 9.8.x: 1000 messages of `len`, each echoed before the next.
fn many(text: bool, len: usize) {
    let mut p = Peer::server(quiet());
    for i in 0..1000u64 {
        let data = if text {
            random_text(len, i)
        } else {
            random_bytes(len, i)
        };
        assert_eq!(p.send(&[Frame::new(opcode(text), &data)]), Ok(()));
        p.expect(&[expected(text, &data)]);
    }
    p.close_normally();
}

macro_rules! cases {
    ($($name:ident: $f:ident($text:expr, $n:expr);)*) => {$(
        #[test]
        fn $name() {
            $f($text, $n);
        }
    )*};
}

cases! {
    case_9_1_1_text_64k: single_frame(true, 64 * K);
    case_9_1_2_text_256k: single_frame(true, 256 * K);
    case_9_1_3_text_1m: single_frame(true, M);
    case_9_1_4_text_4m: single_frame(true, 4 * M);
    case_9_1_5_text_8m: single_frame(true, 8 * M);
    case_9_1_6_text_16m: single_frame(true, 16 * M);
    case_9_2_1_binary_64k: single_frame(false, 64 * K);
    case_9_2_2_binary_256k: single_frame(false, 256 * K);
    case_9_2_3_binary_1m: single_frame(false, M);
    case_9_2_4_binary_4m: single_frame(false, 4 * M);
    case_9_2_5_binary_8m: single_frame(false, 8 * M);
    case_9_2_6_binary_16m: single_frame(false, 16 * M);
    case_9_3_1_text_4m_in_64_byte_frames: fragmented(true, 64);
    case_9_3_2_text_4m_in_256_byte_frames: fragmented(true, 256);
    case_9_3_3_text_4m_in_1k_frames: fragmented(true, K);
    case_9_3_4_text_4m_in_4k_frames: fragmented(true, 4 * K);
    case_9_3_5_text_4m_in_16k_frames: fragmented(true, 16 * K);
    case_9_3_6_text_4m_in_64k_frames: fragmented(true, 64 * K);
    case_9_3_7_text_4m_in_256k_frames: fragmented(true, 256 * K);
    case_9_3_8_text_4m_in_1m_frames: fragmented(true, M);
    case_9_3_9_text_4m_in_4m_frames: fragmented(true, 4 * M);
    case_9_4_1_binary_4m_in_64_byte_frames: fragmented(false, 64);
    case_9_4_2_binary_4m_in_256_byte_frames: fragmented(false, 256);
    case_9_4_3_binary_4m_in_1k_frames: fragmented(false, K);
    case_9_4_4_binary_4m_in_4k_frames: fragmented(false, 4 * K);
    case_9_4_5_binary_4m_in_16k_frames: fragmented(false, 16 * K);
    case_9_4_6_binary_4m_in_64k_frames: fragmented(false, 64 * K);
    case_9_4_7_binary_4m_in_256k_frames: fragmented(false, 256 * K);
    case_9_4_8_binary_4m_in_1m_frames: fragmented(false, M);
    case_9_4_9_binary_4m_in_4m_frames: fragmented(false, 4 * M);
    case_9_5_1_text_1m_chop_64: chopped(true, 64);
    case_9_5_2_text_1m_chop_128: chopped(true, 128);
    case_9_5_3_text_1m_chop_256: chopped(true, 256);
    case_9_5_4_text_1m_chop_512: chopped(true, 512);
    case_9_5_5_text_1m_chop_1024: chopped(true, 1024);
    case_9_5_6_text_1m_chop_2048: chopped(true, 2048);
    case_9_6_1_binary_1m_chop_64: chopped(false, 64);
    case_9_6_2_binary_1m_chop_128: chopped(false, 128);
    case_9_6_3_binary_1m_chop_256: chopped(false, 256);
    case_9_6_4_binary_1m_chop_512: chopped(false, 512);
    case_9_6_5_binary_1m_chop_1024: chopped(false, 1024);
    case_9_6_6_binary_1m_chop_2048: chopped(false, 2048);
    case_9_7_1_1000_text_messages_of_0: many(true, 0);
    case_9_7_2_1000_text_messages_of_16: many(true, 16);
    case_9_7_3_1000_text_messages_of_64: many(true, 64);
    case_9_7_4_1000_text_messages_of_256: many(true, 256);
    case_9_7_5_1000_text_messages_of_1024: many(true, 1024);
    case_9_7_6_1000_text_messages_of_4096: many(true, 4096);
    case_9_8_1_1000_binary_messages_of_0: many(false, 0);
    case_9_8_2_1000_binary_messages_of_16: many(false, 16);
    case_9_8_3_1000_binary_messages_of_64: many(false, 64);
    case_9_8_4_1000_binary_messages_of_256: many(false, 256);
    case_9_8_5_1000_binary_messages_of_1024: many(false, 1024);
    case_9_8_6_1000_binary_messages_of_4096: many(false, 4096);
}

// ----- the limits themselves -----------------------------------------------------

fn small_limits(mode: MessageMode) -> Config {
    quiet()
        .max_frame_size(1000)
        .max_message_size(2500)
        .message_mode(mode)
}

const MODES: [MessageMode; 2] = [MessageMode::Buffered, MessageMode::Streaming];

#[test]
fn limits_a_frame_of_exactly_max_frame_size_is_accepted() {
    for mode in MODES {
        let mut p = Peer::server(small_limits(mode));
        let data = random_bytes(1000, 1);
        assert_eq!(p.send(&[Frame::binary(&data)]), Ok(()));
        p.expect(&[Out::binary(&data)]);
    }
}

#[test]
fn limits_a_frame_over_max_frame_size_fails_with_1009_at_its_header() {
    for mode in MODES {
        for op in [op::TEXT, op::BINARY, op::CONT] {
            let mut p = Peer::server(small_limits(mode));
            if op == op::CONT {
                assert_eq!(p.send(&[Frame::binary("a").fin(false)]), Ok(()));
            }
            // The header alone: no payload byte has arrived.
            let r = p.feed(&Frame::new(op, "").head(1001));
            assert_eq!(r, Err(ProtocolError::FrameTooBig), "{mode:?} op {op}");
            p.expect_fail(r, 1009);
        }
    }
}

#[test]
fn limits_a_huge_announced_length_fails_with_1009_without_allocating() {
    for len in [1u64 << 32, 1 << 62, (1 << 63) - 1] {
        let mut p = Peer::server(quiet());
        let r = p.feed(&Frame::binary("").head(len));
        p.expect_fail(r, 1009);
    }
}

#[test]
fn limits_default_frame_limit_is_16_mib_and_checked_at_the_header() {
    let mut p = Peer::server(Config::default().ping_interval(None));
    let r = p.feed(&Frame::binary("").head(16 * M as u64 + 1));
    p.expect_fail(r, 1009);
}

#[test]
fn limits_a_fragmented_message_of_exactly_max_message_size_is_accepted() {
    for mode in MODES {
        let mut p = Peer::server(small_limits(mode));
        let data = random_text(2500, 2);
        assert_eq!(p.send(&fragments(op::TEXT, &data, 1000)), Ok(()));
        p.expect(&[Out::text(&data)]);
    }
}

#[test]
fn limits_a_fragmented_message_over_max_message_size_fails_at_the_header() {
    for mode in MODES {
        let mut p = Peer::server(small_limits(mode));
        let r = p.send(&[
            Frame::binary(random_bytes(1000, 3)).fin(false),
            Frame::cont(random_bytes(1000, 4)).fin(false),
        ]);
        assert_eq!(r, Ok(()));
        // 2000 so far; a header announcing 501 more is over 2500.
        let r = p.feed(&Frame::cont("").head(501));
        assert_eq!(r, Err(ProtocolError::MessageTooBig), "{mode:?}");
        p.expect_fail(r, 1009);
    }
}

#[test]
fn limits_control_frames_between_fragments_do_not_count() {
    let mut p = Peer::server(small_limits(MessageMode::Buffered));
    let data = random_bytes(2500, 5);
    let mut frames = Vec::new();
    for f in fragments(op::BINARY, &data, 500) {
        frames.push(f);
        frames.push(Frame::ping([7; 125]));
    }
    assert_eq!(p.send(&frames), Ok(()));
    let out = p.output();
    // The echo, then the Pong of the Ping that followed the last fragment.
    assert_eq!(out.len(), 6);
    assert_eq!(out[4], Out::binary(&data));
    assert_eq!(out[5], Out::pong([7; 125]));
}

#[test]
fn limits_the_message_count_restarts_with_each_message() {
    let mut p = Peer::server(small_limits(MessageMode::Buffered));
    for i in 0..5 {
        let data = random_bytes(2500, i);
        assert_eq!(p.send(&fragments(op::BINARY, &data, 1000)), Ok(()));
        p.expect(&[Out::binary(&data)]);
    }
}

#[test]
fn limits_a_single_frame_message_over_max_message_size_fails_with_1009() {
    let mut p = Peer::server(quiet().max_frame_size(10_000).max_message_size(2500));
    let r = p.feed(&Frame::text("").head(2501));
    p.expect_fail(r, 1009);
}

#[test]
fn limits_echo_queued_before_the_oversized_frame_goes_out_first() {
    let mut p = Peer::server(small_limits(MessageMode::Buffered));
    assert_eq!(p.send_each(&[Frame::text("ok"), Frame::ping("p")]), Ok(()));
    let r = p.feed(&Frame::binary("").head(1001));
    p.expect_fail_after(r, &[Out::text("ok"), Out::pong("p")], 1009);
}
