//! The client end: RFC 6455 5.1 "a client MUST mask all frames that it
//! sends to the server", with a fresh key from the injected source per
//! frame (5.3), and "A client MUST close a connection if it detects a
//! masked frame" from the server.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use herald_proto::connection::{MessageKind, State};
use herald_proto::{CloseCode, DeflateConfig, DeflateParams, Event, Message, ProtocolError};
use support::*;

const KEY_1234: [u8; 4] = [1, 2, 3, 4];

fn client() -> Peer {
    Peer::client(quiet(), || KEY_1234).no_echo()
}

/// Keys 0, 1, 2... as big-endian u32s, and a count of calls.
fn counting_client() -> (Peer, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let p = Peer::client(quiet(), move || {
        c.fetch_add(1, Ordering::SeqCst).to_be_bytes()
    })
    .no_echo();
    (p, calls)
}

fn masks(p: &Peer) -> Vec<Option<[u8; 4]>> {
    p.decoder.frames.iter().map(|f| f.mask).collect()
}

#[test]
fn every_frame_is_masked_with_the_injected_key() {
    let mut p = client();
    let now = p.now;
    assert_eq!(p.conn.send(Message::text("Hello")), Ok(()));
    assert_eq!(p.conn.send(Message::binary(vec![0xfe; 70_000])), Ok(()));
    assert_eq!(p.conn.send(Message::text("")), Ok(()));
    assert_eq!(p.conn.ping(Bytes::from_static(b"ping")), Ok(()));
    assert_eq!(p.conn.pong(Bytes::from_static(b"pong")), Ok(()));
    assert_eq!(p.conn.close(CloseCode::NORMAL, "bye", now), Ok(()));
    p.drain();
    // The decoder unmasks, and panics on any unmasked client frame.
    p.expect(&[
        Out::text("Hello"),
        Out::binary(vec![0xfe; 70_000]),
        Out::text(""),
        Out::ping("ping"),
        Out::pong("pong"),
        Out::close(1000),
    ]);
    assert!(masks(&p).iter().all(|m| *m == Some(KEY_1234)));
}

