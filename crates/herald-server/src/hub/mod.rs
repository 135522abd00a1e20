//! The hub: this node's clients, their subscriptions, and fan-out of what
//! the broker delivers.
//!
//! Every publication goes through the broker ([`crate::broker`]), which
//! assigns its offset and keeps history; the broker hands it back to the
//! hub's [`local::Fanout`], which serializes it once into a text frame
//! payload and queues a reference-counted handle to the same bytes in
//! every subscriber's outbox. A subscribe registers the subscriber first,
//! buffering what arrives for it, then reads the channel's position (and
//! what it missed) from the broker, and queues the reply followed by the
//! buffered publications that history did not hold: recovery never
//! leaves a gap or a duplicate, whichever broker sits behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::broker::{self, Broker, MemoryBroker, Retention, Since};
use crate::config::{NamespaceConfig, QueuePolicy, ServerConfig};
use crate::delivery::Disconnect;
use crate::delivery::{Item, Outbox, prepared};
use crate::metrics::Metrics;
use crate::protocol::{self, ClientInfo, Error, ErrorCode, Publication};

mod local;

pub(crate) use local::PresenceDiff;
use local::{Channels, Fanout, Subscriber};

/// A connection as the hub knows it.
#[derive(Debug)]
pub(crate) struct Client {
    /// Unique id, also in `info.client`.
    pub(crate) id: u64,
    pub(crate) info: Arc<ClientInfo>,
    pub(crate) outbox: Arc<Outbox>,
    /// Channels this client may subscribe to (token claim); `None`: all.
    pub(crate) allowed: Option<Vec<String>>,
    /// Set to close the connection with (code, reason): API disconnect,
    /// shutdown.
    pub(crate) kick: Mutex<Option<Disconnect>>,
    /// A client that is not announced: no join or leave pushes, no
    /// presence (a poll's short-lived reader; pollers are present through
    /// their lease instead, see `Hub::lease_join`).
    pub(crate) silent: bool,
    /// The channels this client is subscribed to. Changed only under the
    /// hub's channel lock; kept here so that per-client questions (how
    /// many, which namespaces) do not scan every channel.
    channels: Mutex<Vec<Arc<str>>>,
}

impl Client {
    /// Whether the token allows `channel`: exact names, or prefixes ending
    /// in `*` (`chat:*`).
    pub(crate) fn may_access(&self, channel: &str) -> bool {
        self.allowed.as_ref().is_none_or(|list| {
            list.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => channel.starts_with(prefix),
                None => p == channel,
            })
        })
    }
}

/// A channel's kept publications, newest last, with its epoch and top
/// offset: the result of `history`.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// The channel's epoch; empty if the channel is unknown.
    pub epoch: String,
    /// The channel's last offset.
    pub offset: u64,
    /// The kept publications, oldest first.
    pub publications: Vec<Publication>,
}

/// Result of a publish.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Published {
    /// The publication's offset in its channel.
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: String,
    /// Subscribers on this node it was queued for.
    pub delivered: usize,
}

/// Result of a subscribe, sent in the reply.
#[derive(Debug, Serialize)]
struct Subscribed<'a> {
    epoch: &'a str,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
    /// Present, possibly empty, whenever recovery was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    publications: Option<Vec<&'a Publication>>,
}

/// This node's clients and channels, in front of a broker.
#[derive(Debug)]
pub struct Hub {
    config: Arc<ServerConfig>,
    fanout: Arc<Fanout>,
    broker: Arc<dyn Broker>,
    /// This node's id: random per process; with a shared broker, the
    /// prefix of its client ids (`3f2a9c1e.17`), so that ids are unique
    /// across nodes and say which node holds a connection.
    node: Arc<str>,
    /// Whether other nodes share the broker.
    shared: bool,
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    next_client: AtomicU64,
    metrics: Arc<Metrics>,
    /// Set by shutdown: connections registered from now on are told to go
    /// at once.
    draining: std::sync::atomic::AtomicBool,
    /// The token verifier built from the configuration once (`None`: dev
    /// mode); `Err` (a key that would not load) refuses every token.
    tokens: Result<Option<crate::auth::TokenVerifier>, String>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A random node id: 8 hex digits.
pub(crate) fn new_node_id() -> Arc<str> {
    format!("{:08x}", rand::random::<u32>()).into()
}

fn unavailable(e: broker::BrokerError) -> Error {
    tracing::warn!("{e}");
    // `BrokerError` displays as "broker unavailable: ...", which the API
    // answers with 503 (retry later) rather than 500.
    Error::new(ErrorCode::Internal, e.to_string())
}

impl Hub {
    /// An empty hub with the in-memory broker.
    pub fn new(config: Arc<ServerConfig>, metrics: Arc<Metrics>) -> Self {
        let (ttl, max) = (config.channel_meta_ttl, config.max_idle_channels);
        Self::with_broker(config, metrics, new_node_id(), |sink| {
            Arc::new(MemoryBroker::new(sink, ttl, max))
        })
    }

