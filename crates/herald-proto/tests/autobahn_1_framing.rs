//! Autobahn 1.x: framing. Text (1.1.x) and binary (1.2.x) messages at every
//! length-encoding boundary, echoed back byte for byte with the minimal
//! length encoding, whatever the chunking of the input.

mod support;

use herald_proto::{Config, MessageMode};
use support::*;

const LENGTHS: [usize; 7] = [0, 125, 126, 127, 128, 65535, 65536];

/// The exact bytes a server sends for one unfragmented message.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    Frame::new(opcode, payload).unmasked().encode()
}

fn echo_case(opcode: u8, payload: &[u8], chop: Option<usize>, config: Config) {
    let mut p = Peer::server(config);
    let frame = Frame::new(opcode, payload);
    let r = match chop {
        None => p.send(&[frame]),
        Some(c) => p.send_chopped(&[frame], c),
    };
    assert_eq!(r, Ok(()));
    // The exact bytes: minimal length encoding (RFC 6455 5.2), no mask.
    assert_eq!(p.written, server_frame(opcode, payload), "bytes sent back");
    let expected = if opcode == op::TEXT {
        Out::text(payload)
    } else {
        Out::binary(payload)
    };
    assert_eq!(p.output(), [expected]);
    p.close_normally();
}

fn text(len: usize) -> Vec<u8> {
    vec![b'*'; len]
}

fn binary(len: usize) -> Vec<u8> {
    vec![0xfe; len]
}

macro_rules! echo_cases {
    ($($name:ident: $opcode:expr, $payload:expr, $chop:expr;)*) => {$(
        #[test]
        fn $name() {
            echo_case($opcode, &$payload, $chop, quiet());
        }
    )*};
}

echo_cases! {
    case_1_1_1: op::TEXT, text(0), None;
    case_1_1_2: op::TEXT, text(125), None;
    case_1_1_3: op::TEXT, text(126), None;
    case_1_1_4: op::TEXT, text(127), None;
    case_1_1_5: op::TEXT, text(128), None;
    case_1_1_6: op::TEXT, text(65535), None;
    case_1_1_7: op::TEXT, text(65536), None;
    case_1_1_8: op::TEXT, text(65536), Some(997);
    case_1_2_1: op::BINARY, binary(0), None;
    case_1_2_2: op::BINARY, binary(125), None;
    case_1_2_3: op::BINARY, binary(126), None;
    case_1_2_4: op::BINARY, binary(127), None;
    case_1_2_5: op::BINARY, binary(128), None;
    case_1_2_6: op::BINARY, binary(65535), None;
    case_1_2_7: op::BINARY, binary(65536), None;
    case_1_2_8: op::BINARY, binary(65536), Some(997);
}

#[test]
fn case_1_x_boundary_lengths_byte_by_byte() {
    for len in [0, 1, 125, 126, 127, 128, 300] {
        echo_case(op::TEXT, &random_text(len, len as u64), Some(1), quiet());
        echo_case(op::BINARY, &random_bytes(len, len as u64), Some(1), quiet());
    }
}

#[test]
fn case_1_x_64k_in_every_chop_size() {
    let t = random_text(65536, 1);
    let b = random_bytes(65536, 2);
    for chop in [1, 2, 3, 5, 13, 64, 997, 4096, 65535, 65536 + 14] {
        echo_case(op::TEXT, &t, Some(chop), quiet());
        echo_case(op::BINARY, &b, Some(chop), quiet());
    }
}

#[test]
fn case_1_x_streaming_mode_echoes_the_same_bytes() {
    let config = || quiet().message_mode(MessageMode::Streaming);
    for len in LENGTHS {
        for chop in [None, Some(1), Some(997)] {
            if chop == Some(1) && len > 300 {
                continue;
            }
            let mut p = Peer::server(config());
            let payload = random_text(len, 3);
            let r = match chop {
                None => p.send(&[Frame::text(&payload)]),
                Some(c) => p.send_chopped(&[Frame::text(&payload)], c),
            };
            assert_eq!(r, Ok(()));
            assert_eq!(p.output(), [Out::text(&payload)], "len {len} chop {chop:?}");
            p.close_normally();
        }
    }
}

#[test]
fn case_1_x_many_messages_in_one_read_are_echoed_in_order() {
    let frames: Vec<Frame> = LENGTHS
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            if i % 2 == 0 {
                Frame::text(random_text(len, i as u64))
            } else {
                Frame::binary(random_bytes(len, i as u64))
            }
        })
        .collect();
    let expected: Vec<Out> = frames
        .iter()
        .map(|f| {
            if f.opcode == op::TEXT {
                Out::text(&f.payload)
            } else {
                Out::binary(&f.payload)
            }
        })
        .collect();
    for chop in [usize::MAX, 1, 7, 1000] {
        let mut p = Peer::server(quiet());
        assert_eq!(p.send_chopped(&frames, chop), Ok(()));
        assert_eq!(p.output(), expected, "chop {chop}");
        p.close_normally();
    }
}

#[test]
fn rfc_5_7_masked_hello_literal_bytes() {
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.feed(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
        Ok(())
    );
    assert_eq!(p.written, b"\x81\x05Hello");
}

#[test]
fn rfc_5_1_an_unmasked_client_frame_fails_with_1002() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::text("Hello").unmasked()]);
    p.expect_fail(r, 1002);
}

#[test]
fn rfc_5_1_an_unmasked_frame_fails_at_its_header() {
    let mut p = Peer::server(quiet());
    let bytes = Frame::binary(vec![0; 1000]).unmasked().encode();
    // Header (4 bytes) alone is enough to know.
    let r = p.feed(&bytes[..4]);
    p.expect_fail(r, 1002);
}

#[test]
fn rfc_5_2_a_64_bit_length_with_the_top_bit_set_fails_with_1002() {
    let mut p = Peer::server(quiet());
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(1u64 << 63).to_be_bytes());
    head.extend_from_slice(&KEY);
    let r = p.feed(&head);
    p.expect_fail(r, 1002);
}

#[test]
fn case_1_x_every_header_split_point() {
    // A 16-bit and a 64-bit length header, cut at every byte of header.
    for len in [200usize, 70_000] {
        let payload = random_bytes(len, 9);
        let bytes = Frame::binary(&payload).encode();
        let head_len = if len < 65536 { 8 } else { 14 };
        for cut in 1..=head_len {
            let mut p = Peer::server(quiet());
            assert_eq!(p.feed(&bytes[..cut]), Ok(()));
            assert_eq!(p.output(), []);
            assert_eq!(p.feed(&bytes[cut..]), Ok(()));
            assert_eq!(p.output(), [Out::binary(&payload)], "len {len} cut {cut}");
        }
    }
}
