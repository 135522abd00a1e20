//! Autobahn 6.x: UTF-8 handling. RFC 6455 8.1: "When an endpoint is to
//! interpret a byte stream as UTF-8 but finds that the byte stream is not,
//! in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
//! Connection_." (close code 1007, RFC 6455 7.4.1).
//!
//! 6.5-6.23 are Markus Kuhn's UTF-8 decoder stress test
//! (<http://www.cl.cam.ac.uk/~mgk25/ucs/examples/UTF-8-test.txt>) as
//! Autobahn numbers it. Besides the single-frame case Autobahn runs, every
//! sequence is also fed byte by byte, and as one-byte fragments, and the
//! failure must come exactly at the first byte that makes the stream
//! invalid ("fail fast"), where `std::str::from_utf8` says so.

mod support;

use herald_proto::{MessageMode, ProtocolError};
use support::*;

/// "κόσμε", used by Autobahn throughout.
const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";

/// Autobahn's test sequences: (subcategory, [(valid, bytes)]), numbered
/// 6.5.x to 6.23.x in this order.
/// A test sequence and whether it is valid UTF-8.
type Seq = (bool, Vec<u8>);

fn kuhn_sequences() -> Vec<(u32, Vec<Seq>)> {
    let b = |s: &[u8]| s.to_vec();
    // 6.5 Some valid UTF-8 sequences
    let mut cats: Vec<Vec<Seq>> = vec![vec![
        (true, b(b"hello\x24world")),
        (true, b(b"hello\xc2\xa2world")),
        (true, b(b"hello\xe2\x82\xacworld")),
        (true, b(b"hello\xf0\xa4\xad\xa2world")),
        (true, b(KOSME)),
    ]];
    // 6.6 All prefixes of KOSME: valid only at code point boundaries.
    cats.push(
        (1..=KOSME.len())
            .map(|i| (matches!(i, 2 | 5 | 7 | 9 | 11), b(&KOSME[..i])))
            .collect(),
    );
    // 6.7 First possible sequence of a certain length
    cats.push(vec![
        (true, b(b"\x00")),
        (true, b(b"\xc2\x80")),
        (true, b(b"\xe0\xa0\x80")),
        (true, b(b"\xf0\x90\x80\x80")),
    ]);
    // 6.8 First possible sequence length 5/6 (invalid code points)
    cats.push(vec![
        (false, b(b"\xf8\x88\x80\x80\x80")),
        (false, b(b"\xfc\x84\x80\x80\x80\x80")),
    ]);
    // 6.9 Last possible sequence of a certain length
    cats.push(vec![
        (true, b(b"\x7f")),
        (true, b(b"\xdf\xbf")),
        (true, b(b"\xef\xbf\xbf")),
        (true, b(b"\xf4\x8f\xbf\xbf")),
    ]);
    // 6.10 Last possible sequence length 4/5/6 (invalid code points)
    cats.push(vec![
        (false, b(b"\xf7\xbf\xbf\xbf")),
        (false, b(b"\xfb\xbf\xbf\xbf\xbf")),
        (false, b(b"\xfd\xbf\xbf\xbf\xbf\xbf")),
    ]);
    // 6.11 Other boundary conditions
    cats.push(vec![
        (true, b(b"\xed\x9f\xbf")),
        (true, b(b"\xee\x80\x80")),
        (true, b(b"\xef\xbf\xbd")),
        (true, b(b"\xf4\x8f\xbf\xbf")),
        (false, b(b"\xf4\x90\x80\x80")),
    ]);
    // 6.12 Unexpected continuation bytes
    cats.push(vec![
        (false, b(b"\x80")),
        (false, b(b"\xbf")),
        (false, b(b"\x80\xbf")),
        (false, b(b"\x80\xbf\x80")),
        (false, b(b"\x80\xbf\x80\xbf")),
        (false, b(b"\x80\xbf\x80\xbf\x80")),
        (false, b(b"\x80\xbf\x80\xbf\x80\xbf")),
        (false, (0x80..0xbf).collect()),
    ]);
    // 6.13 Lonely start characters, each followed by a space
    cats.push(
        [
            (0xc0u8, 0xdfu8),
            (0xe0, 0xef),
            (0xf0, 0xf7),
            (0xf8, 0xfb),
            (0xfc, 0xfd),
        ]
        .iter()
        .map(|&(lo, hi)| (false, (lo..hi).flat_map(|c| [c, 0x20]).collect()))
        .collect(),
    );
    // 6.14 Sequences with last continuation byte missing
    let missing: [&[u8]; 10] = [
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ];
    cats.push(missing.iter().map(|s| (false, b(s))).collect());
    // 6.15 Concatenation of incomplete sequences
    cats.push(vec![(false, missing.concat())]);
    // 6.16 Impossible bytes
    cats.push(vec![
        (false, b(b"\xfe")),
        (false, b(b"\xff")),
        (false, b(b"\xfe\xfe\xff\xff")),
    ]);
    // 6.17 Examples of an overlong ASCII character
    cats.push(vec![
        (false, b(b"\xc0\xaf")),
        (false, b(b"\xe0\x80\xaf")),
        (false, b(b"\xf0\x80\x80\xaf")),
        (false, b(b"\xf8\x80\x80\x80\xaf")),
        (false, b(b"\xfc\x80\x80\x80\x80\xaf")),
    ]);
    // 6.18 Maximum overlong sequences
    cats.push(vec![
        (false, b(b"\xc1\xbf")),
        (false, b(b"\xe0\x9f\xbf")),
        (false, b(b"\xf0\x8f\xbf\xbf")),
        (false, b(b"\xf8\x87\xbf\xbf\xbf")),
        (false, b(b"\xfc\x83\xbf\xbf\xbf\xbf")),
    ]);
    // 6.19 Overlong representation of the NUL character
    cats.push(vec![
        (false, b(b"\xc0\x80")),
        (false, b(b"\xe0\x80\x80")),
        (false, b(b"\xf0\x80\x80\x80")),
        (false, b(b"\xf8\x80\x80\x80\x80")),
        (false, b(b"\xfc\x80\x80\x80\x80\x80")),
    ]);
    // 6.20 Single UTF-16 surrogates
    cats.push(
        [
            b"\xed\xa0\x80",
            b"\xed\xad\xbf",
            b"\xed\xae\x80",
            b"\xed\xaf\xbf",
            b"\xed\xb0\x80",
            b"\xed\xbe\x80",
            b"\xed\xbf\xbf",
        ]
        .iter()
        .map(|s| (false, b(*s)))
        .collect(),
    );
    // 6.21 Paired UTF-16 surrogates
    let highs: [&[u8]; 4] = [
        b"\xed\xa0\x80",
        b"\xed\xad\xbf",
        b"\xed\xae\x80",
        b"\xed\xaf\xbf",
    ];
    let lows: [&[u8]; 2] = [b"\xed\xb0\x80", b"\xed\xbf\xbf"];
    cats.push(
        highs
            .iter()
            .flat_map(|h| lows.iter().map(move |l| (false, [*h, *l].concat())))
            .collect(),
    );
    // 6.22 Non-character code points (valid UTF-8)
    let mut nonchars = vec![(true, b(b"\xef\xbf\xbe")), (true, b(b"\xef\xbf\xbf"))];
    for z1 in [0xf0u8, 0xf1, 0xf2, 0xf3, 0xf4] {
        for z2 in [0x8fu8, 0x9f, 0xaf, 0xbf] {
            if z1 == 0xf4 && z2 != 0x8f {
                continue; // above U+10FFFF
            }
            for z3 in [0xbeu8, 0xbf] {
                let zz = vec![z1, z2, 0xbf, z3];
                if zz[..2] != [0xf0, 0x8f] {
                    nonchars.push((true, zz)); // f0 8f .. is overlong
                }
            }
        }
    }
    cats.push(nonchars);
    // 6.23 Unicode specials (i.e. replacement char)
    cats.push(
        (0xb9u8..=0xbf)
            .map(|last| (true, vec![0xef, 0xbf, last]))
            .collect(),
    );

    cats.into_iter().zip(5u32..).map(|(c, n)| (n, c)).collect()
}

