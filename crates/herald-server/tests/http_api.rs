//! The HTTP API for backends (docs/protocol.md, "HTTP API"): every
//! endpoint's result and errors (4xx with a JSON `{"error": {code,
//! message}}` body), the API key, `/health` and `/metrics`.

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::*;

async fn post(server: &TestServer, path: &str, body: &str) -> HttpResponse {
    server.http("POST", path, &[], Some(body)).await
}

fn assert_json(r: &HttpResponse) {
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "JSON content type: {r:?}"
    );
}

/// Checks a 4xx API error: status, JSON body, error code.
fn assert_api_error(r: &HttpResponse, status: u16, code: u64) {
    assert_eq!(r.status, status, "{r:?}");
    assert_json(r);
    assert_eq!(r.error_code(), code, "{}", r.body);
}

#[tokio::test]
async fn publish_returns_offset_epoch_and_delivered() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    let epoch = c.subscribe("chat:api").await["epoch"].clone();

    let r = post(
        &server,
        "/api/publish",
        r#"{"channel": "chat:api", "data": {"x": 1}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_json(&r);
    assert_eq!(
        r.json(),
        json!({"offset": 1, "epoch": epoch, "delivered": 1})
    );
    assert_eq!(
        c.push().await,
        json!({"push": {"channel": "chat:api", "epoch": epoch, "pub": {"offset": 1, "data": {"x": 1}}}})
    );

    // The API may publish where clients may not.
    let r = post(
        &server,
        "/api/publish",
        r#"{"channel": "quotes:ACME", "data": 1}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["delivered"], 0);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn publish_errors_are_json() {
    let server = TestServer::start(config()).await;
    for bad in [
        "{",
        "",
        "[]",
        r#"{"channel": "chat:a"}"#,
        r#"{"data": 1}"#,
        r#"{"channel": "chat:a", "data": 1, "extra": 2}"#,
        r#"{"channel": 5, "data": 1}"#,
    ] {
        let r = post(&server, "/api/publish", bad).await;
        assert_api_error(&r, 400, 104);
    }
    for channel in ["nope:x", "chat:a b", ""] {
        let body = json!({"channel": channel, "data": 1}).to_string();
        let r = post(&server, "/api/publish", &body).await;
        assert_api_error(&r, 404, 102);
    }
    server.stop().await;
}

#[tokio::test]
async fn broadcast_publishes_to_every_channel_or_none() {
    let server = TestServer::start(config()).await;
    let mut a = server.named("A").await;
    let mut b = server.named("B").await;
    let ea = a.subscribe("chat:a").await["epoch"].clone();
    let eb = b.subscribe("chat:b").await["epoch"].clone();

    let r = post(
        &server,
        "/api/broadcast",
        r#"{"channels": ["chat:a", "chat:b"], "data": "hello"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_json(&r);
    assert_eq!(
        r.json(),
        json!({"results": [
            {"channel": "chat:a", "offset": 1, "epoch": ea, "delivered": 1},
            {"channel": "chat:b", "offset": 1, "epoch": eb, "delivered": 1},
        ]})
    );
    assert_eq!(a.publications("chat:a", 1).await[0]["data"], "hello");
    assert_eq!(b.publications("chat:b", 1).await[0]["data"], "hello");

    // One unknown name: 404, and nothing is published anywhere.
    let r = post(
        &server,
        "/api/broadcast",
        r#"{"channels": ["chat:a", "nope:x"], "data": "half"}"#,
    )
    .await;
    assert_api_error(&r, 404, 102);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope:x")
    );
    let h = a.ok("history", json!({"channel": "chat:a"})).await;
    assert_eq!(h["offset"], 1, "nothing published: {h}");

    for bad in [
        "{",
        r#"{"channels": "chat:a", "data": 1}"#,
        r#"{"channels": ["chat:a"]}"#,
    ] {
        assert_api_error(&post(&server, "/api/broadcast", bad).await, 400, 104);
    }
    drop((a, b));
    server.stop().await;
}

#[tokio::test]
async fn channels_lists_channels_with_their_subscriber_counts() {
    let server = TestServer::start(config()).await;
    let r = server.http("GET", "/api/channels", &[], None).await;
    assert_eq!((r.status, r.json()), (200, json!({"channels": []})));

    let mut a = server.named("A").await;
    let mut b = server.named("B").await;
    a.subscribe("chat:one").await;
    b.subscribe("chat:one").await;
    b.subscribe("chat:two").await;
    // History alone keeps a channel listed, with no subscribers.
    server.api_publish("chat:kept", json!(1)).await;

    let r = server.http("GET", "/api/channels", &[], None).await;
    assert_eq!(r.status, 200);
    assert_json(&r);
    let mut listed: Vec<(String, u64)> = r.json()["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap().to_owned(),
                c["subscribers"].as_u64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("chat:kept".to_owned(), 0),
            ("chat:one".to_owned(), 2),
            ("chat:two".to_owned(), 1)
        ]
    );
    drop((a, b));
    server.stop().await;
}

