//! The hub: channels, their subscribers, history and presence.
//!
//! One publication is serialized once into a text frame payload; every
//! subscriber's outbox gets a reference-counted handle to the same bytes.
//! A subscribe reply is queued into the subscriber's outbox while the
//! channel is locked, so no publication can overtake it and recovery never
//! leaves a gap or a duplicate between the recovered publications and the
//! live ones.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::{NamespaceConfig, QueuePolicy, ServerConfig};
use crate::delivery::{Item, Outbox, Pushed, prepared};
use crate::endpoint::Endpoint;
use crate::metrics::Metrics;
use crate::protocol::{self, ClientInfo, Error, ErrorCode, Publication};
use crate::session::Disconnect;

mod channel;

pub(crate) use channel::PresenceDiff;
use channel::{Channel, Channels, new_epoch, recover, trim_history};

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
    /// Subscribers it was queued for.
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

/// The channels of one server (the in-memory broker).
#[derive(Debug)]
pub struct Hub {
    config: Arc<ServerConfig>,
    channels: Mutex<Channels>,
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    next_client: AtomicU64,
    metrics: Arc<Metrics>,
    endpoints: std::sync::RwLock<HashMap<String, Arc<dyn Endpoint>>>,
    /// Set by shutdown: connections registered from now on are told to go
    /// at once.
    draining: std::sync::atomic::AtomicBool,
    /// The token verifier built from the configuration once (`None`: dev
    /// mode); `Err` (a key that would not load) refuses every token.
    tokens: Result<Option<crate::auth::TokenVerifier>, String>,
}

