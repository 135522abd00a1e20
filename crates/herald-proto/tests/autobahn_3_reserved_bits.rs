//! Autobahn 3.x: reserved bits. RFC 6455 5.2: RSV1-3 "MUST be 0 unless an
//! extension is negotiated that defines meanings for non-zero values. If a
//! nonzero value is received and none of the negotiated extensions defines
//! the meaning of such a nonzero value, the receiving endpoint MUST _Fail
//! the WebSocket Connection_."
//!
//! `rsv` is Autobahn's 3-bit number: 1 = RSV3, 2 = RSV2, 4 = RSV1.

mod support;

use support::*;

const HELLO: &str = "Hello, world!";

#[test]
fn case_3_1_text_with_rsv_1_fails() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::text(HELLO).rsv(1)]);
    p.expect_fail(r, 1002);
}

#[test]
fn case_3_2_text_then_rsv_2_then_ping_in_one_read() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[
        Frame::text(HELLO),
        Frame::text(HELLO).rsv(2),
        Frame::ping(""),
    ]);
    fail_after_echo_strict_or_not(&mut p, r, Out::text(HELLO), 1002);
}

#[test]
fn case_3_3_text_then_rsv_3_then_ping_frame_wise() {
    // The echo was queued before the bad frame arrived: it goes out first.
    let mut p = Peer::server(quiet());
    let r = p.send_each(&[
        Frame::text(HELLO),
        Frame::text(HELLO).rsv(3),
        Frame::ping(""),
    ]);
    p.expect_fail_after(r, &[Out::text(HELLO)], 1002);
}

#[test]
fn case_3_4_text_then_rsv_4_then_ping_octet_wise() {
    let mut p = Peer::server(quiet());
    let r = p.send_chopped(
        &[
            Frame::text(HELLO),
            Frame::text(HELLO).rsv(4),
            Frame::ping(""),
        ],
        1,
    );
    p.expect_fail_after(r, &[Out::text(HELLO)], 1002);
}

#[test]
fn case_3_5_binary_with_rsv_5_fails() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::binary([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]).rsv(5)]);
    p.expect_fail(r, 1002);
}

#[test]
fn case_3_6_ping_with_rsv_6_fails() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::ping(HELLO).rsv(6)]);
    p.expect_fail(r, 1002);
}

#[test]
fn case_3_7_close_with_rsv_7_fails() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::close(1000, "").rsv(7)]);
    p.expect_fail(r, 1002);
}

fn every_kind_of_frame() -> Vec<(&'static str, Vec<Frame>)> {
    vec![
        ("text", vec![Frame::text(HELLO)]),
        ("binary", vec![Frame::binary([1, 2, 3])]),
        ("ping", vec![Frame::ping("p")]),
        ("pong", vec![Frame::pong("p")]),
        ("close", vec![Frame::close(1000, "")]),
        ("empty text", vec![Frame::text("")]),
    ]
}

#[test]
fn case_3_x_every_rsv_combination_on_every_frame_kind_fails_with_1002() {
    for rsv in 1..=7 {
        for (name, frames) in every_kind_of_frame() {
            let bad: Vec<Frame> = frames.into_iter().map(|f| f.rsv(rsv)).collect();
            for chop in [usize::MAX, 1] {
                let mut p = Peer::server(quiet());
                let r = p.send_chopped(&bad, chop);
                assert!(r.is_err(), "rsv {rsv} on {name}");
                p.expect_fail(r, 1002);
            }
        }
    }
}

#[test]
fn case_3_x_rsv_on_a_continuation_frame_fails_with_1002() {
    for rsv in 1..=7 {
        let mut p = Peer::server(quiet());
        let r = p.send(&[Frame::text("frag").fin(false), Frame::cont("ment").rsv(rsv)]);
        p.expect_fail(r, 1002);
    }
}

#[test]
fn case_3_x_reserved_bits_fail_at_the_header_before_the_payload() {
    for rsv in 1..=7 {
        let mut p = Peer::server(quiet());
        let f = Frame::binary(vec![0; 1000]).rsv(rsv);
        let r = p.feed(&f.head(1000));
        p.expect_fail(r, 1002);
    }
}

#[test]
fn case_3_x_echo_queued_before_the_bad_frame_goes_out_first() {
    for rsv in 1..=7 {
        for (name, frames) in every_kind_of_frame() {
            let mut script = vec![
                Frame::text("first"),
                Frame::ping("p1"),
                Frame::binary("second"),
            ];
            script.extend(frames.into_iter().map(|f| f.rsv(rsv)));
            script.push(Frame::ping("never answered"));
            let mut p = Peer::server(quiet());
            let r = p.send_each(&script);
            assert!(r.is_err(), "rsv {rsv} on {name}");
            p.expect_fail_after(
                r,
                &[Out::text("first"), Out::pong("p1"), Out::binary("second")],
                1002,
            );
        }
    }
}
