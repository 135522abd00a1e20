//! The Redis broker (work in progress for issue 15, not wired into
//! `herald serve` yet): several nodes share channels through one Redis.
//!
//! Keys of one channel share a hash tag (`herald:{chat:x}:...`) so the
//! layout also works on Redis Cluster:
//! - `herald:{CH}:meta`: a hash with the channel's `epoch` and `top`
//!   offset;
//! - `herald:{CH}:stream`: the history, a stream whose ids are `0-OFFSET`;
//! - `herald:{CH}:presence`: a hash client id -> info JSON;
//! - pub/sub channel `herald:{CH}`: `EPOCH\nOFFSET\nPUBLICATION JSON`.
//!
//! One Lua script publishes atomically: next offset, history, pub/sub,
//! so every node sees the same (epoch, offset) sequence.

use std::sync::{Arc, OnceLock};

use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use tokio::sync::{mpsc, watch};

use super::{Broker, BrokerError, BrokerFuture, Placed, Retention, Since, Sink, Stream};
use crate::protocol::{ClientInfo, Publication};

/// KEYS: meta, stream. ARGV: pub/sub channel, publication JSON (without
/// its offset), history size, history TTL (s), a new epoch if the channel
/// has none, meta TTL (s). Returns {epoch, offset}.
const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, '0-' .. offset, 'p', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[1], epoch .. '\n' .. offset .. '\n' .. ARGV[2])
return {epoch, offset}
"#;

/// Channels' epochs, offsets, history and presence in Redis.
pub(crate) struct RedisBroker {
    conn: redis::aio::MultiplexedConnection,
    publish: redis::Script,
    /// SUBSCRIBE / UNSUBSCRIBE for the pub/sub connection, in order;
    /// a SUBSCRIBE carries the sender that says it took effect.
    interest: mpsc::UnboundedSender<(bool, String, Option<watch::Sender<bool>>)>,
    /// Channels by pub/sub name whose SUBSCRIBE was sent: whether Redis
    /// confirmed it. A history read waits for it, so that a publication
    /// is either in the history read or delivered live (the hub's
    /// subscribe merge relies on it).
    subscribed: std::sync::Mutex<std::collections::HashMap<String, watch::Receiver<bool>>>,
    sink: Arc<OnceLock<Arc<dyn Sink>>>,
    meta_ttl: u64,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").finish_non_exhaustive()
    }
}

fn meta_key(channel: &str) -> String {
    format!("herald:{{{channel}}}:meta")
}

fn stream_key(channel: &str) -> String {
    format!("herald:{{{channel}}}:stream")
}

fn presence_key(channel: &str) -> String {
    format!("herald:{{{channel}}}:presence")
}

fn pubsub_name(channel: &str) -> String {
    format!("herald:{{{channel}}}")
}

fn failed(e: redis::RedisError) -> BrokerError {
    BrokerError(e.to_string())
}

/// The publication as stored and sent: all but the offset, which the
/// script assigns.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    data: Box<serde_json::value::RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    info: Option<ClientInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
}

impl Stored {
    fn publication(self, offset: u64) -> Publication {
        Publication {
            offset,
            data: self.data,
            info: self.info,
            time: self.time,
        }
    }
}

impl RedisBroker {
    /// Connects to `url` (`redis://HOST:PORT`) and starts the pub/sub
    /// reader; publications reach the sink given to [`RedisBroker::attach`].
    pub(crate) async fn connect(
        url: &str,
        meta_ttl: std::time::Duration,
    ) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url).map_err(failed)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(failed)?;
        let (mut sink_half, mut stream_half) =
            client.get_async_pubsub().await.map_err(failed)?.split();
        let (interest, mut wanted) =
            mpsc::unbounded_channel::<(bool, String, Option<watch::Sender<bool>>)>();
        tokio::spawn(async move {
            while let Some((on, name, confirmed)) = wanted.recv().await {
                let done = if on {
                    sink_half.subscribe(&name).await
                } else {
                    sink_half.unsubscribe(&name).await
                };
                match done {
                    Ok(()) => {
                        if let Some(confirmed) = confirmed {
                            let _ = confirmed.send(true);
                        }
                    }
                    Err(e) => tracing::warn!("redis broker: (un)subscribe {name}: {e}"),
                }
            }
        });
        let sink: Arc<OnceLock<Arc<dyn Sink>>> = Arc::default();
        let reader = sink.clone();
        tokio::spawn(async move {
            while let Some(msg) = stream_half.next().await {
                let name: String = msg.get_channel_name().to_owned();
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                let Some(channel) = name
                    .strip_prefix("herald:{")
                    .and_then(|c| c.strip_suffix('}'))
                else {
                    continue;
                };
                let mut parts = payload.splitn(3, '\n');
                let (Some(epoch), Some(offset), Some(json)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let (Ok(offset), Ok(stored)) =
                    (offset.parse::<u64>(), serde_json::from_str::<Stored>(json))
                else {
                    continue;
                };
                if let Some(sink) = reader.get() {
                    let epoch: Arc<str> = epoch.into();
                    sink.deliver(channel, &epoch, &Arc::new(stored.publication(offset)));
                }
            }
        });
        Ok(Self {
            conn,
            publish: redis::Script::new(PUBLISH),
            interest,
            subscribed: std::sync::Mutex::default(),
            sink,
            meta_ttl: meta_ttl.as_secs().max(1),
        })
    }

    /// Where this node's publications arrive (the hub's fan-out).
    pub(crate) fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    async fn position(&self, channel: &str, create: bool) -> Result<(Arc<str>, u64), BrokerError> {
        let mut conn = self.conn.clone();
        let key = meta_key(channel);
        if create {
            let epoch = format!("{:08x}", rand::random::<u32>());
            let _: bool = conn.hset_nx(&key, "epoch", epoch).await.map_err(failed)?;
            let _: bool = conn
                .expire(&key, self.meta_ttl as i64)
                .await
                .map_err(failed)?;
        }
        let (epoch, top): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("epoch")
            .arg("top")
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        Ok((epoch.unwrap_or_default().into(), top.unwrap_or(0)))
    }
}

