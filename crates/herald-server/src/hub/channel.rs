//! One channel: its epoch, offsets and history, recovery from history, and
//! the queue of idle channels whose epoch and offset are kept a while.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use crate::config::NamespaceConfig;
use crate::protocol::{ClientInfo, Publication};

use super::Client;

#[derive(Debug)]
pub(super) struct Channel {
    pub(super) epoch: Arc<str>,
    pub(super) name: Arc<str>,
    /// The last offset given out; 0 before the first publication.
    pub(super) top: u64,
    pub(super) history: VecDeque<(Instant, Publication)>,
    pub(super) subscribers: HashMap<u64, Arc<Client>>,
    /// Since when the channel has had neither subscribers nor history:
    /// its epoch and offset are kept for `channel_meta_ttl` after that.
    pub(super) idle_since: Option<Instant>,
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

impl Channel {
    /// The batch this channel's next join or leave goes into; marks the
    /// channel in `dirty` when the batch is new.
    pub(super) fn pending_presence(&mut self, dirty: &mut Vec<Arc<str>>) -> &mut PresenceDiff {
        if self.pending.is_none() {
            dirty.push(self.name.clone());
        }
        self.pending.get_or_insert_default()
    }

    pub(super) fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.history.is_empty()
    }
}

/// The channels, and the idle ones in the order they went idle.
#[derive(Debug, Default)]
pub(super) struct Channels {
    pub(super) map: HashMap<Arc<str>, Channel>,
    /// (went idle at, name). An entry is stale when the channel has since
    /// become active or idle again (its `idle_since` differs); stale
    /// entries are skipped when met. At most `max_idle_channels` long.
    pub(super) idle: VecDeque<(Instant, Arc<str>)>,
    /// Channels with a presence batch waiting.
    pub(super) dirty: Vec<Arc<str>>,
}

impl Channels {
    /// Notes that `name` is idle as of `now` if it has neither
    /// subscribers nor history, forgetting the longest-idle channels past
    /// `max` of them.
    pub(super) fn settle(&mut self, name: &str, now: Instant, max: usize) {
        let Some(ch) = self.map.get_mut(name) else {
            return;
        };
        if !ch.is_idle() {
            ch.idle_since = None;
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
    pub(super) fn forget_front(&mut self) {
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

pub(super) fn new_epoch() -> Arc<str> {
    format!("{:08x}", rand::random::<u32>()).into()
}

pub(super) fn trim_history(ch: &mut Channel, ns: &NamespaceConfig, now: Instant) {
    while ch.history.len() > ns.history_size {
        ch.history.pop_front();
    }
    while ch
        .history
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > ns.history_ttl)
    {
        ch.history.pop_front();
    }
}

/// What a client that last saw (`epoch`, `offset`) missed: `recovered` is
/// true only if every publication after `offset` is still in history.
pub(super) fn recover<'a>(
    ch: &'a Channel,
    epoch: Option<&str>,
    offset: u64,
) -> (bool, Vec<&'a Publication>) {
    if epoch != Some(&*ch.epoch) || offset > ch.top {
        // A different epoch: the channel was recreated (or this server
        // restarted) and offsets mean nothing any more.
        return (false, Vec::new());
    }
    let missed: Vec<&Publication> = ch
        .history
        .iter()
        .map(|(_, p)| p)
        .filter(|p| p.offset > offset)
        .collect();
    let complete = match missed.first() {
        Some(first) => first.offset == offset + 1,
        None => offset == ch.top,
    };
    (complete, missed)
}