/// The index of the first byte after which `bytes` cannot be the start of
/// valid UTF-8, or `None` if every prefix can (valid, or merely truncated).
fn first_bad_byte(bytes: &[u8]) -> Option<usize> {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_some() => {
            Some(e.valid_up_to() + first_bad_in_sequence(&bytes[e.valid_up_to()..]))
        }
        _ => None,
    }
}

/// Within an invalid sequence at the start of `s`: the first byte whose
/// arrival makes it invalid.
fn first_bad_in_sequence(s: &[u8]) -> usize {
    (0..s.len())
        .find(|&i| matches!(std::str::from_utf8(&s[..=i]), Err(e) if e.error_len().is_some()))
        .expect("invalid somewhere")
}

fn check_single_frame(case: &str, valid: bool, payload: &[u8]) {
    assert_eq!(
        std::str::from_utf8(payload).is_ok(),
        valid,
        "{case}: test data"
    );
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::text(payload)]);
    if valid {
        assert_eq!(r, Ok(()), "{case}");
        assert_eq!(p.output(), [Out::text(payload)], "{case}");
        p.close_normally();
    } else {
        assert_eq!(r, Err(ProtocolError::InvalidUtf8), "{case}");
        p.expect_fail(r, 1007);
    }
}

/// Feeds one text frame a byte at a time (the header in one read) and
/// checks the failure comes exactly with the first bad byte, or with the
/// last byte for a message that ends inside a code point.
fn check_fail_fast_one_frame(case: &str, payload: &[u8], mode: MessageMode) {
    let mut p = Peer::server(quiet().message_mode(mode));
    let f = Frame::text(payload);
    let bytes = f.encode();
    let head = bytes.len() - payload.len();
    assert_eq!(p.feed(&bytes[..head]), Ok(()), "{case}");
    let fail_at = first_bad_byte(payload).unwrap_or(payload.len().saturating_sub(1));
    for (i, b) in bytes[head..].iter().enumerate() {
        let r = p.feed(&[*b]);
        if i < fail_at {
            assert_eq!(r, Ok(()), "{case}: byte {i} of {payload:02x?} ({mode:?})");
        } else {
            assert_eq!(
                r,
                Err(ProtocolError::InvalidUtf8),
                "{case}: must fail at byte {fail_at} of {payload:02x?} ({mode:?})"
            );
            p.expect_fail(r, 1007);
            return;
        }
    }
    panic!("{case}: never failed");
}

