//! The Redis broker against a real redis-server.

use std::time::Duration;

use super::*;
use crate::config::ServerConfig;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// A redis-server on a free port of 127.0.0.1, stopped when dropped.
struct RedisServer {
    child: Option<std::process::Child>,
    port: u16,
    url: String,
    /// Where it keeps its append-only file, when persistent.
    dir: Option<std::path::PathBuf>,
}

impl RedisServer {
    fn start() -> Self {
        Self::start_on(free_port(), None)
    }

    fn start_on(port: u16, dir: Option<std::path::PathBuf>) -> Self {
        let mut command = std::process::Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""]);
        match &dir {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            child: Some(child),
            port,
            url: format!("redis://127.0.0.1:{port}/"),
            dir,
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it and starts it again on the same port (and file).
    fn restart(&mut self) {
        self.stop();
        *self = Self::start_on(self.port, self.dir.take());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn node(url: &str) -> Arc<Hub> {
    node_with(url, ServerConfig::default()).await.0
}

/// A hub on a Redis broker at `url`.
async fn node_with(url: &str, mut config: ServerConfig) -> (Arc<Hub>, Arc<RedisBroker>) {
    config.broker.heartbeat = Duration::from_millis(200);
    config.broker.reconnect_max_delay = Duration::from_millis(200);
    let config = Arc::new(config);
    let node: Arc<str> = format!("{:08x}", rand::random::<u32>()).into();
    let broker = Arc::new(
        RedisBroker::connect(
            url,
            node.clone(),
            node.to_string(),
            &config.broker,
            config.channel_meta_ttl,
        )
        .await
        .expect("connect"),
    );
    let hub = Arc::new(Hub::with_broker(
        config,
        Arc::new(Metrics::default()),
        node,
        |sink| {
            broker.attach(sink);
            broker.clone()
        },
    ));
    (hub, broker)
}

/// Subscribes a new client of `hub` to `channel`.
async fn subscriber(hub: &Hub, channel: &str) -> Arc<crate::hub::Client> {
    let client = hub.register_as("u".into(), None, None, false, None);
    let params = crate::protocol::SubscribeParams {
        channel: channel.into(),
        recover: false,
        epoch: None,
        offset: None,
    };
    hub.subscribe(&client, 1, &params).await.expect("subscribe");
    // The reply.
    crate::transport::drain(&client);
    client
}

/// The pushes `client` gets until `done` holds of them (at most 5 s).
async fn pushes_until(
    client: &crate::hub::Client,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    for _ in 0..500 {
        got.extend(
            crate::transport::drain(client)
                .into_iter()
                .map(|i| serde_json::from_str::<serde_json::Value>(&i.text()).unwrap()),
        );
        if done(&got) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not there after 5 s: {got:?}");
}

/// Publication offsets and gaps (as `gap@OFFSET`) in `pushes`.
fn seen(pushes: &[serde_json::Value]) -> Vec<String> {
    pushes
        .iter()
        .filter_map(|p| {
            let push = &p["push"];
            if let Some(o) = push["pub"]["offset"].as_u64() {
                Some(o.to_string())
            } else {
                push["gap"]["offset"].as_u64().map(|o| format!("gap@{o}"))
            }
        })
        .collect()
}

/// Publishes to `channel` as the script does, but to a pub/sub channel
/// nobody listens to: a publication pub/sub lost.
async fn publish_lost(url: &str, channel: &str, history_size: usize) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: (String, u64) = redis::Script::new(PUBLISH)
        .key(meta_key(channel))
        .key(stream_key(channel))
        .arg("nobody:listens")
        .arg(r#"{"data":"lost"}"#)
        .arg(history_size)
        .arg(60_000)
        .arg(new_epoch())
        .arg(3600)
        .arg(now_ms())
        .invoke_async(&mut conn)
        .await
        .unwrap();
}

fn raw(s: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(s.into()).unwrap()
}

#[tokio::test]
async fn two_nodes_share_offsets_history_and_delivery() {
    let redis = RedisServer::start();
    let a = node(&redis.url).await;
    let b = node(&redis.url).await;
    let reader = b.register_as("u".into(), None, None, false, None);
    let params = crate::protocol::SubscribeParams {
        channel: "chat:r".into(),
        recover: false,
        epoch: None,
        offset: None,
    };
    b.subscribe(&reader, 1, &params).await.expect("subscribe");
    // The subscribe returned once Redis confirmed SUBSCRIBE, so the
    // very first publication made after it is delivered live.
    let published = [a.publish("chat:r", raw("0"), None).await.unwrap()];
    let mut got = Vec::new();
    for _ in 0..500 {
        got.extend(
            crate::transport::drain(&reader)
                .into_iter()
                .map(|i| i.text()),
        );
        if got.iter().any(|t| t.contains("\"pub\"")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let offsets: Vec<u64> = published.iter().map(|p| p.offset).collect();
    assert_eq!(
        offsets,
        (1..=offsets.len() as u64).collect::<Vec<_>>(),
        "one sequence"
    );
    assert!(
        got.iter().any(|t| t.contains("\"pub\"")),
        "B delivered A's publication: {got:?}"
    );
    let history = b.history("chat:r", None).await.unwrap();
    assert_eq!(history.offset, offsets.len() as u64);
    assert_eq!(history.epoch, published[0].epoch);
    assert_eq!(history.publications.len(), offsets.len().min(100));
}

#[tokio::test]
async fn a_publication_pub_sub_lost_is_filled_from_history_in_order() {
    let redis = RedisServer::start();
    let (a, _) = node_with(&redis.url, ServerConfig::default()).await;
    let (b, broker) = node_with(&redis.url, ServerConfig::default()).await;
    let reader = subscriber(&b, "chat:f").await;
    a.publish("chat:f", raw("1"), None).await.unwrap();
    pushes_until(&reader, |p| seen(p) == ["1"]).await;
    publish_lost(&redis.url, "chat:f", 100).await;
    publish_lost(&redis.url, "chat:f", 100).await;
    a.publish("chat:f", raw("4"), None).await.unwrap();
    let got = pushes_until(&reader, |p| seen(p).len() >= 3).await;
    assert_eq!(seen(&got), ["2", "3", "4"], "filled, in order, once");
    assert_eq!(got[0]["push"]["pub"]["data"], "lost");
    let filled = broker
        .stats()
        .into_iter()
        .find(|s| s.0 == "herald_broker_filled_total");
    assert_eq!(filled.map(|s| s.2), Some(2));
}

#[tokio::test]
async fn a_loss_history_cannot_fill_is_a_gap_push_never_a_skip() {
    let redis = RedisServer::start();
    let (a, _) = node_with(&redis.url, ServerConfig::default()).await;
    let (b, _) = node_with(&redis.url, ServerConfig::default()).await;
    // The default namespace keeps no history.
    let reader = subscriber(&b, "nohistory").await;
    a.publish("nohistory", raw("1"), None).await.unwrap();
    pushes_until(&reader, |p| seen(p) == ["1"]).await;
    publish_lost(&redis.url, "nohistory", 0).await;
    a.publish("nohistory", raw("3"), None).await.unwrap();
    let got = pushes_until(&reader, |p| seen(p).len() >= 2).await;
    assert_eq!(seen(&got), ["gap@2", "3"]);
}

#[tokio::test]
async fn after_redis_restarts_nodes_reconnect_and_deliver_what_they_missed() {
    let dir = std::env::temp_dir().join(format!("herald-redis-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = RedisServer::start_on(free_port(), Some(dir.clone()));
    let (a, _) = node_with(&redis.url, ServerConfig::default()).await;
    let (b, broker) = node_with(&redis.url, ServerConfig::default()).await;
    let reader = subscriber(&b, "chat:r").await;
    a.publish("chat:r", raw("1"), None).await.unwrap();
    pushes_until(&reader, |p| seen(p) == ["1"]).await;

    redis.restart();
    // A publishes as soon as Redis takes commands again: B's pub/sub may
    // still be reconnecting, and must then read it from history.
    let mut published = None;
    for _ in 0..100 {
        if let Ok(p) = a.publish("chat:r", raw("2"), None).await {
            published = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        published.expect("A publishes again").offset,
        2,
        "same epoch, next offset"
    );
    let got = pushes_until(&reader, |p| !seen(p).is_empty()).await;
    assert_eq!(seen(&got), ["2"]);
    for _ in 0..100 {
        if broker.health().is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(broker.health(), Ok(()));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_redis_that_lost_everything_is_a_gap_then_the_new_epoch() {
    let mut redis = RedisServer::start();
    let (a, _) = node_with(&redis.url, ServerConfig::default()).await;
    let (b, _) = node_with(&redis.url, ServerConfig::default()).await;
    let reader = subscriber(&b, "chat:e").await;
    let first = a.publish("chat:e", raw("1"), None).await.unwrap();
    pushes_until(&reader, |p| seen(p) == ["1"]).await;
    redis.restart();
    let mut second = None;
    for _ in 0..100 {
        if let Ok(p) = a.publish("chat:e", raw("2"), None).await {
            second = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = second.expect("A publishes again");
    assert_ne!(
        second.epoch, first.epoch,
        "Redis lost the channel: a new epoch"
    );
    let got = pushes_until(&reader, |p| seen(p).len() >= 2).await;
    assert_eq!(seen(&got), ["gap@0", "1"]);
    assert_eq!(got[0]["push"]["gap"]["epoch"], second.epoch.as_str());
    assert_eq!(got[1]["push"]["epoch"], second.epoch.as_str());
}

#[tokio::test]
async fn presence_expires_unless_refreshed_and_joins_reach_other_nodes() {
    let redis = RedisServer::start();
    let (a, broker_a) = node_with(&redis.url, ServerConfig::default()).await;
    let (b, _) = node_with(&redis.url, ServerConfig::default()).await;
    let watcher = subscriber(&b, "chat:p").await;
    let joiner = subscriber(&a, "chat:p").await;
    let got = pushes_until(&watcher, |p| {
        p.iter().any(|m| m["push"]["join"].is_object())
    })
    .await;
    let join = got.iter().find(|m| m["push"]["join"].is_object()).unwrap();
    assert_eq!(join["push"]["join"]["client"], joiner.info.client.as_str());
    assert!(
        joiner.info.client.starts_with(&format!("{}.", a.node())),
        "client ids carry their node: {}",
        joiner.info.client
    );
    let listed = b.presence("chat:p").await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    // Read as if a presence TTL (60 s by default) had passed with no
    // refresh: A's entries are gone; before it, they are there.
    let later = now_ms() + 61_000;
    assert!(
        broker_a
            .presence
            .list_at("chat:p", later)
            .await
            .unwrap()
            .is_empty()
    );
    a.unregister(&joiner);
    let got = pushes_until(&watcher, |p| {
        p.iter().any(|m| m["push"]["leave"].is_object())
    })
    .await;
    assert!(
        got.iter()
            .any(|m| m["push"]["leave"]["client"] == joiner.info.client.as_str())
    );
}

#[tokio::test]
async fn a_node_asks_another_to_disconnect_its_client() {
    let redis = RedisServer::start();
    let (a, broker_a) = node_with(&redis.url, ServerConfig::default()).await;
    let (b, _) = node_with(&redis.url, ServerConfig::default()).await;
    let server_b = crate::server::Server::with_hub(b.clone());
    crate::nodes::answer_for(&server_b);
    let client = b.register_as("u".into(), None, None, false, None);
    assert_eq!(a.node_of(&client.info.client), Some(&**b.node()));
    let request = crate::broker::Request::Disconnect {
        client: client.info.client.clone(),
        reason: "bye".into(),
    };
    let reply = broker_a.ask(b.node(), request.clone()).await.unwrap();
    assert_eq!(reply.map(|r| r.status), Some(200));
    assert!(crate::hub::lock(&client.kick).is_some(), "kicked");
    // A node nobody runs: no answer.
    let reply = broker_a.ask("00000000", request).await.unwrap();
    assert_eq!(reply, None);
    drop(server_b);
}

#[tokio::test]
async fn after_a_reconnect_the_reader_catches_up_from_history() {
    let redis = RedisServer::start();
    let (a, _) = node_with(&redis.url, ServerConfig::default()).await;
    let (b, broker) = node_with(&redis.url, ServerConfig::default()).await;
    let reader = subscriber(&b, "chat:c").await;
    a.publish("chat:c", raw("1"), None).await.unwrap();
    pushes_until(&reader, |p| seen(p) == ["1"]).await;
    // Published while B's pub/sub connection was down: nothing live.
    publish_lost(&redis.url, "chat:c", 100).await;
    publish_lost(&redis.url, "chat:c", 100).await;
    // What the link runs once it is subscribed again.
    broker.reader.catch_up().await;
    let got = pushes_until(&reader, |p| seen(p).len() >= 2).await;
    assert_eq!(seen(&got), ["2", "3"]);
    // And the next live one follows, once.
    a.publish("chat:c", raw("4"), None).await.unwrap();
    let got = pushes_until(&reader, |p| !seen(p).is_empty()).await;
    assert_eq!(seen(&got), ["4"]);
}

#[tokio::test]
async fn a_node_that_stops_leaves_presence_with_a_leave_push_on_the_others() {
    let redis = RedisServer::start();
    let (a, broker_a) = node_with(&redis.url, ServerConfig::default()).await;
    let (b, broker_b) = node_with(&redis.url, ServerConfig::default()).await;
    let watcher = subscriber(&b, "chat:d").await;
    let gone = subscriber(&a, "chat:d").await;
    pushes_until(&watcher, |p| {
        p.iter().any(|m| m["push"]["join"].is_object())
    })
    .await;
    // Both alive in the registry, and B has seen A there.
    broker_a.heartbeat(1);
    broker_b.heartbeat(1);
    let both = || async {
        let nodes = b.broker().nodes().await.unwrap();
        nodes.iter().any(|n| n.id == **a.node()) && nodes.iter().any(|n| n.id == **b.node())
    };
    for _ in 0..100 {
        if both().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(both().await, "both nodes listed");
    // A stops (no more heartbeats, no goodbye); its registry entry
    // expires after three heartbeats (600 ms here), and B, at its next
    // heartbeat, makes A's clients leave.
    let got = {
        let mut got = Vec::new();
        for _ in 0..100 {
            broker_b.heartbeat(1);
            got.extend(
                crate::transport::drain(&watcher)
                    .into_iter()
                    .map(|i| serde_json::from_str::<serde_json::Value>(&i.text()).unwrap()),
            );
            if got.iter().any(|m| m["push"]["leave"].is_object()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        got
    };
    let leave = got.iter().find(|m| m["push"]["leave"].is_object());
    assert_eq!(
        leave.map(|m| m["push"]["leave"]["client"].clone()),
        Some(serde_json::Value::from(gone.info.client.as_str())),
        "{got:?}"
    );
    let present = b.presence("chat:d").await.unwrap();
    assert_eq!(present.len(), 1, "only B's watcher: {present:?}");
    drop(a);
}

#[tokio::test]
async fn channels_spread_over_two_redis_servers_and_every_node_agrees() {
    let (r1, r2) = (RedisServer::start(), RedisServer::start());
    let mut config = ServerConfig::default();
    config.broker.url = vec![r1.url.clone(), r2.url.clone()];
    config.broker.heartbeat = Duration::from_millis(200);
    let a = crate::server::Server::connect(config.clone())
        .await
        .unwrap();
    // The other node lists the URLs the other way round.
    config.broker.url.reverse();
    let b = crate::server::Server::connect(config).await.unwrap();
    let channels: Vec<String> = (0..12).map(|i| format!("chat:s{i}")).collect();
    let mut readers = Vec::new();
    for channel in &channels {
        readers.push(subscriber(b.hub(), channel).await);
    }
    for channel in &channels {
        a.hub().publish(channel, raw("1"), None).await.unwrap();
    }
    for reader in &readers {
        pushes_until(reader, |p| seen(p) == ["1"]).await;
    }
    // Each channel's keys are on the shard rendezvous hashing names.
    let urls = [r1.url.as_str(), r2.url.as_str()];
    let mut on = [0, 0];
    for channel in &channels {
        let shard = super::super::sharded::shard_of(&urls, channel);
        on[shard] += 1;
        for (i, url) in urls.iter().enumerate() {
            let mut conn = redis::Client::open(*url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let exists: bool = conn.exists(meta_key(channel)).await.unwrap();
            assert_eq!(exists, i == shard, "{channel} on shard {i}?");
        }
    }
    assert!(on[0] > 0 && on[1] > 0, "both shards hold channels: {on:?}");
}
