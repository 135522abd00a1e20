//! Nodes that share a Redis: who is alive, and requests from one node to
//! another.
//!
//! Each node has a pub/sub channel of its own, `herald:node:ID`, on the
//! connection that carries its channels (so the heartbeat's probe through
//! it tests that very connection). On it arrive requests (`ask`), answers
//! to this node's requests (`answer`) and its own probes. The registry is
//! a sorted set of node ids by last heartbeat plus a key per node with its
//! details that expires after three heartbeats.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::commands::Commands;
use super::link::Link;
use super::now_ms;
use crate::broker::{BrokerError, Control, NodeInfo, Reply, Request};

const REGISTRY: &str = "herald:nodes";

fn channel_of(node: &str) -> String {
    format!("herald:node:{node}")
}

fn info_key(node: &str) -> String {
    format!("herald:node:{node}:info")
}

/// What goes over a node's channel.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Envelope {
    Ask {
        id: u64,
        from: String,
        request: Request,
    },
    Answer {
        id: u64,
        reply: Reply,
    },
    Probe(u64),
}

/// This node in the registry, and its requests in flight.
pub(super) struct Nodes {
    id: Arc<str>,
    name: String,
    conn: Arc<Commands>,
    link: Arc<Link>,
    control: OnceLock<Arc<dyn Control>>,
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next: AtomicU64,
    heartbeat: Duration,
    timeout: Duration,
    presence_ttl: Duration,
    last_beat: std::sync::Mutex<Option<Instant>>,
    /// The other nodes alive at the last heartbeat: one missing from the
    /// next has died, and its clients leave presence.
    live: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl Nodes {
    pub(super) fn new(
        id: Arc<str>,
        name: String,
        conn: Arc<Commands>,
        link: Arc<Link>,
        config: &crate::config::BrokerConfig,
    ) -> Self {
        Self {
            id,
            name,
            conn,
            link,
            control: OnceLock::new(),
            pending: Default::default(),
            next: AtomicU64::new(1),
            heartbeat: config.heartbeat,
            timeout: config.timeout,
            presence_ttl: config.presence_ttl,
            last_beat: Default::default(),
            live: Default::default(),
        }
    }

    /// This node's pub/sub channel.
    pub(super) fn channel(&self) -> String {
        channel_of(&self.id)
    }

    pub(super) fn set_control(&self, control: Arc<dyn Control>) {
        let _ = self.control.set(control);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message on this node's channel.
    pub(super) fn message(&self, payload: &[u8]) {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else {
            return;
        };
        match envelope {
            Envelope::Probe(n) => self.link.probe_seen(n),
            Envelope::Answer { id, reply } => {
                if let Some(tx) = self.pending().remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            Envelope::Ask { id, from, request } => {
                let Some(control) = self.control.get().cloned() else {
                    return;
                };
                let commands = self.conn.clone();
                tokio::spawn(async move {
                    let reply = control.handle(request).await;
                    let answer = Envelope::Answer { id, reply };
                    if let (Ok(text), Ok(mut conn)) =
                        (serde_json::to_string(&answer), commands.get().await)
                        && let Err(e) = conn.publish::<_, _, ()>(channel_of(&from), text).await
                    {
                        commands.failed(e);
                    }
                });
            }
        }
    }

    /// Sends `request` to node `node`; its reply, or `None` if no such
    /// node is listening or it did not answer within the timeout.
    pub(super) async fn ask(
        &self,
        node: &str,
        request: Request,
    ) -> Result<Option<Reply>, BrokerError> {
        if node == &*self.id {
            return Ok(match self.control.get() {
                Some(control) => Some(control.handle(request).await),
                None => None,
            });
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        let envelope = Envelope::Ask {
            id,
            from: self.id.to_string(),
            request,
        };
        let text = serde_json::to_string(&envelope).map_err(|e| BrokerError(e.to_string()))?;
        let listeners: Result<usize, _> = match self.conn.get().await {
            Ok(mut conn) => conn
                .publish(channel_of(node), text)
                .await
                .map_err(|e| self.conn.failed(e)),
            Err(e) => Err(e),
        };
        let answer = match listeners {
            Ok(0) => None,
            Ok(_) => tokio::time::timeout(self.timeout, rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(e) => {
                self.pending().remove(&id);
                return Err(e);
            }
        };
        self.pending().remove(&id);
        Ok(answer)
    }

    /// Called every second: at each heartbeat, this node's registry entry
    /// and a probe through its own channel.
    pub(super) fn heartbeat(&self, connections: usize) {
        {
            let mut last = self.last_beat.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.heartbeat) {
                return;
            }
            *last = Some(Instant::now());
        }
        let info = NodeInfo {
            id: self.id.to_string(),
            name: self.name.clone(),
            connections,
            updated: now_ms(),
        };
        let probe = self.next.fetch_add(1, Ordering::Relaxed);
        let (Ok(info_json), Ok(probe_json)) = (
            serde_json::to_string(&info),
            serde_json::to_string(&Envelope::Probe(probe)),
        ) else {
            return;
        };
        let ttl = (self.heartbeat * 3).as_millis().max(1) as u64;
        let id = self.id.to_string();
        let commands = self.conn.clone();
        let link = self.link.clone();
        let live = self.live.clone();
        let presence_ttl = self.presence_ttl;
        tokio::spawn(async move {
            let mut conn = match commands.get().await {
                Ok(conn) => conn,
                Err(e) => return link.commands_done(Err(e.0)),
            };
            let done: Result<(), _> = redis::pipe()
                .cmd("SET")
                .arg(info_key(&id))
                .arg(info_json)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .zadd(REGISTRY, &id, info.updated)
                .ignore()
                .publish(channel_of(&id), probe_json)
                .ignore()
                .query_async(&mut conn)
                .await;
            // A probe counts once Redis took it: one that never left says
            // nothing of the subscription, the failure says enough.
            if done.is_ok() {
                link.probe_sent(probe);
            }
            link.commands_done(done.map_err(|e| commands.failed(e).0));
            // Who died since the last heartbeat.
            let Ok((now, _)) = registry(&commands).await else {
                return;
            };
            let now: HashSet<String> = now.into_iter().map(|n| n.id).collect();
            let gone: Vec<String> = {
                let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
                let gone = live.difference(&now).cloned().collect();
                *live = now;
                gone
            };
            for dead in gone.iter().filter(|d| **d != id) {
                match super::presence::reap(&commands, dead, presence_ttl).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        "redis broker: node {dead} is gone; {n} presence entries left for it"
                    ),
                    Err(e) => tracing::warn!(
                        "redis broker: node {dead} is gone; its presence stays until it expires: {e}"
                    ),
                }
            }
        });
    }

    /// The nodes whose heartbeat is recent, by id; forgets the others.
    /// (`/api/info`.)
    pub(super) async fn list(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let (mut live, gone) = registry(&self.conn).await?;
        if !gone.is_empty()
            && let Ok(mut conn) = self.conn.get().await
        {
            let _: Result<(), _> = conn.zrem(REGISTRY, gone).await;
        }
        live.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(live)
    }
}

/// The registry: the nodes whose entry has not expired, and the ids of
/// those whose entry has.
async fn registry(commands: &Commands) -> Result<(Vec<NodeInfo>, Vec<String>), BrokerError> {
    let mut conn = commands.get().await?;
    let ids: Vec<String> = conn
        .zrange(REGISTRY, 0, -1)
        .await
        .map_err(|e| commands.failed(e))?;
    if ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let keys: Vec<String> = ids.iter().map(|id| info_key(id)).collect();
    let infos: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .map_err(|e| commands.failed(e))?;
    let mut live = Vec::new();
    let mut gone = Vec::new();
    for (id, info) in ids.into_iter().zip(infos) {
        match info.and_then(|i| serde_json::from_str::<NodeInfo>(&i).ok()) {
            Some(info) => live.push(info),
            None => gone.push(id),
        }
    }
    Ok((live, gone))
}
