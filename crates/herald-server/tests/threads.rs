//! `herald serve --threads N`: one current-thread runtime per thread, each
//! accepting on its own `SO_REUSEPORT` listener, all sharing one hub. The
//! kernel spreads connections over the threads; publications, presence,
//! the API's disconnect and the drain reach clients on every thread.

mod support;

use serde_json::{Value, json};
use support::*;

/// Enough connections that the kernel's hash leaves no thread empty
/// (all of them on one of two threads: 2 in 2^CLIENTS).
const CLIENTS: usize = 24;

fn threaded_config() -> herald_server::ServerConfig {
    let mut c = config();
    c.namespaces.insert(
        "t".into(),
        namespace(|ns| {
            ns.presence = true;
            ns.allow_publish = true;
        }),
    );
    c
}

/// `herald_thread_connections{thread="0"}` and `{thread="1"}`.
async fn per_thread(server: &TestServer) -> [f64; 2] {
    let m = server.metrics().await;
    [0, 1]
        .map(|t| metric(&m, &format!("herald_thread_connections{{thread=\"{t}\"}}")).unwrap_or(0.0))
}

/// Waits (bounded) for both per-thread gauges to read 0: a connection's
/// gauge goes down when its task ends, just after its session left the
/// hub, so `connection_count() == 0` can be seen a moment before.
async fn gauges_back_down(server: &TestServer) {
    within("the per-thread gauges back at 0", async {
        while per_thread(server).await != [0.0, 0.0] {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn clients(server: &TestServer, channel: &str) -> Vec<Conn> {
    let mut out = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut c = server.named(&format!("c{i}")).await;
        c.subscribe(channel).await;
        out.push(c);
    }
    out
}

#[tokio::test]
async fn connections_are_spread_over_the_threads() {
    let server = TestServer::start_threads(threaded_config(), 2).await;
    let all = clients(&server, "t:spread").await;
    let [zero, one] = per_thread(&server).await;
    assert_eq!(zero + one, CLIENTS as f64, "every connection counted once");
    assert!(
        zero > 0.0 && one > 0.0,
        "connections on both threads: {zero} on thread 0, {one} on thread 1"
    );
    drop(all);
    eventually("every connection gone", || {
        server.hub().connection_count() == 0
    })
    .await;
    gauges_back_down(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn publications_reach_subscribers_on_every_thread() {
    let server = TestServer::start_threads(threaded_config(), 2).await;
    let mut all = clients(&server, "t:pub").await;
    let [zero, one] = per_thread(&server).await;
    assert!(zero > 0.0 && one > 0.0, "{zero} / {one}: not spread");

    // From the API (served on whichever thread accepted its connection).
    for i in 0..3 {
        server.api_publish("t:pub", json!({ "api": i })).await;
    }
    // From a client, whose session runs on one thread only.
    all[0]
        .ok(
            "publish",
            json!({"channel": "t:pub", "data": {"client": 0}}),
        )
        .await;
    for c in &mut all {
        let data: Vec<Value> = c
            .publications("t:pub", 4)
            .await
            .into_iter()
            .map(|p| p["data"].clone())
            .collect();
        assert_eq!(
            data,
            [
                json!({"api": 0}),
                json!({"api": 1}),
                json!({"api": 2}),
                json!({"client": 0})
            ]
        );
    }
    drop(all);
    server.stop().await;
}

#[tokio::test]
async fn presence_and_disconnect_cover_every_thread() {
    let server = TestServer::start_threads(threaded_config(), 2).await;
    let mut all = clients(&server, "t:p").await;
    let [zero, one] = per_thread(&server).await;
    assert!(zero > 0.0 && one > 0.0, "{zero} / {one}: not spread");

    let r = server.http("GET", "/api/presence/t:p", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut present: Vec<String> = r.json()["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["client"].as_str().expect("client id").to_owned())
        .collect();
    let mut expected: Vec<String> = all.iter().map(|c| c.client.clone()).collect();
    present.sort();
    expected.sort();
    assert_eq!(present, expected, "one presence over both threads");

    for c in &mut all {
        let body = json!({"client": c.client}).to_string();
        let r = server
            .http("POST", "/api/disconnect", &[], Some(&body))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(c.closed().await.code.0, 4002);
    }
    eventually("every session ended", || {
        server.hub().connection_count() == 0
    })
    .await;
    let r = server.http("GET", "/api/presence/t:p", &[], None).await;
    assert_eq!(r.json(), json!({"clients": []}));
    gauges_back_down(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn the_drain_closes_clients_on_every_thread_and_stops_them() {
    let mut server = TestServer::start_threads(threaded_config(), 2).await;
    let all = clients(&server, "t:d").await;
    let [zero, one] = per_thread(&server).await;
    assert!(zero > 0.0 && one > 0.0, "{zero} / {one}: not spread");

    let mut readers = tokio::task::JoinSet::new();
    for mut c in all {
        readers.spawn(async move { c.closed().await });
    }
    server.trigger_shutdown();
    while let Some(frame) = within("a client's close", readers.join_next()).await {
        let frame = frame.expect("reader");
        assert_eq!(frame.code.0, 1001, "{frame:?}");
        assert!(frame.reason.starts_with("shutdown; retry in "), "{frame:?}");
    }
    server.join().await.expect("serve_threads returns Ok");
    // Every thread stopped accepting: nothing listens on the port.
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "a listener outlived the server"
    );
}
