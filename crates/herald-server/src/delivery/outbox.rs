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
    queue: Queue,
    /// The connection's task, kept between wakeups: taking it to wake it
    /// would make the task clone its waker again on every wakeup.
    waker: Option<Waker>,
    /// Woken since the task last took from the queue: later pushes need
    /// not wake it again.
    woken: bool,
    /// The server thread the waker's task runs on, with more than one:
    /// wakes from other threads go through its mailbox.
    home: Option<Arc<crate::threads::Mailbox>>,
    /// The disconnect policy fired: the connection must close (4001).
    overflowed: bool,
}

impl Inner {
    fn register(&mut self, cx: &Context<'_>) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
        self.home = crate::threads::mailbox(self.home.take());
    }

    /// Wakes the task unless it was woken since it last took.
    fn wake(&mut self) {
        if !self.woken
            && let Some(w) = &self.waker
        {
            crate::threads::wake(w.clone(), self.home.as_ref());
            self.woken = true;
        }
    }
}

/// A FIFO whose first item is held inline: a subscriber that keeps up
/// has at most one item queued at a time, and queueing it then costs no
/// allocation (a `VecDeque` allocated on every push after being freed
/// when drained, the idle connection's memory being the reason to free
/// it). Invariant: `rest` is empty while `first` is `None`.
#[derive(Debug, Default)]
struct Queue {
    first: Option<Item>,
    rest: VecDeque<Item>,
}

impl Queue {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn push_back(&mut self, item: Item) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    fn clear(&mut self) {
        self.first = None;
        self.rest = VecDeque::new();
    }

    fn iter(&self) -> impl Iterator<Item = &Item> + '_ {
        self.first.iter().chain(self.rest.iter())
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Item> {
        match i {
            0 => self.first.as_mut(),
            _ => self.rest.get_mut(i - 1),
        }
    }

    fn remove(&mut self, i: usize) {
        if i == 0 {
            self.first = self.rest.pop_front();
        } else {
            self.rest.remove(i - 1);
        }
    }

    fn pop_front(&mut self) -> Option<Item> {
        let item = self.first.take()?;
        self.first = self.rest.pop_front();
        if self.first.is_none() && self.rest.capacity() > 0 {
            // An idle connection keeps no queue allocation.
            self.rest = VecDeque::new();
        }
        Some(item)
    }

    /// Moves up to `max` items, oldest first, to `out`.
    fn take(&mut self, max: usize, out: &mut Vec<Item>) {
        let Some(first) = self.first.take() else {
            return;
        };
        out.push(first);
        let n = self.rest.len().min(max.saturating_sub(1));
        out.extend(self.rest.drain(..n));
        self.first = self.rest.pop_front();
        if self.first.is_none() && self.rest.capacity() > 0 {
            // An idle connection keeps no queue allocation.
            self.rest = VecDeque::new();
        }
    }
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
fn drop_oldest(queue: &mut Queue) {
    let oldest = queue.iter().position(|item| !item.reply);
    if let Some(i) = oldest {
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
                        let mut last = None;
                        for (i, q) in inner.queue.iter().enumerate() {
                            if q.key.as_deref() == Some(&**k) {
                                last = Some(i);
                            }
                        }
                        last
                    });
                    match same {
                        Some(i) => {
                            // The newer value takes the older one's place in
                            // line, so per-key order is kept.
                            if let Some(slot) = inner.queue.get_mut(i) {
                                *slot = item;
                            }
                            inner.wake();
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
        inner.wake();
        pushed
    }

    /// Takes up to `max` queued items; `Ready(Err(()))` once the queue
    /// overflowed under the disconnect policy. Registers the task's waker
    /// when it finds the queue empty, and also when it takes the last
    /// item: then `Ready(Ok(true))` says so, and the caller need not poll
    /// again to learn that the queue is empty (one lock per wakeup, not
    /// two). For the HTTP transports, which write in batches.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        out: &mut Vec<Item>,
    ) -> Poll<Result<bool, ()>> {
        let mut inner = self.lock();
        if inner.overflowed {
            return Poll::Ready(Err(()));
        }
        inner.woken = false;
        let empty = inner.queue.is_empty();
        inner.queue.take(max, out);
        if !inner.queue.is_empty() {
            return Poll::Ready(Ok(false));
        }
        inner.register(cx);
        if empty {
            Poll::Pending
        } else {
            Poll::Ready(Ok(true))
        }
    }

    /// Wakes the connection's task (to notice a kick).
    pub(crate) fn wake(&self) {
        // Always: rare, and the task may be waiting on its socket rather
        // than on this queue.
        let mut inner = self.lock();
        if let Some(w) = inner.waker.clone() {
            crate::threads::wake(w, inner.home.as_ref());
            inner.woken = true;
        }
    }

    /// Takes the oldest queued item, and whether that emptied the queue
    /// (then the task's waker is registered, as when `Pending`);
    /// `Ready(Err(()))` once the queue overflowed under the disconnect
    /// policy. One item at a time, so the caller keeps no batch buffer
    /// (a `Vec` that grew once would stay with the connection).
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Result<(Item, bool), ()>> {
        let mut inner = self.lock();
        if inner.overflowed {
            return Poll::Ready(Err(()));
        }
        inner.woken = false;
        let Some(item) = inner.queue.pop_front() else {
            inner.register(cx);
            return Poll::Pending;
        };
        let drained = inner.queue.is_empty();
        if drained {
            inner.register(cx);
        }
        Poll::Ready(Ok((item, drained)))
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

    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn the_task_is_woken_once_per_take_and_told_when_it_took_the_last() {
        let count = std::sync::Arc::new(Count(Default::default()));
        let woken = || count.0.load(std::sync::atomic::Ordering::SeqCst);
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let o = Outbox::default();
        let text = |p: Poll<Result<(Item, bool), ()>>| match p {
            Poll::Ready(Ok((item, drained))) => (item.text(), drained),
            other => panic!("{:?}", other.map(|r| r.map(|(i, d)| (i.text(), d)))),
        };
        assert!(o.poll_next(&mut cx).is_pending());
        o.push(item("a", "1"), 8, QueuePolicy::DropOldest);
        assert_eq!(woken(), 1);
        assert_eq!(text(o.poll_next(&mut cx)), ("1".into(), true));
        o.push(item("a", "2"), 8, QueuePolicy::DropOldest);
        o.push(item("a", "3"), 8, QueuePolicy::DropOldest);
        assert_eq!(woken(), 2, "one wake until the task takes again");
        assert_eq!(text(o.poll_next(&mut cx)), ("2".into(), false));
        assert_eq!(text(o.poll_next(&mut cx)), ("3".into(), true));
        assert!(o.poll_next(&mut cx).is_pending());
        o.push(item("a", "4"), 8, QueuePolicy::DropOldest);
        assert_eq!(woken(), 3);
        // A kick wakes even a task woken already (it may be waiting on its
        // socket, not on this queue).
        o.wake();
        assert_eq!(woken(), 4);
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
