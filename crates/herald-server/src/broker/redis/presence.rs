//! Presence in Redis, with expiry: a node that dies leaves no one behind.
//!
//! Per channel, a hash client id -> info JSON and a sorted set client id
//! -> when the entry expires (ms). A node refreshes the entries of its own
//! clients every third of `presence_ttl`; readers drop the expired ones
//! first. Joins and leaves also go out on the channel's pub/sub, so that
//! every node pushes them to its subscribers. Each node also lists the
//! channels it has anyone present in, so that when it dies another node
//! makes its clients leave there ([`reap`]) at once, with leave pushes,
//! rather than at expiry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::commands::Commands;
use super::{now_ms, pubsub_name};
use crate::broker::BrokerError;
use crate::protocol::ClientInfo;

/// KEYS: hash, expiries. ARGV: client, info JSON, expires (ms), key TTL
/// (ms), pub/sub channel, event.
const JOIN: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
"#;

/// KEYS: hash, expiries. ARGV: client, pub/sub channel, event.
const LEAVE: &str = r#"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
"#;

/// KEYS: hash, expiries. ARGV: now (ms), `count` or `list`.
const READ: &str = r#"
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for i = 1, #gone, 500 do
  redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 499, #gone)))
end
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
end
if ARGV[2] == 'count' then
  return redis.call('HLEN', KEYS[1])
end
return redis.call('HVALS', KEYS[1])
"#;

/// The channels where node `node` has (or had) someone present: what
/// another node reads to say they left when `node` dies.
fn node_channels_key(node: &str) -> String {
    format!("herald:node:{node}:channels")
}

fn hash_key(channel: &str) -> String {
    format!("herald:{{{channel}}}:presence")
}

fn expiry_key(channel: &str) -> String {
    format!("herald:{{{channel}}}:presence:exp")
}

/// This node's side of presence in Redis.
pub(super) struct Presence {
    conn: Arc<Commands>,
    node: Arc<str>,
    ttl: Duration,
    read: redis::Script,
    /// This node's present clients: (channel, client) -> info JSON, kept
    /// to refresh them and to tell who left.
    held: Arc<std::sync::Mutex<HashMap<(String, String), String>>>,
    last_refresh: std::sync::Mutex<Instant>,
    /// Joins and leaves, carried out in order by one task: a leave never
    /// overtakes its join.
    ops: mpsc::UnboundedSender<Op>,
}

/// A join or leave for the presence task.
struct Op {
    join: bool,
    channel: String,
    client: String,
    json: String,
    event: String,
}

/// Carries out `ops` one after the other.
async fn apply(
    mut ops: mpsc::UnboundedReceiver<Op>,
    commands: Arc<Commands>,
    node: Arc<str>,
    ttl_ms: u64,
    (join, leave): (redis::Script, redis::Script),
) {
    let channels = node_channels_key(&node);
    while let Some(op) = ops.recv().await {
        let mut conn = match commands.get().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("redis broker: presence {}: {e}", op.channel);
                continue;
            }
        };
        let (hash, expiry, name) = (
            hash_key(&op.channel),
            expiry_key(&op.channel),
            pubsub_name(&op.channel),
        );
        let done = if op.join {
            let listed: redis::RedisResult<()> = redis::pipe()
                .sadd(&channels, &op.channel)
                .ignore()
                .pexpire(&channels, (ttl_ms * 2) as i64)
                .ignore()
                .query_async(&mut conn)
                .await;
            if let Err(e) = listed {
                commands.failed(e);
            }
            join.key(hash)
                .key(expiry)
                .arg(&op.client)
                .arg(&op.json)
                .arg(now_ms() + ttl_ms)
                .arg(ttl_ms * 2)
                .arg(name)
                .arg(&op.event)
                .invoke_async::<()>(&mut conn)
                .await
        } else {
            leave
                .key(hash)
                .key(expiry)
                .arg(&op.client)
                .arg(name)
                .arg(&op.event)
                .invoke_async::<()>(&mut conn)
                .await
        };
        if let Err(e) = done {
            // The refresh writes joins again; a lost leave expires.
            let e = commands.failed(e);
            tracing::warn!("redis broker: presence {}: {e}", op.channel);
        }
    }
}

