//! Byte transcripts, grouped by RFC 6455 section: feed bytes, then assert
//! the events and the exact bytes the connection wants to send.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::MessageMode;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn server() -> (Connection, Instant) {
    let now = Instant::now();
    (Connection::server(Config::default(), now), now)
}

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = FrameHeader::new(OpCode::from_u8(first & 0x0F).unwrap(), payload.len() as u64);
    h.fin = first & 0x80 != 0;
    h.rsv1 = first & 0x40 != 0;
    h.mask = Some(KEY);
    let mut out = h.encode().as_bytes().to_vec();
    let mut p = payload.to_vec();
    apply_mask(&mut p, KEY, 0);
    out.extend_from_slice(&p);
    out
}

fn feed(conn: &mut Connection, bytes: &[u8], now: Instant) -> Result<(), ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    // `receive` stops after each data message: call again while it consumes.
    let r = loop {
        let before = buf.len();
        let r = conn.receive(&mut buf, now);
        if r.is_err() || buf.is_empty() || buf.len() == before {
            break r;
        }
    };
    if r.is_ok() && conn.state != State::Closed {
        assert!(buf.is_empty(), "whole frames consumed");
    }
    r
}

fn sent(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = conn.poll_transmit() {
        out.extend_from_slice(t.head.as_bytes());
        out.extend_from_slice(&t.payload);
    }
    out
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

// RFC 6455 5.7: examples.
#[test]
fn s5_7_single_frame_masked_text() {
    let (mut c, now) = server();
    feed(&mut c, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", now).unwrap();
    assert_eq!(events(&mut c), [Event::Message(Message::text("Hello"))]);
    c.send(Message::text("Hello")).unwrap();
    assert_eq!(sent(&mut c), b"\x81\x05Hello");
}

#[test]
fn s5_7_fragmented_text() {
    let (mut c, now) = server();
    let mut bytes = frame(0x01, b"Hel");
    bytes.extend(frame(0x80, b"lo"));
    feed(&mut c, &bytes, now).unwrap();
    assert_eq!(events(&mut c), [Event::Message(Message::text("Hello"))]);
}

// RFC 6455 5.1: masking direction.
#[test]
fn s5_1_server_rejects_unmasked_frames() {
    let (mut c, now) = server();
    assert_eq!(
        feed(&mut c, b"\x81\x05Hello", now),
        Err(ProtocolError::UnmaskedFrame)
    );
    assert_eq!(sent(&mut c), b"\x88\x19\x03\xeaclient frame not masked");
    assert_eq!(c.state(), State::Closed);
    // Input after failing is discarded.
    assert_eq!(feed(&mut c, &frame(0x81, b"x"), now), Ok(()));
    assert!(events(&mut c).is_empty());
}

#[test]
fn s5_1_client_masks_and_rejects_masked_frames() {
    let now = Instant::now();
    let mut c = Connection::client(Config::default(), Box::new(|| KEY), now);
    c.send(Message::text("Hello")).unwrap();
    assert_eq!(
        sent(&mut c),
        b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    );
    assert_eq!(
        feed(&mut c, &frame(0x81, b"x"), now),
        Err(ProtocolError::MaskedFrame)
    );
}

// RFC 6455 5.4: control frames in the middle of a fragmented message.
#[test]
fn s5_4_ping_inside_fragmented_message() {
    let (mut c, now) = server();
    let mut bytes = frame(0x01, b"Hel");
    bytes.extend(frame(0x89, b"p"));
    bytes.extend(frame(0x80, b"lo"));
    feed(&mut c, &bytes, now).unwrap();
    assert_eq!(
        events(&mut c),
        [
            Event::Ping(Bytes::from_static(b"p")),
            Event::Message(Message::text("Hello"))
        ]
    );
    assert_eq!(sent(&mut c), b"\x8a\x01p");
}

#[test]
fn s5_4_sequence_errors() {
    let (mut c, now) = server();
    assert_eq!(
        feed(&mut c, &frame(0x80, b"x"), now),
        Err(ProtocolError::UnexpectedContinuation)
    );
    let (mut c, now) = server();
    let mut bytes = frame(0x01, b"a");
    bytes.extend(frame(0x81, b"b"));
    assert_eq!(
        feed(&mut c, &bytes, now),
        Err(ProtocolError::ExpectedContinuation)
    );
}

// RFC 6455 5.5: control frame rules.
#[test]
fn s5_5_control_frame_rules() {
    let (mut c, now) = server();
    assert_eq!(
        feed(&mut c, &frame(0x09, b""), now),
        Err(ProtocolError::FragmentedControlFrame)
    );
    let (mut c, now) = server();
    assert_eq!(
        feed(&mut c, &frame(0x89, &[0; 126]), now),
        Err(ProtocolError::ControlFrameTooLong)
    );
    let (mut c, now) = server();
    assert_eq!(
        feed(&mut c, &frame(0xC1, b"x"), now),
        Err(ProtocolError::ReservedBitsSet)
    );
}

// RFC 6455 5.5.1 and 7: the close handshake.
#[test]
fn s5_5_1_peer_initiated_close_is_echoed() {
    let (mut c, now) = server();
    feed(&mut c, &frame(0x88, b"\x03\xe8bye"), now).unwrap();
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseFrame::new(CloseCode::NORMAL, "bye"))]
    );
    assert_eq!(sent(&mut c), b"\x88\x02\x03\xe8");
    assert_eq!(c.send(Message::text("late")), Err(UserError::AlreadyClosed));
}

