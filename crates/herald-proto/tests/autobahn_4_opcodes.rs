//! Autobahn 4.x: reserved opcodes. RFC 6455 5.2: "If an unknown opcode is
//! received, the receiving endpoint MUST _Fail the WebSocket Connection_."
//! 4.1.x: the non-control range %x3-7; 4.2.x: the control range %xB-F.

mod support;

use support::*;

const HELLO: &str = "Hello, world!";
const RESERVED: [u8; 10] = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF];

fn reserved_alone(opcode: u8, payload: &str) {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::new(opcode, payload)]);
    p.expect_fail(r, 1002);
}

/// A text message, the reserved frame and a Ping in one write.
fn reserved_after_message(opcode: u8, payload: &str) {
    let script = [
        Frame::text(HELLO),
        Frame::new(opcode, payload),
        Frame::ping(""),
    ];
    let mut p = Peer::server(quiet());
    let r = p.send(&script);
    fail_after_echo_strict_or_not(&mut p, r, Out::text(HELLO), 1002);
    // Frame by frame, the echo was already queued: strict.
    let mut p = Peer::server(quiet());
    let r = p.send_each(&script);
    p.expect_fail_after(r, &[Out::text(HELLO)], 1002);
    // Byte by byte, the same.
    let mut p = Peer::server(quiet());
    let r = p.send_chopped(&script, 1);
    p.expect_fail_after(r, &[Out::text(HELLO)], 1002);
}

#[test]
fn case_4_1_1_opcode_3() {
    reserved_alone(3, "");
}

#[test]
fn case_4_1_2_opcode_4_with_payload() {
    reserved_alone(4, "reserved opcode payload");
}

#[test]
fn case_4_1_3_message_then_opcode_5_then_ping() {
    reserved_after_message(5, "");
}

#[test]
fn case_4_1_4_message_then_opcode_6_with_payload_then_ping() {
    reserved_after_message(6, "reserved opcode payload");
}

#[test]
fn case_4_1_5_message_then_opcode_7_with_payload_then_ping() {
    reserved_after_message(7, "reserved opcode payload");
}

#[test]
fn case_4_2_1_opcode_11() {
    reserved_alone(0xB, "");
}

#[test]
fn case_4_2_2_opcode_12_with_payload() {
    reserved_alone(0xC, "reserved opcode payload");
}

#[test]
fn case_4_2_3_message_then_opcode_13_then_ping() {
    reserved_after_message(0xD, "");
}

#[test]
fn case_4_2_4_message_then_opcode_14_with_payload_then_ping() {
    reserved_after_message(0xE, "reserved opcode payload");
}

#[test]
fn case_4_2_5_message_then_opcode_15_with_payload_then_ping() {
    reserved_after_message(0xF, "reserved opcode payload");
}

#[test]
fn case_4_x_every_reserved_opcode_fails_at_its_first_two_bytes() {
    for opcode in RESERVED {
        for fin in [true, false] {
            let mut p = Peer::server(quiet());
            let f = Frame::new(opcode, vec![7; 300]).fin(fin);
            let r = p.feed(&f.head(300)[..2]);
            p.expect_fail(r, 1002);
        }
    }
}

#[test]
fn case_4_x_reserved_opcode_inside_a_fragmented_message() {
    for opcode in RESERVED {
        let mut p = Peer::server(quiet());
        let r = p.send(&[
            Frame::text("frag").fin(false),
            Frame::new(opcode, "x"),
            Frame::cont("ment"),
        ]);
        p.expect_fail(r, 1002);
    }
}

#[test]
fn case_4_x_reserved_opcode_after_several_messages_and_pings() {
    for opcode in RESERVED {
        let mut p = Peer::server(quiet());
        let r = p.send_each(&[
            Frame::binary([0xfe; 200]),
            Frame::ping("x"),
            Frame::text("κόσμε"),
            Frame::new(opcode, "bad"),
            Frame::text("never echoed"),
        ]);
        p.expect_fail_after(
            r,
            &[Out::binary([0xfe; 200]), Out::pong("x"), Out::text("κόσμε")],
            1002,
        );
    }
}
