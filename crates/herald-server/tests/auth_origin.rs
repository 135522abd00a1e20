//! At the door: connection tokens (JWT HS256; every algorithm and check in
//! hostile_tokens.rs), the Origin allowlist and
//! the connection limit.

mod support;

use herald_server::{Claims, WEBSOCKET_PATH, sign_token, unix_now};
use serde_json::json;
use support::*;

const SECRET: &[u8] = b"s3cret";

fn secured() -> herald_server::ServerConfig {
    let mut config = config();
    config.token_secret = Some(String::from_utf8(SECRET.to_vec()).unwrap());
    config
}

fn token(claims: Claims) -> String {
    sign_token(&claims, SECRET)
}

/// Sends `connect` with `params` and expects the server to close.
async fn refused_connect(server: &TestServer, params: serde_json::Value) -> herald::CloseFrame {
    let mut ws = open(&server.url()).await;
    send_text(&mut ws, json!({"id": 1, "connect": params}).to_string()).await;
    let frame = closed(&mut ws).await;
    assert_eq!(frame.code.0, 4100, "connect {params}: {frame:?}");
    frame
}

#[tokio::test]
async fn a_token_is_required_when_a_secret_is_set() {
    let server = TestServer::start(secured()).await;
    refused_connect(&server, json!({})).await;
    refused_connect(&server, json!({"name": "Mallory"})).await;
    assert_eq!(server.hub().connection_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn invalid_tokens_are_closed_with_4100() {
    let server = TestServer::start(secured()).await;
    let expired = token(Claims {
        sub: "alice".into(),
        // Past the default 30 s leeway for clock skew.
        exp: Some(unix_now() - 60),
        ..Default::default()
    });
    refused_connect(&server, json!({ "token": expired })).await;

    let other_secret = sign_token(
        &Claims {
            sub: "alice".into(),
            ..Default::default()
        },
        b"not the secret",
    );
    refused_connect(&server, json!({ "token": other_secret })).await;

    // "alg": "none" with the payload of a valid token and no signature.
    let valid = token(Claims {
        sub: "alice".into(),
        ..Default::default()
    });
    let payload = valid.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    refused_connect(&server, json!({ "token": none })).await;

    refused_connect(&server, json!({"token": "garbage"})).await;
    refused_connect(&server, json!({"token": ""})).await;
    server.stop().await;
}

#[tokio::test]
async fn a_valid_token_names_the_user_and_limits_the_channels() {
    let server = TestServer::start(secured()).await;
    let t = token(Claims {
        sub: "alice".into(),
        exp: Some(unix_now() + 3600),
        channels: Some(vec!["chat:mine".into(), "quotes:*".into()]),
        name: Some("Alice".into()),
        ..Default::default()
    });
    // The token's name wins over connect's.
    let mut c = server.client(json!({"token": t, "name": "Ignored"})).await;
    let info = json!({"client": c.client, "user": "alice", "name": "Alice"});

    c.subscribe("chat:mine").await;
    c.subscribe("quotes:ACME").await;
    assert_eq!(
        c.error("subscribe", json!({"channel": "chat:other"})).await,
        103
    );
    assert_eq!(
        c.error("subscribe", json!({"channel": "chat:mine2"})).await,
        103
    );
    assert_eq!(
        c.error("publish", json!({"channel": "chat:other", "data": 1}))
            .await,
        103
    );
    assert_eq!(
        c.error("presence", json!({"channel": "chat:other"})).await,
        103
    );
    assert_eq!(
        c.error("history", json!({"channel": "chat:other"})).await,
        103
    );

    c.ok("publish", json!({"channel": "chat:mine", "data": "hi"}))
        .await;
    assert_eq!(c.publications("chat:mine", 1).await[0]["info"], info);
    assert_eq!(
        c.ok("presence", json!({"channel": "chat:mine"})).await,
        json!({"clients": [info]})
    );
    drop(c);

    // No channels claim: every channel; no exp: no expiry.
    let t = token(Claims {
        sub: "bob".into(),
        ..Default::default()
    });
    let mut c = server.client(json!({ "token": t })).await;
    c.subscribe("chat:other").await;
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn dev_mode_ignores_tokens() {
    let server = TestServer::start(config()).await;
    let mut c = server
        .client(json!({"token": "not even a JWT", "name": "Dev"}))
        .await;
    c.ok("publish", json!({"channel": "chat:any", "data": 1}))
        .await;
    c.subscribe("chat:any").await;
    assert_eq!(
        c.ok("presence", json!({"channel": "chat:any"})).await,
        json!({"clients": [{"client": c.client, "user": "", "name": "Dev"}]})
    );
    drop(c);
    server.stop().await;
}

// ----- Origin ------------------------------------------------------------------

/// A raw upgrade request with `origin`; returns the response.
async fn upgrade_with_origin(server: &TestServer, origin: Option<&str>) -> HttpResponse {
    let extra: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    server
        .http("GET", WEBSOCKET_PATH, &upgrade_headers(&extra), None)
        .await
}

/// A browser-like client from `origin` completes the upgrade and `connect`.
async fn connects_from(server: &TestServer, origin: &str) {
    let (mut ws, _) = within(
        "handshake",
        herald::Client::new(server.url()).origin(origin).connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("Origin {origin} refused: {e}"));
    send_text(&mut ws, r#"{"id": 1, "connect": {}}"#).await;
    let reply = recv_json(&mut ws).await.expect("reply");
    assert!(reply["result"]["client"].is_string(), "{reply}");
}

#[tokio::test]
async fn a_page_from_another_site_is_refused_with_403() {
    let server = TestServer::start(config()).await;
    let r = upgrade_with_origin(&server, Some("http://evil.example")).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!r.body.trim().is_empty(), "a one-line reason: {r:?}");
    assert!(!r.body.trim().contains('\n'), "one line: {:?}", r.body);
    // The same port on another host name is another origin too.
    let r = upgrade_with_origin(
        &server,
        Some(&format!("http://localhost:{}", server.addr.port())),
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    // The herald client reports the refusal.
    let refused = herald::Client::new(server.url())
        .origin("https://evil.example")
        .connect()
        .await;
    assert!(refused.is_err(), "cross-origin upgrade refused");
    server.stop().await;
}

#[tokio::test]
async fn same_origin_listed_origins_and_no_origin_are_accepted() {
    let mut config = config();
    config.allowed_origins = vec!["https://app.example".into()];
    let server = TestServer::start(config).await;
    connects_from(&server, &format!("http://{}", server.addr)).await;
    connects_from(&server, "https://app.example").await;
    // Not a browser: no Origin at all.
    let r = upgrade_with_origin(&server, None).await;
    assert_eq!(r.status, 101, "{r:?}");
    let c = server.named("no origin").await;
    drop(c);
    // Listing one origin does not open the door to others.
    let r = upgrade_with_origin(&server, Some("https://other.example")).await;
    assert_eq!(r.status, 403, "{r:?}");
    server.stop().await;
}

// ----- connection limit --------------------------------------------------------

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_503() {
    let mut config = config();
    config.max_connections = 2;
    let server = TestServer::start(config).await;
    let a = server.named("a").await;
    let b = server.named("b").await;
    let r = upgrade_with_origin(&server, None).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(!r.body.trim().is_empty(), "a one-line reason: {r:?}");
    // The limit is on WebSocket connections: the API still answers.
    let r = server.http("GET", "/health", &[], None).await;
    assert_eq!(r.status, 200);

    // A place frees up when a connection ends.
    drop(a);
    eventually("a connection to end", || {
        server.hub().connection_count() == 1
    })
    .await;
    let mut c = None;
    within("a new connection to be accepted", async {
        loop {
            match herald::Client::new(server.url()).connect().await {
                Ok((ws, _)) => break c = Some(ws),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    drop((b, c));
    server.stop().await;
}