#[test]
fn s5_5_1_we_initiate_close() {
    let (mut c, now) = server();
    c.close(CloseCode::GOING_AWAY, "restart", now).unwrap();
    assert_eq!(sent(&mut c), b"\x88\x09\x03\xe9restart");
    // Data still arrives while we wait; pings are no longer answered.
    feed(&mut c, &frame(0x81, b"x"), now).unwrap();
    feed(&mut c, &frame(0x89, b""), now).unwrap();
    feed(&mut c, &frame(0x88, b"\x03\xe9"), now).unwrap();
    assert_eq!(
        events(&mut c),
        [
            Event::Message(Message::text("x")),
            Event::Ping(Bytes::new()),
            Event::Closed(CloseFrame::new(CloseCode::GOING_AWAY, ""))
        ]
    );
    assert!(sent(&mut c).is_empty());
}

#[test]
fn s7_close_timeout() {
    let (mut c, now) = server();
    c.close(CloseCode::NORMAL, "", now).unwrap();
    let deadline = c.poll_timeout().unwrap();
    assert_eq!(deadline, now + c.config().close_timeout);
    c.handle_timeout(deadline);
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseFrame::new(
            CloseCode::ABNORMAL,
            "close handshake timed out"
        ))]
    );
}

#[test]
fn s7_4_invalid_close_payloads() {
    for (payload, err) in [
        (&b"\x03"[..], ProtocolError::InvalidClosePayload),
        (b"\x03\xed", ProtocolError::InvalidCloseCode),
        (b"\x03\xe8\xff", ProtocolError::InvalidUtf8),
    ] {
        let (mut c, now) = server();
        assert_eq!(feed(&mut c, &frame(0x88, payload), now), Err(err));
        let out = sent(&mut c);
        assert_eq!(&out[2..4], err.close_code().0.to_be_bytes());
    }
}

