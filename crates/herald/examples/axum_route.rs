//! A WebSocket route next to ordinary routes in an axum app.
//!
//! ```text
//! cargo run -p herald --features hyper --example axum_route [ADDR]
//! curl http://127.0.0.1:3000/health          # ok
//! herald connect ws://127.0.0.1:3000/ws      # echoes what you type
//! ```
//!
//! The handler takes the whole request, lets [`Acceptor::upgrade_with`]
//! answer it, and returns that answer; the WebSocket runs in a task of
//! its own once axum has sent the 101.

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald::{Acceptor, Config, Reject, Upgrade};

/// `GET /ws`: a WebSocket echo, with subprotocol `echo` if offered. Pages
/// from other sites may not connect (RFC 6455 10.2); clients that are not
/// browsers send no `Origin`.
async fn ws(State(acceptor): State<Acceptor>, mut req: Request) -> Response {
    let hook = |r: &herald::Request| {
        if r.origin()
            .is_some_and(|o| o.strip_prefix("http://") != Some(r.host()))
        {
            return Err(Reject::new(403, "origin not allowed"));
        }
        let mut upgrade = Upgrade::new();
        if r.protocols().any(|p| p == "echo") {
            upgrade = upgrade.protocol("echo");
        }
        Ok(upgrade)
    };
    let (response, upgrading) = match acceptor.upgrade_with(&mut req, hook) {
        Ok(accepted) => accepted,
        // 4xx with a one-line reason: a plain GET learns it must upgrade.
        Err(refusal) => return refusal.into_response(),
    };
    tokio::spawn(async move {
        let mut ws = match upgrading.await {
            Ok(ws) => ws,
            Err(e) => return eprintln!("upgrade failed: {e}"),
        };
        while let Some(Ok(msg)) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
        if let Some(frame) = ws.close_frame() {
            eprintln!("closed: {} {}", frame.code, frame.reason);
        }
    });
    response.into_response()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:3000".into());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ws", get(ws))
        .with_state(Acceptor::new(Config::default()));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    // axum::serve allows upgrades on every connection.
    axum::serve(listener, app).await
}
