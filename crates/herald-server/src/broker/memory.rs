//! The in-memory broker, for one process: channels' epochs, offsets and
//! history, presence, and delivery to the local hub within `publish`.
//!
//! A channel's epoch and top offset outlive its last subscriber and its
//! history for `channel_meta_ttl`, so a client that comes back to a quiet
//! channel recovers instead of being told of a new epoch. Idle channels
//! are queued in the order they went idle; past `max_idle_channels` the
//! longest idle is forgotten first.

use std::collections::{HashMap, VecDeque};
use std::future::ready;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{Broker, BrokerFuture, Placed, Retention, Since, Sink, Stream};
use crate::protocol::{ClientInfo, Publication};

/// One process's channels.
pub(crate) struct MemoryBroker {
    channels: Mutex<Channels>,
    presence: Mutex<HashMap<Arc<str>, Present>>,
    sink: Arc<dyn Sink>,
    meta_ttl: Duration,
    max_idle: usize,
}

/// Who is present in a channel, by client id.
type Present = HashMap<String, Arc<ClientInfo>>;

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Channel {
    epoch: Arc<str>,
    name: Arc<str>,
    /// The last offset given out; 0 before the first publication.
    top: u64,
    history: VecDeque<(Instant, Arc<Publication>)>,
    /// The retention of the last publication, for trimming later.
    retention: Retention,
    /// `Broker::subscribe` calls not yet matched by `unsubscribe`: a count,
    /// not a flag, so that the two arriving out of order (from different
    /// threads) cannot leave a subscribed channel marked idle.
    subscribed: usize,
    /// Since when the channel has had neither subscribers nor history.
    idle_since: Option<Instant>,
}

impl Channel {
    fn is_idle(&self) -> bool {
        self.subscribed == 0 && self.history.is_empty()
    }

    fn trim(&mut self, now: Instant) {
        while self.history.len() > self.retention.size {
            self.history.pop_front();
        }
        let ttl = self.retention.ttl;
        while self
            .history
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > ttl)
        {
            self.history.pop_front();
        }
    }
}

#[derive(Debug, Default)]
struct Channels {
    map: HashMap<Arc<str>, Channel>,
    /// (went idle at, name). An entry is stale when the channel has since
    /// become active or idle again (its `idle_since` differs); stale
    /// entries are skipped when met.
    idle: VecDeque<(Instant, Arc<str>)>,
}

impl Channels {
    fn get_or_create(&mut self, name: &str) -> &mut Channel {
        if !self.map.contains_key(name) {
            let name: Arc<str> = name.into();
            self.map.insert(
                name.clone(),
                Channel {
                    epoch: new_epoch(),
                    name,
                    top: 0,
                    history: VecDeque::new(),
                    retention: Retention {
                        size: 0,
                        ttl: Duration::ZERO,
                    },
                    subscribed: 0,
                    idle_since: None,
                },
            );
        }
        // Inserted above if it was missing; the map is only changed under
        // the caller's lock.
        self.map
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("channel {name} inserted above"))
    }

    /// Notes that `name` is idle as of `now` if it is, forgetting the
    /// longest-idle channels past `max` of them.
    fn settle(&mut self, name: &str, now: Instant, max: usize) {
        let Some(ch) = self.map.get_mut(name) else {
            return;
        };
        if !ch.is_idle() {
            ch.idle_since = None;
            return;
        }
        if ch.idle_since.is_some() {
            return;
        }
        ch.idle_since = Some(now);
        self.idle.push_back((now, ch.name.clone()));
        while self.idle.len() > max {
            self.forget_front();
        }
    }

    /// Pops the oldest idle entry; removes its channel if still idle since
    /// then.
    fn forget_front(&mut self) {
        if let Some((at, name)) = self.idle.pop_front()
            && self
                .map
                .get(&name)
                .is_some_and(|ch| ch.idle_since == Some(at))
        {
            self.map.remove(&name);
        }
    }
}