    /// An empty hub of node `node` in front of the broker `make` builds
    /// around the hub's sink.
    pub(crate) fn with_broker(
        config: Arc<ServerConfig>,
        metrics: Arc<Metrics>,
        node: Arc<str>,
        make: impl FnOnce(Arc<dyn broker::Sink>) -> Arc<dyn Broker>,
    ) -> Self {
        let fanout = Arc::new(Fanout {
            config: config.clone(),
            metrics: metrics.clone(),
            channels: Mutex::default(),
        });
        let broker = make(fanout.clone());
        Self {
            fanout,
            shared: broker.shared(),
            broker,
            node,
            clients: Mutex::default(),
            next_client: AtomicU64::new(1),
            metrics,
            draining: Default::default(),
            tokens: crate::auth::TokenVerifier::from_config(&config),
            config,
        }
    }

    /// How `connect` and `refresh` check tokens.
    pub(crate) fn tokens(&self) -> &Result<Option<crate::auth::TokenVerifier>, String> {
        &self.tokens
    }

    /// Marks the hub as draining: from now on every connection that
    /// completes `connect` is closed with 1001 and a retry hint of the whole
    /// drain window. Returns the connections present until now.
    pub(crate) fn start_drain(&self) -> Vec<Arc<Client>> {
        self.draining.store(true, Ordering::SeqCst);
        self.clients()
    }

    /// Clients on this node subscribed to any channel of `namespace`.
    pub(crate) fn clients_in(&self, namespace: &str) -> Vec<Arc<Client>> {
        let channels = lock(&self.fanout.channels);
        let mut seen = std::collections::HashSet::new();
        channels
            .map
            .iter()
            .filter(|(name, _)| {
                self.config
                    .namespace_of(name)
                    .is_some_and(|(ns, _)| ns == namespace)
            })
            .flat_map(|(_, ch)| ch.subscribers.values())
            .filter(|s| seen.insert(s.client.id))
            .map(|s| s.client.clone())
            .collect()
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn namespace(&self, channel: &str) -> Result<&NamespaceConfig, ErrorCode> {
        self.config
            .namespace_of(channel)
            .map(|(_, ns)| ns)
            .ok_or(ErrorCode::UnknownChannel)
    }

    /// Registers a connection that completed `connect` (not silent).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn register(
        &self,
        user: String,
        name: Option<String>,
        allowed: Option<Vec<String>>,
    ) -> Arc<Client> {
        self.register_as(user, name, allowed, false, None)
    }

    /// [`Hub::register`], `silent` or not (see [`Client::silent`]), and
    /// named `shown` where the client is not a connection of its own (a
    /// poller: `p17` in presence and to endpoints, whichever request).
    pub(crate) fn register_as(
        &self,
        user: String,
        name: Option<String>,
        allowed: Option<Vec<String>>,
        silent: bool,
        shown: Option<String>,
    ) -> Arc<Client> {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut shown = shown.unwrap_or_else(|| id.to_string());
        if self.shared {
            shown = format!("{}.{shown}", self.node);
        }
        let client = Arc::new(Client {
            id,
            info: Arc::new(ClientInfo {
                client: shown,
                user,
                name,
            }),
            outbox: Arc::default(),
            allowed,
            kick: Mutex::new(None),
            silent,
            channels: Mutex::default(),
        });
        lock(&self.clients).insert(id, client.clone());
        if self.draining.load(Ordering::SeqCst) {
            let retry_ms = self.config.drain.as_millis();
            kick(&client, Disconnect::Shutdown { retry_ms });
        }
        client
    }

    /// Removes a connection from every channel (leave pushes go out) and
    /// from the hub. Returns the channels it was subscribed to.
    pub(crate) fn unregister(&self, client: &Client) -> Vec<Arc<str>> {
        let names: Vec<Arc<str>> = lock(&client.channels).clone();
        let mut emptied = Vec::new();
        {
            let mut channels = lock(&self.fanout.channels);
            for name in &names {
                if self.leave(&mut channels, name, client) {
                    emptied.push(name.clone());
                }
            }
        }
        self.left(&names, &emptied, client);
        // Last: once a connection no longer counts, it is out of every
        // channel and of presence (on every thread).
        lock(&self.clients).remove(&client.id);
        names
    }

    /// Tells the broker what `client` leaving `names` changed: presence,
    /// and this node's interest in the channels it was the last local
    /// subscriber of (`emptied`). Called without the hub's lock, which
    /// the broker's delivery takes.
    fn left(&self, names: &[Arc<str>], emptied: &[Arc<str>], client: &Client) {
        for name in names.iter().filter(|_| !client.silent) {
            if self.namespace(name).is_ok_and(|ns| ns.presence) {
                self.broker.leave(name, &client.info.client);
            }
        }
        for name in emptied {
            self.broker.unsubscribe(name);
        }
    }

