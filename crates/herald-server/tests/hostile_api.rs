//! The HTTP API's door: a cross-site page cannot drive it, bodies are
//! JSON and bounded, loopback trust is for the zero-config dev mode only,
//! and `demos = false` serves no demo page.
//!
//! Before: a page on any site could POST `text/plain` (which a browser
//! sends without a preflight) to a local server's `/api/publish` and it
//! was published; the body limit answered with plain text; a channel
//! listed twice in a broadcast was published twice; demo pages were
//! served with `demos = false`; and with `token_secret` set but no
//! `api_key`, any local process (or a same-host reverse proxy) could use
//! the API.

mod support;

use serde_json::json;
use support::*;

fn post(path: &str, headers: &[(&str, &str)], body: &str, addr: std::net::SocketAddr) -> String {
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    request
}

async fn a_cross_site_page_cannot_use_the_api() {
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://app.example".into()];
    let server = TestServer::start(cfg).await;
    let body = json!({"channel": "chat:x", "data": 1}).to_string();
    // A simple cross-site request, as a browser sends it unasked.
    let r = http_raw(
        server.addr,
        &post(
            "/api/publish",
            &[
                ("Origin", "https://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            &body,
            server.addr,
        ),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("origin"), "{}", r.body);
    // Reading is refused too.
    let r = server
        .http(
            "GET",
            "/api/channels",
            &[("Origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (403, 103), "{}", r.body);
    // A listed origin, and the server's own, are let through.
    let own = format!("http://{}", server.addr);
    for origin in ["https://app.example", own.as_str()] {
        let r = server
            .http("POST", "/api/publish", &[("Origin", origin)], Some(&body))
            .await;
        assert_eq!(r.status, 200, "{origin}: {}", r.body);
    }
    // Nothing was published by the refused request.
    let h = server.http("GET", "/api/history/chat:x", &[], None).await;
    assert_eq!(h.json()["offset"], 2, "{}", h.body);
    server.stop().await;
}

async fn api_bodies_must_be_json() {
    let server = TestServer::start(config()).await;
    let body = json!({"channel": "chat:x", "data": 1}).to_string();
    for headers in [
        &[("Content-Type", "text/plain")][..],
        &[("Content-Type", "application/x-www-form-urlencoded")][..],
        &[][..],
    ] {
        for path in ["/api/publish", "/api/broadcast", "/api/disconnect"] {
            let r = http_raw(server.addr, &post(path, headers, &body, server.addr)).await;
            assert_eq!(r.status, 415, "{path} {headers:?}: {}", r.body);
            assert_eq!(r.error_code(), 104, "{}", r.body);
            assert!(r.body.contains("application/json"), "{}", r.body);
        }
    }
    let r = http_raw(
        server.addr,
        &post(
            "/api/publish",
            &[("Content-Type", "application/json; charset=utf-8")],
            &body,
            server.addr,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop().await;
}

async fn an_oversized_body_gets_413_json() {
    let mut cfg = config();
    cfg.api_max_body_size = 1000;
    let server = TestServer::start(cfg).await;
    let body = json!({"channel": "chat:x", "data": "x".repeat(2000)}).to_string();
    let r = server.http("POST", "/api/publish", &[], Some(&body)).await;
    assert_eq!((r.status, r.error_code()), (413, 109), "{}", r.body);
    assert!(r.body.contains("api_max_body_size"), "{}", r.body);
    // Chunked, with no length declared up front.
    let chunk = "x".repeat(2000);
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n",
        server.addr,
        chunk.len()
    );
    let r = http_raw(server.addr, &request).await;
    assert_eq!((r.status, r.error_code()), (413, 109), "{}", r.body);
    server.stop().await;
}

async fn a_channel_listed_twice_is_published_once() {
    let server = TestServer::start(config()).await;
    let body = json!({"channels": ["chat:a", "chat:b", "chat:a"], "data": 1}).to_string();
    let r = server
        .http("POST", "/api/broadcast", &[], Some(&body))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.json()["results"].clone();
    assert_eq!(results.as_array().map(Vec::len), Some(2), "{results}");
    let h = server.http("GET", "/api/history/chat:a", &[], None).await;
    assert_eq!(h.json()["offset"], 1, "{}", h.body);
    server.stop().await;
}

async fn loopback_trust_is_for_dev_mode_only() {
    let mut cfg = config();
    cfg.token_secret = Some("0123456789abcdef0123456789abcdef".into());
    let server = TestServer::start(cfg).await;
    let r = server.http("GET", "/api/channels", &[], None).await;
    assert_eq!((r.status, r.error_code()), (401, 101), "{}", r.body);
    assert!(r.body.contains("api_key"), "{}", r.body);
    server.stop().await;
}

async fn no_demo_pages_without_demos() {
    let mut cfg = config();
    cfg.demos = false;
    let server = TestServer::start(cfg).await;
    for path in ["/", "/demo/chat", "/demo/quotes", "/demo/game"] {
        let r = server.http("GET", path, &[], None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    // The client library is not a demo.
    assert_eq!(
        server.http("GET", "/herald.js", &[], None).await.status,
        200
    );
    server.stop().await;

    let mut cfg = config();
    cfg.demos = true;
    let server = TestServer::start(cfg).await;
    assert_eq!(
        server.http("GET", "/demo/chat", &[], None).await.status,
        200
    );
    server.stop().await;
}

/// On the paused clock: the server's body deadline is the next timer,
/// so tokio moves time to it once both sides wait.
#[tokio::test(start_paused = true)]
async fn a_body_that_stops_halfway_gets_408_json() {
    let mut cfg = config();
    cfg.http_body_timeout = std::time::Duration::from_secs(5);
    let server = TestServer::start(cfg).await;
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"channel\":",
        server.addr
    );
    let r = http_raw(server.addr, &request).await;
    assert_eq!((r.status, r.error_code()), (408, 104), "{}", r.body);
    assert!(r.body.contains("http_body_timeout"), "{}", r.body);
    server.stop().await;
}

crate::on_1_and_2_threads!(
    a_cross_site_page_cannot_use_the_api,
    api_bodies_must_be_json,
    an_oversized_body_gets_413_json,
    a_channel_listed_twice_is_published_once,
    loopback_trust_is_for_dev_mode_only,
    no_demo_pages_without_demos,
);
