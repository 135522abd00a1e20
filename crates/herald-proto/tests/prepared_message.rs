//! Encode once, send to many (RFC 7692 with no context takeover): the
//! server's answer under `DeflateConfig::no_context_takeover`, and
//! `PreparedMessage` frames shared between connections.
//!
//! Every compressed frame is inflated by the independent decoder in
//! `support/inflate.rs`, which refuses back-references beyond the agreed
//! `server_max_window_bits` and, under `server_no_context_takeover`, any
//! into an earlier message (RFC 7692 7.1.1.1 and 7.1.2.1).

mod support;

use bytes::Bytes;
use herald_proto::connection::MessageKind;
use herald_proto::handshake::{self, Accept, HandshakeLimits};
use herald_proto::{
    Connection, DeflateConfig, DeflateParams, Event, Message, PreparedMessage, Transmit, UserError,
};
use support::*;

// ----- RFC 7692 7.1.1: the server adds both no_context_takeover ------------

/// Chromium's opening handshake (cookie and user agent made up).
const CHROMIUM: &[u8] = b"GET /ws HTTP/1.1\r\n\
    Host: localhost:8080\r\n\
    Connection: Upgrade\r\n\
    Upgrade: websocket\r\n\
    Origin: http://localhost:8080\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
    \r\n";

fn answer(request: &[u8], config: &DeflateConfig) -> (Vec<u8>, Option<DeflateParams>) {
    let (req, n) = handshake::parse_request(request, &HandshakeLimits::default())
        .expect("valid request")
        .expect("complete request");
    assert_eq!(n, request.len());
    let accepted = req.accept(Accept::new().deflate(config)).unwrap();
    (accepted.response, accepted.deflate)
}

fn with_offer(offer: &str) -> Vec<u8> {
    std::str::from_utf8(CHROMIUM)
        .unwrap()
        .replace("permessage-deflate; client_max_window_bits", offer)
        .into_bytes()
}

fn shared(server_max_window_bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits,
        client_max_window_bits: 15,
    }
}

#[test]
fn a_browser_offer_is_answered_with_both_no_context_takeover() {
    let (response, params) = answer(CHROMIUM, &DeflateConfig::no_context_takeover());
    assert_eq!(
        response,
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n\
          Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\
          \r\n"
    );
    assert_eq!(params, Some(shared(15)));
}

#[test]
fn a_bare_offer_is_answered_the_same() {
    // Firefox and Safari offer `permessage-deflate` alone.
    let (response, params) = answer(
        &with_offer("permessage-deflate"),
        &DeflateConfig::no_context_takeover(),
    );
    let response = String::from_utf8(response).unwrap();
    assert!(
        response.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n"
        ),
        "{response}"
    );
    assert_eq!(params, Some(shared(15)));
}

#[test]
fn the_window_the_client_asks_for_is_reported() {
    // 7.1.2.1: the server answers with the same or a smaller value; the
    // agreed value picks the shared encoding.
    let (response, params) = answer(
        &with_offer(
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; \
             client_max_window_bits",
        ),
        &DeflateConfig::no_context_takeover(),
    );
    let response = String::from_utf8(response).unwrap();
    assert!(
        response.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover; server_max_window_bits=10\r\n"
        ),
        "{response}"
    );
    assert_eq!(params, Some(shared(10)));
}

#[test]
fn what_the_server_answers_passes_our_client() {
    let client = DeflateConfig::default();
    let (_, params) = answer(
        &with_offer(&client.offer()),
        &DeflateConfig::no_context_takeover(),
    );
    let response = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    assert_eq!(client.validate_response([response.as_bytes()]), Ok(params));
}

// ----- PreparedMessage on the wire ------------------------------------------

/// Repetitive JSON, as a push server publishes.
fn publication(len: usize) -> Message {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            r#"{{"channel":"news","offset":{i},"data":"hello"}},"#
        ));
        i += 1;
    }
    s.truncate(len);
    Message::text(s)
}

fn server(params: Option<DeflateParams>) -> Connection {
    let conn = Connection::server(quiet(), t0());
    match params {
        Some(p) => conn.with_deflate(p, &DeflateConfig::no_context_takeover()),
        None => conn,
    }
}

fn one_transmit(conn: &mut Connection) -> Transmit {
    let t = conn.poll_transmit().expect("a frame");
    assert!(conn.poll_transmit().is_none(), "one frame only");
    t
}

