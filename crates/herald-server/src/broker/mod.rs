//! The broker seam: where a publication gets its place in its channel's
//! sequence, where history and presence are kept, and how publications
//! reach every node subscribed to a channel.
//!
//! Every publication, from the HTTP API, a client, an endpoint or (with a
//! network broker) another node, takes one path: [`Broker::publish`]
//! assigns the channel's next offset under its epoch and keeps it in
//! history; the broker then hands it, in offset order, to the [`Sink`] of
//! every node with local subscribers (this one included), and the hub fans
//! it out. [`MemoryBroker`] is the single-process default; [`redis`] keeps
//! channels in Redis for several nodes, and [`sharded`] spreads channels
//! over several brokers.
//!
//! With several nodes the broker also carries what nodes say to each
//! other ([`Control`]): a request for the node that holds a connection,
//! and the list of live nodes.
//!
//! Calls that only state this node's interest (`subscribe`, presence
//! changes) return at once: a network broker sends them in the background,
//! in order. Calls that need an answer (`publish`, `history`, presence
//! queries) return futures; the memory broker's are ready when made.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{ClientInfo, Publication};

mod memory;
pub(crate) mod redis;
pub(crate) mod sharded;

pub(crate) use memory::MemoryBroker;

/// What a broker call returns: ready at once for the memory broker, a
/// network round trip for others.
pub(crate) type BrokerFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// A broker that could not answer (a network broker's connection is
/// down). Clients get error 100 and may retry; nothing is half done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerError(pub(crate) String);

/// How a [`BrokerError`]'s message starts, wherever it is passed on.
pub(crate) const UNAVAILABLE: &str = "broker unavailable: ";

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{UNAVAILABLE}{}", self.0)
    }
}

/// How long a channel keeps its publications: its namespace's
/// `history_size` and `history_ttl`, passed with each publication so a
/// broker needs no configuration of namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    /// At most this many publications (0: none kept).
    pub(crate) size: usize,
    /// Each for at most this long.
    pub(crate) ttl: Duration,
}

/// Where a publication landed: the channel's epoch and its offset there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The channel's epoch.
    pub(crate) epoch: Arc<str>,
    /// The publication's offset.
    pub(crate) offset: u64,
    /// Subscribers on this node it was queued for, when the broker
    /// delivered it within the call (the memory broker); 0 otherwise.
    pub(crate) delivered: usize,
}

/// Which part of a channel's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// None: only the channel's position (epoch, top offset). Creates the
    /// channel (a new epoch) if the broker has never heard of it: a
    /// subscriber needs a position to recover from later.
    Position,
    /// Every kept publication after this offset (recovery). Creates the
    /// channel like `Position`.
    Offset(u64),
    /// The newest `n` kept publications (`usize::MAX`: all). An unknown
    /// channel stays unknown: empty epoch, offset 0.
    Last(usize),
}

/// A channel's position and the publications read.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// The channel's epoch; empty if the channel is unknown.
    pub(crate) epoch: Arc<str>,
    /// The channel's last offset.
    pub(crate) top: u64,
    /// The publications read, oldest first.
    pub(crate) publications: Vec<Arc<Publication>>,
}

impl Stream {
    /// Whether these publications are exactly what a client that last saw
    /// (`epoch`, `offset`) missed: same epoch, and history reaches back to
    /// the offset after it.
    pub(crate) fn recovers(&self, epoch: Option<&str>, offset: u64) -> bool {
        if epoch != Some(&*self.epoch) || offset > self.top {
            // A different epoch: the channel was recreated (or this server
            // restarted) and offsets mean nothing any more.
            return false;
        }
        match self.publications.first() {
            Some(first) => first.offset == offset + 1,
            None => offset == self.top,
        }
    }
}

/// The node's side of the broker: where publications arrive, in offset
/// order per channel, for local fan-out.
pub(crate) trait Sink: Send + Sync {
    /// Delivers `publication` of `channel` (epoch `epoch`) to this node's
    /// subscribers. Returns how many it was queued for.
    fn deliver(&self, channel: &str, epoch: &Arc<str>, publication: &Arc<Publication>) -> usize;

    /// Publications of `channel` up to (`epoch`, `offset`) were lost on
    /// their way here and history no longer holds them: subscribers are
    /// told, and the next delivery continues after `offset`.
    fn gap(&self, _channel: &str, _epoch: &Arc<str>, _offset: u64) {}

    /// `info` joined (`joined`) or left `channel` on another node.
    fn presence(&self, _channel: &str, _joined: bool, _info: &Arc<ClientInfo>) {}
}

