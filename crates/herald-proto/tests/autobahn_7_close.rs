//! Autobahn 7.x: the closing handshake (RFC 6455 5.5.1, 7), plus the
//! closes we start ourselves and the close timeout.

mod support;

use std::time::Duration;

use bytes::Bytes;
use herald_proto::connection::State;
use herald_proto::{CloseCode, Event, Message, ProtocolError, UserError};
use support::*;

// ----- 7.1.x: close after other frames ----------------------------------------

#[test]
fn case_7_1_1_message_then_close() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::text("Hello World!")]), Ok(()));
    p.expect(&[Out::text("Hello World!")]);
    p.close_normally();
    p.assert_dead();
}

#[test]
fn case_7_1_2_two_close_frames_only_one_answered() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::close(1000, ""), Frame::close(1000, "")]);
    assert_eq!(r, Ok(()));
    p.expect(&[Out::close(1000)]);
    assert_eq!(p.closed_event().map(|c| c.0), Some(1000));
    p.assert_dead();
    // Frame by frame too.
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send_each(&[Frame::close(1000, ""), Frame::close(1000, "")]),
        Ok(())
    );
    p.expect(&[Out::close(1000)]);
}

#[test]
fn case_7_1_3_ping_after_close_is_not_answered() {
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send(&[Frame::close(1000, ""), Frame::ping("ping")]),
        Ok(())
    );
    p.expect(&[Out::close(1000)]);
    assert!(!p.events.iter().any(|e| matches!(e, Event::Ping(_))));
}

#[test]
fn case_7_1_4_text_after_close_is_ignored() {
    for each in [false, true] {
        let mut p = Peer::server(quiet());
        let frames = [Frame::close(1000, ""), Frame::text("Hello World!")];
        let r = if each {
            p.send_each(&frames)
        } else {
            p.send(&frames)
        };
        assert_eq!(r, Ok(()));
        p.expect(&[Out::close(1000)]);
        assert!(p.messages().is_empty());
    }
}

#[test]
fn case_7_1_5_fragment_close_fragment() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[
        Frame::text("fragment1").fin(false),
        Frame::close(1000, ""),
        Frame::cont("fragment2"),
    ]);
    assert_eq!(r, Ok(()));
    p.expect(&[Out::close(1000)]);
    assert!(p.messages().is_empty());
}

fn case_7_1_6_script() -> (Vec<Frame>, Vec<u8>) {
    let big: Vec<u8> = b"BAsd7&jh23"
        .iter()
        .copied()
        .cycle()
        .take(256 << 10)
        .collect();
    (
        vec![
            Frame::text(&big),
            Frame::text("Hello World!"),
            Frame::close(1000, ""),
            Frame::ping(""),
        ],
        big,
    )
}

#[test]
fn case_7_1_6_large_message_then_close_then_ping() {
    // Informational in Autobahn; we do the strict thing: the messages read
    // in the same read as the Close are echoed first, the Close is
    // answered once, last, and the Ping is not.
    let (frames, big) = case_7_1_6_script();
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&frames), Ok(()));
    let out = p.output();
    let strict = vec![Out::text(&big), Out::text("Hello World!"), Out::close(1000)];
    assert_eq!(out, strict);
    // Frame by frame: both echoes precede the Close.
    let mut p = Peer::server(quiet());
    assert_eq!(p.send_each(&frames), Ok(()));
    p.expect(&[Out::text(&big), Out::text("Hello World!"), Out::close(1000)]);
    p.assert_dead();
}

// ----- 7.3.x: close payloads ------------------------------------------------

#[test]
fn case_7_3_1_empty_close_payload_answered_with_an_empty_close() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::close_raw("")]), Ok(()));
    p.expect(&[Out::Close(None)]);
    // RFC 6455 7.1.5: no status code in the Close frame: 1005.
    assert_eq!(p.closed_event(), Some((1005, String::new())));
    p.assert_dead();
}

#[test]
fn case_7_3_2_one_byte_close_payload_fails_with_1002() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::close_raw("a")]);
    p.expect_fail(r, 1002);
}

#[test]
fn case_7_3_3_close_with_code_only() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::close(1000, "")]), Ok(()));
    p.expect(&[Out::close(1000)]);
    assert_eq!(p.closed_event(), Some((1000, String::new())));
}

#[test]
fn case_7_3_4_close_with_code_and_reason() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::close(1000, "Hello World!")]), Ok(()));
    p.expect(&[Out::close(1000)]);
    assert_eq!(p.closed_event(), Some((1000, "Hello World!".to_owned())));
}

#[test]
fn case_7_3_5_close_with_123_byte_reason() {
    let reason = "*".repeat(123);
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::close(1000, &reason)]), Ok(()));
    p.expect(&[Out::close(1000)]);
    assert_eq!(p.closed_event(), Some((1000, reason)));
}