    /// Publishes `data` to `channel`, from a client (`info`) or the server.
    /// Data over `max_publication_size` or `max_publication_depth` is
    /// refused (error 109), whoever sends it.
    pub async fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
        info: Option<&ClientInfo>,
    ) -> Result<Published, Error> {
        crate::limits::check_data(&data, &self.config)?;
        self.publish_checked(channel, data, info).await
    }

    /// [`Hub::publish`] for code that cannot wait (an [`Endpoint`](crate::Endpoint)
    /// callback, a timer): `Some` with the result when the broker answered
    /// within the call, as the in-memory broker always does; `None` when
    /// the publication is still on its way (a network broker), in which
    /// case it completes in the background and a failure is logged.
    pub fn publish_detached(
        self: &Arc<Self>,
        channel: &str,
        data: Box<RawValue>,
        info: Option<&ClientInfo>,
    ) -> Option<Result<Published, Error>> {
        let hub = self.clone();
        let channel = channel.to_owned();
        let info = info.cloned();
        let publish = async move {
            hub.publish(&channel, data, info.as_ref())
                .await
                .map_err(|e| broker::BrokerError(e.message.into_owned()))
        };
        broker::detach(publish).map(|r| r.map_err(|e| Error::new(ErrorCode::Internal, e.0)))
    }

    /// [`Hub::publish`] of data that already passed `limits::check_data`
    /// (a broadcast checks its one `data` once, not once per channel).
    pub(crate) async fn publish_checked(
        &self,
        channel: &str,
        data: Box<RawValue>,
        info: Option<&ClientInfo>,
    ) -> Result<Published, Error> {
        let ns = self.namespace(channel)?;
        let retention = Retention {
            size: ns.history_size,
            ttl: ns.history_ttl,
        };
        let publication = Publication {
            offset: 0,
            data,
            info: info.cloned(),
            time: ns.server_time.then(crate::auth::unix_now_ms),
        };
        let placed = self
            .broker
            .publish(channel, publication, retention)
            .await
            .map_err(unavailable)?;
        Ok(Published {
            offset: placed.offset,
            epoch: placed.epoch.to_string(),
            delivered: placed.delivered,
        })
    }

    /// Subscribes `client` and queues the reply for command `id` (with the
    /// recovered publications when asked). Returns whether this is the
    /// client's first channel in the namespace (when an endpoint's
    /// `on_open` is due).
    pub(crate) async fn subscribe(
        &self,
        client: &Arc<Client>,
        id: u32,
        params: &protocol::SubscribeParams,
    ) -> Result<bool, ErrorCode> {
        let channel = params.channel.as_str();
        let ns = self.namespace(channel)?;
        if !client.may_access(channel) {
            return Err(ErrorCode::PermissionDenied);
        }
        let (first_in_namespace, first_here) = {
            let mut channels = lock(&self.fanout.channels);
            if channels
                .map
                .get(channel)
                .is_some_and(|ch| ch.subscribers.contains_key(&client.id))
            {
                return Err(ErrorCode::AlreadySubscribed);
            }
            if lock(&client.channels).len() >= self.config.max_subscriptions {
                return Err(ErrorCode::LimitExceeded);
            }
            let first_in_namespace = !self.in_namespace(client, channel);
            let ch = channels.get_or_create(channel);
            let first_here = ch.subscribers.is_empty();
            ch.subscribers.insert(
                client.id,
                Subscriber {
                    client: client.clone(),
                    buffer: Some(Vec::new()),
                },
            );
            lock(&client.channels).push(ch.name.clone());
            (first_in_namespace, first_here)
        };
        if first_here {
            self.broker.subscribe(channel);
        }
        // From here on every publication of the channel reaches the
        // subscriber's buffer, so the history read next and the buffer
        // overlap: nothing falls between them.
        let offset = params.offset.unwrap_or(0);
        let since = if params.recover {
            Since::Offset(offset)
        } else {
            Since::Position
        };
        let stream = match self.broker.history(channel, since).await {
            Ok(stream) => stream,
            Err(e) => {
                if self.leave(&mut lock(&self.fanout.channels), channel, client) {
                    self.broker.unsubscribe(channel);
                }
                tracing::warn!("subscribe to {channel}: {e}");
                return Err(ErrorCode::Internal);
            }
        };
        let mut channels = lock(&self.fanout.channels);
        let Channels { map, dirty } = &mut *channels;
        let Some(ch) = map.get_mut(channel) else {
            return Err(ErrorCode::Internal);
        };
        if !ch.subscribers.contains_key(&client.id) {
            return Err(ErrorCode::Internal);
        }
        // Announced while the subscriber still buffers: not to itself.
        if ns.join_leave && !client.silent {
            self.fanout
                .announce(ch, ns, dirty, Presence::Join, &client.info);
        }
        let buffered = ch
            .subscribers
            .get_mut(&client.id)
            .and_then(|s| s.buffer.take())
            .unwrap_or_default();
        let recovered = params
            .recover
            .then(|| stream.recovers(params.epoch.as_deref(), offset));
        let publications = match recovered {
            // Another epoch: its offsets mean nothing to the client.
            Some(_) if params.epoch.as_deref() != Some(&*stream.epoch) => Some(Vec::new()),
            Some(_) => Some(stream.publications.iter().map(|p| &**p).collect()),
            None => None,
        };
        let reply = protocol::reply(
            id,
            &Subscribed {
                epoch: &stream.epoch,
                offset: stream.top,
                recovered,
                publications,
            },
        );
        client.outbox.push(
            Item {
                key: None,
                message: prepared(reply),
                reply: true,
                published: None,
            },
            usize::MAX,
            QueuePolicy::DropOldest,
        );
        // What arrived while the broker was asked and is not in the reply.
        for (epoch, at, item) in buffered {
            if epoch == stream.epoch && at > stream.top {
                self.fanout.push(client, item, ns);
            }
        }
        drop(channels);
        if ns.presence && !client.silent {
            self.broker.join(channel, &client.info);
        }
        self.metrics.subscriptions(1);
        Ok(first_in_namespace)
    }