fn new_epoch() -> Arc<str> {
    format!("{:08x}", rand::random::<u32>()).into()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryBroker {
    /// A broker delivering to `sink`, keeping idle channels' positions for
    /// `meta_ttl`, at most `max_idle` of them.
    pub(crate) fn new(sink: Arc<dyn Sink>, meta_ttl: Duration, max_idle: usize) -> Self {
        Self {
            channels: Mutex::default(),
            presence: Mutex::default(),
            sink,
            meta_ttl,
            max_idle,
        }
    }

    fn publish_now(
        &self,
        channel: &str,
        mut publication: Publication,
        retention: Retention,
    ) -> Placed {
        let now = Instant::now();
        let mut channels = lock(&self.channels);
        let ch = channels.get_or_create(channel);
        ch.top += 1;
        publication.offset = ch.top;
        let publication = Arc::new(publication);
        ch.retention = retention;
        if retention.size > 0 {
            ch.history.push_back((now, publication.clone()));
            ch.trim(now);
        }
        // Delivered under the lock: the sink sees each channel's
        // publications in offset order, and a `history` read after
        // this call returns sees this one (the subscribe merge relies
        // on both).
        let delivered = self.sink.deliver(channel, &ch.epoch, &publication);
        let placed = Placed {
            epoch: ch.epoch.clone(),
            offset: ch.top,
            delivered,
        };
        if ch.is_idle() {
            // A new offset: the channel's meta is fresh as of now.
            ch.idle_since = None;
            channels.settle(channel, now, self.max_idle);
        }
        placed
    }

    fn history_now(&self, channel: &str, since: Since) -> Stream {
        let now = Instant::now();
        let mut channels = lock(&self.channels);
        let ch = match since {
            Since::Position | Since::Offset(_) => channels.get_or_create(channel),
            Since::Last(_) => match channels.map.get_mut(channel) {
                Some(ch) => ch,
                None => {
                    return Stream {
                        epoch: "".into(),
                        top: 0,
                        publications: Vec::new(),
                    };
                }
            },
        };
        ch.trim(now);
        let publications = match since {
            Since::Position => Vec::new(),
            Since::Offset(offset) => ch
                .history
                .iter()
                .filter(|(_, p)| p.offset > offset)
                .map(|(_, p)| p.clone())
                .collect(),
            Since::Last(n) => {
                let n = n.min(ch.history.len());
                ch.history
                    .iter()
                    .skip(ch.history.len() - n)
                    .map(|(_, p)| p.clone())
                    .collect()
            }
        };
        let stream = Stream {
            epoch: ch.epoch.clone(),
            top: ch.top,
            publications,
        };
        // A channel created by this read and not subscribed is idle.
        channels.settle(channel, now, self.max_idle);
        stream
    }
}

impl Broker for MemoryBroker {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BrokerFuture<'a, Placed> {
        Box::pin(ready(Ok(self.publish_now(channel, publication, retention))))
    }

    fn history<'a>(&'a self, channel: &'a str, since: Since) -> BrokerFuture<'a, Stream> {
        Box::pin(ready(Ok(self.history_now(channel, since))))
    }

    fn subscribe(&self, channel: &str) {
        let mut channels = lock(&self.channels);
        let ch = channels.get_or_create(channel);
        ch.subscribed += 1;
        ch.idle_since = None;
    }

    fn unsubscribe(&self, channel: &str) {
        let mut channels = lock(&self.channels);
        if let Some(ch) = channels.map.get_mut(channel) {
            ch.subscribed = ch.subscribed.saturating_sub(1);
            channels.settle(channel, Instant::now(), self.max_idle);
        }
    }

    fn join(&self, channel: &str, info: &Arc<ClientInfo>) {
        lock(&self.presence)
            .entry(channel.into())
            .or_default()
            .insert(info.client.clone(), info.clone());
    }

    fn leave(&self, channel: &str, client: &str) {
        let mut presence = lock(&self.presence);
        if let Some(present) = presence.get_mut(channel) {
            present.remove(client);
            if present.is_empty() {
                presence.remove(channel);
            }
        }
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Vec<Arc<ClientInfo>>> {
        let list = lock(&self.presence)
            .get(channel)
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        Box::pin(ready(Ok(list)))
    }

    fn presence_count<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, usize> {
        let n = lock(&self.presence).get(channel).map_or(0, HashMap::len);
        Box::pin(ready(Ok(n)))
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut channels = lock(&self.channels);
        let mut newly_idle = Vec::new();
        for (name, ch) in &mut channels.map {
            ch.trim(now);
            if ch.is_idle() && ch.idle_since.is_none() {
                newly_idle.push(name.clone());
            }
        }
        for name in newly_idle {
            channels.settle(&name, now, self.max_idle);
        }
        while channels
            .idle
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= self.meta_ttl)
        {
            channels.forget_front();
        }
    }

    fn channels_held(&self) -> usize {
        lock(&self.channels).map.len()
    }

    fn with_history(&self) -> Vec<Arc<str>> {
        lock(&self.channels)
            .map
            .values()
            .filter(|ch| !ch.history.is_empty())
            .map(|ch| ch.name.clone())
            .collect()
    }
}
