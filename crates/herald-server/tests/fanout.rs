//! Fan-out: one publisher, many subscribers on one channel; every
//! subscriber gets every publication exactly once, in order, whether they
//! come one at a time or in a burst. (Throughput and latency are `herald
//! bench`'s business, not this test's.)

mod support;

use std::sync::Arc;

use std::time::Duration;

use serde_json::json;
use serde_json::value::RawValue;
use support::*;
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinSet;

const SUBSCRIBERS: usize = 500;
const PUBLICATIONS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_publication_once_in_order() {
    let mut config = config();
    config.namespaces.insert(
        "fan".into(),
        namespace(|ns| {
            ns.allow_publish = true;
        }),
    );
    let server = TestServer::start(config).await;
    let url = server.url();

    // Subscribers connect a few dozen at a time, then wait at the barrier
    // until all are subscribed, then read.
    let subscribed = Arc::new(Barrier::new(SUBSCRIBERS + 1));
    let connecting = Arc::new(Semaphore::new(32));
    let mut subscribers = JoinSet::new();
    for i in 0..SUBSCRIBERS {
        let (url, subscribed, connecting) = (url.clone(), subscribed.clone(), connecting.clone());
        subscribers.spawn(async move {
            let permit = connecting.acquire_owned().await.expect("semaphore");
            let mut c = Conn::connect(&url, json!({ "name": format!("s{i}") })).await;
            let sub = c.subscribe("fan:all").await;
            drop(permit);
            subscribed.wait().await;
            let pubs = c.publications("fan:all", PUBLICATIONS as usize).await;
            let epoch = &sub["epoch"];
            // Every push carried the subscription's epoch (checked by
            // `publications` for the channel); offsets and data in order.
            assert_eq!(
                offsets(&pubs),
                (1..=PUBLICATIONS).collect::<Vec<_>>(),
                "subscriber {i} (epoch {epoch})"
            );
            for (n, p) in (1..).zip(&pubs) {
                assert_eq!(p["data"], json!({ "n": n }), "subscriber {i}");
            }
            // Exactly once: nothing else is queued before a ping's reply.
            let id = c.send("ping", json!({})).await;
            assert_eq!(
                c.recv().await,
                json!({"id": id, "result": {}}),
                "subscriber {i}"
            );
            c
        });
    }
    within("every subscriber to subscribe", subscribed.wait()).await;

    let r = server.http("GET", "/api/channels", &[], None).await;
    assert_eq!(
        r.json(),
        json!({"channels": [{"channel": "fan:all", "subscribers": SUBSCRIBERS}]})
    );

    let mut publisher = server.named("publisher").await;
    for n in 1..=PUBLICATIONS {
        let result = publisher
            .ok("publish", json!({"channel": "fan:all", "data": { "n": n }}))
            .await;
        assert_eq!(result["offset"], n);
    }

    let mut done = Vec::with_capacity(SUBSCRIBERS);
    while let Some(r) = within("subscribers to finish", subscribers.join_next()).await {
        done.push(r.expect("a subscriber failed"));
    }
    assert_eq!(done.len(), SUBSCRIBERS);
    drop(done);
    drop(publisher);
    eventually("every connection to end", || {
        server.hub().connection_count() == 0
    })
    .await;
    server.stop().await;
}

/// A burst: more publications at once than the server moves into a socket
/// per wakeup, and more bytes than the socket's write high-water mark. The
/// subscribers read all the while and send nothing, so only the server's
/// own wakeups can move the rest along.
#[tokio::test]
async fn a_burst_of_publications_reaches_every_subscriber_unprompted() {
    const BURST: u64 = 500;
    const READERS: usize = 10;
    let mut config = config();
    // Keepalive pings would wake a stalled connection; keep them out of
    // the test's time frame.
    config.ping_interval = Duration::from_secs(120);
    config.namespaces.insert("fan".into(), namespace(|_| {}));
    let server = TestServer::start(config).await;
    let mut readers = Vec::new();
    for i in 0..READERS {
        let mut c = server.named(&format!("r{i}")).await;
        c.subscribe("fan:burst").await;
        readers.push(c);
    }
    // Published back to back (this runtime has one thread: nothing else
    // runs meanwhile), 1 KiB each.
    for n in 1..=BURST {
        let data = json!({"n": n, "pad": "x".repeat(1024)}).to_string();
        let p = server
            .hub()
            .publish("fan:burst", RawValue::from_string(data).unwrap(), None)
            .await
            .expect("publish");
        assert_eq!(p.delivered, READERS, "queued for every reader");
    }
    for (i, c) in readers.iter_mut().enumerate() {
        let mut got = 0;
        while got < BURST {
            // Shorter than `recv_json`'s own bound, to say what stalled.
            let m = match tokio::time::timeout(Duration::from_secs(5), recv_json(&mut c.ws)).await {
                Ok(m) => m.expect("open"),
                Err(_) => panic!(
                    "reader {i} stalled after {got} of {BURST} publications, \
                     with the rest still queued on the server"
                ),
            };
            got += 1;
            assert_eq!(m["push"]["pub"]["offset"], got, "reader {i}");
        }
    }
    drop(readers);
    server.stop().await;
}