/// Sends each byte as its own frame (`payload` is one message in
/// `payload.len()` fragments) and checks the failure comes with the frame
/// carrying the first bad byte, or with the last frame.
fn check_fail_fast_fragments(case: &str, payload: &[u8]) {
    let mut p = Peer::server(quiet());
    let frames = fragments(op::TEXT, payload, 1);
    let fail_at = first_bad_byte(payload).unwrap_or(payload.len().saturating_sub(1));
    for (i, f) in frames.iter().enumerate() {
        let r = p.send(std::slice::from_ref(f));
        if i < fail_at {
            assert_eq!(r, Ok(()), "{case}: fragment {i}");
        } else {
            assert_eq!(r, Err(ProtocolError::InvalidUtf8), "{case}: fragment {i}");
            p.expect_fail(r, 1007);
            return;
        }
    }
    panic!("{case}: never failed");
}

fn run_category(n: u32) {
    let (_, seqs) = kuhn_sequences()
        .into_iter()
        .find(|(c, _)| *c == n)
        .expect("category");
    for (j, (valid, payload)) in seqs.iter().enumerate() {
        let case = format!("case 6.{n}.{}", j + 1);
        check_single_frame(&case, *valid, payload);
        if *valid {
            // One-byte fragments and one-byte reads are echoed whole.
            let mut p = Peer::server(quiet());
            assert_eq!(p.send(&fragments(op::TEXT, payload, 1)), Ok(()), "{case}");
            p.expect(&[Out::text(payload)]);
            let mut p = Peer::server(quiet().message_mode(MessageMode::Streaming));
            assert_eq!(p.send_chopped(&[Frame::text(payload)], 1), Ok(()), "{case}");
            p.expect(&[Out::text(payload)]);
        } else {
            check_fail_fast_one_frame(&case, payload, MessageMode::Buffered);
            check_fail_fast_one_frame(&case, payload, MessageMode::Streaming);
            check_fail_fast_fragments(&case, payload);
        }
    }
}