// RFC 6455 8.1: UTF-8, failing at the first invalid byte.
#[test]
fn s8_1_invalid_utf8_fails_before_the_frame_is_complete() {
    let (mut c, now) = server();
    let whole = frame(
        0x81,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80hello",
    );
    let mut buf = BytesMut::from(&whole[..6 + 13]);
    assert_eq!(c.receive(&mut buf, now), Err(ProtocolError::InvalidUtf8));
    assert_eq!(&sent(&mut c)[..4], b"\x88\x0f\x03\xef");
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let (mut c, now) = server();
    let whole = frame(0x82, &[7; 300]);
    let mut buf = BytesMut::new();
    for b in &whole {
        buf.extend_from_slice(&[*b]);
        c.receive(&mut buf, now).unwrap();
    }
    assert!(buf.is_empty());
    assert_eq!(
        events(&mut c),
        [Event::Message(Message::binary(vec![7; 300]))]
    );
}

#[test]
fn streaming_mode_hands_out_pieces() {
    let now = Instant::now();
    let config = Config::default().message_mode(MessageMode::Streaming);
    let mut c = Connection::server(config, now);
    let mut bytes = frame(0x01, "κό".as_bytes());
    bytes.extend(frame(0x80, "σμε".as_bytes()));
    let mut buf = BytesMut::new();
    let mut text = Vec::new();
    let mut fins = 0;
    for b in &bytes {
        buf.extend_from_slice(&[*b]);
        c.receive(&mut buf, now).unwrap();
        for e in events(&mut c) {
            let Event::Fragment(f) = e else {
                panic!("{e:?}")
            };
            assert_eq!(f.kind, MessageKind::Text);
            text.extend_from_slice(&f.payload);
            fins += usize::from(f.fin);
        }
    }
    assert_eq!((std::str::from_utf8(&text).unwrap(), fins), ("κόσμε", 1));
}

#[test]
fn limits_fail_at_the_header() {
    let now = Instant::now();
    let config = Config::default().max_frame_size(100).max_message_size(150);
    let mut c = Connection::server(config.clone(), now);
    let big = frame(0x82, &[0; 101]);
    assert_eq!(
        feed(&mut c, &big[..8], now),
        Err(ProtocolError::FrameTooBig)
    );
    let mut c = Connection::server(config, now);
    let mut bytes = frame(0x02, &[0; 100]);
    bytes.extend(&frame(0x80, &[0; 60])[..8]);
    assert_eq!(feed(&mut c, &bytes, now), Err(ProtocolError::MessageTooBig));
    assert_eq!(&sent(&mut c)[2..4], b"\x03\xf1");
}

#[test]
fn keepalive_detects_a_half_dead_peer() {
    let now = Instant::now();
    let config = Config::default()
        .ping_interval(Some(Duration::from_secs(10)))
        .pong_timeout(Duration::from_secs(5));
    let mut c = Connection::server(config, now);
    // Hearing from the peer pushes the ping back.
    feed(&mut c, &frame(0x8A, b""), now + Duration::from_secs(4)).unwrap();
    assert_eq!(events(&mut c), [Event::Pong(Bytes::new())]);
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(14)));
    c.handle_timeout(now + Duration::from_secs(14));
    assert_eq!(sent(&mut c), b"\x89\x04\0\0\0\x01");
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(19)));
    c.handle_timeout(now + Duration::from_secs(19));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(&sent(&mut c)[..4], b"\x88\x18\x03\xf3");
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseFrame::new(
            CloseCode::ABNORMAL,
            "keepalive ping timeout"
        ))]
    );
}

#[test]
fn idle_timeout_closes_with_going_away() {
    let now = Instant::now();
    let config = Config::default()
        .ping_interval(None)
        .idle_timeout(Some(Duration::from_secs(60)));
    let mut c = Connection::server(config, now);
    c.handle_timeout(now + Duration::from_secs(60));
    assert_eq!(sent(&mut c), b"\x88\x0e\x03\xe9idle timeout");
    assert!(matches!(c.state(), State::CloseSent { .. }));
}

#[test]
fn eof_before_close_is_abnormal() {
    let (mut c, _) = server();
    c.receive_eof();
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseFrame::new(
            CloseCode::ABNORMAL,
            "connection closed without a close frame"
        ))]
    );
}