#[test]
fn rfc_5_7_masked_hello_exact_bytes() {
    let mut p = Peer::client(quiet(), || [0x37, 0xfa, 0x21, 0x3d]).no_echo();
    assert_eq!(p.conn.send(Message::text("Hello")), Ok(()));
    p.drain();
    assert_eq!(p.written, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
}

#[test]
fn a_fresh_key_per_frame() {
    let (mut p, calls) = counting_client();
    for i in 0..5 {
        assert_eq!(p.conn.send(Message::binary(vec![i; 10])), Ok(()));
    }
    assert_eq!(p.conn.ping(Bytes::new()), Ok(()));
    p.drain();
    let _ = p.output();
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let expected: Vec<Option<[u8; 4]>> = (0..6u32).map(|k| Some(k.to_be_bytes())).collect();
    assert_eq!(masks(&p), expected);
}

#[test]
fn fragmented_sends_are_masked_frame_by_frame() {
    let (mut p, _) = counting_client();
    let parts: [&[u8]; 3] = [b"frag", b"men", b"ted"];
    for (i, part) in parts.iter().enumerate() {
        let fin = i == 2;
        assert_eq!(
            p.conn
                .send_frame(MessageKind::Text, Bytes::from_static(part), fin),
            Ok(())
        );
    }
    p.drain();
    p.expect(&[Out::text("fragmented")]);
    assert_eq!(
        masks(&p),
        [Some([0, 0, 0, 0]), Some([0, 0, 0, 1]), Some([0, 0, 0, 2])]
    );
}

#[test]
fn masking_does_not_touch_the_callers_bytes() {
    let mut p = client();
    let shared = Bytes::from(vec![0x55; 1000]);
    let keep = shared.clone();
    assert_eq!(p.conn.send(Message::Binary(shared)), Ok(()));
    p.drain();
    assert_eq!(keep, vec![0x55; 1000]);
    p.expect(&[Out::binary(vec![0x55; 1000])]);
}

#[test]
fn unmasked_server_frames_are_received() {
    let mut p = client();
    let r = p.send(&[
        Frame::text("Hello").unmasked(),
        Frame::binary([1, 2, 3]).unmasked(),
        Frame::text("frag").unmasked().fin(false),
        Frame::cont("mented").unmasked(),
    ]);
    assert_eq!(r, Ok(()));
    assert_eq!(
        p.messages(),
        [
            Message::text("Hello"),
            Message::binary(vec![1, 2, 3]),
            Message::text("fragmented")
        ]
    );
}

#[test]
fn a_masked_server_frame_fails_with_1002() {
    for frame in [
        Frame::text("Hello"),
        Frame::ping(""),
        Frame::close(1000, ""),
        Frame::binary([0; 200]),
    ] {
        let mut p = client();
        let r = p.send(&[frame]);
        assert_eq!(r, Err(ProtocolError::MaskedFrame));
        // The client's Close is masked too (the decoder checks).
        p.expect_fail(r, 1002);
        assert_eq!(p.decoder.frames.last().unwrap().mask, Some(KEY_1234));
    }
}

#[test]
fn a_masked_server_frame_fails_at_its_header() {
    let mut p = client();
    let r = p.feed(&Frame::binary("").head(1000));
    p.expect_fail(r, 1002);
}

#[test]
fn pings_are_answered_with_masked_pongs() {
    let mut p = client();
    assert_eq!(p.send(&[Frame::ping("hello").unmasked()]), Ok(()));
    p.expect(&[Out::pong("hello")]);
    assert_eq!(masks(&p), [Some(KEY_1234)]);
}

#[test]
fn the_servers_close_is_echoed_masked() {
    let mut p = client();
    assert_eq!(p.send(&[Frame::close(1001, "restart").unmasked()]), Ok(()));
    p.expect(&[Out::close(1001)]);
    assert_eq!(p.closed_event(), Some((1001, "restart".to_owned())));
    assert_eq!(p.state(), State::Closed);
    assert_eq!(masks(&p), [Some(KEY_1234)]);
}

#[test]
fn the_client_starts_the_close_and_the_server_completes_it() {
    let mut p = client();
    let now = p.now;
    assert_eq!(p.conn.close(CloseCode::NORMAL, "done", now), Ok(()));
    p.drain();
    p.expect(&[Out::close(1000)]);
    assert_eq!(p.send(&[Frame::close(1000, "").unmasked()]), Ok(()));
    p.expect(&[]);
    assert_eq!(p.state(), State::Closed);
    // RFC 6455 7.1.1: now the client waits for the server to close TCP.
    assert_eq!(p.closed_event().map(|c| c.0), Some(1000));
}

#[test]
fn the_client_applies_the_same_receive_rules() {
    // Reserved bits, reserved opcodes, bad UTF-8, bad close codes: as a server.
    let cases: Vec<(Frame, u16)> = vec![
        (Frame::text("x").unmasked().rsv(2), 1002),
        (Frame::new(3, "").unmasked(), 1002),
        (Frame::text(b"\xed\xa0\x80").unmasked(), 1007),
        (Frame::close(1005, "").unmasked(), 1002),
        (Frame::ping([0; 126]).unmasked(), 1002),
        (Frame::cont("x").unmasked(), 1002),
    ];
    for (frame, code) in cases {
        let mut p = client();
        let r = p.send(std::slice::from_ref(&frame));
        assert!(r.is_err(), "{frame:?}");
        p.expect_fail(r, code);
    }
}

#[test]
fn the_client_fails_fast_on_utf8_too() {
    let mut p = client();
    let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited";
    let bytes = Frame::text(payload).unmasked().encode();
    let head = bytes.len() - payload.len();
    assert_eq!(p.feed(&bytes[..head + 12]), Ok(()));
    let r = p.feed(&bytes[head + 12..head + 13]);
    p.expect_fail(r, 1007);
}

#[test]
fn a_client_compresses_with_its_own_parameters_and_masks_the_result() {
    for p in [
        DeflateParams::default(),
        DeflateParams {
            client_no_context_takeover: true,
            client_max_window_bits: 9,
            ..DeflateParams::default()
        },
    ] {
        let mut c =
            Peer::client_deflate(quiet(), || KEY_1234, p, &DeflateConfig::default()).no_echo();
        let msg = prose(5000, 1);
        for _ in 0..3 {
            assert_eq!(
                c.conn
                    .send(Message::text(String::from_utf8(msg.clone()).unwrap())),
                Ok(())
            );
        }
        c.drain();
        // Inflated with the client's window and takeover rules.
        c.expect(&[Out::text(&msg), Out::text(&msg), Out::text(&msg)]);
        assert!(
            c.decoder
                .frames
                .iter()
                .all(|f| f.rsv1 && f.mask == Some(KEY_1234))
        );
        if p.client_no_context_takeover {
            assert_eq!(c.decoder.inflater.cross_message_refs, 0);
        }
    }
}

#[test]
fn a_client_inflates_what_a_server_compressed() {
    let params = DeflateParams::default();
    let mut c =
        Peer::client_deflate(quiet(), || KEY_1234, params, &DeflateConfig::default()).no_echo();
    let mut server_side = PeerDeflate::new(params.server_max_window_bits, false);
    for i in 0..5 {
        let msg = prose(3000, i);
        let payload = server_side.message(&msg);
        let r = c.send(&[Frame::text(payload).unmasked().rsv(RSV1)]);
        assert_eq!(r, Ok(()));
        let last = c.events.last().cloned();
        assert_eq!(
            last,
            Some(Event::Message(Message::text(
                String::from_utf8(msg).unwrap()
            )))
        );
    }
}

#[test]
fn keepalive_pings_from_a_client_are_masked() {
    let config = quiet().ping_interval(Some(std::time::Duration::from_secs(5)));
    let mut p = Peer::client(config, || KEY_1234).no_echo();
    let t = p.start + std::time::Duration::from_secs(5);
    p.fire_at(t);
    p.expect(&[Out::ping(1u32.to_be_bytes())]);
    assert_eq!(masks(&p), [Some(KEY_1234)]);
}
