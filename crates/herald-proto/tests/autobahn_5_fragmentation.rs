//! Autobahn 5.x: fragmentation (RFC 6455 5.4). Every case runs with the
//! frames in one read, one read per frame (Autobahn's `sync`), and one read
//! per byte (Autobahn's octet-wise chops).

mod support;

use herald_proto::{MessageMode, ProtocolError};
use support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    AllAtOnce,
    FrameWise,
    OctetWise,
}

const FEEDS: [Feed; 3] = [Feed::AllAtOnce, Feed::FrameWise, Feed::OctetWise];

fn feed(p: &mut Peer, frames: &[Frame], how: Feed) -> Result<(), ProtocolError> {
    match how {
        Feed::AllAtOnce => p.send(frames),
        Feed::FrameWise => p.send_each(frames),
        Feed::OctetWise => p.send_chopped(frames, 1),
    }
}

/// A legal script: echoed as `expected` however it is fed, then a clean close.
fn legal(frames: &[Frame], expected: &[Out]) {
    for how in FEEDS {
        for mode in [MessageMode::Buffered, MessageMode::Streaming] {
            let mut p = Peer::server(quiet().message_mode(mode));
            assert_eq!(feed(&mut p, frames, how), Ok(()), "{how:?} {mode:?}");
            let out = p.output();
            assert_eq!(out, expected, "{how:?} {mode:?}");
            p.close_normally();
        }
    }
}

/// An illegal script: fails with 1002 however it is fed, nothing echoed.
fn illegal(frames: &[Frame]) {
    for how in FEEDS {
        let mut p = Peer::server(quiet());
        let r = feed(&mut p, frames, how);
        p.expect_fail(r, 1002);
    }
}

#[test]
fn case_5_1_ping_in_two_fragments() {
    illegal(&[
        Frame::ping("fragment1").fin(false),
        Frame::cont("fragment2"),
    ]);
}

#[test]
fn case_5_2_pong_in_two_fragments() {
    illegal(&[
        Frame::pong("fragment1").fin(false),
        Frame::cont("fragment2"),
    ]);
}

fn two_fragments() -> [Frame; 2] {
    [
        Frame::text("fragment1").fin(false),
        Frame::cont("fragment2"),
    ]
}

#[test]
fn case_5_3_text_in_two_fragments() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&two_fragments()), Ok(()));
    p.expect(&[Out::text("fragment1fragment2")]);
}

#[test]
fn case_5_4_text_in_two_fragments_frame_wise() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send_each(&two_fragments()), Ok(()));
    p.expect(&[Out::text("fragment1fragment2")]);
}

#[test]
fn case_5_5_text_in_two_fragments_octet_wise() {
    legal(&two_fragments(), &[Out::text("fragment1fragment2")]);
}

fn ping_between() -> [Frame; 3] {
    [
        Frame::text("fragment1").fin(false),
        Frame::ping("ping payload"),
        Frame::cont("fragment2"),
    ]
}

#[test]
fn case_5_6_text_in_two_fragments_with_ping_between() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&ping_between()), Ok(()));
    p.expect(&[Out::pong("ping payload"), Out::text("fragment1fragment2")]);
}

#[test]
fn case_5_7_ping_between_frame_wise() {
    let mut p = Peer::server(quiet());
    let [a, b, c] = ping_between();
    assert_eq!(p.send_each(&[a, b]), Ok(()));
    // The Pong goes out before the message is complete.
    p.expect(&[Out::pong("ping payload")]);
    assert_eq!(p.send_each(&[c]), Ok(()));
    p.expect(&[Out::text("fragment1fragment2")]);
}

#[test]
fn case_5_8_ping_between_octet_wise() {
    legal(
        &ping_between(),
        &[Out::pong("ping payload"), Out::text("fragment1fragment2")],
    );
}

fn continuation_fin_then_text() -> [Frame; 2] {
    [
        Frame::cont("non-continuation payload"),
        Frame::text("Hello, world!"),
    ]
}

#[test]
fn case_5_9_continuation_fin_true_with_nothing_to_continue() {
    let mut p = Peer::server(quiet());
    let r = p.send(&continuation_fin_then_text());
    p.expect_fail(r, 1002);
}

#[test]
fn case_5_10_continuation_fin_true_frame_wise() {
    let mut p = Peer::server(quiet());
    let r = p.send_each(&continuation_fin_then_text());
    p.expect_fail(r, 1002);
}

#[test]
fn case_5_11_continuation_fin_true_octet_wise() {
    illegal(&continuation_fin_then_text());
}

fn continuation_no_fin_then_text() -> [Frame; 2] {
    [
        Frame::cont("non-continuation payload").fin(false),
        Frame::text("Hello, world!"),
    ]
}