fn decode(t: &Transmit, deflate: Option<(u8, bool)>) -> Vec<Out> {
    let mut d = Decoder::new(false, deflate);
    let mut bytes = t.head.as_bytes().to_vec();
    bytes.extend_from_slice(&t.payload);
    let out = d.decode(&bytes);
    assert_eq!(d.inflater.cross_message_refs, 0);
    out
}

#[test]
fn a_plain_connection_gets_the_plain_frame_without_a_copy() {
    let msg = PreparedMessage::new(Message::text("Hello"));
    let mut a = server(None);
    let mut b = server(None);
    a.send_prepared(&msg).unwrap();
    b.send_prepared(&msg).unwrap();
    let (ta, tb) = (one_transmit(&mut a), one_transmit(&mut b));
    // RFC 6455 5.7: a single-frame unmasked text message.
    assert_eq!(ta.head.as_bytes(), b"\x81\x05");
    assert_eq!(&ta.payload[..], b"Hello");
    assert_eq!(ta, tb);
    assert_eq!(ta.payload.as_ptr(), msg.payload().as_ptr());
    assert_eq!(tb.payload.as_ptr(), msg.payload().as_ptr());
}

#[test]
fn connections_that_agreed_one_window_share_one_compressed_frame() {
    let msg = PreparedMessage::new(publication(1000));
    let mut conns: Vec<_> = (0..3).map(|_| server(Some(shared(15)))).collect();
    let frames: Vec<_> = conns
        .iter_mut()
        .map(|c| {
            c.send_prepared(&msg).unwrap();
            one_transmit(c)
        })
        .collect();
    let first = &frames[0];
    // RFC 7692 6: RSV1 set on the (only) frame; FIN; text.
    assert_eq!(first.head.as_bytes()[0], 0xc1);
    assert!(first.payload.len() < 1000 / 4, "{}", first.payload.len());
    // RFC 7692 7.2.1: the sync flush tail is removed.
    assert!(!first.payload.ends_with(&[0, 0, 0xff, 0xff]));
    for f in &frames {
        assert_eq!(f, first);
        // Compressed once: every connection holds the same buffer.
        assert_eq!(f.payload.as_ptr(), first.payload.as_ptr());
    }
    assert_eq!(
        decode(first, Some((15, true))),
        [Out::Text(msg.payload().to_vec())]
    );
    // A later send reuses it too.
    conns[0].send_prepared(&msg).unwrap();
    assert_eq!(
        one_transmit(&mut conns[0]).payload.as_ptr(),
        first.payload.as_ptr()
    );
}

#[test]
fn each_window_size_gets_its_own_frame() {
    let msg = PreparedMessage::new(publication(20_000));
    let mut frames = Vec::new();
    for bits in [8, 9, 10, 12, 15] {
        let mut c = server(Some(shared(bits)));
        c.send_prepared(&msg).unwrap();
        let t = one_transmit(&mut c);
        assert_eq!(t.head.as_bytes()[0], 0xc1, "{bits} bits");
        // The decoder refuses distances beyond 2^bits.
        assert_eq!(
            decode(&t, Some((bits, true))),
            [Out::Text(msg.payload().to_vec())],
            "{bits} bits"
        );
        frames.push((bits, t));
    }
    // 8 bits is compressed with a 9-bit zlib window (see the codec): the
    // same frame.
    assert_eq!(frames[0].1.payload.as_ptr(), frames[1].1.payload.as_ptr());
    assert_ne!(frames[1].1.payload.as_ptr(), frames[2].1.payload.as_ptr());
    assert_ne!(frames[3].1.payload.as_ptr(), frames[4].1.payload.as_ptr());
}

#[test]
fn small_or_incompressible_messages_go_plain() {
    for msg in [
        // Under DeflateConfig::threshold.
        Message::text("Hello"),
        // Compression would not make it smaller.
        Message::binary(random_bytes(500, 7)),
        Message::binary(Vec::<u8>::new()),
    ] {
        let prepared = PreparedMessage::new(msg.clone());
        let mut c = server(Some(shared(15)));
        c.send_prepared(&prepared).unwrap();
        let t = one_transmit(&mut c);
        assert_eq!(t.head.as_bytes()[0] & 0x40, 0, "no RSV1");
        assert_eq!(t.payload.as_ptr(), prepared.payload().as_ptr());
        assert_eq!(decode(&t, Some((15, true))).len(), 1);
    }
}