    /// Whether `client` is subscribed to a channel of `channel`'s namespace.
    fn in_namespace(&self, client: &Client, channel: &str) -> bool {
        let ns = self.config.namespace_of(channel).map(|(ns, _)| ns);
        lock(&client.channels)
            .iter()
            .any(|name| self.config.namespace_of(name).map(|(n, _)| n) == ns)
    }

    /// Unsubscribes `client` from `channel`. Returns whether it was the
    /// client's last channel in the namespace (when an endpoint's
    /// `on_close` is due).
    pub(crate) fn unsubscribe(&self, client: &Client, channel: &str) -> Result<bool, ErrorCode> {
        self.namespace(channel)?;
        let emptied = {
            let mut channels = lock(&self.fanout.channels);
            if !channels
                .map
                .get(channel)
                .is_some_and(|ch| ch.subscribers.contains_key(&client.id))
            {
                return Err(ErrorCode::NotSubscribed);
            }
            self.leave(&mut channels, channel, client)
        };
        let name: Arc<str> = channel.into();
        let emptied = if emptied {
            vec![name.clone()]
        } else {
            Vec::new()
        };
        self.left(&[name], &emptied, client);
        Ok(!self.in_namespace(client, channel))
    }

    /// Removes `client` from `channel` on this node, with a leave push if
    /// it was live. Returns whether the channel has no local subscriber
    /// left (then it is forgotten here, and the broker must be told).
    fn leave(&self, channels: &mut Channels, channel: &str, client: &Client) -> bool {
        let Channels { map, dirty } = channels;
        let Some(ch) = map.get_mut(channel) else {
            return false;
        };
        let Some(sub) = ch.subscribers.remove(&client.id) else {
            return false;
        };
        lock(&client.channels).retain(|c| **c != *channel);
        // A subscriber still waiting for its reply was never announced.
        if sub.buffer.is_none() {
            self.metrics.subscriptions(-1);
            if let Ok(ns) = self.namespace(channel)
                && ns.join_leave
                && !client.silent
            {
                self.fanout
                    .announce(ch, ns, dirty, Presence::Leave, &client.info);
            }
        }
        if ch.subscribers.is_empty() {
            map.remove(channel);
            return true;
        }
        false
    }

    /// `info` is present in `channel` without a connection subscribed
    /// here (a poller, between its polls): presence, and a join push
    /// where the namespace has them.
    pub(crate) fn lease_join(&self, channel: &str, info: &Arc<ClientInfo>) {
        self.lease(channel, info, Presence::Join);
    }

    /// The end of a [`Hub::lease_join`]: gone from presence, a leave push.
    pub(crate) fn lease_leave(&self, channel: &str, info: &Arc<ClientInfo>) {
        self.lease(channel, info, Presence::Leave);
    }

    fn lease(&self, channel: &str, info: &Arc<ClientInfo>, what: Presence) {
        let Ok(ns) = self.namespace(channel) else {
            return;
        };
        if ns.join_leave {
            let mut channels = lock(&self.fanout.channels);
            let Channels { map, dirty } = &mut *channels;
            if let Some(ch) = map.get_mut(channel) {
                self.fanout.announce(ch, ns, dirty, what, info);
            }
        }
        if ns.presence {
            match what {
                Presence::Join => self.broker.join(channel, info),
                Presence::Leave => self.broker.leave(channel, &info.client),
            }
        }
    }