#[tokio::test]
async fn presence_lists_the_subscribers() {
    let server = TestServer::start(config()).await;
    let mut alice = server.named("Alice").await;
    alice.subscribe("chat:p").await;
    let r = server.http("GET", "/api/presence/chat:p", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_json(&r);
    assert_eq!(
        r.json(),
        json!({"clients": [{"client": alice.client, "user": "", "name": "Alice"}]})
    );
    let r = server
        .http("GET", "/api/presence/chat:empty", &[], None)
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"clients": []})));

    let r = server
        .http("GET", "/api/presence/quotes:ACME", &[], None)
        .await;
    assert_api_error(&r, 403, 103);
    let r = server.http("GET", "/api/presence/nope:x", &[], None).await;
    assert_api_error(&r, 404, 102);
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn history_returns_kept_publications() {
    let server = TestServer::start(config()).await;
    let mut epoch = json!(null);
    for i in 1..=3 {
        epoch = server.api_publish("chat:h", json!({"i": i})).await["epoch"].clone();
    }
    let r = server
        .http("GET", "/api/history/chat:h?limit=2", &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_json(&r);
    assert_eq!(
        r.json(),
        json!({"epoch": epoch, "offset": 3, "publications": [
            {"offset": 2, "data": {"i": 2}}, {"offset": 3, "data": {"i": 3}}
        ]})
    );
    let r = server.http("GET", "/api/history/chat:h", &[], None).await;
    assert_eq!(
        offsets(r.json()["publications"].as_array().unwrap()),
        [1, 2, 3]
    );

    let r = server.http("GET", "/api/history/nope:x", &[], None).await;
    assert_api_error(&r, 404, 102);
    server.stop().await;
}

#[tokio::test]
async fn history_with_a_bad_limit_is_a_json_400() {
    let server = TestServer::start(config()).await;
    server.api_publish("chat:h", json!(1)).await;
    let r = server
        .http("GET", "/api/history/chat:h?limit=abc", &[], None)
        .await;
    assert_api_error(&r, 400, 104);
    server.stop().await;
}

#[tokio::test]
async fn disconnect_closes_the_client_or_says_404() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    let r = post(
        &server,
        "/api/disconnect",
        &json!({"client": c.client}).to_string(),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert_json(&r);
    assert_eq!(c.closed().await.code.0, 4002);

    // A reason longer than a Close frame holds is cut, not lost.
    let mut c = server.named("C").await;
    let long = "why ".repeat(100);
    let body = json!({"client": c.client, "reason": long}).to_string();
    assert_eq!(post(&server, "/api/disconnect", &body).await.status, 200);
    let frame = c.closed().await;
    assert_eq!(frame.code.0, 4002);
    assert!(
        long.starts_with(&frame.reason) && !frame.reason.is_empty(),
        "{frame:?}"
    );

    for unknown in [r#"{"client": "999999"}"#, r#"{"client": "abc"}"#] {
        let r = post(&server, "/api/disconnect", unknown).await;
        assert_eq!(r.status, 404, "{r:?}");
        assert_json(&r);
        r.error_code();
    }
    assert_api_error(&post(&server, "/api/disconnect", "{").await, 400, 104);
    assert_api_error(
        &post(&server, "/api/disconnect", r#"{"client": 5}"#).await,
        400,
        104,
    );
    server.stop().await;
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let mut config = config();
    config.api_key = Some("k3y".into());
    let server = TestServer::start(config).await;
    let publish = r#"{"channel": "chat:k", "data": 1}"#;
    let broadcast = r#"{"channels": ["chat:k"], "data": 1}"#;
    let disconnect = r#"{"client": "999999"}"#;
    let endpoints: [(&str, &str, Option<&str>, u16); 6] = [
        ("POST", "/api/publish", Some(publish), 200),
        ("POST", "/api/broadcast", Some(broadcast), 200),
        ("GET", "/api/channels", None, 200),
        ("GET", "/api/presence/chat:k", None, 200),
        ("GET", "/api/history/chat:k", None, 200),
        // Authorized, then not found.
        ("POST", "/api/disconnect", Some(disconnect), 404),
    ];
    for (method, path, body, ok) in endpoints {
        let r = server.http(method, path, &[], body).await;
        assert_api_error(&r, 401, 101);
        for wrong in [
            "apikey nope",
            "apikey k3y2",
            "Bearer k3y",
            "k3y",
            "apikey K3Y",
        ] {
            let r = server
                .http(method, path, &[("Authorization", wrong)], body)
                .await;
            assert_api_error(&r, 401, 101);
        }
        let r = server
            .http(method, path, &[("Authorization", "apikey k3y")], body)
            .await;
        assert_eq!(r.status, ok, "{method} {path} with the key: {r:?}");
    }
    // /health and /metrics are not part of the API.
    assert_eq!(server.http("GET", "/health", &[], None).await.status, 200);
    assert_eq!(server.http("GET", "/metrics", &[], None).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn health_says_ok() {
    let server = TestServer::start(config()).await;
    let r = server.http("GET", "/health", &[], None).await;
    assert_eq!((r.status, r.body.trim()), (200, "ok"));
    server.stop().await;
}

/// The samples of an exposition by name (labels included).
fn samples(exposition: &str) -> HashMap<String, f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_exposition_is_well_formed() {
    let server = TestServer::start(config()).await;
    let r = server.http("GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 200);
    let content_type = r.header("content-type").unwrap_or_default().to_owned();
    // The body is OpenMetrics text (prometheus-client), served as such.
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    // Prometheus text format: "Only one TYPE line may exist for a given
    // metric name."
    let mut types = HashMap::new();
    for line in r.body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            *types.entry(name.to_owned()).or_insert(0) += 1;
        }
    }
    let repeated: Vec<_> = types.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "TYPE lines repeated: {repeated:?}\n{}",
        r.body
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_counters_are_present_and_move() {
    let server = TestServer::start(config()).await;
    let before = samples(&server.metrics().await);
    for name in [
        "herald_connections_opened_total",
        "herald_subscriptions",
        "herald_publications_total",
        "herald_messages_in_total",
        "herald_messages_out_total",
        "herald_bytes_in_total",
        "herald_bytes_out_total",
    ] {
        assert!(before.contains_key(name), "{name} missing: {before:?}");
    }

    let mut a = server.named("A").await;
    let mut b = server.named("B").await;
    a.subscribe("chat:m").await;
    b.subscribe("chat:m").await;
    for i in 0..3 {
        a.ok("publish", json!({"channel": "chat:m", "data": i}))
            .await;
    }
    b.publications("chat:m", 3).await;
    // A refused handshake.
    let refused = server
        .http(
            "GET",
            herald_server::WEBSOCKET_PATH,
            &upgrade_headers(&[("Origin", "http://evil.example")]),
            None,
        )
        .await;
    assert_eq!(refused.status, 403);

    let during = samples(&server.metrics().await);
    let delta = |name: &str| {
        during.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    assert_eq!(delta("herald_connections_opened_total"), 2.0);
    assert_eq!(during.get("herald_subscriptions"), Some(&2.0));
    assert_eq!(delta("herald_publications_total"), 3.0);
    // connect, subscribe, 3 publish from A; connect, subscribe from B.
    assert_eq!(delta("herald_messages_in_total"), 7.0);
    // 3 publications to 2 subscribers.
    assert_eq!(delta("herald_messages_out_total"), 6.0);
    assert!(delta("herald_bytes_in_total") > 0.0);
    assert!(delta("herald_bytes_out_total") > 0.0);
    assert_eq!(
        during.get(r#"herald_handshake_failures_total{reason="origin"}"#),
        Some(&1.0),
        "{during:?}"
    );
    // The open-connections gauge.
    let open = during
        .iter()
        .find(|(k, _)| *k == "herald_connections")
        .map(|(_, v)| *v);
    assert_eq!(open, Some(2.0), "open connections gauge: {during:?}");

    drop((a, b));
    eventually("the connections to close", || {
        server.hub().connection_count() == 0
    })
    .await;
    let after = samples(&server.metrics().await);
    assert_eq!(after.get("herald_subscriptions"), Some(&0.0));
    eventually("the gauge to drop", || {
        samples(&server.hub().metrics().encode()).get("herald_connections") == Some(&0.0)
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn channel_names_with_reserved_characters_work_percent_encoded() {
    // '/', ':' and '@' are allowed in channel names; in a path segment they
    // are percent-encoded (what encodeURIComponent produces).
    let server = TestServer::start(config()).await;
    let channel = "chat:room/7@eu";
    let mut c = server.named("C").await;
    c.subscribe(channel).await;
    server.api_publish(channel, json!(1)).await;
    let encoded = "chat%3Aroom%2F7%40eu";
    let r = server
        .http("GET", &format!("/api/history/{encoded}"), &[], None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["offset"], 1);
    let r = server
        .http("GET", &format!("/api/presence/{encoded}"), &[], None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["clients"][0]["client"], c.client);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_method_on_an_api_endpoint_is_a_json_4xx() {
    let server = TestServer::start(config()).await;
    for (method, path) in [
        ("GET", "/api/publish"),
        ("GET", "/api/broadcast"),
        ("GET", "/api/disconnect"),
        ("POST", "/api/channels"),
        ("DELETE", "/api/history/chat:a"),
    ] {
        let r = server.http(method, path, &[], None).await;
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
        assert_json(&r);
        r.error_code();
    }
    server.stop().await;
}