#[test]
fn with_context_takeover_the_connection_compresses_itself() {
    // A message compressed alone is valid in any context, but the
    // connection's own compressor would then refer to data the peer's
    // window holds at other distances. So it compresses the prepared
    // message like any other, and mixing both kinds stays decodable.
    let takeover = DeflateParams::default();
    let mut p = Peer::server_deflate(quiet(), takeover, &DeflateConfig::default()).no_echo();
    let msg = PreparedMessage::new(publication(2000));
    p.conn.send(publication(1500)).unwrap();
    p.conn.send_prepared(&msg).unwrap();
    p.conn.send(publication(1500)).unwrap();
    p.conn.send_prepared(&msg).unwrap();
    p.drain();
    let text = |m: Message| Out::Text(m.as_bytes().to_vec());
    p.expect(&[
        text(publication(1500)),
        text(publication(2000)),
        text(publication(1500)),
        text(publication(2000)),
    ]);
    assert!(p.decoder.frames.iter().all(|f| f.rsv1));
    // Context taken over: later messages refer back into earlier ones.
    assert!(p.decoder.inflater.cross_message_refs > 0);
}

#[test]
fn a_client_masks_the_message_as_send_does() {
    let mut p = Peer::client(quiet(), || [1, 2, 3, 4]).no_echo();
    let msg = PreparedMessage::new(Message::binary(&b"abc"[..]));
    p.conn.send_prepared(&msg).unwrap();
    p.drain();
    p.expect(&[Out::binary("abc")]);
    assert_eq!(p.decoder.frames[0].mask, Some([1, 2, 3, 4]));
    // The caller's bytes are intact.
    assert_eq!(&msg.payload()[..], b"abc");
}

#[test]
fn send_prepared_obeys_the_sending_rules() {
    let msg = PreparedMessage::new(Message::text("x"));
    let mut c = server(None);
    c.send_frame(MessageKind::Text, Bytes::from_static(b"a"), false)
        .unwrap();
    assert_eq!(c.send_prepared(&msg), Err(UserError::FragmentOutOfOrder));
    c.send_frame(MessageKind::Text, Bytes::from_static(b"b"), true)
        .unwrap();
    c.send_prepared(&msg).unwrap();
    c.close(herald_proto::CloseCode::NORMAL, "", t0()).unwrap();
    assert_eq!(c.send_prepared(&msg), Err(UserError::AlreadyClosed));
}

#[test]
fn no_zlib_state_is_kept_between_messages() {
    // The client compresses too; the server inflates its message and
    // sends a prepared one, and keeps nothing of either.
    let params = shared(15);
    let mut client = Peer::client_deflate(
        quiet(),
        || [9, 9, 9, 9],
        params,
        &DeflateConfig::no_context_takeover(),
    )
    .no_echo();
    let mut server =
        Peer::server_deflate(quiet(), params, &DeflateConfig::no_context_takeover()).no_echo();
    let msg = PreparedMessage::new(publication(3000));
    for _ in 0..3 {
        client.conn.send(publication(3000)).unwrap();
        client.drain();
        let bytes = std::mem::take(&mut client.written);
        assert_eq!(bytes[0], 0xc1, "the client compressed");
        server.feed(&bytes).unwrap();
        assert!(matches!(&server.events[..], [.., Event::Message(_)]));
        server.conn.send_prepared(&msg).unwrap();
        server.drain();
        assert!(!server.conn.holds_deflate_state());
    }
    server.expect(&[
        Out::Text(msg.payload().to_vec()),
        Out::Text(msg.payload().to_vec()),
        Out::Text(msg.payload().to_vec()),
    ]);

    // With context takeover (the default), both states stay.
    let mut takeover =
        Peer::server_deflate(quiet(), DeflateParams::default(), &DeflateConfig::default())
            .no_echo();
    let mut client = Peer::client_deflate(
        quiet(),
        || [9, 9, 9, 9],
        DeflateParams::default(),
        &DeflateConfig::default(),
    )
    .no_echo();
    client.conn.send(publication(3000)).unwrap();
    client.drain();
    takeover.feed(&client.written).unwrap();
    takeover.conn.send_prepared(&msg).unwrap();
    takeover.drain();
    assert!(takeover.conn.holds_deflate_state());
}

#[test]
fn a_prepared_message_is_shared_across_threads() {
    let msg = PreparedMessage::new(publication(5000));
    let frames: Vec<Transmit> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut c = server(Some(shared(15)));
                    c.send_prepared(&msg).unwrap();
                    one_transmit(&mut c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Whichever thread came first compressed; the others waited for it.
    for f in &frames {
        assert_eq!(f.payload.as_ptr(), frames[0].payload.as_ptr());
    }
}
