//! The Redis broker: several nodes share channels through one Redis.
//!
//! Keys of one channel share a hash tag (`herald:{chat:x}:...`) so the
//! layout also works on Redis Cluster:
//! - `herald:{CH}:meta`: a hash with the channel's `epoch` and `top`
//!   offset;
//! - `herald:{CH}:stream`: the history, a stream whose ids are
//!   `0-OFFSET`, each entry with the publication (`p`) and when it expires
//!   (`x`, ms since the Unix epoch);
//! - `herald:{CH}:presence` and `herald:{CH}:presence:exp`: who is
//!   present (client id -> info) and until when (see [`presence`]);
//! - pub/sub channel `herald:{CH}`: publications (`EPOCH\nOFFSET\nJSON`)
//!   and joins and leaves (`@j` / `@l`, the node, the info).
//!
//! One Lua script publishes atomically: next offset, history, pub/sub, so
//! every node sees the same (epoch, offset) sequence. Each node holds one
//! pub/sub connection ([`link`]), reconnected with backoff; what it misses
//! while it is away, or what Redis drops, the [`reader`] fills from the
//! history stream, or tells subscribers is lost. Nodes find each other
//! and ask each other through [`nodes`].

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands as _;

use super::{
    Broker, BrokerError, BrokerFuture, Control, NodeInfo, Placed, Reply, Request, Retention, Since,
    Sink, Stream,
};
use crate::config::BrokerConfig;
use crate::protocol::{ClientInfo, Publication};

mod commands;
mod link;
mod nodes;
mod presence;
mod reader;

use commands::Commands;
use link::Link;
use reader::Reader;

/// KEYS: meta, stream. ARGV: pub/sub channel, publication JSON (without
/// its offset), history size, history TTL (ms), a new epoch if the channel
/// has none, meta TTL (s), now (ms). Returns {epoch, offset}.
const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local size = tonumber(ARGV[3])
if size > 0 then
  local expires = tonumber(ARGV[7]) + tonumber(ARGV[4])
  redis.call('XADD', KEYS[2], 'MAXLEN', size, '0-' .. offset, 'p', ARGV[2], 'x', expires)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[1], epoch .. '\n' .. offset .. '\n' .. ARGV[2])
return {epoch, offset}
"#;

/// Channels' epochs, offsets, history and presence in Redis.
pub(crate) struct RedisBroker {
    conn: Arc<Commands>,
    publish: redis::Script,
    link: Arc<Link>,
    reader: Arc<Reader>,
    presence: presence::Presence,
    nodes: Arc<nodes::Nodes>,
    meta_ttl: u64,
    timeout: Duration,
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

fn pubsub_name(channel: &str) -> String {
    format!("herald:{{{channel}}}")
}

/// The channel a pub/sub name is of.
fn channel_of(name: &str) -> Option<&str> {
    name.strip_prefix("herald:{")?.strip_suffix('}')
}

fn failed(e: redis::RedisError) -> BrokerError {
    BrokerError(e.to_string())
}

/// Milliseconds since the Unix epoch, this node's clock.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_epoch() -> String {
    format!("{:08x}", rand::random::<u32>())
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

/// Stream entries as XRANGE returns them.
type Entries = Vec<(String, Vec<(String, String)>)>;

/// The entries' publications that have not expired, oldest first as
/// given.
fn publications(entries: Entries, now: u64) -> Vec<Arc<Publication>> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let offset = id.strip_prefix("0-")?.parse::<u64>().ok()?;
            let mut json = None;
            let mut expires = u64::MAX;
            for (k, v) in fields {
                match k.as_str() {
                    "p" => json = Some(v),
                    "x" => expires = v.parse().unwrap_or(u64::MAX),
                    _ => {}
                }
            }
            if expires <= now {
                return None;
            }
            let stored: Stored = serde_json::from_str(&json?).ok()?;
            Some(Arc::new(stored.publication(offset)))
        })
        .collect()
}

