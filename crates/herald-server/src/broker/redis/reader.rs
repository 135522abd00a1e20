//! What arrives on the pub/sub connection, in order: publications (checked
//! against the last offset delivered per channel, gaps filled from the
//! history stream), other nodes' joins and leaves, and this node's control
//! messages.
//!
//! Redis pub/sub is at most once: a message published while this node's
//! connection was down, or dropped with a slow connection's buffer, is
//! gone. Offsets make the loss visible: a publication whose offset is not
//! the next one, or whose epoch is new, makes the reader read what is
//! missing from the channel's history stream and deliver it first; what
//! history no longer holds becomes a gap push to the subscribers, never a
//! silent skip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::commands::Commands;
use super::link::Link;
use super::nodes::Nodes;
use super::{Stored, channel_of, pubsub_name, read_position, read_range};
use crate::broker::Sink;
use crate::protocol::{ClientInfo, Publication};

/// Hands what arrives to the hub's sink.
pub(super) struct Reader {
    node: Arc<str>,
    conn: Arc<Commands>,
    nodes: Arc<Nodes>,
    link: Arc<Link>,
    sink: OnceLock<Arc<dyn Sink>>,
    /// Per subscribed channel: the epoch and offset last delivered here.
    delivered: std::sync::Mutex<HashMap<String, (Arc<str>, u64)>>,
    /// Publications read from history because pub/sub lost them.
    filled: AtomicU64,
    /// Gap pushes: losses history could not fill.
    gaps: AtomicU64,
}

impl Reader {
    pub(super) fn new(
        node: Arc<str>,
        conn: Arc<Commands>,
        nodes: Arc<Nodes>,
        link: Arc<Link>,
    ) -> Self {
        Self {
            node,
            conn,
            nodes,
            link,
            sink: OnceLock::new(),
            delivered: Default::default(),
            filled: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
        }
    }

    pub(super) fn node(&self) -> Arc<str> {
        self.node.clone()
    }

