//! History and recovery: a client that comes back with (epoch, offset) gets
//! exactly what it missed, then the live publications with no gap and no
//! duplicate, or is told plainly (`recovered: false`) that the gap cannot
//! be filled.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// `publications` of a subscribe result; the key may be left out when
/// there are none.
fn recovered_pubs(result: &Value) -> Vec<Value> {
    match result.get("publications") {
        None => Vec::new(),
        Some(p) => p.as_array().expect("publications is an array").clone(),
    }
}

async fn resubscribe(c: &mut Conn, channel: &str, epoch: &Value, offset: u64) -> Value {
    c.ok(
        "subscribe",
        json!({"channel": channel, "recover": true, "epoch": epoch, "offset": offset}),
    )
    .await
}

#[tokio::test]
async fn reconnect_recovers_exactly_the_missed_publications_then_live_ones() {
    let server = TestServer::start(config()).await;
    let mut a = server.named("A").await;
    let sub = a.subscribe("chat:r").await;
    let epoch = sub["epoch"].clone();
    for i in 1..=3 {
        server.api_publish("chat:r", json!({"n": i})).await;
    }
    assert_eq!(offsets(&a.publications("chat:r", 3).await), [1, 2, 3]);
    drop(a);

    for i in 4..=6 {
        server.api_publish("chat:r", json!({"n": i})).await;
    }

    let mut a = server.named("A").await;
    let result = resubscribe(&mut a, "chat:r", &epoch, 3).await;
    assert_eq!(
        result,
        json!({"epoch": epoch, "offset": 6, "recovered": true, "publications": [
            {"offset": 4, "data": {"n": 4}},
            {"offset": 5, "data": {"n": 5}},
            {"offset": 6, "data": {"n": 6}},
        ]})
    );
    for i in 7..=8 {
        server.api_publish("chat:r", json!({"n": i})).await;
    }
    let live = a.publications("chat:r", 2).await;
    assert_eq!(
        live,
        [
            json!({"offset": 7, "data": {"n": 7}}),
            json!({"offset": 8, "data": {"n": 8}})
        ]
    );
    // Nothing more: the next message is the ping's reply.
    let id = a.send("ping", json!({})).await;
    assert_eq!(a.recv().await, json!({"id": id, "result": {}}));
    drop(a);
    server.stop().await;
}

#[tokio::test]
async fn nothing_missed_is_recovered_with_no_publications() {
    let server = TestServer::start(config()).await;
    let mut a = server.named("A").await;
    let epoch = a.subscribe("chat:quiet").await["epoch"].clone();
    server.api_publish("chat:quiet", json!(1)).await;
    a.publications("chat:quiet", 1).await;
    drop(a);

    let mut a = server.named("A").await;
    let result = resubscribe(&mut a, "chat:quiet", &epoch, 1).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(result["offset"], 1);
    assert!(recovered_pubs(&result).is_empty(), "{result}");
    drop(a);
    server.stop().await;
}

#[tokio::test]
async fn history_size_exceeded_is_not_recovered() {
    let mut config = config();
    config.namespaces.insert(
        "short".into(),
        namespace(|ns| {
            ns.history_size = 3;
        }),
    );
    let server = TestServer::start(config).await;
    let mut a = server.named("A").await;
    let epoch = a.subscribe("short:s").await["epoch"].clone();
    server.api_publish("short:s", json!(1)).await;
    a.publications("short:s", 1).await;
    drop(a);
    // Five missed, three kept.
    for i in 2..=6 {
        server.api_publish("short:s", json!(i)).await;
    }
    let mut a = server.named("A").await;
    let result = resubscribe(&mut a, "short:s", &epoch, 1).await;
    assert_eq!(result["recovered"], false, "{result}");
    assert_eq!((&result["epoch"], &result["offset"]), (&epoch, &json!(6)));
    // The epoch matches, so what is still kept comes along.
    assert_eq!(offsets(&recovered_pubs(&result)), [4, 5, 6]);
    // Live publications continue after the top.
    server.api_publish("short:s", json!(7)).await;
    assert_eq!(offsets(&a.publications("short:s", 1).await), [7]);

    // Missing exactly as many as are kept is still a full recovery.
    drop(a);
    let mut a = server.named("A").await;
    let result = resubscribe(&mut a, "short:s", &epoch, 4).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(offsets(&recovered_pubs(&result)), [5, 6, 7]);
    drop(a);
    server.stop().await;
}

/// On tokio's paused clock: the hub keeps history times on it, so the TTL
/// passes at once instead of in real time.
#[tokio::test(start_paused = true)]
async fn history_ttl_expired_is_not_recovered() {
    let mut config = config();
    config.namespaces.insert(
        "brief".into(),
        namespace(|ns| {
            ns.history_size = 100;
            ns.history_ttl = Duration::from_secs(300);
        }),
    );
    let server = TestServer::start(config).await;
    let mut a = server.named("A").await;
    let epoch = a.subscribe("brief:t").await["epoch"].clone();
    server.api_publish("brief:t", json!(1)).await;
    a.publications("brief:t", 1).await;
    drop(a);

    // Within the TTL: recovered.
    server.api_publish("brief:t", json!(2)).await;
    let mut a = server.named("A").await;
    let result = resubscribe(&mut a, "brief:t", &epoch, 1).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(offsets(&recovered_pubs(&result)), [2]);
    drop(a);

    // Past it: the missed publications are gone.
    server.api_publish("brief:t", json!(3)).await;
    tokio::time::sleep(Duration::from_secs(301)).await;
    let mut a = server.named("A").await;
    let result = resubscribe(&mut a, "brief:t", &epoch, 2).await;
    assert_eq!(result["recovered"], false, "{result}");
    assert!(recovered_pubs(&result).is_empty(), "{result}");
    drop(a);
    server.stop().await;
}

