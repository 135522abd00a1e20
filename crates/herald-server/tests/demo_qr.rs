//! The QR-code login demo's backend (`/demo/qr-login/*`): a login id, a
//! private channel, a one-time code pushed on confirm, exchanged once.
//! The page itself runs in Chromium (web/tests/demos.mjs, `qr_*`).

mod support;

use serde_json::{Value, json};
use support::*;

async fn post(server: &TestServer, path: &str, body: Value) -> HttpResponse {
    server
        .http("POST", path, &[], Some(&body.to_string()))
        .await
}

fn demo_config() -> herald_server::ServerConfig {
    let mut c = config();
    c.demos = true;
    c
}

#[tokio::test]
async fn confirm_pushes_a_one_time_code_that_logs_in_once() {
    let server = TestServer::start(demo_config()).await;
    let new = post(&server, "/demo/qr-login/new", json!({})).await;
    assert_eq!(new.status, 200, "{}", new.body);
    let login = new.json();
    let (id, channel) = (
        login["id"].as_str().unwrap(),
        login["channel"].as_str().unwrap(),
    );
    assert!(channel.starts_with("qr:"), "{login}");
    assert!(
        !channel.contains(id),
        "the channel is not derived from the id"
    );
    assert_eq!(login["phone"], format!("/demo/qr-login/phone?id={id}"));
    assert!(login.get("token").is_none(), "dev mode needs no token");

    let mut desk = server.named("desk").await;
    desk.subscribe(channel).await;

    let scan = post(&server, "/demo/qr-login/scan", json!({"id": id})).await;
    assert_eq!(scan.status, 200, "{}", scan.body);
    let confirm = json!({"id": id, "user": "alice"});
    assert_eq!(
        post(&server, "/demo/qr-login/confirm", confirm.clone())
            .await
            .status,
        200
    );
    // Confirmed once: a second phone cannot overwrite the code.
    assert_eq!(
        post(&server, "/demo/qr-login/confirm", confirm)
            .await
            .status,
        409
    );

    let pubs = desk.publications(channel, 2).await;
    assert_eq!(pubs[0]["data"], json!({"event": "scanned"}));
    let confirmed = &pubs[1]["data"];
    assert_eq!(confirmed["event"], "confirmed");
    assert_eq!(confirmed["user"], "alice");
    let code = confirmed["code"].as_str().expect("a code").to_owned();
    assert_eq!(code.len(), 32);

    let wrong = post(
        &server,
        "/demo/qr-login/exchange",
        json!({"id": id, "code": "0".repeat(32)}),
    )
    .await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let exchange = json!({"id": id, "code": code});
    let ok = post(&server, "/demo/qr-login/exchange", exchange.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["user"], "alice");
    assert!(ok.json()["ms_since_confirm"].as_f64().unwrap() >= 0.0);
    // Spent: the same code, or a scan of the old QR code, finds nothing.
    assert_eq!(
        post(&server, "/demo/qr-login/exchange", exchange)
            .await
            .status,
        404
    );
    assert_eq!(
        post(&server, "/demo/qr-login/scan", json!({"id": id}))
            .await
            .status,
        404
    );
    drop(desk);
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let server = TestServer::start(demo_config()).await;
    let unknown = post(
        &server,
        "/demo/qr-login/confirm",
        json!({"id": "nope", "user": "a"}),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], 104);
    let id = post(&server, "/demo/qr-login/new", json!({})).await.json()["id"].clone();
    let empty = post(
        &server,
        "/demo/qr-login/confirm",
        json!({"id": id, "user": " "}),
    )
    .await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    let long = post(
        &server,
        "/demo/qr-login/confirm",
        json!({"id": id, "user": "x".repeat(65)}),
    )
    .await;
    assert_eq!(long.status, 400, "{}", long.body);
    let extra = post(&server, "/demo/qr-login/scan", json!({"id": id, "x": 1})).await;
    assert_eq!(extra.status, 422, "{}", extra.body);
    server.stop().await;
}

#[tokio::test]
async fn a_token_server_hands_out_a_token_for_the_login_channel_only() {
    let mut c = demo_config();
    c.token_secret = Some("qr-demo-secret-qr-demo-secret-0123".into());
    let server = TestServer::start(c).await;
    let login = post(&server, "/demo/qr-login/new", json!({})).await.json();
    let channel = login["channel"].as_str().unwrap();
    let token = login["token"].as_str().expect("a token");
    let mut desk = server.client(json!({"token": token})).await;
    desk.subscribe(channel).await;
    assert_eq!(
        desk.error("subscribe", json!({"channel": "qr:other"}))
            .await,
        103
    );
    drop(desk);
    server.stop().await;
}
