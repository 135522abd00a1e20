//! Hostile publication data: nesting and size are bounded where data
//! enters (HTTP API, client `publish`, endpoints), with a clear error, and
//! whatever was stored renders in history later, always.
//!
//! Before: data nested ~150 levels was accepted, and every later `history`
//! panicked (`unwrap` on serde_json's recursion limit), dropping the HTTP
//! connection and killing the WebSocket session with 1006.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_server::{Endpoint, Hub, Session};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::*;

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn publish_body(channel: &str, data: &str) -> String {
    format!(r#"{{"channel":"{channel}","data":{data}}}"#)
}

async fn too_deep_data_is_refused_at_the_door_everywhere() {
    let server = TestServer::start(config()).await;
    // API: 413 with the documented JSON error naming the limit.
    let body = publish_body("chat:deep", &nested(150));
    let r = server.http("POST", "/api/publish", &[], Some(&body)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.error_code(), 109);
    assert!(r.body.contains("max_publication_depth"), "{}", r.body);
    // A client's publish: error 109 naming the limit; the session lives on.
    let mut c = server.named("C").await;
    let text = format!(
        r#"{{"id":50,"publish":{{"channel":"chat:deep","data":{}}}}}"#,
        nested(150)
    );
    c.send_raw(&text).await;
    let reply = c.reply(50).await;
    assert_eq!(reply["error"]["code"], 109, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_publication_depth")),
        "{reply}"
    );
    c.ok("ping", json!({})).await;
    // Nothing was stored; history answers.
    let h = server
        .http("GET", "/api/history/chat:deep", &[], None)
        .await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["offset"], 0);
    drop(c);
    server.stop().await;
}