#[test]
fn kuhn_numbering_matches_autobahn() {
    let counts: Vec<(u32, usize)> = kuhn_sequences()
        .iter()
        .map(|(n, s)| (*n, s.len()))
        .collect();
    assert_eq!(
        counts,
        [
            (5, 5),
            (6, 11),
            (7, 4),
            (8, 2),
            (9, 4),
            (10, 3),
            (11, 5),
            (12, 8),
            (13, 5),
            (14, 10),
            (15, 1),
            (16, 3),
            (17, 5),
            (18, 5),
            (19, 5),
            (20, 7),
            (21, 8),
            (22, 34),
            (23, 7)
        ]
    );
}

macro_rules! kuhn_cases {
    ($($name:ident: $n:expr;)*) => {$(
        #[test]
        fn $name() {
            run_category($n);
        }
    )*};
}

kuhn_cases! {
    case_6_5_x_valid_sequences: 5;
    case_6_6_x_prefixes_of_a_valid_string: 6;
    case_6_7_x_first_sequence_of_each_length: 7;
    case_6_8_x_first_5_and_6_byte_sequences: 8;
    case_6_9_x_last_sequence_of_each_length: 9;
    case_6_10_x_last_4_5_6_byte_sequences: 10;
    case_6_11_x_other_boundaries: 11;
    case_6_12_x_unexpected_continuation_bytes: 12;
    case_6_13_x_lonely_start_bytes: 13;
    case_6_14_x_last_continuation_byte_missing: 14;
    case_6_15_x_concatenated_incomplete_sequences: 15;
    case_6_16_x_impossible_bytes: 16;
    case_6_17_x_overlong_ascii: 17;
    case_6_18_x_maximum_overlong: 18;
    case_6_19_x_overlong_nul: 19;
    case_6_20_x_single_surrogates: 20;
    case_6_21_x_paired_surrogates: 21;
    case_6_22_x_noncharacters_are_valid: 22;
    case_6_23_x_specials_are_valid: 23;
}

// ----- 6.1 to 6.4 -----------------------------------------------------------

#[test]
fn case_6_1_1_empty_text_message() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::text("")]), Ok(()));
    p.expect(&[Out::text("")]);
    p.close_normally();
}

#[test]
fn case_6_1_2_three_empty_fragments() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[
        Frame::text("").fin(false),
        Frame::cont("").fin(false),
        Frame::cont(""),
    ]);
    assert_eq!(r, Ok(()));
    p.expect(&[Out::text("")]);
    p.close_normally();
}

#[test]
fn case_6_1_3_empty_first_and_last_fragments() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[
        Frame::text("").fin(false),
        Frame::cont("middle frame payload").fin(false),
        Frame::cont(""),
    ]);
    assert_eq!(r, Ok(()));
    p.expect(&[Out::text("middle frame payload")]);
    p.close_normally();
}

const HELLO_UTF8: &str = "Hello-µ@ßöäüàá-UTF-8!!";

#[test]
fn case_6_2_1_valid_utf8_in_one_fragment() {
    check_single_frame("6.2.1", true, HELLO_UTF8.as_bytes());
}

#[test]
fn case_6_2_2_valid_utf8_in_two_fragments_at_a_code_point_boundary() {
    let (a, b) = HELLO_UTF8.split_at(HELLO_UTF8.find('ü').unwrap());
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::text(a).fin(false), Frame::cont(b)]), Ok(()));
    p.expect(&[Out::text(HELLO_UTF8)]);
    p.close_normally();
}

#[test]
fn case_6_2_3_valid_utf8_in_one_byte_fragments() {
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send(&fragments(op::TEXT, HELLO_UTF8.as_bytes(), 1)),
        Ok(())
    );
    p.expect(&[Out::text(HELLO_UTF8)]);
    p.close_normally();
}

#[test]
fn case_6_2_4_kosme_in_one_byte_fragments() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&fragments(op::TEXT, KOSME, 1)), Ok(()));
    p.expect(&[Out::text(KOSME)]);
    p.close_normally();
}

fn invalid_6_3() -> Vec<u8> {
    [KOSME, b"\xed\xa0\x80", b"edited"].concat()
}

#[test]
fn case_6_3_1_invalid_utf8_in_one_fragment() {
    check_single_frame("6.3.1", false, &invalid_6_3());
}