impl std::fmt::Debug for dyn Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Endpoint")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// An empty hub.
    pub fn new(config: Arc<ServerConfig>, metrics: Arc<Metrics>) -> Self {
        Self {
            channels: Mutex::default(),
            clients: Mutex::default(),
            next_client: AtomicU64::new(1),
            metrics,
            endpoints: Default::default(),
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

    /// Attaches `endpoint` to `namespace` (which must exist in the
    /// configuration): its client publications go to the endpoint.
    pub fn set_endpoint(&self, namespace: &str, endpoint: Arc<dyn Endpoint>) {
        self.endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(namespace.to_owned(), endpoint);
    }

    /// The endpoint owning `channel`'s namespace, with the namespace name.
    pub(crate) fn endpoint_for(&self, channel: &str) -> Option<(String, Arc<dyn Endpoint>)> {
        let (ns, _) = self.config.namespace_of(channel)?;
        let endpoints = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
        endpoints.get(ns).map(|e| (ns.to_owned(), e.clone()))
    }

    /// Sessions subscribed to any channel of `namespace`.
    pub fn sessions(&self, namespace: &str) -> Vec<crate::endpoint::Session> {
        let channels = lock(&self.channels);
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
            .filter(|c| seen.insert(c.id))
            .map(|c| crate::endpoint::Session::new(c.clone()))
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

    /// Registers a connection that completed `connect`.
    pub(crate) fn register(
        &self,
        user: String,
        name: Option<String>,
        allowed: Option<Vec<String>>,
    ) -> Arc<Client> {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(Client {
            id,
            info: Arc::new(ClientInfo {
                client: id.to_string(),
                user,
                name,
            }),
            outbox: Arc::default(),
            allowed,
            kick: Mutex::new(None),
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
    /// from the hub. Returns the namespaces it had joined that have an
    /// endpoint.
    pub(crate) fn unregister(&self, client: &Client) -> Vec<(String, Arc<dyn Endpoint>)> {
        lock(&self.clients).remove(&client.id);
        let mut channels = lock(&self.channels);
        let names: Vec<Arc<str>> = lock(&client.channels).clone();
        for name in &names {
            self.leave(&mut channels, name, client);
        }
        drop(channels);
        let mut joined: Vec<(String, Arc<dyn Endpoint>)> = Vec::new();
        for name in &names {
            if let Some((ns, e)) = self.endpoint_for(name)
                && !joined.iter().any(|(n, _)| *n == ns)
            {
                joined.push((ns, e));
            }
        }
        joined
    }

    /// Publishes `data` to `channel`, from a client (`info`) or the server.
    /// Data over `max_publication_size` or `max_publication_depth` is
    /// refused (error 109), whoever sends it.
    pub fn publish(
        &self,
        channel: &str,
        data: Box<RawValue>,
        info: Option<&ClientInfo>,
    ) -> Result<Published, Error> {
        crate::limits::check_data(&data, &self.config)?;
        self.publish_checked(channel, data, info)
    }

    /// [`Hub::publish`] of data that already passed `limits::check_data`
    /// (a broadcast checks its one `data` once, not once per channel).
    pub(crate) fn publish_checked(
        &self,
        channel: &str,
        data: Box<RawValue>,
        info: Option<&ClientInfo>,
    ) -> Result<Published, Error> {
        let ns = self.namespace(channel)?;
        let now = Instant::now();
        let mut channels = lock(&self.channels);
        let ch = Self::channel(&mut channels.map, channel);
        ch.top += 1;
        let publication = Publication {
            offset: ch.top,
            data,
            info: info.cloned(),
        };
        let message = prepared(protocol::push_publication(channel, &ch.epoch, &publication));
        self.metrics.publication(message.len());
        if ns.history_size > 0 {
            ch.history.push_back((now, publication));
            trim_history(ch, ns, now);
        }
        let mut delivered = 0;
        for sub in ch.subscribers.values() {
            let item = Item {
                key: Some(ch.name.clone()),
                message: message.clone(),
                reply: false,
                published: Some(now),
            };
            match sub.outbox.push(item, ns.queue_size, ns.on_full) {
                Pushed::Queued => {}
                Pushed::Dropped | Pushed::Replaced => self.metrics.queue_drop(ns.on_full),
                // Counted once per client, not per publication it misses
                // while it is being closed (it recovers them).
                Pushed::Overflow => {
                    self.metrics.slow_consumer_disconnect();
                    continue;
                }
                Pushed::Closing => continue,
            }
            delivered += 1;
        }
        self.metrics.messages_out(delivered, message.len());
        let published = Published {
            offset: ch.top,
            epoch: ch.epoch.to_string(),
            delivered,
        };
        if ch.is_idle() {
            // A new offset: the channel's meta is fresh as of now.
            channels.settle(channel, now, self.config.max_idle_channels);
        }
        Ok(published)
    }

    fn channel<'a>(channels: &'a mut HashMap<Arc<str>, Channel>, name: &str) -> &'a mut Channel {
        if !channels.contains_key(name) {
            let name: Arc<str> = name.into();
            channels.insert(
                name.clone(),
                Channel {
                    epoch: new_epoch(),
                    name,
                    top: 0,
                    history: VecDeque::new(),
                    subscribers: HashMap::new(),
                    idle_since: None,
                    pending: None,
                },
            );
        }
        // Inserted above if it was missing; the map is only changed under
        // the caller's lock.
        channels
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("channel {name} inserted above"))
    }

    /// Subscribes `client` and queues the reply for command `id` (with the
    /// recovered publications when asked), all under the channel's lock.
    /// Returns whether this is the client's first channel in the namespace
    /// (when an endpoint's `on_open` is due).
    pub(crate) fn subscribe(
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
        let mut channels = lock(&self.channels);
        let Channels {
            map: channels,
            dirty,
            ..
        } = &mut *channels;
        let count = lock(&client.channels).len();
        if channels
            .get(channel)
            .is_some_and(|ch| ch.subscribers.contains_key(&client.id))
        {
            return Err(ErrorCode::AlreadySubscribed);
        }
        if count >= self.config.max_subscriptions {
            return Err(ErrorCode::LimitExceeded);
        }
        let first_in_namespace = !self.in_namespace(client, channel);
        let ch = Self::channel(channels, channel);
        trim_history(ch, ns, Instant::now());
        let (recovered, publications) = if params.recover {
            let (recovered, publications) =
                recover(ch, params.epoch.as_deref(), params.offset.unwrap_or(0));
            (Some(recovered), Some(publications))
        } else {
            (None, None)
        };
        let reply = protocol::reply(
            id,
            &Subscribed {
                epoch: &ch.epoch,
                offset: ch.top,
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
        if ns.join_leave {
            self.announce(ch, ns, dirty, Presence::Join, &client.info);
        }
        ch.subscribers.insert(client.id, client.clone());
        ch.idle_since = None;
        lock(&client.channels).push(ch.name.clone());
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
        let mut channels = lock(&self.channels);
        if !channels
            .map
            .get(channel)
            .is_some_and(|ch| ch.subscribers.contains_key(&client.id))
        {
            return Err(ErrorCode::NotSubscribed);
        }
        self.leave(&mut channels, channel, client);
        Ok(!self.in_namespace(client, channel))
    }

    fn leave(&self, channels: &mut Channels, channel: &str, client: &Client) {
        let Channels { map, dirty, .. } = channels;
        let Some(ch) = map.get_mut(channel) else {
            return;
        };
        if ch.subscribers.remove(&client.id).is_none() {
            return;
        }
        lock(&client.channels).retain(|c| **c != *channel);
        self.metrics.subscriptions(-1);
        if let Ok(ns) = self.namespace(channel)
            && ns.join_leave
        {
            self.announce(ch, ns, dirty, Presence::Leave, &client.info);
        }
        if ch.is_idle() {
            channels.settle(channel, Instant::now(), self.config.max_idle_channels);
        }
    }

    /// A join or leave of `info` in `ch`: pushed at once to its
    /// subscribers, or, past `join_leave_batch_above`, kept for the next
    /// batch.
    fn announce(
        &self,
        ch: &mut Channel,
        ns: &NamespaceConfig,
        dirty: &mut Vec<Arc<str>>,
        what: Presence,
        info: &Arc<ClientInfo>,
    ) {
        if ch.subscribers.len() < ns.join_leave_batch_above {
            let kind = match what {
                Presence::Join => "join",
                Presence::Leave => "leave",
            };
            let text = protocol::push_presence(&ch.name, kind, info);
            self.fan_out(ch, ns, text);
            return;
        }
        let diff = ch.pending_presence(dirty);
        match what {
            Presence::Join => diff.joins.push(info.clone()),
            Presence::Leave => diff.leaves.push(info.clone()),
        }
    }

    fn fan_out(&self, ch: &Channel, ns: &NamespaceConfig, text: String) {
        let message = prepared(text);
        for sub in ch.subscribers.values() {
            let item = Item {
                key: None,
                message: message.clone(),
                reply: false,
                published: None,
            };
            match sub.outbox.push(item, ns.queue_size, ns.on_full) {
                Pushed::Queued | Pushed::Closing => {}
                Pushed::Dropped | Pushed::Replaced => self.metrics.queue_drop(ns.on_full),
                Pushed::Overflow => self.metrics.slow_consumer_disconnect(),
            }
        }
    }

    /// Sends the joins and leaves batched since the last call, one push
    /// per channel (see `join_leave_batch_above`). `Server::serve` calls
    /// it every `join_leave_interval`.
    pub fn flush_presence(&self) {
        let mut channels = lock(&self.channels);
        let dirty = std::mem::take(&mut channels.dirty);
        for name in dirty {
            let Some(ch) = channels.map.get_mut(&name) else {
                continue;
            };
            let Some(diff) = ch.pending.take() else {
                continue;
            };
            if let Ok(ns) = self.namespace(&name) {
                self.fan_out(ch, ns, protocol::push_presence_batch(&name, &diff));
            }
        }
    }

    /// How many are subscribed to `channel`, where its namespace keeps
    /// presence: the answer for a channel too large to list.
    pub fn presence_count(&self, channel: &str) -> Result<usize, ErrorCode> {
        if !self.namespace(channel)?.presence {
            return Err(ErrorCode::PermissionDenied);
        }
        let channels = lock(&self.channels);
        Ok(channels
            .map
            .get(channel)
            .map_or(0, |ch| ch.subscribers.len()))
    }

    /// Who is subscribed to `channel`, where its namespace keeps presence.
    pub fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, ErrorCode> {
        if !self.namespace(channel)?.presence {
            return Err(ErrorCode::PermissionDenied);
        }
        let channels = lock(&self.channels);
        Ok(channels
            .map
            .get(channel)
            .map(|ch| ch.subscribers.values().map(|c| (*c.info).clone()).collect())
            .unwrap_or_default())
    }

    /// The kept publications of `channel`, newest last, and its epoch and
    /// top offset.
    /// Rendering it cannot fail: publications are written out as the raw
    /// JSON they were accepted as, never converted to a `Value`.
    pub fn history(&self, channel: &str, limit: Option<usize>) -> Result<History, ErrorCode> {
        let ns = self.namespace(channel)?;
        let mut channels = lock(&self.channels);
        let Some(ch) = channels.map.get_mut(channel) else {
            return Ok(History {
                epoch: String::new(),
                offset: 0,
                publications: Vec::new(),
            });
        };
        trim_history(ch, ns, Instant::now());
        let n = limit.unwrap_or(usize::MAX).min(ch.history.len());
        let publications = ch
            .history
            .iter()
            .skip(ch.history.len() - n)
            .map(|(_, p)| p.clone())
            .collect();
        Ok(History {
            epoch: ch.epoch.to_string(),
            offset: ch.top,
            publications,
        })
    }

    /// Channels with subscribers or history, with their subscriber counts.
    /// (Idle channels, kept only for their epoch and offset, are not
    /// listed.)
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut list: Vec<(String, usize)> = lock(&self.channels)
            .map
            .iter()
            .filter(|(_, ch)| !ch.is_idle())
            .map(|(name, ch)| (name.to_string(), ch.subscribers.len()))
            .collect();
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
        let Ok(id) = client.parse::<u64>() else {
            return false;
        };
        let Some(c) = lock(&self.clients).get(&id).cloned() else {
            return false;
        };
        kick(&c, Disconnect::Api(reason.to_owned()));
        true
    }

    /// Every live connection, for shutdown.
    pub(crate) fn clients(&self) -> Vec<Arc<Client>> {
        lock(&self.clients).values().cloned().collect()
    }

    /// Expires history, and forgets channels idle (neither subscribers nor
    /// history) for longer than `channel_meta_ttl`.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut channels = lock(&self.channels);
        let mut newly_idle = Vec::new();
        for (name, ch) in &mut channels.map {
            if let Some((_, ns)) = self.config.namespace_of(name) {
                trim_history(ch, ns, now);
            }
            if ch.is_idle() && ch.idle_since.is_none() {
                newly_idle.push(name.clone());
            }
        }
        for name in newly_idle {
            channels.settle(&name, now, self.config.max_idle_channels);
        }
        let ttl = self.config.channel_meta_ttl;
        while channels
            .idle
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= ttl)
        {
            channels.forget_front();
        }
    }

    /// Channels held in memory, idle ones included.
    pub fn channels_held(&self) -> usize {
        lock(&self.channels).map.len()
    }
}

/// Which presence change [`Hub::announce`] tells.
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

    #[test]
    fn publish_reaches_subscribers_in_order_with_offsets() {
        let hub = hub();
        let a = hub.register("u1".into(), None, None);
        hub.subscribe(&a, 1, &sub("chat:x", false, None, None))
            .unwrap();
        let p1 = hub.publish("chat:x", raw("1"), None).unwrap();
        let p2 = hub.publish("chat:x", raw("2"), None).unwrap();
        assert_eq!((p1.offset, p2.offset, p2.delivered), (1, 2, 1));
        let got = drain(&a);
        assert!(
            got[0].starts_with(r#"{"id":1,"result":{"epoch":"#),
            "{got:?}"
        );
        assert!(got[1].contains(r#""offset":1,"data":1"#));
        assert!(got[2].contains(r#""offset":2,"data":2"#));
    }

    #[test]
    fn recovery_fills_the_gap_or_says_it_cannot() {
        let hub = hub();
        let a = hub.register("u".into(), None, None);
        hub.subscribe(&a, 1, &sub("chat:r", false, None, None))
            .unwrap();
        hub.publish("chat:r", raw("1"), None).unwrap();
        let epoch = hub.history("chat:r", None).unwrap().epoch;
        hub.unregister(&a);
        for i in 2..=4 {
            hub.publish("chat:r", raw(&i.to_string()), None).unwrap();
        }
        let b = hub.register("u".into(), None, None);
        hub.subscribe(&b, 2, &sub("chat:r", true, Some(&epoch), Some(1)))
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
            .unwrap();
        let reply: serde_json::Value = serde_json::from_str(&drain(&c)[0]).unwrap();
        assert_eq!(reply["result"]["recovered"], false);
    }

    fn epoch_of(hub: &Hub, channel: &str) -> String {
        hub.history(channel, None).unwrap().epoch
    }

    #[tokio::test(start_paused = true)]
    async fn channel_meta_outlives_its_subscribers_for_the_ttl_only() {
        let config = ServerConfig {
            channel_meta_ttl: std::time::Duration::from_secs(60),
            ..ServerConfig::default()
        };
        let hub = Hub::new(Arc::new(config), Arc::new(Metrics::default()));
        let a = hub.register("u".into(), None, None);
        hub.subscribe(&a, 1, &sub("game:x", false, None, None))
            .unwrap();
        let epoch = epoch_of(&hub, "game:x");
        hub.unregister(&a);
        // Idle (no subscribers, no history): kept, but not listed.
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        hub.sweep();
        assert_eq!(epoch_of(&hub, "game:x"), epoch);
        assert!(hub.channels().is_empty());
        // A publication without history refreshes the idle clock.
        hub.publish("game:x", raw("1"), None).unwrap();
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        hub.sweep();
        assert_eq!(epoch_of(&hub, "game:x"), epoch);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        hub.sweep();
        assert_eq!(hub.channels_held(), 0, "forgotten after the TTL");
        assert_eq!(epoch_of(&hub, "game:x"), "");
    }

    #[test]
    fn idle_channels_are_bounded_longest_idle_forgotten_first() {
        let config = ServerConfig {
            max_idle_channels: 3,
            ..ServerConfig::default()
        };
        let hub = Hub::new(Arc::new(config), Arc::new(Metrics::default()));
        let a = hub.register("u".into(), None, None);
        for i in 0..5 {
            let name = format!("game:{i}");
            hub.subscribe(&a, 1, &sub(&name, false, None, None))
                .unwrap();
            hub.unsubscribe(&a, &name).unwrap();
        }
        // Flapping one channel leaves stale entries that do not count.
        for _ in 0..10 {
            hub.subscribe(&a, 1, &sub("game:4", false, None, None))
                .unwrap();
            hub.unsubscribe(&a, "game:4").unwrap();
        }
        assert!(hub.channels_held() <= 3, "{}", hub.channels_held());
        assert_ne!(epoch_of(&hub, "game:4"), "", "the most recent is kept");
        assert_eq!(epoch_of(&hub, "game:0"), "", "the longest idle went first");
    }

    #[test]
    fn permissions_and_namespaces() {
        let hub = hub();
        let a = hub.register(
            "u".into(),
            None,
            Some(vec!["chat:mine".into(), "quotes:*".into()]),
        );
        assert_eq!(
            hub.subscribe(&a, 1, &sub("chat:other", false, None, None)),
            Err(ErrorCode::PermissionDenied)
        );
        assert!(
            hub.subscribe(&a, 2, &sub("quotes:ACME", false, None, None))
                .is_ok()
        );
        assert_eq!(
            hub.subscribe(&a, 3, &sub("quotes:ACME", false, None, None)),
            Err(ErrorCode::AlreadySubscribed)
        );
        assert_eq!(
            hub.subscribe(&a, 4, &sub("nope:x", false, None, None)),
            Err(ErrorCode::UnknownChannel)
        );
        assert_eq!(
            hub.unsubscribe(&a, "chat:mine"),
            Err(ErrorCode::NotSubscribed)
        );
        assert_eq!(
            hub.presence("quotes:ACME"),
            Err(ErrorCode::PermissionDenied)
        );
    }

    #[test]
    fn endpoint_open_and_close_once_per_namespace() {
        let hub = hub();
        let a = hub.register("u".into(), None, None);
        // First channel of the namespace: on_open is due; second: not.
        assert_eq!(
            hub.subscribe(&a, 1, &sub("game:one", false, None, None)),
            Ok(true)
        );
        assert_eq!(
            hub.subscribe(&a, 2, &sub("game:two", false, None, None)),
            Ok(false)
        );
        assert_eq!(
            hub.subscribe(&a, 3, &sub("chat:x", false, None, None)),
            Ok(true)
        );
        // Leaving one of two: not yet; the last: on_close is due.
        assert_eq!(hub.unsubscribe(&a, "game:one"), Ok(false));
        assert_eq!(hub.unsubscribe(&a, "game:two"), Ok(true));
        // Disconnecting reports only namespaces still joined (and with an endpoint).
        assert!(hub.unregister(&a).is_empty());
    }

    #[test]
    fn five_thousand_joins_cost_linear_pushes_not_quadratic() {
        let hub = hub();
        let above = hub.config().namespaces["chat"].join_leave_batch_above;
        let clients: Vec<_> = (0..5_000)
            .map(|i| {
                let c = hub.register(format!("u{i}"), None, None);
                hub.subscribe(&c, 1, &sub("chat:big", false, None, None))
                    .unwrap();
                c
            })
            .collect();
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
        assert_eq!(hub.presence_count("chat:big"), Ok(4_990));
        hub.flush_presence();
        let batch: serde_json::Value = serde_json::from_str(&drain(&clients[20])[0]).unwrap();
        assert_eq!(
            batch["push"]["presence"]["leave"].as_array().map(Vec::len),
            Some(10)
        );
    }

    #[test]
    fn presence_and_join_leave() {
        let hub = hub();
        let a = hub.register("alice".into(), Some("Alice".into()), None);
        let b = hub.register("bob".into(), None, None);
        hub.subscribe(&a, 1, &sub("chat:p", false, None, None))
            .unwrap();
        hub.subscribe(&b, 1, &sub("chat:p", false, None, None))
            .unwrap();
        assert!(
            drain(&a)
                .iter()
                .any(|m| m.contains(r#""join":{"client""#) && m.contains("bob"))
        );
        assert_eq!(hub.presence("chat:p").unwrap().len(), 2);
        hub.unregister(&b);
        assert!(drain(&a).iter().any(|m| m.contains(r#""leave""#)));
        assert_eq!(hub.presence("chat:p").unwrap().len(), 1);
    }
}
