//! Keepalive: a server pings a quiet peer and drops one that never answers.
//!
//! Server: ping_interval 200 ms, pong_timeout 300 ms. The peer is scripted
//! by hand on a raw TcpStream, so we see exactly which frames go out.

mod common;

use std::time::{Duration, Instant};

use common::{
    OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, PING_INTERVAL, PONG_TIMEOUT, keepalive_config,
    masked_frame, raw_client, read_frame, within,
};
use herald::{Acceptor, Client, CloseCode, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What the server saw: how `recv` ended, `close_frame`, and when.
type Outcome = (Option<String>, Option<herald::CloseFrame>, Duration);

/// Accepts one connection with the keepalive config and echoes until it ends.
async fn server() -> (std::net::SocketAddr, tokio::task::JoinHandle<Outcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = Acceptor::new(keepalive_config()).accept(tcp).await.unwrap();
        let start = Instant::now();
        let end = loop {
            match ws.recv().await {
                Some(Ok(msg)) => ws.send(msg).await.unwrap(),
                Some(Err(e)) => break Some(e.to_string()),
                None => break None,
            }
        };
        (end, ws.close_frame().cloned(), start.elapsed())
    });
    (addr, task)
}

#[tokio::test]
async fn silent_peer_gets_1011_and_is_dropped() {
    let (addr, server) = server().await;
    let mut tcp = raw_client(addr).await;
    let start = Instant::now();

    let ping = within("a keepalive Ping", read_frame(&mut tcp))
        .await
        .expect("EOF, not a Ping");
    assert_eq!(ping.opcode, OP_PING, "{ping:?}");
    let ping_at = start.elapsed();
    // Never answered.
    let close = within("the Close after the pong timeout", read_frame(&mut tcp))
        .await
        .expect("EOF, not a Close");
    assert_eq!(close.opcode, OP_CLOSE, "{close:?}");
    assert_eq!(close.payload[..2], 1011u16.to_be_bytes(), "{close:?}");
    let close_at = start.elapsed();
    assert!(
        within("EOF after the Close", read_frame(&mut tcp))
            .await
            .is_none(),
        "more after the Close"
    );

    assert!(
        ping_at >= PING_INTERVAL / 2 && ping_at < Duration::from_secs(2),
        "Ping after {ping_at:?}, expected about {PING_INTERVAL:?}"
    );
    let waited = close_at - ping_at;
    assert!(
        waited >= PONG_TIMEOUT * 2 / 3 && waited < Duration::from_secs(2),
        "Close {waited:?} after the Ping, expected about {PONG_TIMEOUT:?}"
    );

    let (end, frame, elapsed) = within("the server's end", server).await.unwrap();
    assert_eq!(end, None, "recv should end with None, not an error");
    assert_eq!(
        frame.map(|f| f.code),
        Some(CloseCode::ABNORMAL),
        "close_frame"
    );
    assert!(elapsed < Duration::from_secs(3), "server took {elapsed:?}");
}

#[tokio::test]
async fn peer_answering_pings_stays_connected() {
    let (addr, server) = server().await;
    let mut tcp = raw_client(addr).await;
    let start = Instant::now();

    // Five pings, answered: five intervals, twice ping_interval +
    // pong_timeout, in which a silent peer would have been dropped.
    let mut pings = 0;
    while pings < 5 {
        let frame = within("a keepalive Ping", read_frame(&mut tcp))
            .await
            .expect("dropped: EOF");
        assert_eq!(frame.opcode, OP_PING, "{frame:?}");
        tcp.write_all(&masked_frame(OP_PONG, &frame.payload))
            .await
            .unwrap();
        pings += 1;
    }
    assert!(
        start.elapsed() >= PING_INTERVAL * 4,
        "pings too fast: {:?}",
        start.elapsed()
    );

    // Still open: an echo comes back (perhaps after another Ping).
    tcp.write_all(&masked_frame(OP_TEXT, b"still here"))
        .await
        .unwrap();
    let echo = loop {
        let frame = within("the echo", read_frame(&mut tcp))
            .await
            .expect("dropped: EOF");
        if frame.opcode == OP_PING {
            tcp.write_all(&masked_frame(OP_PONG, &frame.payload))
                .await
                .unwrap();
            continue;
        }
        break frame;
    };
    assert_eq!(
        (echo.opcode, &echo.payload[..]),
        (OP_TEXT, &b"still here"[..])
    );

    tcp.write_all(&masked_frame(OP_CLOSE, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    let close = loop {
        let frame = within("the Close reply", read_frame(&mut tcp))
            .await
            .expect("EOF, not a Close");
        if frame.opcode != OP_PING {
            break frame;
        }
    };
    assert_eq!(
        (close.opcode, &close.payload[..2]),
        (OP_CLOSE, &1000u16.to_be_bytes()[..])
    );
    let (end, frame, _) = within("the server's end", server).await.unwrap();
    assert_eq!(end, None);
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::NORMAL));
}

/// A herald client parked in `recv` answers the server's pings by itself.
#[tokio::test]
async fn herald_client_in_recv_answers_pings() {
    let (addr, server) = server().await;
    let (mut ws, _) = within("connect", Client::new(format!("ws://{addr}/")).connect())
        .await
        .unwrap();
    // Six ping intervals with nothing to receive.
    let quiet = tokio::time::timeout(PING_INTERVAL * 6, ws.recv()).await;
    assert!(
        quiet.is_err(),
        "recv returned during the quiet time: {quiet:?}"
    );
    within("send", ws.send(Message::text("still here")))
        .await
        .unwrap();
    let echo = within("the echo", ws.recv())
        .await
        .expect("closed")
        .unwrap();
    assert_eq!(echo, Message::text("still here"));
    let frame = within("close", ws.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    assert_eq!(frame.code, CloseCode::NORMAL);
    let (end, frame, _) = within("the server's end", server).await.unwrap();
    assert_eq!(end, None);
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::NORMAL));
}