#[test]
fn case_6_3_2_invalid_utf8_in_one_byte_fragments() {
    let mut p = Peer::server(quiet());
    let r = p.send(&fragments(op::TEXT, &invalid_6_3(), 1));
    p.expect_fail(r, 1007);
    check_fail_fast_fragments("6.3.2", &invalid_6_3());
}

// 6.4.x: "The 2nd frame should be rejected immediately (fail fast on UTF-8)".
const PART1_41: &[u8] = KOSME;
const PART2_41: &[u8] = b"\xf4\x90\x80\x80";
const PART3_41: &[u8] = b"edited";
const PART1_42: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4";
const PART2_42: &[u8] = b"\x90";
const PART3_42: &[u8] = b"\x80\x80edited";

#[test]
fn case_6_4_1_fail_fast_on_the_second_of_three_fragments() {
    for mode in [MessageMode::Buffered, MessageMode::Streaming] {
        let mut p = Peer::server(quiet().message_mode(mode));
        assert_eq!(p.send(&[Frame::text(PART1_41).fin(false)]), Ok(()));
        p.expect(&[]);
        // Only the header of fragment 2 and its first two bytes: f4 90 can
        // never be completed (above U+10FFFF).
        let f2 = Frame::cont(PART2_41).fin(false).encode();
        let head = f2.len() - PART2_41.len();
        assert_eq!(p.feed(&f2[..head + 1]), Ok(()), "{mode:?}");
        let r = p.feed(&f2[head + 1..head + 2]);
        p.expect_fail(r, 1007);
    }
    // As Autobahn sends it: the whole second frame fails it.
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::text(PART1_41).fin(false)]), Ok(()));
    let r = p.send(&[Frame::cont(PART2_41).fin(false)]);
    p.expect_fail(r, 1007);
    let _ = PART3_41;
}

#[test]
fn case_6_4_2_fail_fast_on_a_one_byte_second_fragment() {
    for mode in [MessageMode::Buffered, MessageMode::Streaming] {
        let mut p = Peer::server(quiet().message_mode(mode));
        // PART1 ends with f4, the start of a 4-byte sequence: still valid.
        assert_eq!(
            p.send(&[Frame::text(PART1_42).fin(false)]),
            Ok(()),
            "{mode:?}"
        );
        p.expect(&[]);
        let r = p.send(&[Frame::cont(PART2_42).fin(false)]);
        p.expect_fail(r, 1007);
    }
    let _ = PART3_42;
}

/// 6.4.3 and 6.4.4: one frame whose payload arrives in three reads; the
/// read with the bad byte fails, before the rest of the frame.
fn fail_fast_in_one_frame(part1: &[u8], part2: &[u8], part3: &[u8]) {
    let payload = [part1, part2, part3].concat();
    for mode in [MessageMode::Buffered, MessageMode::Streaming] {
        let bytes = Frame::text(&payload).encode();
        let head = bytes.len() - payload.len();
        let mut p = Peer::server(quiet().message_mode(mode));
        assert_eq!(p.feed(&bytes[..head + part1.len()]), Ok(()), "{mode:?}");
        assert_eq!(p.output(), []);
        let r = p.feed(&bytes[head + part1.len()..head + part1.len() + part2.len()]);
        p.expect_fail(r, 1007);
    }
}

#[test]
fn case_6_4_3_fail_fast_inside_one_frame() {
    fail_fast_in_one_frame(PART1_41, PART2_41, PART3_41);
    // Down to the byte: f4 is still a valid prefix, 90 is not.
    let payload = [PART1_41, PART2_41, PART3_41].concat();
    check_fail_fast_one_frame("6.4.3", &payload, MessageMode::Buffered);
    check_fail_fast_one_frame("6.4.3", &payload, MessageMode::Streaming);
}

#[test]
fn case_6_4_4_fail_fast_inside_one_frame_on_one_byte() {
    fail_fast_in_one_frame(PART1_42, PART2_42, PART3_42);
}

#[test]
fn case_6_4_x_fail_fast_in_a_huge_frame_before_its_payload_arrives() {
    // The header announces 1 MiB; the third byte is already invalid.
    for mode in [MessageMode::Buffered, MessageMode::Streaming] {
        let mut p = Peer::server(quiet().message_mode(mode));
        let payload = [b"ab\xff".as_slice(), &vec![b'x'; (1 << 20) - 3]].concat();
        let bytes = Frame::text(&payload).encode();
        let head = bytes.len() - payload.len();
        assert_eq!(p.feed(&bytes[..head + 2]), Ok(()), "{mode:?}");
        let r = p.feed(&bytes[head + 2..head + 3]);
        p.expect_fail(r, 1007);
    }
}

