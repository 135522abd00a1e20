//! Graceful shutdown: stop accepting, tell every client to reconnect
//! elsewhere with close 1001 "shutdown; retry in N ms", with N spread over
//! the drain window so they do not all come back at once, then return.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tokio::task::JoinSet;

/// The N of "shutdown; retry in N ms".
fn retry_ms(reason: &str) -> u64 {
    reason
        .strip_prefix("shutdown; retry in ")
        .and_then(|r| r.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a retry hint: {reason:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_told_to_come_back_spread_over_the_drain_window() {
    const CLIENTS: usize = 5;
    let drain = Duration::from_millis(1000);
    let mut config = config();
    config.drain = drain;
    let mut server = TestServer::start(config).await;

    let mut readers = JoinSet::new();
    for i in 0..CLIENTS {
        let mut c = server.named(&format!("c{i}")).await;
        c.subscribe("chat:all").await;
        readers.spawn(async move {
            // Join pushes of later clients arrive first; read to the close.
            let frame = c.closed().await;
            (Instant::now(), frame)
        });
    }
    eventually("every client registered", || {
        server.hub().connection_count() == CLIENTS
    })
    .await;

    let start = Instant::now();
    server.trigger_shutdown();
    let mut closes = Vec::new();
    while let Some(r) = within("a client's close", readers.join_next()).await {
        closes.push(r.expect("reader"));
    }
    closes.sort_by_key(|(at, _)| *at);
    for (_, frame) in &closes {
        assert_eq!(frame.code.0, 1001, "{frame:?}");
    }
    let hints: Vec<u64> = closes.iter().map(|(_, f)| retry_ms(&f.reason)).collect();

    // In the order they were told: increasing hints, all different, from
    // the start of the window to most of it.
    assert!(
        hints.windows(2).all(|w| w[0] < w[1]),
        "increasing, distinct: {hints:?}"
    );
    assert_eq!(hints[0], 0, "{hints:?}");
    let window = drain.as_millis() as u64;
    assert!(
        hints.iter().all(|&h| h < window),
        "within the window: {hints:?}"
    );
    assert!(
        hints[CLIENTS - 1] >= window / 2,
        "spread over the window: {hints:?}"
    );
    // The telling itself is spread too.
    let told = closes[CLIENTS - 1].0 - closes[0].0;
    assert!(
        told >= drain / 2,
        "closes spread over {told:?} of a {drain:?} window"
    );

    server.join().await.expect("serve() returns Ok");
    assert!(
        start.elapsed() < drain * 3,
        "returned in {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_new_connections_are_accepted_while_draining() {
    let mut config = config();
    config.drain = Duration::from_millis(600);
    let mut server = TestServer::start(config).await;
    // Two clients, so the drain lasts a while after the first close.
    let mut a = server.named("a").await;
    let b = server.named("b").await;
    let reader = tokio::spawn(async move {
        let mut b = b;
        b.closed().await
    });
    server.trigger_shutdown();
    assert_eq!(a.closed().await.code.0, 1001);

    // Still draining (b is told later): a newcomer is not served.
    let attempt = tokio::time::timeout(
        Duration::from_secs(2),
        herald::Client::new(server.url()).connect(),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "a WebSocket connection was accepted during the drain"
    );
    let r = within("b's close", reader).await.expect("reader");
    assert_eq!(r.code.0, 1001);
    server.join().await.expect("serve() returns Ok");
    // And after: nothing listens.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn shutdown_without_clients_returns_at_once() {
    let mut config = config();
    config.drain = Duration::from_secs(5);
    let mut server = TestServer::start(config).await;
    // Serve something first.
    let r = server.http("GET", "/health", &[], None).await;
    assert_eq!(r.status, 200);
    let start = Instant::now();
    server.trigger_shutdown();
    server.join().await.expect("serve() returns Ok");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "no clients, no drain: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_obeys_the_hint_can_reconnect_to_the_next_server() {
    // "Reconnect elsewhere": the close arrives, the client goes to another
    // server and recovers there what it can.
    let mut first = TestServer::start(config()).await;
    let mut c = first.named("mover").await;
    let epoch = c.subscribe("chat:move").await["epoch"].clone();
    first.trigger_shutdown();
    let frame = c.closed().await;
    assert_eq!(frame.code.0, 1001);
    assert_eq!(retry_ms(&frame.reason), 0);
    first.join().await.expect("serve() returns Ok");

    let second = TestServer::start(config()).await;
    let mut c = second.named("mover").await;
    let result = c
        .ok(
            "subscribe",
            json!({"channel": "chat:move", "recover": true, "epoch": epoch, "offset": 0}),
        )
        .await;
    // Another server's history: another epoch, so told it cannot recover.
    assert_eq!(result["recovered"], false, "{result}");
    drop(c);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_completes_connect_during_the_drain_is_told_to_go_too() {
    let drain = Duration::from_millis(600);
    let mut config = config();
    config.drain = drain;
    let mut server = TestServer::start(config).await;
    let mut a = server.named("a").await;
    // Accepted before the shutdown, `connect` sent during the drain.
    let mut late = open(&server.url()).await;

    server.trigger_shutdown();
    assert_eq!(a.closed().await.code.0, 1001);
    send_text(&mut late, r#"{"id": 1, "connect": {"name": "late"}}"#).await;
    // Whether or not it gets its connect reply first, it must be closed
    // with the retry hint before the drain is over, like everyone else.
    let frame = tokio::time::timeout(drain * 3, closed(&mut late))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "still open {:?} after its connect ({} connection(s) registered)",
                drain * 3,
                server.hub().connection_count()
            )
        });
    assert_eq!(frame.code.0, 1001, "{frame:?}");
    retry_ms(&frame.reason);
    server.join().await.expect("serve() returns Ok");
}