#[test]
fn case_7_3_6_close_with_124_byte_reason_fails_with_1002() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::close(1000, "*".repeat(124))]);
    p.expect_fail(r, 1002);
}

#[test]
fn case_7_3_x_close_payload_byte_by_byte() {
    let mut p = Peer::server(quiet());
    assert_eq!(
        p.send_chopped(&[Frame::close(1001, "going away")], 1),
        Ok(())
    );
    p.expect(&[Out::close(1001)]);
    assert_eq!(p.closed_event(), Some((1001, "going away".to_owned())));
}

// ----- 7.5.1: invalid UTF-8 reason ----------------------------------------------

#[test]
fn case_7_5_1_close_reason_not_utf8_fails_with_1007() {
    let mut p = Peer::server(quiet());
    let reason =
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";
    let r = p.send(&[Frame::close(1000, reason)]);
    // Autobahn accepts 1002 or 1007; RFC 6455 7.4.1 names 1007.
    assert_eq!(r, Err(ProtocolError::InvalidUtf8));
    p.expect_fail(r, 1007);
}

#[test]
fn case_7_5_x_truncated_code_point_in_close_reason_fails_with_1007() {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::close(1000, b"abc\xe2\x82")]);
    p.expect_fail(r, 1007);
}

// ----- 7.7.x: valid codes are echoed ------------------------------------------

fn valid_code_echoed(code: u16) {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::close(code, "")]), Ok(()), "code {code}");
    // RFC 6455 5.5.1: "typically echoing the status code it received".
    p.expect(&[Out::close(code)]);
    assert_eq!(p.closed_event().map(|c| c.0), Some(code));
    assert_eq!(p.state(), State::Closed);
    p.assert_dead();
}

macro_rules! valid_codes {
    ($($name:ident: $code:expr;)*) => {$(
        #[test]
        fn $name() {
            valid_code_echoed($code);
        }
    )*};
}

valid_codes! {
    case_7_7_1_code_1000: 1000;
    case_7_7_2_code_1001: 1001;
    case_7_7_3_code_1002: 1002;
    case_7_7_4_code_1003: 1003;
    case_7_7_5_code_1007: 1007;
    case_7_7_6_code_1008: 1008;
    case_7_7_7_code_1009: 1009;
    case_7_7_8_code_1010: 1010;
    case_7_7_9_code_1011: 1011;
    case_7_7_10_code_3000: 3000;
    case_7_7_11_code_3999: 3999;
    case_7_7_12_code_4000: 4000;
    case_7_7_13_code_4999: 4999;
    // Registered with IANA after RFC 6455: service restart, try again
    // later, bad gateway.
    case_7_7_x_code_1012: 1012;
    case_7_7_x_code_1013: 1013;
    case_7_7_x_code_1014: 1014;
}

#[test]
fn case_7_7_x_every_sendable_code_is_echoed() {
    for code in (1000..=1003).chain(1007..=1014).chain(3000..=4999) {
        let mut p = Peer::server(quiet());
        assert_eq!(p.send(&[Frame::close(code, "r")]), Ok(()), "code {code}");
        assert_eq!(p.output(), [Out::close(code)]);
    }
}

// ----- 7.9.x: invalid codes fail the connection ---------------------------------

fn invalid_code_fails(code: u16) {
    let mut p = Peer::server(quiet());
    let r = p.send(&[Frame::close(code, "")]);
    assert_eq!(r, Err(ProtocolError::InvalidCloseCode), "code {code}");
    p.expect_fail(r, 1002);
}

macro_rules! invalid_codes {
    ($($name:ident: $code:expr;)*) => {$(
        #[test]
        fn $name() {
            invalid_code_fails($code);
        }
    )*};
}

invalid_codes! {
    case_7_9_1_code_0: 0;
    case_7_9_2_code_999: 999;
    case_7_9_3_code_1004: 1004;
    case_7_9_4_code_1005: 1005;
    case_7_9_5_code_1006: 1006;
    case_7_9_6_code_1016: 1016;
    case_7_9_7_code_1100: 1100;
    case_7_9_8_code_2000: 2000;
    case_7_9_9_code_2999: 2999;
    // Older Autobahn lists, and 7.13.x (informational there).
    case_7_9_x_code_1015: 1015;
    case_7_13_1_code_5000: 5000;
    case_7_13_2_code_65535: 65535;
}

