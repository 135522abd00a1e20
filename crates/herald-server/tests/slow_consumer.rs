//! Slow consumers: a peer that stops reading. Its connection's outgoing
//! queue is bounded, and when it is full the namespace's policy decides:
//! `disconnect` (close 4001), `drop_oldest`, or `latest` (keep the newest
//! per channel). The peer is a raw WebSocket client whose reads the test
//! controls, with a small receive buffer so the server backs up quickly.
//! Publications go in through the hub, paced, until the server reports a
//! drop.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_server::{Hub, QueuePolicy};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::*;
use tokio::sync::mpsc;

/// Big enough that a few fill the socket buffers.
const PAYLOAD: usize = 16 << 10;
/// Bound on publications before the server must have reported a drop.
const MAX_PUBLICATIONS: u64 = 4000;

fn payload(channel: &str, n: u64) -> Box<RawValue> {
    let data = json!({"channel": channel, "n": n, "pad": "x".repeat(PAYLOAD)});
    RawValue::from_string(data.to_string()).expect("JSON")
}

/// Drops under `policy`: messages for drop_oldest and latest, clients
/// closed for disconnect.
fn drops(hub: &Hub, policy: &str) -> f64 {
    let name = match policy {
        "disconnect" => "herald_slow_consumer_disconnects_total".to_owned(),
        _ => format!("herald_queue_drops_total{{policy=\"{policy}\"}}"),
    };
    metric(&hub.metrics().encode(), &name).unwrap_or(0.0)
}

/// A raw client that completed `connect` and subscribed to `channels`.
async fn stalled_client(server: &TestServer, channels: &[&str]) -> (RawWs, String) {
    let mut raw = RawWs::connect(server.addr, Some(4096)).await;
    let reply = raw.command(1, "connect", json!({"name": "slow"})).await;
    let client = reply["result"]["client"]
        .as_str()
        .expect("client")
        .to_owned();
    for (i, channel) in channels.iter().enumerate() {
        raw.command(2 + i as u32, "subscribe", json!({ "channel": channel }))
            .await;
    }
    (raw, client)
}

