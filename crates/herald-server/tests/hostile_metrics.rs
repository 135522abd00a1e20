//! Metrics an operator needs when things go wrong: closes by code and by
//! who closed, and the time from a publication to its write into each
//! subscriber's socket. (Panics: tests/hostile_panic.rs; slow consumers
//! counted once per client: tests/slow_consumer.rs.)

mod support;

use herald::CloseCode;
use serde_json::json;
use support::*;

fn sample(server: &TestServer, name: &str) -> f64 {
    metric(&server.hub().metrics().encode(), name).unwrap_or(0.0)
}

async fn closes_are_counted_by_code_and_side() {
    let server = TestServer::start(config()).await;
    // The client closes.
    let mut a = server.named("A").await;
    a.ws.close(CloseCode::NORMAL, "bye").await.expect("close");
    // The server closes (disconnect through the API).
    let mut b = server.named("B").await;
    let r = server
        .http(
            "POST",
            "/api/disconnect",
            &[],
            Some(&json!({"client": b.client}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(b.closed().await.code, CloseCode(4002));
    // A frame that is no command at all.
    let mut c = server.named("C").await;
    c.send_raw("not json").await;
    let close = c.closed().await;
    assert_eq!(close.code, CloseCode(4101));
    assert!(close.reason.starts_with("bad request: "), "{close:?}");
    eventually("every session to end", || {
        server.hub().connection_count() == 0
    })
    .await;
    eventually("the closes to be counted", || {
        sample(&server, r#"herald_closes_total{code="1000",by="client"}"#) == 1.0
            && sample(&server, r#"herald_closes_total{code="4002",by="server"}"#) == 1.0
            && sample(&server, r#"herald_closes_total{code="4101",by="server"}"#) == 1.0
    })
    .await;
    server.stop().await;
}

async fn publish_to_write_latency_is_observed_per_delivery() {
    let mut cfg = config();
    cfg.namespaces
        .insert("news".into(), namespace(|ns| ns.history_size = 10));
    let server = TestServer::start(cfg).await;
    let mut a = server.named("A").await;
    let mut b = server.named("B").await;
    a.subscribe("news:m").await;
    b.subscribe("news:m").await;
    server.api_publish("news:m", json!(1)).await;
    a.publications("news:m", 1).await;
    b.publications("news:m", 1).await;
    assert_eq!(
        sample(&server, "herald_publish_to_write_seconds_count"),
        2.0
    );
    let exposition = server.hub().metrics().encode();
    assert!(
        exposition.contains("herald_publish_to_write_seconds_bucket{le="),
        "{exposition}"
    );
    drop((a, b));
    server.stop().await;
}

crate::on_1_and_2_threads!(
    closes_are_counted_by_code_and_side,
    publish_to_write_latency_is_observed_per_delivery,
);