    pub(super) fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    fn delivered(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<str>, u64)>> {
        self.delivered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A history read of subscribed `channel` saw (`epoch`, `top`): where
    /// to look for losses from, if nothing was delivered yet. Never moves
    /// a position forward: publications up to `top` may still be on their
    /// way to this node's live subscribers.
    pub(super) fn baseline(&self, channel: &str, epoch: &Arc<str>, top: u64) {
        if !epoch.is_empty() {
            self.delivered()
                .entry(channel.to_owned())
                .or_insert_with(|| (epoch.clone(), top));
        }
    }

    /// This node no longer subscribes to `channel`.
    pub(super) fn forget(&self, channel: &str) {
        self.delivered().remove(channel);
    }

    pub(super) fn stats(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![
            (
                "herald_broker_filled_total",
                "Publications the broker's pub/sub lost on their way to this node and that were read from history instead.",
                self.filled.load(Ordering::Relaxed),
            ),
            (
                "herald_broker_gaps_total",
                "Losses on the broker's pub/sub that history could not fill: each is a gap push to the channel's subscribers.",
                self.gaps.load(Ordering::Relaxed),
            ),
        ]
    }

    /// One pub/sub message.
    pub(super) async fn message(&self, name: &str, payload: &[u8]) {
        let Some(channel) = channel_of(name) else {
            self.nodes.message(payload);
            return;
        };
        if !self.link.wants(name) {
            // Still on its way when this node unsubscribed: nobody here
            // wants it, and its offset must not become a position.
            return;
        }
        let Ok(payload) = std::str::from_utf8(payload) else {
            return;
        };
        let mut parts = payload.splitn(3, '\n');
        let (Some(head), Some(second), Some(json)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if let Some(kind) = head.strip_prefix('@') {
            // A join or leave; this node announced its own already.
            if second != &*self.node
                && let (Some(sink), Ok(info)) =
                    (self.sink.get(), serde_json::from_str::<ClientInfo>(json))
            {
                sink.presence(channel, kind == "j", &Arc::new(info));
            }
            return;
        }
        let (Ok(offset), Ok(stored)) =
            (second.parse::<u64>(), serde_json::from_str::<Stored>(json))
        else {
            return;
        };
        let last = self.delivered().get(channel).cloned();
        // The epoch's one allocation, shared by every publication of it.
        let epoch: Arc<str> = match &last {
            Some((e, _)) if **e == *head => e.clone(),
            _ => head.into(),
        };
        match last {
            Some((e, o)) if e == epoch => {
                if offset <= o {
                    return; // delivered already, from history
                }
                if offset > o + 1 {
                    self.fill(channel, &epoch, o, offset - 1).await;
                }
            }
            Some(_) => {
                // A new epoch (Redis lost the channel): what came after the
                // old position is gone.
                self.gap(channel, &epoch, 0);
                if offset > 1 {
                    self.fill(channel, &epoch, 0, offset - 1).await;
                }
            }
            None => {}
        }
        self.deliver(channel, &epoch, Arc::new(stored.publication(offset)));
    }

    fn deliver(&self, channel: &str, epoch: &Arc<str>, publication: Arc<Publication>) {
        let offset = publication.offset;
        if let Some(sink) = self.sink.get() {
            sink.deliver(channel, epoch, &publication);
        }
        self.set_delivered(channel, epoch, offset);
    }

    fn set_delivered(&self, channel: &str, epoch: &Arc<str>, offset: u64) {
        let mut delivered = self.delivered();
        match delivered.get_mut(channel) {
            Some(at) => *at = (epoch.clone(), offset),
            None => {
                delivered.insert(channel.to_owned(), (epoch.clone(), offset));
            }
        }
    }

    fn gap(&self, channel: &str, epoch: &Arc<str>, offset: u64) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("redis broker: {channel}: publications up to {epoch}/{offset} lost");
        if let Some(sink) = self.sink.get() {
            sink.gap(channel, epoch, offset);
        }
        self.set_delivered(channel, epoch, offset);
    }

    /// Delivers `channel`'s publications after `after` up to `upto` from
    /// history; what history does not hold (or a failed read) is a gap.
    async fn fill(&self, channel: &str, epoch: &Arc<str>, after: u64, upto: u64) {
        let (current, _) = read_position(&self.conn, channel)
            .await
            .unwrap_or_else(|_| ("".into(), 0));
        let read = if current == *epoch {
            read_range(&self.conn, channel, after + 1, Some(upto))
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut next = after + 1;
        for publication in read {
            if publication.offset < next {
                continue;
            }
            if publication.offset > next {
                self.gap(channel, epoch, publication.offset - 1);
            }
            next = publication.offset + 1;
            self.filled.fetch_add(1, Ordering::Relaxed);
            self.deliver(channel, epoch, publication);
        }
        if next <= upto {
            self.gap(channel, epoch, upto);
        }
    }

    /// After a reconnect: for every subscribed channel, what was published
    /// while this node was away.
    pub(super) async fn catch_up(&self) {
        let channels: Vec<(String, (Arc<str>, u64))> = self
            .delivered()
            .iter()
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect();
        for (channel, (epoch, offset)) in channels {
            if !self.link.wants(&pubsub_name(&channel)) {
                continue;
            }
            let Ok((current, top)) = read_position(&self.conn, &channel).await else {
                continue;
            };
            if current.is_empty() {
                // Nothing since Redis lost the channel: the next publication
                // makes a new epoch, which `message` tells as a gap.
                continue;
            }
            if current == epoch {
                if top > offset {
                    self.fill(&channel, &epoch, offset, top).await;
                }
            } else {
                self.gap(&channel, &current, 0);
                if top > 0 {
                    self.fill(&channel, &current, 0, top).await;
                }
            }
        }
    }
}