/// Publishes round-robin over `channels`, paced, until `policy` has a drop
/// and then `extra` more; returns the last offset per channel.
async fn publish_until_drop(
    hub: &Hub,
    channels: &[&str],
    policy: &str,
    extra: u64,
) -> HashMap<String, u64> {
    let mut top = HashMap::new();
    let mut after = None;
    for i in 0.. {
        assert!(
            i < MAX_PUBLICATIONS,
            "no {policy} drop after {MAX_PUBLICATIONS} publications"
        );
        let channel = channels[i as usize % channels.len()];
        let n = top.get(channel).copied().unwrap_or(0) + 1;
        let p = hub
            .publish(channel, payload(channel, n), None)
            .await
            .expect("publish");
        assert_eq!(p.offset, n);
        top.insert(channel.to_owned(), n);
        if after.is_none() && i % 4 == 0 && drops(hub, policy) > 0.0 {
            after = Some(i);
        }
        if after.is_some_and(|a| i >= a + extra) {
            break;
        }
        // A publisher paced like a real feed; a reading subscriber keeps up.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    top
}

/// Offsets per channel of publication pushes, checking each push's data.
fn record(pushes: &mut HashMap<String, Vec<u64>>, push: &Value) {
    let channel = push["push"]["channel"].as_str().expect("channel");
    let publication = &push["push"]["pub"];
    let offset = publication["offset"].as_u64().expect("offset");
    assert_eq!(publication["data"]["n"], offset, "data matches offset");
    assert_eq!(publication["data"]["channel"], channel);
    pushes.entry(channel.to_owned()).or_default().push(offset);
}

/// Sends `ping` as command `id` and reads up to its reply, recording the
/// publications before it. Replies queue behind what is already queued, so
/// everything published before the ping is read by then, whatever the
/// server's wakeups (see fanout.rs for a burst that must flow unprompted).
async fn ping_and_read_up_to_reply(
    raw: &mut RawWs,
    id: u32,
    pushes: &mut HashMap<String, Vec<u64>>,
) {
    raw.send_text(&json!({"id": id, "ping": {}}).to_string())
        .await;
    loop {
        let m = raw.read_json().await;
        if m.get("push").is_some() {
            record(pushes, &m);
            continue;
        }
        assert_eq!(m, json!({"id": id, "result": {}}), "the ping's reply");
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_policy_closes_the_slow_consumer_with_4001_and_others_keep_up() {
    let mut config = config();
    // Room for the healthy reader to lag a little on a busy machine (64
    // publications, 64 ms at the publishing pace).
    config
        .namespaces
        .insert("slow".into(), small_queue(64, QueuePolicy::Disconnect));
    let server = TestServer::start(config).await;
    let hub = server.hub().clone();
    let (mut raw, _) = stalled_client(&server, &["slow:feed"]).await;

    // A healthy subscriber reading as fast as it can, in its own task; told
    // the last offset at the end, it pings and reads up to the reply.
    let mut healthy = server.named("healthy").await;
    healthy.subscribe("slow:feed").await;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let reader = tokio::spawn(async move {
        let mut pushes = HashMap::new();
        loop {
            tokio::select! {
                m = healthy.recv() => record(&mut pushes, &m),
                _ = done_rx.recv() => break,
            }
        }
        let id = healthy.send("ping", json!({})).await;
        healthy.reply(id).await;
        while let Some(p) = healthy.pushes.pop_front() {
            record(&mut pushes, &p);
        }
        (healthy, pushes)
    });

    let top = publish_until_drop(&hub, &["slow:feed"], "disconnect", 20).await["slow:feed"];
    // Once the slow consumer is cut off, publications reach the healthy one
    // only.
    let p = hub
        .publish("slow:feed", payload("slow:feed", top + 1), None)
        .await
        .expect("publish");
    assert_eq!(
        p.delivered, 1,
        "queued for the healthy subscriber only (0: it was cut off as well)"
    );
    let top = top + 1;

    // The healthy subscriber got everything, in order.
    done_tx.send(()).expect("reader alive");
    let (healthy, healthy_pushes) = within("the healthy subscriber", reader)
        .await
        .expect("reader");
    assert_eq!(healthy_pushes["slow:feed"], (1..=top).collect::<Vec<_>>());

    // The slow one, reading again, finds what fitted in the pipes, without
    // a gap, then the 4001 Close.
    let mut slow_pushes = HashMap::new();
    let (code, reason) = loop {
        match raw.read_frame().await {
            RawFrame::Text(t) => record(&mut slow_pushes, &serde_json::from_str(&t).unwrap()),
            RawFrame::Close(code, reason) => break (code, reason),
            RawFrame::Other(..) => {}
        }
    };
    assert_eq!(code, 4001, "slow consumer close code ({reason})");
    let got = slow_pushes.remove("slow:feed").unwrap_or_default();
    assert_eq!(
        got,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "no gap before the close"
    );
    assert!((got.len() as u64) < top, "the slow consumer was cut off");
    // Finish the close handshake; the server forgets the connection.
    raw.send_frame(0x8, &4001u16.to_be_bytes()).await;
    eventually("the slow consumer to be unregistered", || {
        hub.connection_count() == 1
    })
    .await;
    drop(healthy);

    let m = server.metrics().await;
    // One slow client closed is one disconnect, however many publications
    // it missed while being closed.
    assert_eq!(
        metric(&m, "herald_slow_consumer_disconnects_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"herald_closes_total{code="4001",by="server"}"#),
        Some(1.0),
        "{m}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_policy_keeps_the_connection_and_counts_drops() {
    let mut config = config();
    config
        .namespaces
        .insert("lossy".into(), small_queue(16, QueuePolicy::DropOldest));
    let server = TestServer::start(config).await;
    let hub = server.hub().clone();
    let (mut raw, _) = stalled_client(&server, &["lossy:feed"]).await;

    let top = publish_until_drop(&hub, &["lossy:feed"], "drop_oldest", 20).await["lossy:feed"];

    // Reading again: still connected and answering; offsets rise with a
    // gap, up to the newest.
    let mut pushes = HashMap::new();
    ping_and_read_up_to_reply(&mut raw, 50, &mut pushes).await;
    let got = &pushes["lossy:feed"];
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert_eq!(got.last(), Some(&top), "the newest is delivered");
    assert!((got.len() as u64) < top, "some were dropped");
    assert_eq!(hub.connection_count(), 1);

    let m = server.metrics().await;
    let dropped = metric(&m, r#"herald_queue_drops_total{policy="drop_oldest"}"#).unwrap_or(0.0);
    assert!(dropped > 0.0, "{m}");
    assert_eq!(
        dropped,
        (top - got.len() as u64) as f64,
        "every dropped message is counted"
    );
    drop(raw);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_policy_delivers_the_newest_value_per_channel() {
    let mut config = config();
    config
        .namespaces
        .insert("tick".into(), small_queue(16, QueuePolicy::Latest));
    let server = TestServer::start(config).await;
    let hub = server.hub().clone();
    let channels = ["tick:A", "tick:B"];
    let (mut raw, _) = stalled_client(&server, &channels).await;

    let top = publish_until_drop(&hub, &channels, "latest", 40).await;

    let mut pushes: HashMap<String, Vec<u64>> = HashMap::new();
    ping_and_read_up_to_reply(&mut raw, 50, &mut pushes).await;
    for c in channels {
        let got = &pushes[c];
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{c} in order: {got:?}");
        // `record` checked that each push's data is its offset's.
        assert_eq!(
            got.last(),
            Some(&top[c]),
            "{c}: the last value seen is the newest"
        );
    }
    let delivered: usize = pushes.values().map(Vec::len).sum();
    let published: u64 = top.values().sum();
    assert!((delivered as u64) < published, "older values were replaced");
    let m = server.metrics().await;
    let replaced = metric(&m, r#"herald_queue_drops_total{policy="latest"}"#).unwrap_or(0.0);
    assert_eq!(
        replaced,
        (published - delivered as u64) as f64,
        "every replaced message is counted"
    );
    drop(raw);
    server.stop().await;
}

/// "Replies to commands are never dropped": a command sent while the
/// connection is backed up gets its reply, though the policy drops
/// publications to make room.
async fn a_reply_survives_a_full_queue(policy: QueuePolicy, policy_name: &str) {
    let mut config = config();
    config
        .namespaces
        .insert("full".into(), small_queue(16, policy));
    let server = TestServer::start(config).await;
    let hub = server.hub().clone();
    let (mut raw, _) = stalled_client(&server, &["full:feed"]).await;
    let top = publish_until_drop(&hub, &["full:feed"], policy_name, 0).await["full:feed"];

    // The command waits in the socket while the server's writes are backed
    // up; it is read once the reader drains a little, and its reply queued
    // behind full queue.
    raw.send_text(r#"{"id": 77, "ping": {}}"#).await;

    // A feed faster than the reader, until the reply is seen (or a while).
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (hub, stop) = (hub.clone(), stop.clone());
        async move {
            let mut top = top;
            while !stop.load(Ordering::Relaxed) {
                top += 1;
                hub.publish("full:feed", payload("full:feed", top), None)
                    .await
                    .expect("publish");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut replied = false;
    let slow_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while !replied && tokio::time::Instant::now() < slow_until {
        replied = raw.read_json().await["id"] == 77;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    within("publisher", publisher).await.expect("publisher");

    // Replies keep their order: if 77 was not dropped, it comes before 78.
    raw.send_text(r#"{"id": 78, "ping": {}}"#).await;
    while !replied {
        let m = raw.read_json().await;
        if m.get("push").is_none() {
            assert_eq!(
                m["id"], 77,
                "the reply to command 77 was dropped under {policy_name}: {m}"
            );
            replied = true;
        }
    }
    loop {
        let m = raw.read_json().await;
        if m.get("push").is_none() {
            assert_eq!(m, json!({"id": 78, "result": {}}));
            break;
        }
    }
    drop(raw);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_never_dropped_under_drop_oldest() {
    a_reply_survives_a_full_queue(QueuePolicy::DropOldest, "drop_oldest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_never_dropped_under_latest() {
    a_reply_survives_a_full_queue(QueuePolicy::Latest, "latest").await;
}
