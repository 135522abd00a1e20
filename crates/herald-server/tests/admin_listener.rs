//! `admin_listen`: the API, `/metrics` and `/health` on a listener of
//! their own; the public listener keeps the WebSocket endpoint, the demos
//! and `/health`, and answers 404 for `/api/*` and `/metrics`. Unset,
//! everything is on one port (the other tests).

mod support;

use serde_json::json;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test]
async fn the_api_and_metrics_move_to_the_admin_listener() {
    let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (public_addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let server = herald_server::Server::new(config());
    let task = tokio::spawn(server.serve_with_admin(public, Some(admin), async move {
        let _ = rx.await;
    }));

    let body = json!({"channel": "chat:a", "data": 1}).to_string();
    // Public: no API, no metrics; health and the WebSocket endpoint stay.
    let r = http(public_addr, "POST", "/api/publish", &[], Some(&body)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        http(public_addr, "GET", "/metrics", &[], None).await.status,
        404
    );
    assert_eq!(
        http(public_addr, "GET", "/health", &[], None).await.status,
        200
    );
    let url = format!("ws://{public_addr}{}", herald_server::WEBSOCKET_PATH);
    let mut client = Conn::connect(&url, json!({"name": "a"})).await;
    client.subscribe("chat:a").await;

    // Admin: the API reaches the public listener's clients.
    let r = http(admin_addr, "POST", "/api/publish", &[], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(client.publications("chat:a", 1).await[0]["data"], 1);
    let metrics = http(admin_addr, "GET", "/metrics", &[], None).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(metric(&metrics.body, "herald_connections"), Some(1.0));
    assert_eq!(
        http(admin_addr, "GET", "/health", &[], None).await.status,
        200
    );
    // No WebSocket endpoint, no demos on the admin listener.
    let r = http(
        admin_addr,
        "GET",
        herald_server::WEBSOCKET_PATH,
        &upgrade_headers(&[]),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        http(admin_addr, "GET", "/demo/chat", &[], None)
            .await
            .status,
        404
    );

    drop(client);
    let _ = tx.send(());
    within("serve() to return", task)
        .await
        .expect("serve task")
        .expect("serve() returns Ok");
    // Both listeners are closed.
    assert!(tokio::net::TcpStream::connect(admin_addr).await.is_err());
    assert!(tokio::net::TcpStream::connect(public_addr).await.is_err());
}
