//! Autobahn 2.x: Ping and Pong. RFC 6455 5.5.2: "Upon receipt of a Ping
//! frame, an endpoint MUST send a Pong frame in response ... [with]
//! identical Application data". RFC 6455 5.5.3: "A Pong frame MAY be sent
//! unsolicited ... A response to an unsolicited Pong frame is not expected."

mod support;

use bytes::Bytes;
use herald_proto::Event;
use support::*;

fn pings_answered(frames: &[Frame], chop: Option<usize>, expected: &[Out]) {
    let mut p = Peer::server(quiet());
    let r = match chop {
        None => p.send(frames),
        Some(c) => p.send_chopped(frames, c),
    };
    assert_eq!(r, Ok(()));
    p.expect(expected);
    p.close_normally();
}

#[test]
fn case_2_1_ping_without_payload() {
    pings_answered(&[Frame::ping("")], None, &[Out::pong("")]);
}

#[test]
fn case_2_2_ping_with_small_text_payload() {
    pings_answered(
        &[Frame::ping("Hello, world!")],
        None,
        &[Out::pong("Hello, world!")],
    );
}

#[test]
fn case_2_3_ping_with_small_binary_payload() {
    let payload = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff";
    pings_answered(&[Frame::ping(payload)], None, &[Out::pong(payload)]);
}

#[test]
fn case_2_4_ping_with_125_byte_payload() {
    let payload = [0xfe; 125];
    pings_answered(&[Frame::ping(payload)], None, &[Out::pong(payload)]);
}

#[test]
fn case_2_5_ping_with_126_byte_payload_fails_with_1002() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::ping([0xfe; 126])]);
    p.expect_fail(r, 1002);
}

#[test]
fn case_2_5_oversized_ping_fails_at_its_header() {
    let mut p = Peer::server(quiet());
    let f = Frame::ping([0xfe; 126]);
    // 2 + 2 (16-bit length) + 4 (mask): nothing of the payload yet.
    let r = p.feed(&f.head(126));
    p.expect_fail(r, 1002);
}

#[test]
fn case_2_6_ping_with_125_byte_payload_byte_by_byte() {
    let payload = [0xfe; 125];
    pings_answered(&[Frame::ping(payload)], Some(1), &[Out::pong(payload)]);
}

#[test]
fn case_2_7_unsolicited_pong_without_payload_is_ignored() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::pong("")]), Ok(()));
    p.expect(&[]);
    assert_eq!(p.take_events(), [Event::Pong(Bytes::new())]);
    p.close_normally();
}

#[test]
fn case_2_8_unsolicited_pong_with_payload_is_ignored() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::pong("unsolicited pong payload")]), Ok(()));
    p.expect(&[]);
    assert_eq!(
        p.take_events(),
        [Event::Pong(Bytes::from_static(b"unsolicited pong payload"))]
    );
    p.close_normally();
}

#[test]
fn case_2_9_unsolicited_pong_then_ping_only_the_ping_is_answered() {
    pings_answered(
        &[
            Frame::pong("unsolicited pong payload"),
            Frame::ping("ping payload"),
        ],
        None,
        &[Out::pong("ping payload")],
    );
}

fn ten_pings() -> (Vec<Frame>, Vec<Out>) {
    (0..10)
        .map(|i| {
            let payload = format!("payload-{i}");
            (Frame::ping(&payload), Out::pong(&payload))
        })
        .unzip()
}

#[test]
fn case_2_10_ten_pings_each_answered_in_order() {
    let (frames, pongs) = ten_pings();
    pings_answered(&frames, None, &pongs);
    // Also one read per ping.
    let mut p = Peer::server(quiet());
    assert_eq!(p.send_each(&frames), Ok(()));
    p.expect(&pongs);
}

#[test]
fn case_2_11_ten_pings_byte_by_byte() {
    let (frames, pongs) = ten_pings();
    pings_answered(&frames, Some(1), &pongs);
}

#[test]
fn case_2_x_ping_events_carry_the_payload() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::ping("abc")]), Ok(()));
    assert_eq!(p.take_events(), [Event::Ping(Bytes::from_static(b"abc"))]);
    // The Pong is already queued when the event arrives: the exact bytes.
    assert_eq!(p.written, b"\x8a\x03abc");
}

#[test]
fn case_2_x_fragmented_ping_fails_with_1002() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::ping("ping").fin(false)]);
    p.expect_fail(r, 1002);
}

#[test]
fn case_2_x_fragmented_ping_with_continuation_fails_with_1002() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[
        Frame::ping("fragment1").fin(false),
        Frame::cont("fragment2"),
    ]);
    p.expect_fail(r, 1002);
}

#[test]
fn case_2_x_binary_payload_ping_every_byte_value() {
    let payload: Vec<u8> = (0..=124u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(0x80))
        .collect();
    pings_answered(&[Frame::ping(&payload)], None, &[Out::pong(&payload)]);
    pings_answered(&[Frame::ping(&payload)], Some(3), &[Out::pong(&payload)]);
}

#[test]
fn case_2_x_ping_between_messages_answered_in_order() {
    let mut p = Peer::server(quiet());
    let frames = [
        Frame::text("one"),
        Frame::ping("p1"),
        Frame::binary("two"),
        Frame::ping("p2"),
    ];
    // One read per frame: the echo application answers each message
    // before the next frame arrives.
    assert_eq!(p.send_each(&frames), Ok(()));
    p.expect(&[
        Out::text("one"),
        Out::pong("p1"),
        Out::binary("two"),
        Out::pong("p2"),
    ]);
    // One read for all: `receive` stops after each data message, so the
    // application's echo is queued before the next Ping's Pong, and the
    // order is the same as with one read per frame.
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&frames), Ok(()));
    p.expect(&[
        Out::text("one"),
        Out::pong("p1"),
        Out::binary("two"),
        Out::pong("p2"),
    ]);
}

#[test]
fn case_2_x_our_own_ping_and_pong() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.conn.ping(Bytes::from_static(b"are you there")), Ok(()));
    assert_eq!(p.conn.pong(Bytes::from_static(b"heartbeat")), Ok(()));
    assert_eq!(
        p.conn.ping(Bytes::from(vec![0; 126])),
        Err(herald_proto::UserError::ControlFrameTooLong)
    );
    assert_eq!(p.conn.ping(Bytes::from(vec![0; 125])), Ok(()));
    p.drain();
    p.expect(&[
        Out::ping("are you there"),
        Out::pong("heartbeat"),
        Out::ping([0; 125]),
    ]);
    assert_eq!(p.send(&[Frame::pong("are you there")]), Ok(()));
    assert_eq!(
        p.take_events(),
        [Event::Pong(Bytes::from_static(b"are you there"))]
    );
}
