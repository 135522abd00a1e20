//! Slowloris on the HTTP side: sockets that send nothing, half a request
//! line, or headers and half a body, a byte now and then, or that stay
//! idle after a response, are closed once the header, body or idle timeout
//! passes, while `/health` and WebSocket clients keep being served. A head
//! larger than the cap is refused with 431.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Sockets of each kind.
const EACH: usize = 250;
const TIMEOUT_UNDER_TEST: Duration = Duration::from_secs(1);
/// Sockets of each kind opened at once.
const BATCH: usize = 25;
/// Slack for 1,000 closes on a loaded two-core machine.
const SLACK: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Connects and sends nothing.
    Silent,
    /// Half a request line, then a byte every 200 ms.
    HalfRequestLine,
    /// A whole head announcing 100 bytes of body, 50 of them, then a byte
    /// every 200 ms.
    HalfBody,
    /// A whole request, reads the response, then stays idle (keep-alive).
    IdleKeepAlive,
}

/// Plays `kind` until the server closes; returns how long the server took
/// from the moment the socket started waiting on it.
async fn dribble(addr: std::net::SocketAddr, kind: Kind, ready: mpsc::Sender<()>) -> Duration {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let (first, trickle): (String, bool) = match kind {
        Kind::Silent => (String::new(), false),
        Kind::HalfRequestLine => ("GET /aaaa".into(), true),
        Kind::HalfBody => (
            format!(
                "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{{\"channel\":\"chat:x\",\"data\":\"{}",
                "a".repeat(22)
            ),
            true,
        ),
        Kind::IdleKeepAlive => (
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
            false,
        ),
    };
    tcp.write_all(first.as_bytes()).await.expect("write");
    let mut buf = [0u8; 1024];
    if let Kind::IdleKeepAlive = kind {
        // The response, then silence from both sides.
        let mut got = Vec::new();
        while !got.ends_with(b"ok\n") {
            let n = tcp.read(&mut buf).await.expect("read the response");
            assert!(n > 0, "closed before answering");
            got.extend_from_slice(&buf[..n]);
        }
    }
    let start = Instant::now();
    let _ = ready.send(()).await;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = tcp.read(&mut buf) => match r {
                Ok(0) | Err(_) => return start.elapsed(),
                // A 400 for the cut-off body, say; the close follows.
                Ok(_) => {}
            },
            _ = tick.tick(), if trickle => {
                let _ = tcp.write_all(b"a").await;
            }
        }
    }
}

async fn dribbling_sockets_are_closed_while_health_and_websockets_are_served() {
    let mut config = config();
    config.http_header_timeout = TIMEOUT_UNDER_TEST;
    config.http_body_timeout = TIMEOUT_UNDER_TEST;
    config.http_idle_timeout = TIMEOUT_UNDER_TEST;
    let server = TestServer::start(config).await;
    // A WebSocket client from before: upgraded connections are not HTTP
    // any more, and no HTTP timeout applies to them.
    let mut early = server.named("early").await;
    early.subscribe("room").await;

    let (ready_tx, mut ready_rx) = mpsc::channel(4 * EACH);
    let mut sockets = JoinSet::new();
    // In batches, each in place before the next: a thousand SYNs at once
    // overflow the listen queue, and the kernel then takes seconds to
    // retry the handshakes it dropped, which would time the test, not the
    // server.
    for batch in 0..EACH / BATCH {
        for kind in [
            Kind::Silent,
            Kind::HalfRequestLine,
            Kind::HalfBody,
            Kind::IdleKeepAlive,
        ] {
            for _ in 0..BATCH {
                sockets.spawn(dribble(server.addr, kind, ready_tx.clone()));
            }
        }
        within(
            &format!("hostile sockets of batch {batch} in place"),
            async {
                for _ in 0..4 * BATCH {
                    ready_rx.recv().await.expect("a socket task failed");
                }
            },
        )
        .await;
    }

    // Meanwhile the server answers everyone else.
    let health = server.http("GET", "/health", &[], None).await;
    assert_eq!(health.status, 200);
    let mut late = server.named("late").await;
    late.subscribe("room").await;
    server
        .api_publish("room", json!("while under attack"))
        .await;
    assert_eq!(
        late.publications("room", 1).await[0]["data"],
        "while under attack"
    );

    let mut slowest = Duration::ZERO;
    while let Some(r) = within("every hostile socket closed", sockets.join_next()).await {
        slowest = slowest.max(r.expect("socket task"));
    }
    assert!(
        slowest <= TIMEOUT_UNDER_TEST + SLACK,
        "the last socket was closed after {slowest:?}"
    );

    // The WebSocket clients outlived every HTTP timeout.
    server.api_publish("room", json!("after")).await;
    let got = early.publications("room", 2).await;
    assert_eq!(
        (&got[0]["data"], &got[1]["data"]),
        (&json!("while under attack"), &json!("after"))
    );
    assert_eq!(late.publications("room", 1).await[0]["data"], "after");
    drop((early, late));
    server.stop().await;
}