/// A request from one node to another (the HTTP API's disconnect, a
/// transport's POST for a stream another node holds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    /// Close connection `client` (API disconnect, code 4002).
    Disconnect { client: String, reason: String },
    /// Hand `commands` to stream session `sid` (`POST /connection/send`).
    Send { sid: u64, commands: Vec<String> },
}

/// A node's answer to a [`Request`]: what the HTTP side would have
/// answered had the request reached it directly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Reply {
    /// HTTP status.
    pub(crate) status: u16,
    /// JSON body.
    pub(crate) body: String,
}

/// What answers other nodes' requests on this node (the server).
pub(crate) trait Control: Send + Sync {
    /// Carries out `request` here.
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Reply> + Send>>;
}

/// A node as the node registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeInfo {
    /// Random id of the node's process (prefix of its client ids).
    pub(crate) id: String,
    /// `node_name`.
    pub(crate) name: String,
    /// Its live connections at its last heartbeat.
    pub(crate) connections: usize,
    /// Milliseconds since the Unix epoch of its last heartbeat.
    pub(crate) updated: u64,
}

/// Publications, history and presence, for one node or many.
pub(crate) trait Broker: Send + Sync + std::fmt::Debug {
    /// Assigns `publication` the channel's next offset (its `offset` field
    /// is ignored), keeps it under `retention`, and delivers it to every
    /// subscribed node's sink.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BrokerFuture<'a, Placed>;

    /// Reads `channel`'s position and history (see [`Since`]).
    fn history<'a>(&'a self, channel: &'a str, since: Since) -> BrokerFuture<'a, Stream>;

    /// This node has its first local subscriber of `channel`: deliver its
    /// publications here from now on. A network broker must make a
    /// `history` call made after this one see every publication it will
    /// not deliver.
    fn subscribe(&self, channel: &str);

    /// This node's last local subscriber of `channel` left.
    fn unsubscribe(&self, channel: &str);

    /// `info` is present in `channel`.
    fn join(&self, channel: &str, info: &Arc<ClientInfo>);

    /// Client `client` left `channel`.
    fn leave(&self, channel: &str, client: &str);

    /// Who is present in `channel`, on every node.
    fn presence<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Vec<Arc<ClientInfo>>>;

    /// How many are present in `channel`.
    fn presence_count<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, usize>;

    /// Periodic upkeep: expire history by TTL, forget channels idle past
    /// their meta TTL. `Server::serve` calls it every second.
    fn sweep(&self) {}

    /// Channels whose position the broker holds (for tests and metrics).
    fn channels_held(&self) -> usize {
        0
    }

    /// Channels with kept publications, where the broker can list them
    /// cheaply (the API's channel list); a network broker may list none.
    fn with_history(&self) -> Vec<Arc<str>> {
        Vec::new()
    }

    /// Whether other nodes share this broker: client ids then carry the
    /// node's id, and requests for other nodes' connections are forwarded.
    fn shared(&self) -> bool {
        false
    }

    /// Why the broker cannot serve now (`/health` turns 503), if so.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Counters for `/metrics`: (name, help, value), cumulative.
    fn stats(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }

    /// Where requests from other nodes are answered.
    fn set_control(&self, _control: Arc<dyn Control>) {}

    /// Sends `request` to node `node` and waits for its reply; `None`
    /// when no such node answered in time.
    fn ask<'a>(&'a self, _node: &'a str, _request: Request) -> BrokerFuture<'a, Option<Reply>> {
        Box::pin(async { Ok(None) })
    }

    /// This node's heartbeat: says it is alive with `connections` (the
    /// node list), probes the broker's connection. `Server::serve` calls
    /// it every second; a broker keeps its own pace.
    fn heartbeat(&self, _connections: usize) {}

    /// The live nodes, this one included; empty when nodes are not
    /// shared.
    fn nodes(&self) -> BrokerFuture<'_, Vec<NodeInfo>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Runs a broker future that is expected to be ready (the memory broker's
/// always are) to completion without an executor; a pending one is
/// spawned on the current tokio runtime so that it still completes.
/// For callers that cannot wait: endpoint callbacks and `Drop`.
pub(crate) fn detach<T: Send + 'static>(
    future: impl Future<Output = Result<T, BrokerError>> + Send + 'static,
) -> Option<Result<T, BrokerError>> {
    let mut future = Box::pin(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => Some(r),
        std::task::Poll::Pending => {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = future.await {
                        tracing::warn!("{e}");
                    }
                });
            }
            None
        }
    }
}
