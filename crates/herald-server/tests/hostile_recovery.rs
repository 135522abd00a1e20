//! Recovery for a channel that went empty: its epoch and offset outlive
//! the last subscriber (`channel_meta_ttl`), so a personal channel's first
//! notification, published while its only subscriber was away, is
//! recovered on reconnect.
//!
//! Before: the channel was dropped with its last subscriber and came back
//! with a new epoch, so the client got `recovered: false` and an empty
//! list although the publication was in history.

mod support;

use serde_json::json;
use support::*;

async fn a_channel_left_empty_keeps_its_epoch_and_recovers() {
    let server = TestServer::start(config()).await;
    let mut a = server.named("A").await;
    let sub = a.subscribe("chat:user-a").await;
    let (epoch, offset) = (sub["epoch"].clone(), sub["offset"].clone());
    drop(a);
    eventually("A to be gone", || server.hub().connection_count() == 0).await;
    server.api_publish("chat:user-a", json!({"note": 1})).await;
    let mut a = server.named("A again").await;
    let result = a
        .ok(
            "subscribe",
            json!({"channel": "chat:user-a", "recover": true, "epoch": epoch, "offset": offset}),
        )
        .await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(result["epoch"], epoch, "{result}");
    assert_eq!(offsets(result["publications"].as_array().unwrap()), [1]);
    drop(a);
    server.stop().await;
}

async fn nothing_missed_on_an_empty_channel_is_a_recovery_not_an_alert() {
    // The chat demo, alone in a room, offline then online, nothing sent:
    // the client must hear "recovered", not "messages could not be
    // recovered".
    let server = TestServer::start(config()).await;
    let mut a = server.named("A").await;
    let sub = a.subscribe("chat:quiet").await;
    drop(a);
    eventually("A to be gone", || server.hub().connection_count() == 0).await;
    let mut a = server.named("A again").await;
    let result = a
        .ok(
            "subscribe",
            json!({"channel": "chat:quiet", "recover": true, "epoch": sub["epoch"], "offset": 0}),
        )
        .await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(result["epoch"], sub["epoch"], "{result}");
    drop(a);
    server.stop().await;
}

crate::on_1_and_2_threads!(
    a_channel_left_empty_keeps_its_epoch_and_recovers,
    nothing_missed_on_an_empty_channel_is_a_recovery_not_an_alert,
);