#[test]
fn case_7_9_x_every_unsendable_code_fails() {
    for code in (0..=u16::MAX)
        .filter(|c| !code_is_sendable(*c))
        .step_by(7)
        .chain([1004, 1005, 1006, 1015])
    {
        let mut p = Peer::server(quiet());
        let r = p.send(&[Frame::close(code, "")]);
        assert!(r.is_err(), "code {code}");
        p.expect_fail(r, 1002);
    }
}

// ----- we start the close ---------------------------------------------------

fn we_close(p: &mut Peer, code: CloseCode, reason: &str) {
    let now = p.now;
    assert_eq!(p.conn.close(code, reason, now), Ok(()));
    p.drain();
}

#[test]
fn we_close_close_sent_then_the_peer_answers() {
    let mut p = Peer::server(quiet().close_timeout(Duration::from_secs(5)));
    we_close(&mut p, CloseCode::GOING_AWAY, "server shutdown");
    assert_eq!(
        p.state(),
        State::CloseSent {
            deadline: p.start + Duration::from_secs(5)
        }
    );
    // The exact frame: 1001 and the reason.
    assert_eq!(
        p.written,
        [b"\x88\x11\x03\xe9".as_slice(), b"server shutdown"].concat()
    );
    p.expect(&[Out::close(1001)]);
    assert!(p.closed_event().is_none());
    // The peer's Close completes the handshake; we do not answer it.
    assert_eq!(p.send(&[Frame::close(1001, "")]), Ok(()));
    p.expect(&[]);
    assert_eq!(p.state(), State::Closed);
    assert_eq!(p.closed_event(), Some((1001, String::new())));
    p.assert_dead();
}

#[test]
fn we_close_data_after_our_close_is_still_delivered() {
    let mut p = Peer::server(quiet());
    we_close(&mut p, CloseCode::NORMAL, "");
    p.expect(&[Out::close(1000)]);
    let r = p.send(&[
        Frame::text("late").fin(false),
        Frame::ping("late ping"),
        Frame::cont(" message"),
        Frame::binary([1, 2, 3]),
    ]);
    assert_eq!(r, Ok(()));
    assert_eq!(
        p.messages(),
        [
            Message::text("late message"),
            Message::binary(vec![1, 2, 3])
        ]
    );
    assert!(
        p.events
            .contains(&Event::Ping(Bytes::from_static(b"late ping")))
    );
    // RFC 6455 5.5.1: no data after our Close; and we send no Pong either.
    assert_eq!(
        p.echo_errors,
        [UserError::AlreadyClosed, UserError::AlreadyClosed]
    );
    p.expect(&[]);
    assert!(matches!(p.state(), State::CloseSent { .. }));
    assert_eq!(p.send(&[Frame::close_raw("")]), Ok(()));
    p.expect(&[]);
    assert_eq!(p.closed_event(), Some((1005, String::new())));
}

#[test]
fn we_close_the_close_timeout_ends_it_with_1006() {
    let mut p = Peer::server(quiet().close_timeout(Duration::from_secs(10)));
    p.advance(Duration::from_secs(3));
    we_close(&mut p, CloseCode::NORMAL, "bye");
    let deadline = p.start + Duration::from_secs(13);
    assert_eq!(p.conn.poll_timeout(), Some(deadline));
    // Early: nothing happens.
    p.fire_at(deadline - Duration::from_millis(1));
    assert!(matches!(p.state(), State::CloseSent { .. }));
    assert!(p.closed_event().is_none());
    p.fire_at(deadline);
    assert_eq!(p.state(), State::Closed);
    assert_eq!(p.closed_event().map(|c| c.0), Some(1006));
    assert_eq!(p.output(), [Out::close(1000)]);
    assert_eq!(p.conn.poll_timeout(), None);
    p.assert_dead();
}

#[test]
fn we_close_a_protocol_error_after_our_close_sends_no_second_close() {
    let mut p = Peer::server(quiet());
    we_close(&mut p, CloseCode::NORMAL, "");
    p.expect(&[Out::close(1000)]);
    let r = p.send(&[Frame::new(5, "")]);
    assert_eq!(r, Err(ProtocolError::ReservedOpCode));
    assert_eq!(p.state(), State::Closed);
    p.expect(&[]);
    p.assert_dead();
}

#[test]
fn we_close_with_no_status_sends_an_empty_close() {
    let mut p = Peer::server(quiet());
    we_close(&mut p, CloseCode::NO_STATUS_RECEIVED, "ignored");
    assert_eq!(p.written, b"\x88\x00");
    p.expect(&[Out::Close(None)]);
}