async fn deep_data_under_a_raised_limit_still_renders_in_history() {
    // An operator may allow more nesting than serde_json's recursion
    // limit (128); history must still render what was accepted.
    let mut cfg = config();
    cfg.max_publication_depth = 300;
    let server = TestServer::start(cfg).await;
    let data = nested(200);
    let r = server
        .http(
            "POST",
            "/api/publish",
            &[],
            Some(&publish_body("chat:deep", &data)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // API history: a whole response, the data byte for byte.
    let h = server
        .http("GET", "/api/history/chat:deep", &[], None)
        .await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert!(h.body.contains(&data), "{}", h.body);
    // The `history` command, and a recovering subscribe, on a session that
    // stays up.
    let mut c = server.named("C").await;
    let id = c.send("history", json!({"channel": "chat:deep"})).await;
    let raw = recv_text(&mut c.ws).await;
    assert!(
        raw.starts_with(&format!(r#"{{"id":{id},"result""#)),
        "{raw}"
    );
    assert!(raw.contains(&data));
    let id = c
        .send(
            "subscribe",
            json!({"channel": "chat:deep", "recover": true, "epoch": "x", "offset": 0}),
        )
        .await;
    let raw = recv_text(&mut c.ws).await;
    assert!(
        raw.starts_with(&format!(r#"{{"id":{id},"result""#)),
        "{raw}"
    );
    c.ok("ping", json!({})).await;
    drop(c);
    server.stop().await;
}

async fn one_size_limit_for_api_clients_and_endpoints() {
    let mut cfg = config();
    cfg.max_publication_size = 1000;
    cfg.max_message_size = 4096;
    cfg.namespaces
        .insert("echo".into(), namespace(|ns| ns.allow_publish = true));
    let server = TestServer::start(cfg).await;
    let calls = Arc::new(AtomicUsize::new(0));
    server
        .server()
        .set_endpoint("echo", Arc::new(Counting(calls.clone())));
    let big = format!(r#""{}""#, "x".repeat(1000)); // 1002 bytes of JSON
    let fits = format!(r#""{}""#, "x".repeat(998)); // 1000 bytes
    // API.
    let r = server
        .http(
            "POST",
            "/api/publish",
            &[],
            Some(&publish_body("chat:s", &big)),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (413, 109), "{}", r.body);
    assert!(r.body.contains("max_publication_size"), "{}", r.body);
    let r = server
        .http(
            "POST",
            "/api/publish",
            &[],
            Some(&publish_body("chat:s", &fits)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Broadcast: refused as a whole, once.
    let body = format!(r#"{{"channels":["chat:a","chat:b"],"data":{big}}}"#);
    let r = server
        .http("POST", "/api/broadcast", &[], Some(&body))
        .await;
    assert_eq!((r.status, r.error_code()), (413, 109), "{}", r.body);
    // A client, into a plain namespace and into an endpoint's.
    let mut c = server.named("C").await;
    for channel in ["chat:s", "echo:s"] {
        c.send_raw(&format!(
            r#"{{"id":90,"publish":{{"channel":"{channel}","data":{big}}}}}"#
        ))
        .await;
        let reply = c.reply(90).await;
        assert_eq!(reply["error"]["code"], 109, "{channel}: {reply}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the endpoint saw oversized data"
    );
    c.ok(
        "publish",
        json!({"channel": "echo:s", "data": Value::String("x".repeat(998))}),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // An endpoint publishing through the hub is held to the same limit.
    let e = server
        .hub()
        .publish("echo:s", RawValue::from_string(big.clone()).unwrap(), None)
        .await
        .unwrap_err();
    assert!(e.message.contains("max_publication_size"), "{e}");
    drop(c);
    server.stop().await;
}

async fn numbers_past_binary64_are_refused() {
    // Valid JSON grammar, but JavaScript reads Infinity and serde_json
    // (a Rust subscriber, or this server's own endpoints) refuses the
    // whole message.
    let server = TestServer::start(config()).await;
    let body = publish_body("chat:n", r#"{"n":2.5e600}"#);
    let r = server.http("POST", "/api/publish", &[], Some(&body)).await;
    assert_eq!((r.status, r.error_code()), (400, 104), "{}", r.body);
    assert!(r.body.contains("out of range"), "{}", r.body);
    let mut c = server.named("C").await;
    c.send_raw(r#"{"id":60,"publish":{"channel":"chat:n","data":[1e999]}}"#)
        .await;
    let reply = c.reply(60).await;
    assert_eq!(reply["error"]["code"], 104, "{reply}");
    // Large but finite numbers pass.
    c.send_raw(
        r#"{"id":61,"publish":{"channel":"chat:n","data":[1e308,123456789012345678901234567890]}}"#,
    )
    .await;
    let reply = c.reply(61).await;
    assert!(reply.get("result").is_some(), "{reply}");
    drop(c);
    server.stop().await;
}

/// Counts the client publications it is handed.
struct Counting(Arc<AtomicUsize>);

impl Endpoint for Counting {
    fn on_message(&self, _: &Arc<Hub>, _: &Session, _: &str, _: &RawValue) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

crate::on_1_and_2_threads!(
    too_deep_data_is_refused_at_the_door_everywhere,
    deep_data_under_a_raised_limit_still_renders_in_history,
    one_size_limit_for_api_clients_and_endpoints,
    numbers_past_binary64_are_refused,
);

#[tokio::test]
async fn a_name_too_long_for_every_join_push_is_refused() {
    let server = TestServer::start(config()).await;
    let mut ws = open(&server.url()).await;
    let name = "n".repeat(server.hub().config().max_name_size + 1);
    send_text(
        &mut ws,
        json!({"id": 1, "connect": {"name": name}}).to_string(),
    )
    .await;
    let close = closed(&mut ws).await;
    assert_eq!(close.code.0, 4101, "{close:?}");
    assert!(close.reason.contains("max_name_size"), "{close:?}");
    // A name at the limit is fine.
    let ok = server
        .client(json!({"name": "n".repeat(server.hub().config().max_name_size)}))
        .await;
    drop(ok);
    server.stop().await;
}