#[tokio::test]
async fn another_epoch_is_not_recovered() {
    let server = TestServer::start(config()).await;
    for i in 1..=3 {
        server.api_publish("chat:e", json!(i)).await;
    }
    let mut a = server.named("A").await;
    let epoch = a.ok("history", json!({"channel": "chat:e"})).await["epoch"].clone();
    let other = if epoch == "00000000" {
        "00000001"
    } else {
        "00000000"
    };

    let result = resubscribe(&mut a, "chat:e", &json!(other), 1).await;
    assert_eq!(result["recovered"], false, "{result}");
    assert_eq!(
        result["epoch"], epoch,
        "the result carries the current epoch"
    );
    assert!(
        recovered_pubs(&result).is_empty(),
        "offsets of another epoch mean nothing: {result}"
    );
    a.ok("unsubscribe", json!({"channel": "chat:e"})).await;

    // The right epoch but an offset the channel never reached.
    let result = resubscribe(&mut a, "chat:e", &epoch, 10).await;
    assert_eq!(result["recovered"], false, "{result}");

    // Recover without an epoch at all.
    a.ok("unsubscribe", json!({"channel": "chat:e"})).await;
    let result = a
        .ok(
            "subscribe",
            json!({"channel": "chat:e", "recover": true, "offset": 1}),
        )
        .await;
    assert_eq!(result["recovered"], false, "{result}");
    drop(a);
    server.stop().await;
}

/// A backend publishes through the HTTP API without pause while a client
/// keeps leaving and coming back (by reconnecting, or by unsubscribing on
/// the same connection) and recovering: every offset is seen exactly once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_racing_with_concurrent_publishing_has_no_gap_or_duplicate() {
    const TOTAL: u64 = 1000;
    let mut config = config();
    config.namespaces.insert(
        "race".into(),
        namespace(|ns| {
            ns.history_size = 10_000;
        }),
    );
    let server = TestServer::start(config).await;
    let mut c = server.named("R").await;
    let sub = c.subscribe("race:feed").await;
    let epoch = sub["epoch"].clone();
    assert_eq!(sub["offset"], 0);

    let addr = server.addr;
    let publisher = tokio::spawn(async move {
        for n in 1..=TOTAL {
            let body = json!({"channel": "race:feed", "data": {"n": n}}).to_string();
            let r = http(addr, "POST", "/api/publish", &[], Some(&body)).await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    });

    let mut seen: Vec<u64> = Vec::new();
    let mut non_empty_recoveries = 0;
    let take = |seen: &mut Vec<u64>, p: &Value| {
        assert_eq!(p["push"]["channel"], "race:feed", "{p}");
        assert_eq!(p["push"]["epoch"], epoch);
        let offset = p["push"]["pub"]["offset"].as_u64().expect("offset");
        assert_eq!(p["push"]["pub"]["data"]["n"], offset, "data matches offset");
        seen.push(offset);
    };
    for round in 0.. {
        // Receive a few live publications.
        let want = 3 + round % 7;
        let mut got = 0;
        while got < want && seen.last().copied().unwrap_or(0) < TOTAL {
            let p = c.push().await;
            take(&mut seen, &p);
            got += 1;
        }
        if seen.last() == Some(&TOTAL) {
            break;
        }
        // Leave: every other round by dropping the connection, otherwise
        // by unsubscribing (pushes before the reply still count).
        if round % 2 == 0 {
            drop(c);
            c = server.named("R").await;
        } else {
            let id = c.send("unsubscribe", json!({"channel": "race:feed"})).await;
            c.reply(id).await;
            while let Some(p) = c.pushes.pop_front() {
                take(&mut seen, &p);
            }
        }
        let last = seen.last().copied().unwrap_or(0);
        let result = resubscribe(&mut c, "race:feed", &epoch, last).await;
        assert_eq!(result["recovered"], true, "round {round}: {result}");
        let recovered = recovered_pubs(&result);
        if !recovered.is_empty() {
            non_empty_recoveries += 1;
        }
        for p in &recovered {
            seen.push(p["offset"].as_u64().expect("offset"));
        }
        assert_eq!(
            Some(&result["offset"]),
            recovered
                .last()
                .map(|p| &p["offset"])
                .or(Some(&json!(last))),
            "round {round}: the result's offset is the last one recovered"
        );
    }
    within("publisher", publisher).await.expect("publisher");
    assert_eq!(
        seen,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every offset once, in order"
    );
    assert!(
        non_empty_recoveries > 0,
        "publications were missed and recovered at least once"
    );
    drop(c);
    server.stop().await;
}
