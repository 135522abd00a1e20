//! This node's side of fan-out: which local clients are subscribed to
//! which channel, and the [`Sink`] through which the broker hands over
//! publications. No history, no offsets: those are the broker's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Client, Presence, lock};
use crate::broker::Sink;
use crate::config::{NamespaceConfig, ServerConfig};
use crate::delivery::{Item, Pushed, prepared};
use crate::metrics::Metrics;
use crate::protocol::{self, ClientInfo, Publication};

/// A subscriber of one channel.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub(super) client: Arc<Client>,
    /// While its subscribe reply is being prepared (the broker is asked
    /// for the channel's position and history), publications wait here
    /// with their (epoch, offset) instead of going to the outbox; the
    /// reply then takes what history does not already hold. `None`: live.
    pub(super) buffer: Option<Vec<(Arc<str>, u64, Item)>>,
}

/// A channel with subscribers on this node.
#[derive(Debug)]
pub(super) struct LocalChannel {
    pub(super) name: Arc<str>,
    pub(super) subscribers: HashMap<u64, Subscriber>,
    /// Joins and leaves waiting for the next batch (a channel past
    /// `join_leave_batch_above`).
    pub(super) pending: Option<Box<PresenceDiff>>,
}

/// Joins and leaves of a channel since its last presence batch.
#[derive(Debug, Default)]
pub(crate) struct PresenceDiff {
    /// Who joined, in order.
    pub(crate) joins: Vec<Arc<ClientInfo>>,
    /// Who left, in order.
    pub(crate) leaves: Vec<Arc<ClientInfo>>,
}

impl LocalChannel {
    /// The batch this channel's next join or leave goes into; marks the
    /// channel in `dirty` when the batch is new.
    pub(super) fn pending_presence(&mut self, dirty: &mut Vec<Arc<str>>) -> &mut PresenceDiff {
        if self.pending.is_none() {
            dirty.push(self.name.clone());
        }
        self.pending.get_or_insert_default()
    }
}

/// The channels with local subscribers.
#[derive(Debug, Default)]
pub(super) struct Channels {
    pub(super) map: HashMap<Arc<str>, LocalChannel>,
    /// Channels with a presence batch waiting.
    pub(super) dirty: Vec<Arc<str>>,
}

impl Channels {
    pub(super) fn get_or_create(&mut self, name: &str) -> &mut LocalChannel {
        if !self.map.contains_key(name) {
            let name: Arc<str> = name.into();
            self.map.insert(
                name.clone(),
                LocalChannel {
                    name,
                    subscribers: HashMap::new(),
                    pending: None,
                },
            );
        }
        // Inserted above if it was missing; the map is only changed under
        // the caller's lock.
        self.map
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("channel {name} inserted above"))
    }
}

/// The local fan-out table, shared by the hub and the broker (the broker
/// holds it as its [`Sink`]).
#[derive(Debug)]
pub(super) struct Fanout {
    pub(super) config: Arc<ServerConfig>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) channels: Mutex<Channels>,
}

impl Fanout {
    /// Queues `text` (a push that is not a publication: presence) for
    /// every live subscriber of `ch`. Not for silent ones (a poll's
    /// reader): a poll is answered with publications, and a join would
    /// end every long poll of the channel only to say who came.
    pub(super) fn fan_out(&self, ch: &LocalChannel, ns: &NamespaceConfig, text: String) {
        let message = prepared(text);
        let live = ch
            .subscribers
            .values()
            .filter(|s| s.buffer.is_none() && !s.client.silent);
        for sub in live {
            let item = Item {
                key: None,
                message: message.clone(),
                reply: false,
                published: None,
            };
            self.push(&sub.client, item, ns);
        }
    }

    /// A join or leave of `info` in `ch`: pushed at once to its
    /// subscribers, or, past `join_leave_batch_above`, kept for the next
    /// batch.
    pub(super) fn announce(
        &self,
        ch: &mut LocalChannel,
        ns: &NamespaceConfig,
        dirty: &mut Vec<Arc<str>>,
        what: Presence,
        info: &Arc<ClientInfo>,
    ) {
        // Those it is told to: a joiner is already in the map.
        let others = ch.subscribers.len() - usize::from(matches!(what, Presence::Join));
        if others < ns.join_leave_batch_above {
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

    /// Queues `item` under the namespace's policy; whether it was queued.
    pub(super) fn push(&self, client: &Client, item: Item, ns: &NamespaceConfig) -> bool {
        match client.outbox.push(item, ns.queue_size, ns.on_full) {
            Pushed::Queued => true,
            Pushed::Dropped | Pushed::Replaced => {
                self.metrics.queue_drop(ns.on_full);
                true
            }
            // Counted once per client, not per publication it misses
            // while it is being closed (it recovers them).
            Pushed::Overflow => {
                self.metrics.slow_consumer_disconnect();
                false
            }
            Pushed::Closing => false,
        }
    }
}

impl Sink for Fanout {
    fn deliver(&self, channel: &str, epoch: &Arc<str>, publication: &Arc<Publication>) -> usize {
        let Some((_, ns)) = self.config.namespace_of(channel) else {
            return 0;
        };
        let mut channels = lock(&self.channels);
        let Some(ch) = channels.map.get_mut(channel) else {
            return 0;
        };
        let message = prepared(protocol::push_publication(channel, epoch, publication));
        self.metrics.publication(message.len());
        let now = Instant::now();
        let mut delivered = 0;
        for sub in ch.subscribers.values_mut() {
            let item = Item {
                key: Some(ch.name.clone()),
                message: message.clone(),
                reply: false,
                published: Some(now),
            };
            if let Some(buffer) = &mut sub.buffer {
                buffer.push((epoch.clone(), publication.offset, item));
                delivered += 1;
            } else if self.push(&sub.client, item, ns) {
                delivered += 1;
            }
        }
        self.metrics.messages_out(delivered, message.len());
        delivered
    }

    fn gap(&self, channel: &str, epoch: &Arc<str>, offset: u64) {
        let Some((_, ns)) = self.config.namespace_of(channel) else {
            return;
        };
        let mut channels = lock(&self.channels);
        let Some(ch) = channels.map.get_mut(channel) else {
            return;
        };
        // Pollers too: the gap moves their cursor like a publication.
        let message = prepared(protocol::push_gap(channel, epoch, offset));
        for sub in ch.subscribers.values_mut() {
            let item = Item {
                key: None,
                message: message.clone(),
                reply: false,
                published: None,
            };
            if let Some(buffer) = &mut sub.buffer {
                buffer.push((epoch.clone(), offset, item));
            } else {
                self.push(&sub.client, item, ns);
            }
        }
    }

    fn presence(&self, channel: &str, joined: bool, info: &Arc<ClientInfo>) {
        let Some((_, ns)) = self.config.namespace_of(channel) else {
            return;
        };
        if !ns.join_leave {
            return;
        }
        let mut channels = lock(&self.channels);
        let Channels { map, dirty } = &mut *channels;
        if let Some(ch) = map.get_mut(channel) {
            let what = if joined {
                Presence::Join
            } else {
                Presence::Leave
            };
            self.announce(ch, ns, dirty, what, info);
        }
    }
}
