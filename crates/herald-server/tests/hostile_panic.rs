//! A session that panics (here: in an endpoint it calls) is closed with
//! 1011, logged once, counted, and cleaned up like any other: no ghost in
//! presence, in `/api/channels`, in `herald_connections` or in the
//! `max_connections` count.
//!
//! Before: the task died with the panic, skipping the cleanup at the end
//! of the function; with `max_connections = 2`, two panics locked every
//! later client out with 503 while no socket was open.

mod support;

use std::sync::Arc;

use herald::CloseCode;
use herald_server::{Endpoint, Hub, Session};
use serde_json::json;
use serde_json::value::RawValue;
use support::*;

/// Panics on every client publication.
struct Faulty;

impl Endpoint for Faulty {
    fn on_message(&self, _: &Arc<Hub>, _: &Session, _: &str, _: &RawValue) {
        panic!("an endpoint bug");
    }
}

fn sample(server: &TestServer, name: &str) -> f64 {
    metric(&server.hub().metrics().encode(), name).unwrap_or(0.0)
}

async fn a_panicking_session_closes_with_1011_and_leaves_no_ghost() {
    let mut cfg = config();
    cfg.max_connections = 2;
    cfg.namespaces.insert(
        "faulty".into(),
        namespace(|ns| {
            ns.allow_publish = true;
            ns.presence = true;
        }),
    );
    let server = TestServer::start(cfg).await;
    server.server().set_endpoint("faulty", Arc::new(Faulty));
    for round in 0..2 {
        let mut c = server.named(&format!("victim{round}")).await;
        c.subscribe("faulty:room").await;
        c.subscribe("chat:room").await;
        let id = c
            .send("publish", json!({"channel": "faulty:room", "data": 1}))
            .await;
        let close = c.closed().await;
        assert_eq!(
            close.code,
            CloseCode::INTERNAL_ERROR,
            "publish {id}: {close:?}"
        );
        // The slot, the registry, presence and the gauge are all given back.
        eventually("the panicked session to be cleaned up", || {
            server.hub().connection_count() == 0
        })
        .await;
        let r = server
            .http(
                "POST",
                "/api/disconnect",
                &[],
                Some(&json!({"client": c.client}).to_string()),
            )
            .await;
        assert_eq!(r.status, 404, "a ghost answered disconnect: {}", r.body);
    }
    assert_eq!(
        server
            .http("GET", "/api/presence/faulty:room", &[], None)
            .await
            .json()["clients"],
        json!([])
    );
    assert_eq!(
        server.http("GET", "/api/channels", &[], None).await.json()["channels"],
        json!([])
    );
    assert_eq!(sample(&server, "herald_connections"), 0.0);
    assert_eq!(sample(&server, "herald_session_panics_total"), 2.0);
    assert_eq!(
        sample(&server, r#"herald_closes_total{code="1011",by="server"}"#),
        2.0
    );
    // Two panics with max_connections = 2: both slots are free again.
    let mut a = server.named("after1").await;
    let mut b = server.named("after2").await;
    a.ok("ping", json!({})).await;
    b.ok("ping", json!({})).await;
    drop((a, b));
    server.stop().await;
}

crate::on_1_and_2_threads!(a_panicking_session_closes_with_1011_and_leaves_no_ghost);