#[test]
fn case_5_12_continuation_fin_false_with_nothing_to_continue() {
    let mut p = Peer::server(quiet());
    let r = p.send(&continuation_no_fin_then_text());
    p.expect_fail(r, 1002);
}

#[test]
fn case_5_13_continuation_fin_false_frame_wise() {
    let mut p = Peer::server(quiet());
    let r = p.send_each(&continuation_no_fin_then_text());
    p.expect_fail(r, 1002);
}

#[test]
fn case_5_14_continuation_fin_false_octet_wise() {
    illegal(&continuation_no_fin_then_text());
}

fn case_5_15_script() -> [Frame; 4] {
    [
        Frame::text("fragment1").fin(false),
        Frame::cont("fragment2"),
        Frame::cont("fragment3").fin(false),
        Frame::text("fragment4"),
    ]
}

#[test]
fn case_5_15_message_then_continuation_with_nothing_to_continue_one_chop() {
    let mut p = Peer::server(quiet());
    let r = p.send(&case_5_15_script());
    fail_after_echo_strict_or_not(&mut p, r, Out::text("fragment1fragment2"), 1002);
}

#[test]
fn case_5_15_frame_wise_and_octet_wise_echo_first() {
    for chop in [None, Some(1)] {
        let mut p = Peer::server(quiet());
        let r = match chop {
            None => p.send_each(&case_5_15_script()),
            Some(c) => p.send_chopped(&case_5_15_script(), c),
        };
        p.expect_fail_after(r, &[Out::text("fragment1fragment2")], 1002);
    }
}

#[test]
fn case_5_16_continuation_fin_false_then_fragmented_text_twice() {
    let once = [
        Frame::cont("fragment1").fin(false),
        Frame::text("fragment2").fin(false),
        Frame::cont("fragment3"),
    ];
    let twice: Vec<Frame> = once.iter().chain(once.iter()).cloned().collect();
    illegal(&twice);
}

#[test]
fn case_5_17_continuation_fin_true_then_fragmented_text_twice() {
    let once = [
        Frame::cont("fragment1"),
        Frame::text("fragment2").fin(false),
        Frame::cont("fragment3"),
    ];
    let twice: Vec<Frame> = once.iter().chain(once.iter()).cloned().collect();
    illegal(&twice);
}

#[test]
fn case_5_18_two_fragments_both_with_text_opcode() {
    illegal(&[
        Frame::text("fragment1").fin(false),
        Frame::text("fragment2"),
    ]);
}

fn case_5_19_parts() -> (Vec<Frame>, Vec<Frame>) {
    (
        vec![
            Frame::text("fragment1").fin(false),
            Frame::cont("fragment2").fin(false),
            Frame::ping("pongme 1!"),
        ],
        vec![
            Frame::cont("fragment3").fin(false),
            Frame::cont("fragment4").fin(false),
            Frame::ping("pongme 2!"),
            Frame::cont("fragment5"),
        ],
    )
}

#[test]
fn case_5_19_five_fragments_two_pings_between() {
    let (a, b) = case_5_19_parts();
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&a), Ok(()));
    // "The peer immediately answers the first Ping before it has received
    // the last text message fragment."
    p.expect(&[Out::pong("pongme 1!")]);
    assert_eq!(p.send(&b), Ok(()));
    p.expect(&[
        Out::pong("pongme 2!"),
        Out::text("fragment1fragment2fragment3fragment4fragment5"),
    ]);
    p.close_normally();
}

#[test]
fn case_5_20_five_fragments_two_pings_between_frame_wise() {
    let (a, b) = case_5_19_parts();
    let mut p = Peer::server(quiet());
    assert_eq!(p.send_each(&a), Ok(()));
    p.expect(&[Out::pong("pongme 1!")]);
    assert_eq!(p.send_each(&b), Ok(()));
    p.expect(&[
        Out::pong("pongme 2!"),
        Out::text("fragment1fragment2fragment3fragment4fragment5"),
    ]);
    p.close_normally();
}

#[test]
fn case_5_19_all_feeds_and_modes() {
    let (a, b) = case_5_19_parts();
    let all: Vec<Frame> = a.into_iter().chain(b).collect();
    legal(
        &all,
        &[
            Out::pong("pongme 1!"),
            Out::pong("pongme 2!"),
            Out::text("fragment1fragment2fragment3fragment4fragment5"),
        ],
    );
}