    /// Sends the joins and leaves batched since the last call, one push
    /// per channel (see `join_leave_batch_above`). `Server::serve` calls
    /// it every `join_leave_interval`.
    pub fn flush_presence(&self) {
        let mut channels = lock(&self.fanout.channels);
        let dirty = std::mem::take(&mut channels.dirty);
        for name in dirty {
            let Some(ch) = channels.map.get_mut(&name) else {
                continue;
            };
            let Some(diff) = ch.pending.take() else {
                continue;
            };
            if let Ok(ns) = self.namespace(&name) {
                self.fanout
                    .fan_out(ch, ns, protocol::push_presence_batch(&name, &diff));
            }
        }
    }

    /// How many are subscribed to `channel`, where its namespace keeps
    /// presence: the answer for a channel too large to list.
    pub async fn presence_count(&self, channel: &str) -> Result<usize, Error> {
        if !self.namespace(channel)?.presence {
            return Err(ErrorCode::PermissionDenied.into());
        }
        self.broker
            .presence_count(channel)
            .await
            .map_err(unavailable)
    }

    /// Who is subscribed to `channel`, where its namespace keeps presence.
    pub async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, Error> {
        if !self.namespace(channel)?.presence {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let list = self.broker.presence(channel).await.map_err(unavailable)?;
        Ok(list.iter().map(|c| (**c).clone()).collect())
    }

    /// The kept publications of `channel`, newest last, and its epoch and
    /// top offset.
    /// Rendering it cannot fail: publications are written out as the raw
    /// JSON they were accepted as, never converted to a `Value`.
    pub async fn history(&self, channel: &str, limit: Option<usize>) -> Result<History, Error> {
        self.namespace(channel)?;
        let since = Since::Last(limit.unwrap_or(usize::MAX));
        let stream = self
            .broker
            .history(channel, since)
            .await
            .map_err(unavailable)?;
        Ok(History {
            epoch: stream.epoch.to_string(),
            offset: stream.top,
            publications: stream.publications.iter().map(|p| (**p).clone()).collect(),
        })
    }

    /// Channels with subscribers on this node or history in the broker,
    /// with their local subscriber counts. (Idle channels, kept only for
    /// their epoch and offset, are not listed.)
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut list: HashMap<String, usize> = lock(&self.fanout.channels)
            .map
            .iter()
            .map(|(name, ch)| (name.to_string(), ch.subscribers.len()))
            .collect();
        for name in self.broker.with_history() {
            list.entry(name.to_string()).or_insert(0);
        }
        let mut list: Vec<(String, usize)> = list.into_iter().collect();
        list.sort();
        list
    }

    /// Live connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Asks connection `client` (its id as a string) to go, for `reason`
    /// (the HTTP API's disconnect: close 4002 over WebSocket). Returns
    /// whether it was found.
    pub fn disconnect(&self, client: &str, reason: &str) -> bool {
        let local = match client.split_once('.') {
            Some((node, id)) if self.shared && node == &*self.node => id,
            Some(_) => return false,
            None if self.shared => return false,
            None => client,
        };
        let Ok(id) = local.parse::<u64>() else {
            return false;
        };
        let Some(c) = lock(&self.clients).get(&id).cloned() else {
            return false;
        };
        kick(&c, Disconnect::Api(reason.to_owned()));
        true
    }

    /// The node that holds connection `client`, when it is another node
    /// sharing the broker.
    pub(crate) fn node_of<'a>(&self, client: &'a str) -> Option<&'a str> {
        let (node, _) = client.split_once('.')?;
        (self.shared && node != &*self.node).then_some(node)
    }

    /// This node's id.
    pub(crate) fn node(&self) -> &Arc<str> {
        &self.node
    }

    /// The broker, for what the server asks of it directly (health, the
    /// node list, requests to other nodes).
    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Every live connection, for shutdown.
    pub(crate) fn clients(&self) -> Vec<Arc<Client>> {
        lock(&self.clients).values().cloned().collect()
    }

    /// The broker's upkeep: expires history, and forgets channels idle
    /// (neither subscribers nor history) for longer than
    /// `channel_meta_ttl`.
    pub fn sweep(&self) {
        self.broker.sweep();
    }

    /// Channels whose position the broker holds, idle ones included.
    pub fn channels_held(&self) -> usize {
        self.broker.channels_held()
    }
}

/// Which presence change `Fanout::announce` tells.
#[derive(Debug, Clone, Copy)]
enum Presence {
    Join,
    Leave,
}