/// Reads publications of `channel` with offsets in `from..=to` (unexpired).
async fn read_range(
    commands: &Commands,
    channel: &str,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<Arc<Publication>>, BrokerError> {
    let end = to.map_or_else(|| "+".to_owned(), |t| format!("0-{t}"));
    let entries: Entries = commands
        .get()
        .await?
        .xrange(stream_key(channel), format!("0-{from}"), end)
        .await
        .map_err(|e| commands.failed(e))?;
    Ok(publications(entries, now_ms()))
}

/// A channel's (epoch, top); an empty epoch when Redis has none.
async fn read_position(commands: &Commands, channel: &str) -> Result<(Arc<str>, u64), BrokerError> {
    let (epoch, top): (Option<String>, Option<u64>) = redis::cmd("HMGET")
        .arg(meta_key(channel))
        .arg("epoch")
        .arg("top")
        .query_async(&mut commands.get().await?)
        .await
        .map_err(|e| commands.failed(e))?;
    Ok((epoch.unwrap_or_default().into(), top.unwrap_or(0)))
}

impl RedisBroker {
    /// Connects to `url` (`redis://HOST:PORT`) as node `node` (`name` in
    /// the node list) and starts the pub/sub reader; publications reach
    /// the sink given to [`RedisBroker::attach`]. Fails when Redis cannot
    /// be reached now; once connected, the broker reconnects by itself.
    pub(crate) async fn connect(
        url: &str,
        node: Arc<str>,
        name: String,
        config: &BrokerConfig,
        meta_ttl: Duration,
    ) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url).map_err(failed)?;
        let conn = Arc::new(Commands::new(client.clone(), config.timeout));
        // Fails now if Redis cannot be reached now.
        conn.get().await?;
        let (link, changes) = Link::new(config.heartbeat);
        let nodes = Arc::new(nodes::Nodes::new(
            node.clone(),
            name,
            conn.clone(),
            link.clone(),
            config,
        ));
        let reader = Arc::new(Reader::new(node, conn.clone(), nodes.clone(), link.clone()));
        let own = vec![nodes.channel()];
        tokio::spawn(link::run(
            link.clone(),
            client,
            reader.clone(),
            changes,
            own,
            config.reconnect_max_delay,
        ));
        // Ready when the pub/sub connection is: a node that answers
        // nothing from other nodes yet is not started.
        let deadline = tokio::time::Instant::now() + config.timeout.max(Duration::from_secs(1));
        while !link.is_up() {
            if tokio::time::Instant::now() > deadline {
                return Err(BrokerError(
                    "the pub/sub connection could not be made".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Self {
            presence: presence::Presence::new(conn.clone(), reader.node(), config.presence_ttl),
            conn,
            publish: redis::Script::new(PUBLISH),
            link,
            reader,
            nodes,
            meta_ttl: meta_ttl.as_secs().max(1),
            timeout: config.timeout,
        })
    }

    /// Where this node's publications arrive (the hub's fan-out).
    pub(crate) fn attach(&self, sink: Arc<dyn Sink>) {
        self.reader.attach(sink);
    }

    /// Waits until Redis confirmed this node's SUBSCRIBE to `channel`, if
    /// it is subscribed: from then on every publication is either in a
    /// history read or delivered live.
    async fn confirmed(&self, channel: &str) -> Result<(), BrokerError> {
        let Some(mut confirmed) = self.link.confirmation(&pubsub_name(channel)) else {
            return Ok(());
        };
        match tokio::time::timeout(self.timeout, confirmed.wait_for(|done| *done)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Ok(()), // unsubscribed meanwhile: nothing to wait for
            Err(_) => Err(BrokerError(
                "the pub/sub subscription is not confirmed (Redis unreachable?)".into(),
            )),
        }
    }

    async fn position(&self, channel: &str, create: bool) -> Result<(Arc<str>, u64), BrokerError> {
        if create {
            let key = meta_key(channel);
            let mut conn = self.conn.get().await?;
            let _: bool = conn
                .hset_nx(&key, "epoch", new_epoch())
                .await
                .map_err(|e| self.conn.failed(e))?;
            let _: bool = conn
                .expire(&key, self.meta_ttl as i64)
                .await
                .map_err(|e| self.conn.failed(e))?;
        }
        read_position(&self.conn, channel).await
    }
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
            let mut conn = self.conn.get().await?;
            let (epoch, offset): (String, u64) = self
                .publish
                .key(meta_key(channel))
                .key(stream_key(channel))
                .arg(pubsub_name(channel))
                .arg(json)
                .arg(retention.size)
                .arg(retention.ttl.as_millis().max(1) as u64)
                .arg(new_epoch())
                .arg(self.meta_ttl)
                .arg(now_ms())
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.conn.failed(e))?;
            Ok(Placed {
                epoch: epoch.into(),
                offset,
                delivered: 0,
            })
        })
    }

    fn history<'a>(&'a self, channel: &'a str, since: Since) -> BrokerFuture<'a, Stream> {
        Box::pin(async move {
            self.confirmed(channel).await?;
            let create = !matches!(since, Since::Last(_));
            let (epoch, top) = self.position(channel, create).await?;
            if self.link.wants(&pubsub_name(channel)) {
                self.reader.baseline(channel, &epoch, top);
            }
            let mut publications = match since {
                Since::Position => Vec::new(),
                Since::Offset(offset) => read_range(&self.conn, channel, offset + 1, None).await?,
                Since::Last(n) => {
                    let n = n.min(1 << 20);
                    let entries: Entries = self
                        .conn
                        .get()
                        .await?
                        .xrevrange_count(stream_key(channel), "+", "-", n)
                        .await
                        .map_err(|e| self.conn.failed(e))?;
                    let mut list = publications(entries, now_ms());
                    list.reverse();
                    list
                }
            };
            // The range is read after `top`: a publication made in between
            // is past the position this reply gives, and reaches a
            // subscriber live (its SUBSCRIBE was confirmed first); kept here
            // too, it would arrive twice.
            publications.retain(|p| p.offset <= top);
            Ok(Stream {
                epoch,
                top,
                publications,
            })
        })
    }

    fn subscribe(&self, channel: &str) {
        self.link.subscribe(pubsub_name(channel));
    }

    fn unsubscribe(&self, channel: &str) {
        self.link.unsubscribe(pubsub_name(channel));
        self.reader.forget(channel);
    }

    fn join(&self, channel: &str, info: &Arc<ClientInfo>) {
        self.presence.join(channel, info);
    }

    fn leave(&self, channel: &str, client: &str) {
        self.presence.leave(channel, client);
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Vec<Arc<ClientInfo>>> {
        Box::pin(self.presence.list(channel))
    }

    fn presence_count<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, usize> {
        Box::pin(self.presence.count(channel))
    }

    fn shared(&self) -> bool {
        true
    }

    fn health(&self) -> Result<(), String> {
        self.link.health()
    }

    fn stats(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut stats = self.link.stats();
        stats.extend(self.reader.stats());
        stats
    }

    fn set_control(&self, control: Arc<dyn Control>) {
        self.nodes.set_control(control);
    }

    fn ask<'a>(&'a self, node: &'a str, request: Request) -> BrokerFuture<'a, Option<Reply>> {
        Box::pin(self.nodes.ask(node, request))
    }

    fn heartbeat(&self, connections: usize) {
        self.nodes.heartbeat(connections);
        self.presence.refresh_if_due();
    }

    fn nodes(&self) -> BrokerFuture<'_, Vec<NodeInfo>> {
        Box::pin(self.nodes.list())
    }
}

#[cfg(test)]
mod tests;