#[test]
fn case_5_x_binary_in_many_fragments_with_pings_everywhere() {
    let payload = random_bytes(5000, 51);
    let mut frames = Vec::new();
    let mut pongs = Vec::new();
    for (i, f) in fragments(op::BINARY, &payload, 333).into_iter().enumerate() {
        frames.push(f);
        let ping = format!("ping {i}");
        frames.push(Frame::ping(&ping));
        pongs.push(Out::pong(&ping));
    }
    // The last Ping follows the last fragment, so the echo precedes its
    // Pong, in one read (`receive` stops after the message) as frame by
    // frame.
    let mut expected = pongs.clone();
    expected.insert(pongs.len() - 1, Out::binary(&payload));
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&frames), Ok(()));
    p.expect(&expected);
    let mut p = Peer::server(quiet());
    assert_eq!(p.send_each(&frames), Ok(()));
    p.expect(&expected);
}

#[test]
fn case_5_x_empty_fragments_anywhere() {
    let scripts: Vec<(Vec<Frame>, &str)> = vec![
        (vec![Frame::text("").fin(false), Frame::cont("")], ""),
        (vec![Frame::text("").fin(false), Frame::cont("abc")], "abc"),
        (vec![Frame::text("abc").fin(false), Frame::cont("")], "abc"),
        (
            vec![
                Frame::text("").fin(false),
                Frame::cont("").fin(false),
                Frame::cont("a").fin(false),
                Frame::cont("").fin(false),
                Frame::cont("bc"),
            ],
            "abc",
        ),
    ];
    for (frames, text) in scripts {
        legal(&frames, &[Out::text(text)]);
    }
}

#[test]
fn case_5_x_many_fragment_sizes_every_feed() {
    let payload = random_text(3000, 52);
    for size in [1, 2, 3, 7, 125, 126, 1000, 2999, 3000] {
        let frames = fragments(op::TEXT, &payload, size);
        let mut p = Peer::server(quiet());
        assert_eq!(p.send(&frames), Ok(()), "size {size}");
        p.expect(&[Out::text(&payload)]);
        let mut p = Peer::server(quiet().message_mode(MessageMode::Streaming));
        assert_eq!(p.send_chopped(&frames, 17), Ok(()), "size {size}");
        p.expect(&[Out::text(&payload)]);
    }
}

#[test]
fn case_5_x_close_inside_a_fragmented_message_is_honoured() {
    for how in FEEDS {
        let mut p = Peer::server(quiet());
        let r = feed(
            &mut p,
            &[
                Frame::text("fragment1").fin(false),
                Frame::close(1000, ""),
                Frame::cont("fragment2"),
            ],
            how,
        );
        assert_eq!(r, Ok(()));
        p.expect(&[Out::close(1000)]);
        p.assert_dead();
    }
}

#[test]
fn case_5_x_new_message_while_fragmented_fails_for_every_data_opcode() {
    for second in [op::TEXT, op::BINARY] {
        for first in [op::TEXT, op::BINARY] {
            illegal(&[Frame::new(first, "a").fin(false), Frame::new(second, "b")]);
            illegal(&[
                Frame::new(first, "a").fin(false),
                Frame::new(second, "b").fin(false),
            ]);
        }
    }
}

#[test]
fn case_10_1_1_64k_text_auto_fragmented_to_1300() {
    // Autobahn 10.1.1 (misc): a 65536-byte text message in 1300-byte frames.
    let payload = vec![b'*'; 65536];
    let frames = fragments(op::TEXT, &payload, 1300);
    assert_eq!(frames.len(), 51);
    for how in FEEDS {
        let mut p = Peer::server(quiet());
        assert_eq!(feed(&mut p, &frames, how), Ok(()), "{how:?}");
        p.expect(&[Out::text(&payload)]);
    }
}

#[test]
fn our_fragmented_send_rules() {
    use bytes::Bytes;
    use herald_proto::connection::MessageKind;
    use herald_proto::{Message, UserError};
    let mut p = Peer::server(quiet());
    let part = |s: &'static str| Bytes::from_static(s.as_bytes());
    assert_eq!(
        p.conn.send_frame(MessageKind::Text, part("frag"), false),
        Ok(())
    );
    // No other data message until this one ends; control frames may go.
    assert_eq!(
        p.conn.send(Message::text("other")),
        Err(UserError::FragmentOutOfOrder)
    );
    assert_eq!(p.conn.ping(part("between")), Ok(()));
    assert_eq!(
        p.conn.send_frame(MessageKind::Text, part("ment"), false),
        Ok(())
    );
    assert_eq!(
        p.conn.send_frame(MessageKind::Text, part("ed"), true),
        Ok(())
    );
    assert_eq!(p.conn.send(Message::text("next")), Ok(()));
    p.drain();
    p.expect(&[
        Out::ping("between"),
        Out::text("fragmented"),
        Out::text("next"),
    ]);
    let ops: Vec<_> = p.decoder.frames.iter().map(|f| (f.opcode, f.fin)).collect();
    use herald_proto::OpCode::*;
    assert_eq!(
        ops,
        [
            (Text, false),
            (Ping, true),
            (Continuation, false),
            (Continuation, true),
            (Text, true)
        ]
    );
}
