//! permessage-deflate in the push server (`deflate`): `shared` (the
//! default) agrees no context takeover either way, so a publication is
//! compressed once and its frame shared by every subscriber that offered
//! deflate; `per_connection` keeps context takeover; `off` agrees nothing.

mod support;

use herald::{DeflateConfig, MaybeTlsStream, WebSocket};
use herald_server::{DeflateMode, WEBSOCKET_PATH};
use serde_json::json;
use support::*;

const OFFER: &str = "permessage-deflate; client_max_window_bits";

async fn agreed(mode: DeflateMode) -> Option<String> {
    let mut cfg = config();
    cfg.deflate = mode;
    let server = TestServer::start(cfg).await;
    let r = server
        .http(
            "GET",
            WEBSOCKET_PATH,
            &upgrade_headers(&[("Sec-WebSocket-Extensions", OFFER)]),
            None,
        )
        .await;
    assert_eq!(r.status, 101, "{}", r.body);
    let agreed = r.header("sec-websocket-extensions").map(str::to_owned);
    server.stop().await;
    agreed
}

#[tokio::test]
async fn each_mode_answers_the_offer_its_way() {
    assert_eq!(
        agreed(DeflateMode::Shared).await.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let per_connection = agreed(DeflateMode::PerConnection).await.unwrap_or_default();
    assert!(
        per_connection.starts_with("permessage-deflate")
            && !per_connection.contains("no_context_takeover"),
        "{per_connection}"
    );
    assert_eq!(agreed(DeflateMode::Off).await, None);
}

/// A client that offers deflate and completes `connect`.
async fn deflate_client(server: &TestServer) -> WebSocket<MaybeTlsStream> {
    let (mut ws, _) = within(
        "WebSocket handshake",
        herald::Client::new(server.url())
            .deflate(DeflateConfig::default())
            .connect(),
    )
    .await
    .expect("handshake");
    assert!(ws.is_compressed(), "deflate agreed");
    send_text(&mut ws, json!({"id": 1, "connect": {}}).to_string()).await;
    recv_json(&mut ws).await.expect("connect reply");
    send_text(
        &mut ws,
        json!({"id": 2, "subscribe": {"channel": "news:z"}}).to_string(),
    )
    .await;
    recv_json(&mut ws).await.expect("subscribe reply");
    ws
}

#[tokio::test]
async fn one_shared_compressed_publication_reaches_every_subscriber_intact() {
    let mut cfg = config();
    cfg.namespaces
        .insert("news".into(), namespace(|ns| ns.history_size = 10));
    let server = TestServer::start(cfg).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(deflate_client(&server).await);
    }
    // And one that offers nothing: the plain frame of the same message.
    let mut plain = server.named("plain").await;
    plain.subscribe("news:z").await;
    let text = "the same words again and again, ".repeat(64);
    for i in 0..3 {
        server
            .api_publish("news:z", json!({"i": i, "text": text}))
            .await;
    }
    for ws in &mut clients {
        for i in 0..3 {
            let push = recv_json(ws).await.expect("a publication");
            assert_eq!(push["push"]["pub"]["data"], json!({"i": i, "text": text}));
        }
    }
    let pubs = plain.publications("news:z", 3).await;
    assert_eq!(pubs[2]["data"]["i"], 2);
    drop((clients, plain));
    server.stop().await;
}