impl Presence {
    pub(super) fn new(conn: Arc<Commands>, node: Arc<str>, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(300));
        let (join, leave) = (redis::Script::new(JOIN), redis::Script::new(LEAVE));
        let (ops, rx) = mpsc::unbounded_channel();
        tokio::spawn(apply(
            rx,
            conn.clone(),
            node.clone(),
            ttl.as_millis() as u64,
            (join.clone(), leave.clone()),
        ));
        Self {
            conn,
            node,
            ttl,
            read: redis::Script::new(READ),
            held: Default::default(),
            last_refresh: std::sync::Mutex::new(Instant::now()),
            ops,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    pub(super) fn join(&self, channel: &str, info: &Arc<ClientInfo>) {
        let json = serde_json::to_string(&**info).unwrap_or_default();
        self.held()
            .insert((channel.to_owned(), info.client.clone()), json.clone());
        let _ = self.ops.send(Op {
            join: true,
            channel: channel.to_owned(),
            client: info.client.clone(),
            event: format!("@j\n{}\n{json}", self.node),
            json,
        });
    }

    pub(super) fn leave(&self, channel: &str, client: &str) {
        let Some(json) = self.held().remove(&(channel.to_owned(), client.to_owned())) else {
            return;
        };
        let _ = self.ops.send(Op {
            join: false,
            channel: channel.to_owned(),
            client: client.to_owned(),
            event: format!("@l\n{}\n{json}", self.node),
            json,
        });
    }

    pub(super) async fn list(&self, channel: &str) -> Result<Vec<Arc<ClientInfo>>, BrokerError> {
        self.list_at(channel, now_ms()).await
    }

    /// Who is present in `channel` at `now` (ms since the Unix epoch).
    pub(super) async fn list_at(
        &self,
        channel: &str,
        now: u64,
    ) -> Result<Vec<Arc<ClientInfo>>, BrokerError> {
        let mut conn = self.conn.get().await?;
        let values: Vec<String> = self
            .read
            .key(hash_key(channel))
            .key(expiry_key(channel))
            .arg(now)
            .arg("list")
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.conn.failed(e))?;
        Ok(values
            .iter()
            .filter_map(|v| serde_json::from_str::<ClientInfo>(v).ok())
            .map(Arc::new)
            .collect())
    }

    pub(super) async fn count(&self, channel: &str) -> Result<usize, BrokerError> {
        let mut conn = self.conn.get().await?;
        self.read
            .key(hash_key(channel))
            .key(expiry_key(channel))
            .arg(now_ms())
            .arg("count")
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.conn.failed(e))
    }

    /// Every third of the TTL: this node's entries again, with a new
    /// expiry (and written back if Redis lost them).
    pub(super) fn refresh_if_due(&self) {
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < self.ttl / 3 {
                return;
            }
            *last = Instant::now();
        }
        let entries: Vec<((String, String), String)> = self
            .held()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if entries.is_empty() {
            return;
        }
        let expires = now_ms() + self.ttl_ms();
        let key_ttl = self.ttl_ms() * 2;
        let channels = node_channels_key(&self.node);
        let commands = self.conn.clone();
        tokio::spawn(async move {
            let Ok(mut conn) = commands.get().await else {
                return;
            };
            for chunk in entries.chunks(500) {
                let mut pipe = redis::pipe();
                for ((channel, client), json) in chunk {
                    let (hash, expiry) = (hash_key(channel), expiry_key(channel));
                    pipe.sadd(&channels, channel).ignore();
                    pipe.hset(&hash, client, json).ignore();
                    pipe.zadd(&expiry, client, expires).ignore();
                    pipe.pexpire(&hash, key_ttl as i64).ignore();
                    pipe.pexpire(&expiry, key_ttl as i64).ignore();
                }
                pipe.pexpire(&channels, key_ttl as i64).ignore();
                if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                    let e = commands.failed(e);
                    tracing::warn!("redis broker: presence refresh: {e}");
                    return;
                }
            }
        });
    }
}

/// Node `dead` stopped without a word: its clients leave every channel
/// it had them in, with a leave event that every node pushes to its
/// subscribers, unless another node is doing it already. `ttl` is the
/// presence TTL (how long the claim to do it holds).
pub(super) async fn reap(
    commands: &Commands,
    dead: &str,
    ttl: Duration,
) -> Result<usize, BrokerError> {
    let mut conn = commands.get().await?;
    let claim: Option<String> = redis::cmd("SET")
        .arg(format!("herald:node:{dead}:reaped"))
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg((ttl * 2).as_millis() as u64)
        .query_async(&mut conn)
        .await
        .map_err(|e| commands.failed(e))?;
    if claim.is_none() {
        return Ok(0);
    }
    let list = node_channels_key(dead);
    let channels: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&list)
        .query_async(&mut conn)
        .await
        .map_err(|e| commands.failed(e))?;
    let prefix = format!("{dead}.");
    let leave = redis::Script::new(LEAVE);
    let mut reaped = 0;
    for channel in channels {
        let entries: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(hash_key(&channel))
            .query_async(&mut conn)
            .await
            .map_err(|e| commands.failed(e))?;
        for (client, json) in entries.into_iter().filter(|(c, _)| c.starts_with(&prefix)) {
            leave
                .key(hash_key(&channel))
                .key(expiry_key(&channel))
                .arg(&client)
                .arg(pubsub_name(&channel))
                .arg(format!("@l\n{dead}\n{json}"))
                .invoke_async::<()>(&mut conn)
                .await
                .map_err(|e| commands.failed(e))?;
            reaped += 1;
        }
    }
    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&list).query_async(&mut conn).await;
    Ok(reaped)
}