/// Sets the kick and wakes the connection's task.
pub(crate) fn kick(client: &Client, why: Disconnect) {
    *lock(&client.kick) = Some(why);
    client.outbox.wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(
            Arc::new(ServerConfig::default()),
            Arc::new(Metrics::default()),
        )
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap()
    }

    fn drain(c: &Client) -> Vec<String> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut out = Vec::new();
        let _ = c.outbox.poll_take(&mut cx, usize::MAX, &mut out);
        out.iter().map(Item::text).collect()
    }

    fn sub(
        channel: &str,
        recover: bool,
        epoch: Option<&str>,
        offset: Option<u64>,
    ) -> protocol::SubscribeParams {
        protocol::SubscribeParams {
            channel: channel.into(),
            recover,
            epoch: epoch.map(Into::into),
            offset,
        }
    }

    #[tokio::test]
    async fn publish_reaches_subscribers_in_order_with_offsets() {
        let hub = hub();
        let a = hub.register("u1".into(), None, None);
        hub.subscribe(&a, 1, &sub("chat:x", false, None, None))
            .await
            .unwrap();
        let p1 = hub.publish("chat:x", raw("1"), None).await.unwrap();
        let p2 = hub.publish("chat:x", raw("2"), None).await.unwrap();
        assert_eq!((p1.offset, p2.offset, p2.delivered), (1, 2, 1));
        let got = drain(&a);
        assert!(
            got[0].starts_with(r#"{"id":1,"result":{"epoch":"#),
            "{got:?}"
        );
        assert!(got[1].contains(r#""offset":1,"data":1"#), "{got:?}");
        assert!(got[2].contains(r#""offset":2,"data":2"#));
    }

    #[tokio::test]
    async fn recovery_fills_the_gap_or_says_it_cannot() {
        let hub = hub();
        let a = hub.register("u".into(), None, None);
        hub.subscribe(&a, 1, &sub("chat:r", false, None, None))
            .await
            .unwrap();
        hub.publish("chat:r", raw("1"), None).await.unwrap();
        let epoch = hub.history("chat:r", None).await.unwrap().epoch;
        hub.unregister(&a);
        for i in 2..=4 {
            hub.publish("chat:r", raw(&i.to_string()), None)
                .await
                .unwrap();
        }
        let b = hub.register("u".into(), None, None);
        hub.subscribe(&b, 2, &sub("chat:r", true, Some(&epoch), Some(1)))
            .await
            .unwrap();
        let reply: serde_json::Value = serde_json::from_str(&drain(&b)[0]).unwrap();
        assert_eq!(reply["result"]["recovered"], true);
        let offsets: Vec<u64> = reply["result"]["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [2, 3, 4]);

        let c = hub.register("u".into(), None, None);
        hub.subscribe(&c, 3, &sub("chat:r", true, Some("other"), Some(1)))
            .await
            .unwrap();
        let reply: serde_json::Value = serde_json::from_str(&drain(&c)[0]).unwrap();
        assert_eq!(reply["result"]["recovered"], false);
    }

    async fn epoch_of(hub: &Hub, channel: &str) -> String {
        hub.history(channel, None).await.unwrap().epoch
    }

    #[tokio::test(start_paused = true)]
    async fn channel_meta_outlives_its_subscribers_for_the_ttl_only() {
        let config = ServerConfig {
            channel_meta_ttl: std::time::Duration::from_secs(60),
            ..ServerConfig::default()
        };
        let hub = Hub::new(Arc::new(config), Arc::new(Metrics::default()));
        let a = hub.register("u".into(), None, None);
        hub.subscribe(&a, 1, &sub("solo", false, None, None))
            .await
            .unwrap();
        let epoch = epoch_of(&hub, "solo").await;
        hub.unregister(&a);
        // Idle (no subscribers, no history): kept, but not listed.
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        hub.sweep();
        assert_eq!(epoch_of(&hub, "solo").await, epoch);
        assert!(hub.channels().is_empty());
        // A publication without history refreshes the idle clock.
        hub.publish("solo", raw("1"), None).await.unwrap();
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        hub.sweep();
        assert_eq!(epoch_of(&hub, "solo").await, epoch);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        hub.sweep();
        assert_eq!(hub.channels_held(), 0, "forgotten after the TTL");
        assert_eq!(epoch_of(&hub, "solo").await, "");
    }

    #[tokio::test]
    async fn idle_channels_are_bounded_longest_idle_forgotten_first() {
        let config = ServerConfig {
            max_idle_channels: 3,
            ..ServerConfig::default()
        };
        let hub = Hub::new(Arc::new(config), Arc::new(Metrics::default()));
        let a = hub.register("u".into(), None, None);
        for i in 0..5 {
            let name = format!("game:{i}");
            hub.subscribe(&a, 1, &sub(&name, false, None, None))
                .await
                .unwrap();
            hub.unsubscribe(&a, &name).unwrap();
        }
        // Flapping one channel leaves stale entries that do not count.
        for _ in 0..10 {
            hub.subscribe(&a, 1, &sub("game:4", false, None, None))
                .await
                .unwrap();
            hub.unsubscribe(&a, "game:4").unwrap();
        }
        assert!(hub.channels_held() <= 3, "{}", hub.channels_held());
        assert_ne!(
            epoch_of(&hub, "game:4").await,
            "",
            "the most recent is kept"
        );
        assert_eq!(
            epoch_of(&hub, "game:0").await,
            "",
            "the longest idle went first"
        );
    }

    #[tokio::test]
    async fn permissions_and_namespaces() {
        let hub = hub();
        let a = hub.register(
            "u".into(),
            None,
            Some(vec!["chat:mine".into(), "quotes:*".into()]),
        );
        assert_eq!(
            hub.subscribe(&a, 1, &sub("chat:other", false, None, None))
                .await,
            Err(ErrorCode::PermissionDenied)
        );
        assert!(
            hub.subscribe(&a, 2, &sub("quotes:ACME", false, None, None))
                .await
                .is_ok()
        );
        assert_eq!(
            hub.subscribe(&a, 3, &sub("quotes:ACME", false, None, None))
                .await,
            Err(ErrorCode::AlreadySubscribed)
        );
        assert_eq!(
            hub.subscribe(&a, 4, &sub("nope:x", false, None, None))
                .await,
            Err(ErrorCode::UnknownChannel)
        );
        assert_eq!(
            hub.unsubscribe(&a, "chat:mine"),
            Err(ErrorCode::NotSubscribed)
        );
        assert_eq!(
            hub.presence("quotes:ACME").await.map_err(|e| e.code),
            Err(ErrorCode::PermissionDenied)
        );
    }

    #[tokio::test]
    async fn endpoint_open_and_close_once_per_namespace() {
        let hub = hub();
        let a = hub.register("u".into(), None, None);
        // First channel of the namespace: on_open is due; second: not.
        assert_eq!(
            hub.subscribe(&a, 1, &sub("game:one", false, None, None))
                .await,
            Ok(true)
        );
        assert_eq!(
            hub.subscribe(&a, 2, &sub("game:two", false, None, None))
                .await,
            Ok(false)
        );
        assert_eq!(
            hub.subscribe(&a, 3, &sub("chat:x", false, None, None))
                .await,
            Ok(true)
        );
        // Leaving one of two: not yet; the last: on_close is due.
        assert_eq!(hub.unsubscribe(&a, "game:one"), Ok(false));
        assert_eq!(hub.unsubscribe(&a, "game:two"), Ok(true));
        // Disconnecting reports the channels still joined.
        assert_eq!(hub.unregister(&a), [Arc::<str>::from("chat:x")]);
    }

    #[tokio::test]
    async fn five_thousand_joins_cost_linear_pushes_not_quadratic() {
        let hub = hub();
        let above = hub.config().namespaces["chat"].join_leave_batch_above;
        let mut clients = Vec::new();
        for i in 0..5_000 {
            let c = hub.register(format!("u{i}"), None, None);
            hub.subscribe(&c, 1, &sub("chat:big", false, None, None))
                .await
                .unwrap();
            clients.push(c);
        }
        // One join push per subscriber present, for the first `above`
        // joins; the rest wait for the batch.
        let pushes = |clients: &[Arc<Client>]| -> usize {
            clients
                .iter()
                .map(|c| drain(c).iter().filter(|m| m.contains(r#""push""#)).count())
                .sum()
        };
        let immediate = pushes(&clients);
        assert_eq!(immediate, above * (above - 1) / 2);
        hub.flush_presence();
        let batched: Vec<String> = drain(&clients[4_999]);
        assert_eq!(batched.len(), 1, "one batch push");
        let batch: serde_json::Value = serde_json::from_str(&batched[0]).unwrap();
        assert_eq!(
            batch["push"]["presence"]["join"].as_array().map(Vec::len),
            Some(5_000 - above)
        );
        // Everyone got that one push: 5,000 in all, not 12.5 million.
        assert_eq!(pushes(&clients[..4_999]), 4_999);
        // Nothing is left to flush.
        hub.flush_presence();
        assert_eq!(pushes(&clients), 0);
        // Leaves batch the same way, and the count answers without a list.
        for c in &clients[..10] {
            hub.unregister(c);
        }
        assert_eq!(hub.presence_count("chat:big").await.ok(), Some(4_990));
        hub.flush_presence();
        let batch: serde_json::Value = serde_json::from_str(&drain(&clients[20])[0]).unwrap();
        assert_eq!(
            batch["push"]["presence"]["leave"].as_array().map(Vec::len),
            Some(10)
        );
    }

    /// The memory broker behind gates: `history` waits for `read`, reads,
    /// then waits for `answer`, so publications can land both before and
    /// after the read while a subscribe is under way, as with a network
    /// broker.
    #[derive(Debug)]
    struct Gated {
        inner: MemoryBroker,
        read: tokio::sync::Semaphore,
        answer: tokio::sync::Semaphore,
    }

    impl Broker for Gated {
        fn publish<'a>(
            &'a self,
            channel: &'a str,
            publication: Publication,
            retention: Retention,
        ) -> broker::BrokerFuture<'a, broker::Placed> {
            self.inner.publish(channel, publication, retention)
        }
        fn history<'a>(
            &'a self,
            channel: &'a str,
            since: Since,
        ) -> broker::BrokerFuture<'a, broker::Stream> {
            Box::pin(async move {
                self.read.acquire().await.unwrap().forget();
                let stream = self.inner.history(channel, since).await;
                self.answer.acquire().await.unwrap().forget();
                stream
            })
        }
        fn subscribe(&self, channel: &str) {
            self.inner.subscribe(channel);
        }
        fn unsubscribe(&self, channel: &str) {
            self.inner.unsubscribe(channel);
        }
        fn join(&self, channel: &str, info: &Arc<ClientInfo>) {
            self.inner.join(channel, info);
        }
        fn leave(&self, channel: &str, client: &str) {
            self.inner.leave(channel, client);
        }
        fn presence<'a>(
            &'a self,
            channel: &'a str,
        ) -> broker::BrokerFuture<'a, Vec<Arc<ClientInfo>>> {
            self.inner.presence(channel)
        }
        fn presence_count<'a>(&'a self, channel: &'a str) -> broker::BrokerFuture<'a, usize> {
            self.inner.presence_count(channel)
        }
    }

    #[tokio::test]
    async fn a_slow_broker_neither_loses_nor_repeats_across_subscribe() {
        let config = Arc::new(ServerConfig::default());
        let gated = std::sync::OnceLock::new();
        let hub = Arc::new(Hub::with_broker(
            config.clone(),
            Arc::new(Metrics::default()),
            new_node_id(),
            |sink| {
                let broker = Arc::new(Gated {
                    inner: MemoryBroker::new(sink, config.channel_meta_ttl, 10),
                    read: tokio::sync::Semaphore::new(0),
                    answer: tokio::sync::Semaphore::new(0),
                });
                gated.set(broker.clone()).unwrap();
                broker
            },
        ));
        let gated = gated.get().unwrap();
        gated.read.add_permits(1);
        gated.answer.add_permits(1);
        let a = hub.register("a".into(), None, None);
        hub.subscribe(&a, 1, &sub("chat:s", false, None, None))
            .await
            .unwrap();
        let p1 = hub.publish("chat:s", raw("1"), None).await.unwrap();
        // B last saw offset 1 and comes back while the broker is slow.
        let b = hub.register("b".into(), None, None);
        let subscribing = tokio::spawn({
            let (hub, b, epoch) = (hub.clone(), b.clone(), p1.epoch.clone());
            async move {
                hub.subscribe(&b, 7, &sub("chat:s", true, Some(&epoch), Some(1)))
                    .await
            }
        });
        tokio::task::yield_now().await;
        // Before the broker reads: in history and in B's buffer both.
        for i in 2..=3 {
            hub.publish("chat:s", raw(&i.to_string()), None)
                .await
                .unwrap();
        }
        gated.read.add_permits(1);
        tokio::task::yield_now().await;
        // After it read, before it answered: only in B's buffer.
        for i in 4..=5 {
            hub.publish("chat:s", raw(&i.to_string()), None)
                .await
                .unwrap();
        }
        gated.answer.add_permits(1);
        assert_eq!(subscribing.await.unwrap(), Ok(true));
        hub.publish("chat:s", raw("6"), None).await.unwrap();

        let got = drain(&b);
        let reply: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(reply["id"], 7, "{got:?}");
        assert_eq!(reply["result"]["recovered"], true);
        assert_eq!(reply["result"]["offset"], 3, "the position the broker read");
        let mut offsets: Vec<u64> = reply["result"]["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect();
        for push in &got[1..] {
            let push: serde_json::Value = serde_json::from_str(push).unwrap();
            offsets.push(push["push"]["pub"]["offset"].as_u64().unwrap());
        }
        assert_eq!(offsets, [2, 3, 4, 5, 6], "each once, in order: {got:?}");
    }

    #[tokio::test]
    async fn presence_and_join_leave() {
        let hub = hub();
        let a = hub.register("alice".into(), Some("Alice".into()), None);
        let b = hub.register("bob".into(), None, None);
        hub.subscribe(&a, 1, &sub("chat:p", false, None, None))
            .await
            .unwrap();
        hub.subscribe(&b, 1, &sub("chat:p", false, None, None))
            .await
            .unwrap();
        assert!(
            drain(&a)
                .iter()
                .any(|m| m.contains(r#""join":{"client""#) && m.contains("bob"))
        );
        assert_eq!(hub.presence("chat:p").await.unwrap().len(), 2);
        hub.unregister(&b);
        assert!(drain(&a).iter().any(|m| m.contains(r#""leave""#)));
        assert_eq!(hub.presence("chat:p").await.unwrap().len(), 1);
    }
}