/// The idle timeout is the keep-alive one, apart from the header timeout:
/// a connection idle longer than the header timeout but within the idle
/// timeout serves its next request, and is closed once idle past it.
async fn a_kept_alive_connection_gets_the_idle_timeout() {
    let header = Duration::from_millis(300);
    let idle = Duration::from_millis(1500);
    let mut config = config();
    config.http_header_timeout = header;
    config.http_idle_timeout = idle;
    let server = TestServer::start(config).await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    let request = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    let mut buf = [0u8; 1024];
    for round in 0..2 {
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        while !got.ends_with(b"ok\n") {
            let n = within("a response", tcp.read(&mut buf))
                .await
                .expect("read");
            assert!(n > 0, "closed before the response of round {round}");
            got.extend_from_slice(&buf[..n]);
        }
        if round == 0 {
            // Idle for twice the header timeout, well within the idle one.
            tokio::time::sleep(2 * header).await;
        }
    }
    let start = Instant::now();
    let n = within("the idle connection closed", tcp.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing but the close");
    let waited = start.elapsed();
    assert!(
        waited >= idle - Duration::from_millis(100) && waited <= idle + SLACK,
        "closed after {waited:?} idle (idle timeout {idle:?})"
    );
    server.stop().await;
}

async fn a_head_over_the_cap_is_refused_with_431() {
    let mut config = config();
    config.http_max_header_size = 16 << 10;
    let server = TestServer::start(config).await;
    let big = "x".repeat(20 << 10);
    let r = server
        .http("GET", "/health", &[("X-Big", &big)], None)
        .await;
    assert_eq!(r.status, 431, "{}", r.body);
    let small = "x".repeat(8 << 10);
    let r = server
        .http("GET", "/health", &[("X-Big", &small)], None)
        .await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

crate::on_1_and_2_threads!(
    dribbling_sockets_are_closed_while_health_and_websockets_are_served,
    a_kept_alive_connection_gets_the_idle_timeout,
    a_head_over_the_cap_is_refused_with_431,
);

#[tokio::test]
async fn a_peer_that_stops_reading_a_response_is_let_go() {
    let mut c = config();
    c.http_write_timeout = Duration::from_millis(500);
    c.namespaces.insert(
        "big".into(),
        namespace(|ns| {
            ns.history_size = 200;
        }),
    );
    let server = TestServer::start(c).await;
    // A history response of ~10 MB: far more than the socket buffers.
    let chunk = "x".repeat(60_000);
    for _ in 0..200 {
        server.api_publish("big:h", json!(chunk)).await;
    }
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /api/history/big:h HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Not reading, well past the write timeout...
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    // ...then reading: what was buffered arrives, then the end, short of
    // the whole body.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = within("the stalled response to be cut", async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    let () = ended;
    assert!(got < 200 * 60_000, "the whole body arrived: {got} bytes");
    server.stop().await;
}