#[test]
fn case_6_4_x_fail_fast_on_a_later_fragment_with_pings_between() {
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send_each(&[Frame::text(KOSME).fin(false), Frame::ping("x")]),
        Ok(())
    );
    p.expect(&[Out::pong("x")]);
    let r = p.send(&[Frame::cont(b"\xed\xa0\x80").fin(false)]);
    p.expect_fail(r, 1007);
}

#[test]
fn case_6_x_truncated_code_point_at_the_end_of_a_message_fails_at_fin() {
    // Valid up to the last frame, which ends the message inside a code
    // point: only the FIN makes it invalid.
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::text(b"abc\xe2\x82").fin(false)]), Ok(()));
    p.expect(&[]);
    let r = p.send(&[Frame::cont("")]);
    p.expect_fail(r, 1007);
}

// ----- beyond Autobahn ------------------------------------------------------

#[test]
fn case_6_x_valid_sequences_split_across_two_fragments_at_every_byte() {
    let samples: Vec<Vec<u8>> = vec![
        KOSME.to_vec(),
        HELLO_UTF8.as_bytes().to_vec(),
        b"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xef\xbf\xbf\xed\x9f\xbf".to_vec(),
        random_text(64, 61),
    ];
    for s in samples {
        for cut in 0..=s.len() {
            let frames = [Frame::text(&s[..cut]).fin(false), Frame::cont(&s[cut..])];
            let mut p = Peer::server(quiet());
            assert_eq!(p.send(&frames), Ok(()), "cut {cut} of {s:02x?}");
            p.expect(&[Out::text(&s)]);
            // And the one frame split across two reads there.
            let bytes = Frame::text(&s).encode();
            let head = bytes.len() - s.len();
            let mut p = Peer::server(quiet());
            assert_eq!(p.feed_split(&bytes, &[head + cut]), Ok(()));
            p.expect(&[Out::text(&s)]);
        }
    }
}

#[test]
fn case_6_x_invalid_sequences_split_at_every_byte_fail_the_same() {
    for s in [
        invalid_6_3(),
        b"\xce\xba\xf4\x90\x80\x80".to_vec(),
        b"a\xc0\xafb".to_vec(),
    ] {
        for cut in 0..=s.len() {
            let frames = [Frame::text(&s[..cut]).fin(false), Frame::cont(&s[cut..])];
            let mut p = Peer::server(quiet());
            let r = p.send(&frames);
            p.expect_fail(r, 1007);
        }
    }
}

#[test]
fn case_6_x_every_unicode_scalar_value_in_one_message() {
    let all: String = (0..=0x10FFFFu32).filter_map(char::from_u32).collect();
    let bytes = all.into_bytes();
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send_chopped(&fragments(op::TEXT, &bytes, 65_000), 100_003),
        Ok(())
    );
    p.expect(&[Out::text(&bytes)]);
}

#[test]
fn case_6_x_every_encoded_surrogate_fails_with_1007() {
    for cp in 0xD800u32..=0xDFFF {
        let s = [
            0xED,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ];
        let mut p = Peer::server(quiet());
        let r = p.send(&[Frame::text([b"ok ".as_slice(), &s].concat())]);
        p.expect_fail(r, 1007);
    }
}

#[test]
fn case_6_x_above_u10ffff_fails_with_1007() {
    for cp in [0x110000u32, 0x13FFFF, 0x1FFFFF] {
        let s = [
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ];
        check_single_frame(&format!("U+{cp:X}"), false, &s);
        check_fail_fast_one_frame(&format!("U+{cp:X}"), &s, MessageMode::Buffered);
    }
}

#[test]
fn case_6_x_binary_messages_are_not_checked() {
    let mut p = Peer::server(quiet());
    let junk = b"\xff\xfe\xed\xa0\x80\xc0\xaf";
    assert_eq!(p.send(&[Frame::binary(junk)]), Ok(()));
    p.expect(&[Out::binary(junk)]);
}
