//! The Redis broker against a real redis-server.

use super::*;
use crate::config::ServerConfig;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// A redis-server on a free port of 127.0.0.1, stopped when dropped.
struct RedisServer {
    child: std::process::Child,
    url: String,
}

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        let url = format!("redis://127.0.0.1:{port}/");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Self { child, url }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn node(url: &str) -> Arc<Hub> {
    let config = Arc::new(ServerConfig::default());
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
    Arc::new(Hub::with_broker(
        config,
        Arc::new(Metrics::default()),
        node,
        |sink| {
            broker.attach(sink);
            broker
        },
    ))
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