#[test]
fn we_close_unsendable_codes_are_refused() {
    let mut p = Peer::server(quiet());
    let now = p.now;
    for code in [0, 999, 1004, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_eq!(
            p.conn.close(CloseCode(code), "", now),
            Err(UserError::InvalidCloseCode),
            "code {code}"
        );
    }
    assert_eq!(p.state(), State::Open);
    p.drain();
    p.expect(&[]);
    for code in [1000, 1003, 1007, 1014, 3000, 4999] {
        let mut p = Peer::server(quiet());
        we_close(&mut p, CloseCode(code), "");
        p.expect(&[Out::close(code)]);
    }
}

#[test]
fn we_close_twice_is_refused_and_nothing_follows_the_close() {
    let mut p = Peer::server(quiet());
    we_close(&mut p, CloseCode::NORMAL, "");
    let now = p.now;
    assert_eq!(
        p.conn.close(CloseCode::NORMAL, "", now),
        Err(UserError::AlreadyClosed)
    );
    assert_eq!(
        p.conn.send(Message::text("x")),
        Err(UserError::AlreadyClosed)
    );
    assert_eq!(p.conn.ping(Bytes::new()), Err(UserError::AlreadyClosed));
    assert_eq!(p.conn.pong(Bytes::new()), Err(UserError::AlreadyClosed));
    assert_eq!(
        p.conn.send_frame(
            herald_proto::connection::MessageKind::Text,
            Bytes::new(),
            true
        ),
        Err(UserError::AlreadyClosed)
    );
    p.drain();
    p.expect(&[Out::close(1000)]);
}

#[test]
fn we_close_a_long_reason_is_cut_to_fit_at_a_char_boundary() {
    let mut p = Peer::server(quiet());
    let reason = "é".repeat(100); // 200 bytes
    we_close(&mut p, CloseCode::NORMAL, &reason);
    let frames = {
        p.expect(&[Out::close(1000)]);
        p.decoder.frames.clone()
    };
    let payload = &frames.last().unwrap().payload;
    assert!(payload.len() <= 125);
    assert_eq!(&payload[2..], "é".repeat(61).as_bytes());
}

#[test]
fn we_close_in_the_middle_of_a_fragmented_send() {
    let mut p = Peer::server(quiet());
    use herald_proto::connection::MessageKind;
    assert_eq!(
        p.conn
            .send_frame(MessageKind::Binary, Bytes::from_static(b"part"), false),
        Ok(())
    );
    we_close(&mut p, CloseCode::NORMAL, "");
    let _ = p.output();
    assert_eq!(
        p.decoder
            .frames
            .iter()
            .map(|f| f.opcode)
            .collect::<Vec<_>>(),
        [herald_proto::OpCode::Binary, herald_proto::OpCode::Close]
    );
}

#[test]
fn the_peer_closes_while_we_are_sending_a_fragmented_message() {
    let mut p = Peer::server(quiet());
    use herald_proto::connection::MessageKind;
    assert_eq!(
        p.conn
            .send_frame(MessageKind::Text, Bytes::from_static(b"par"), false),
        Ok(())
    );
    assert_eq!(p.send(&[Frame::close(1000, "")]), Ok(()));
    assert_eq!(
        p.conn
            .send_frame(MessageKind::Text, Bytes::from_static(b"t"), true),
        Err(UserError::AlreadyClosed)
    );
    p.drain();
    let _ = p.output();
    assert_eq!(
        p.decoder.frames.last().map(|f| f.opcode),
        Some(herald_proto::OpCode::Close)
    );
}

// ----- end of stream ----------------------------------------------------------

#[test]
fn eof_without_a_close_is_abnormal_1006() {
    let mut p = Peer::server(quiet());
    assert_eq!(p.send(&[Frame::text("partial").fin(false)]), Ok(()));
    p.eof();
    assert_eq!(p.closed_event().map(|c| c.0), Some(1006));
    assert_eq!(p.state(), State::Closed);
    p.expect(&[]);
    p.assert_dead();
}

#[test]
fn eof_after_the_close_handshake_adds_nothing() {
    let mut p = Peer::server(quiet());
    p.close_normally();
    let n = p.events.len();
    p.eof();
    assert_eq!(p.events.len(), n);
}

#[test]
fn eof_after_our_close_is_abnormal_1006() {
    let mut p = Peer::server(quiet());
    we_close(&mut p, CloseCode::NORMAL, "");
    p.eof();
    assert_eq!(p.closed_event().map(|c| c.0), Some(1006));
    p.expect(&[Out::close(1000)]);
}

#[test]
fn close_frame_split_across_reads_at_every_byte() {
    let bytes = Frame::close(1000, "bye bye").encode();
    for cut in 1..bytes.len() {
        let mut p = Peer::server(quiet());
        assert_eq!(p.feed_split(&bytes, &[cut]), Ok(()));
        p.expect(&[Out::close(1000)]);
        assert_eq!(p.closed_event(), Some((1000, "bye bye".to_owned())));
    }
}