type Entries = Vec<(String, Vec<(String, String)>)>;

fn publications(entries: Entries) -> Vec<Arc<Publication>> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let offset = id.strip_prefix("0-")?.parse::<u64>().ok()?;
            let json = fields.into_iter().find(|(k, _)| k == "p")?.1;
            let stored: Stored = serde_json::from_str(&json).ok()?;
            Some(Arc::new(stored.publication(offset)))
        })
        .collect()
}

impl Broker for RedisBroker {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BrokerFuture<'a, Placed> {
        Box::pin(async move {
            let stored = Stored {
                data: publication.data,
                info: publication.info,
                time: publication.time,
            };
            let json = serde_json::to_string(&stored).map_err(|e| BrokerError(e.to_string()))?;
            let mut conn = self.conn.clone();
            let (epoch, offset): (String, u64) = self
                .publish
                .key(meta_key(channel))
                .key(stream_key(channel))
                .arg(pubsub_name(channel))
                .arg(json)
                .arg(retention.size)
                .arg(retention.ttl.as_secs().max(1))
                .arg(format!("{:08x}", rand::random::<u32>()))
                .arg(self.meta_ttl)
                .invoke_async(&mut conn)
                .await
                .map_err(failed)?;
            Ok(Placed {
                epoch: epoch.into(),
                offset,
                delivered: 0,
            })
        })
    }

    fn history<'a>(&'a self, channel: &'a str, since: Since) -> BrokerFuture<'a, Stream> {
        Box::pin(async move {
            let pending = self
                .subscribed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&pubsub_name(channel))
                .cloned();
            if let Some(mut confirmed) = pending {
                confirmed
                    .wait_for(|done| *done)
                    .await
                    .map_err(|_| BrokerError("the pub/sub connection is gone".into()))?;
            }
            let create = !matches!(since, Since::Last(_));
            let (epoch, top) = self.position(channel, create).await?;
            let mut conn = self.conn.clone();
            let publications = match since {
                Since::Position => Vec::new(),
                Since::Offset(offset) => {
                    let entries: Entries = conn
                        .xrange(stream_key(channel), format!("0-{}", offset + 1), "+")
                        .await
                        .map_err(failed)?;
                    publications(entries)
                }
                Since::Last(n) => {
                    let n = n.min(1 << 20);
                    let entries: Entries = conn
                        .xrevrange_count(stream_key(channel), "+", "-", n)
                        .await
                        .map_err(failed)?;
                    let mut list = publications(entries);
                    list.reverse();
                    list
                }
            };
            Ok(Stream {
                epoch,
                top,
                publications,
            })
        })
    }

    fn subscribe(&self, channel: &str) {
        let name = pubsub_name(channel);
        let (confirmed, wait) = watch::channel(false);
        self.subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), wait);
        let _ = self.interest.send((true, name, Some(confirmed)));
    }

    fn unsubscribe(&self, channel: &str) {
        let name = pubsub_name(channel);
        self.subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        let _ = self.interest.send((false, name, None));
    }

    fn join(&self, channel: &str, info: &Arc<ClientInfo>) {
        let mut conn = self.conn.clone();
        let key = presence_key(channel);
        let client = info.client.clone();
        let json = serde_json::to_string(&**info).unwrap_or_default();
        tokio::spawn(async move {
            let done: redis::RedisResult<()> = conn.hset(key, client, json).await;
            if let Err(e) = done {
                tracing::warn!("redis broker: presence join: {e}");
            }
        });
    }

    fn leave(&self, channel: &str, client: &str) {
        let mut conn = self.conn.clone();
        let key = presence_key(channel);
        let client = client.to_owned();
        tokio::spawn(async move {
            let done: redis::RedisResult<()> = conn.hdel(key, client).await;
            if let Err(e) = done {
                tracing::warn!("redis broker: presence leave: {e}");
            }
        });
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Vec<Arc<ClientInfo>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let values: Vec<String> = conn.hvals(presence_key(channel)).await.map_err(failed)?;
            Ok(values
                .iter()
                .filter_map(|v| serde_json::from_str::<ClientInfo>(v).ok())
                .map(Arc::new)
                .collect())
        })
    }

    fn presence_count<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, usize> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            conn.hlen(presence_key(channel)).await.map_err(failed)
        })
    }
}

#[cfg(test)]
mod tests {
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
        let broker = Arc::new(
            RedisBroker::connect(url, config.channel_meta_ttl)
                .await
                .expect("connect"),
        );
        Arc::new(Hub::with_broker(
            config,
            Arc::new(Metrics::default()),
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
}
