//! A connection's outgoing queue: bounded, with the namespace's policy
//! for when it is full. The hub pushes publications in (each one
//! serialized once and shared); the connection's task drains it into the
//! WebSocket as fast as the peer reads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use herald::{Message, PreparedMessage};

use crate::config::QueuePolicy;

/// One queued frame. `key` is the channel, for [`QueuePolicy::Latest`].
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) key: Option<std::sync::Arc<str>>,
    /// Framed once (and compressed once per window size, on first use),
    /// shared by every connection it is queued for.
    pub(crate) message: PreparedMessage,
    /// A reply to a command: never dropped by a policy.
    pub(crate) reply: bool,
    /// When the publication was made, for the publish-to-write latency;
    /// `None` for anything else.
    pub(crate) published: Option<tokio::time::Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Item>,
    waker: Option<Waker>,
    /// The server thread the waker's task runs on, with more than one:
    /// wakes from other threads go through its mailbox.
    home: Option<Arc<crate::threads::Mailbox>>,
    /// The disconnect policy fired: the connection must close (4001).
    overflowed: bool,
}

/// A text frame for `text`, ready to be queued on many connections.
pub(crate) fn prepared(text: String) -> PreparedMessage {
    PreparedMessage::new(Message::Text(text.into()))
}

impl Item {
    /// The frame's text (for tests and the fuzz targets).
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(self.message.payload()).into_owned()
    }
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued after dropping an older message.
    Dropped,
    /// Queued in place of an older message for the same key.
    Replaced,
    /// Not queued: the queue just overflowed, and the connection must be
    /// closed as a slow consumer. Returned once per connection.
    Overflow,
    /// Not queued: the connection is already being closed as a slow
    /// consumer.
    Closing,
}

/// Drops the oldest item that is not a reply.
fn drop_oldest(queue: &mut VecDeque<Item>) {
    if let Some(i) = queue.iter().position(|item| !item.reply) {
        queue.remove(i);
    }
}

/// The queue, shared between the hub and the connection's task.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` unless the queue holds `capacity` items; then applies
    /// `policy`.
    pub(crate) fn push(&self, item: Item, capacity: usize, policy: QueuePolicy) -> Pushed {
        let mut inner = self.lock();
        if inner.overflowed {
            return Pushed::Closing;
        }
        let mut pushed = Pushed::Queued;
        if inner.queue.len() >= capacity.max(1) {
            match policy {
                QueuePolicy::Disconnect => {
                    inner.overflowed = true;
                    inner.queue.clear();
                    pushed = Pushed::Overflow;
                }
                QueuePolicy::DropOldest => {
                    drop_oldest(&mut inner.queue);
                    pushed = Pushed::Dropped;
                }
                QueuePolicy::Latest => {
                    let same = item.key.as_ref().and_then(|k| {
                        inner
                            .queue
                            .iter()
                            .rposition(|q| q.key.as_deref() == Some(&**k))
                    });
                    match same {
                        Some(i) => {
                            // The newer value takes the older one's place in
                            // line, so per-key order is kept.
                            inner.queue[i] = item;
                            if let Some(w) = inner.waker.take() {
                                crate::threads::wake(w, inner.home.as_ref());
                            }
                            return Pushed::Replaced;
                        }
                        None => {
                            drop_oldest(&mut inner.queue);
                            pushed = Pushed::Dropped;
                        }
                    }
                }
            }
        }
        if pushed != Pushed::Overflow {
            inner.queue.push_back(item);
        }
        if let Some(w) = inner.waker.take() {
            crate::threads::wake(w, inner.home.as_ref());
        }
        pushed
    }

    /// Takes up to `max` queued items; `Ready(Err(()))` once the queue
    /// overflowed under the disconnect policy. Registers the task's waker
    /// when empty.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        out: &mut Vec<Item>,
    ) -> Poll<Result<(), ()>> {
        let mut inner = self.lock();
        if inner.overflowed {
            return Poll::Ready(Err(()));
        }
        if inner.queue.is_empty() {
            if !inner
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.waker = Some(cx.waker().clone());
            }
            inner.home = crate::threads::mailbox(inner.home.take());
            // An idle connection keeps no queue allocation.
            if inner.queue.capacity() > 0 {
                inner.queue = VecDeque::new();
            }
            return Poll::Pending;
        }
        let n = inner.queue.len().min(max);
        out.extend(inner.queue.drain(..n));
        Poll::Ready(Ok(()))
    }

    /// Wakes the connection's task (to notice a kick).
    pub(crate) fn wake(&self) {
        let mut inner = self.lock();
        if let Some(w) = inner.waker.take() {
            crate::threads::wake(w, inner.home.as_ref());
        }
    }

    /// Messages waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, text: &'static str) -> Item {
        Item {
            key: Some(key.into()),
            message: prepared(text.into()),
            reply: false,
            published: None,
        }
    }

    #[test]
    fn replies_are_never_dropped() {
        let o = Outbox::default();
        let reply = Item {
            key: None,
            message: prepared("reply".into()),
            reply: true,
            published: None,
        };
        o.push(reply, usize::MAX, QueuePolicy::DropOldest);
        o.push(item("a", "1"), 2, QueuePolicy::DropOldest);
        o.push(item("a", "2"), 2, QueuePolicy::DropOldest);
        let texts: Vec<String> = o.lock().queue.iter().map(Item::text).collect();
        assert_eq!(texts, ["reply", "2"]);
    }

    #[test]
    fn policies_when_full() {
        let o = Outbox::default();
        assert_eq!(
            o.push(item("a", "1"), 2, QueuePolicy::DropOldest),
            Pushed::Queued
        );
        assert_eq!(
            o.push(item("a", "2"), 2, QueuePolicy::DropOldest),
            Pushed::Queued
        );
        assert_eq!(
            o.push(item("a", "3"), 2, QueuePolicy::DropOldest),
            Pushed::Dropped
        );
        assert_eq!(o.len(), 2);

        let o = Outbox::default();
        o.push(item("a", "a1"), 2, QueuePolicy::Latest);
        o.push(item("b", "b1"), 2, QueuePolicy::Latest);
        assert_eq!(
            o.push(item("a", "a2"), 2, QueuePolicy::Latest),
            Pushed::Replaced
        );
        let texts: Vec<String> = o.lock().queue.iter().map(Item::text).collect();
        assert_eq!(texts, ["a2", "b1"]);
        assert_eq!(
            o.push(item("c", "c1"), 2, QueuePolicy::Latest),
            Pushed::Dropped
        );

        let o = Outbox::default();
        o.push(item("a", "1"), 1, QueuePolicy::Disconnect);
        assert_eq!(
            o.push(item("a", "2"), 1, QueuePolicy::Disconnect),
            Pushed::Overflow
        );
        // Once per connection: the rest are not counted again.
        assert_eq!(
            o.push(item("a", "3"), 1, QueuePolicy::Disconnect),
            Pushed::Closing
        );
    }
}
