//! What a server thread of [`Server::serve_threads`](crate::Server::serve_threads)
//! knows about itself: its index (for `herald_thread_connections`) and its
//! mailbox of wakers.
//!
//! A publication made on one thread wakes the subscribers of every other
//! thread. A tokio current-thread runtime woken from outside writes its
//! eventfd once per task (tokio 1.54 `current_thread::Handle::schedule`),
//! so with N threads (N - 1) / N of all deliveries cost a syscall more.
//! Instead, a wake for another server thread goes into that thread's
//! mailbox; the first one of a batch wakes the thread's drainer task,
//! which wakes the rest from inside its own runtime, where a wake is a
//! queue push.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::task::Waker;

use tokio::sync::Notify;

/// Wakers for the tasks of one server thread, woken from other threads.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    wakers: Mutex<Vec<Waker>>,
    notify: Notify,
}

thread_local! {
    /// This server thread's index and mailbox, while it is one.
    static HOME: RefCell<Option<(usize, Arc<Mailbox>)>> = const { RefCell::new(None) };
}

/// The index of the server thread running the caller, if it is one.
pub(crate) fn index() -> Option<usize> {
    HOME.with(|h| h.borrow().as_ref().map(|(i, _)| *i))
}

/// The mailbox of the server thread running the caller, if it is one;
/// `current` is the one the caller holds, returned again when it is the
/// same (no reference count change).
pub(crate) fn mailbox(current: Option<Arc<Mailbox>>) -> Option<Arc<Mailbox>> {
    HOME.with(|h| match (h.borrow().as_ref(), current) {
        (Some((_, home)), Some(current)) if Arc::ptr_eq(home, &current) => Some(current),
        (Some((_, home)), _) => Some(home.clone()),
        (None, _) => None,
    })
}

/// Wakes `waker`, whose task runs on the thread of `home`: directly when
/// that is this thread (or not a server thread), else through its mailbox.
pub(crate) fn wake(waker: Waker, home: Option<&Arc<Mailbox>>) {
    let Some(home) = home else {
        return waker.wake();
    };
    let here = HOME.with(|h| {
        h.borrow()
            .as_ref()
            .is_some_and(|(_, mine)| Arc::ptr_eq(mine, home))
    });
    if here {
        return waker.wake();
    }
    let first = {
        let mut wakers = home.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers.push(waker);
        wakers.len() == 1
    };
    if first {
        home.notify.notify_one();
    }
}

/// Marks the current thread as server thread `index` until dropped; the
/// returned future, run on this thread's runtime, drains the mailbox.
pub(crate) struct Home {
    previous: Option<(usize, Arc<Mailbox>)>,
}

impl Home {
    pub(crate) fn set(index: usize) -> (Self, impl Future<Output = ()> + 'static) {
        let mailbox = Arc::new(Mailbox::default());
        let previous = HOME.with(|h| h.replace(Some((index, mailbox.clone()))));
        let drainer = async move {
            let mut batch = Vec::new();
            loop {
                mailbox.notify.notified().await;
                std::mem::swap(
                    &mut batch,
                    &mut *mailbox.wakers.lock().unwrap_or_else(|p| p.into_inner()),
                );
                for waker in batch.drain(..) {
                    waker.wake();
                }
            }
        };
        (Self { previous }, drainer)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let previous = self.previous.take();
        HOME.with(|h| *h.borrow_mut() = previous);
    }
}
