//! Read and write halves of a [`WebSocket`] for use from two tasks.
//!
//! Both halves share the socket behind a mutex held only for the length of
//! one non-blocking poll, never across an `.await`.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use herald_proto::connection::{Fragment, MessageKind};
use herald_proto::{CloseCode, CloseFrame, Message};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::Error;
use crate::socket::{TrySendError, WebSocket};

type Shared<S> = Arc<Mutex<WebSocket<S>>>;

pub(crate) fn split<S>(ws: WebSocket<S>) -> (ReadHalf<S>, WriteHalf<S>) {
    let shared = Arc::new(Mutex::new(ws));
    (
        ReadHalf {
            shared: shared.clone(),
        },
        WriteHalf { shared },
    )
}

fn lock<S>(shared: &Shared<S>) -> MutexGuard<'_, WebSocket<S>> {
    // A panic while holding the lock leaves the socket in a consistent
    // state (every poll is a complete step), so poisoning is ignored.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The receiving half. Keep a task polling it: it also answers pings and
/// writes what the write half queued with `try_send`.
#[derive(Debug)]
pub struct ReadHalf<S> {
    shared: Shared<S>,
}

/// The sending half.
#[derive(Debug)]
pub struct WriteHalf<S> {
    shared: Shared<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// Receives the next data message; see [`WebSocket::recv`]. Cancel safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| lock(&self.shared).poll_recv(cx)).await
    }

    /// Receives the next piece of a message; see [`WebSocket::recv_fragment`].
    pub async fn recv_fragment(&mut self) -> Option<Result<Fragment, Error>> {
        poll_fn(|cx| lock(&self.shared).poll_recv_fragment(cx)).await
    }

    /// Why the connection closed, once it has.
    pub fn close_frame(&self) -> Option<CloseFrame> {
        lock(&self.shared).close_frame().cloned()
    }

    /// Puts the halves back together; `None` if they are from different sockets.
    pub fn unsplit(self, write: WriteHalf<S>) -> Option<WebSocket<S>> {
        if !Arc::ptr_eq(&self.shared, &write.shared) {
            return None;
        }
        drop(write);
        Arc::into_inner(self.shared).map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteHalf<S> {
    /// Sends a message; see [`WebSocket::send`].
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| lock(&self.shared).poll_ready_to_send(cx)).await?;
        lock(&self.shared).start_send_message(message)?;
        poll_fn(|cx| lock(&self.shared).poll_flush_queue(cx)).await
    }

    /// Queues a message without waiting; see [`WebSocket::try_send`].
    pub fn try_send(&self, message: Message) -> Result<(), TrySendError> {
        lock(&self.shared).try_send(message)
    }

    /// Sends one frame of a message sent in pieces; see [`WebSocket::send_frame`].
    pub async fn send_frame(
        &mut self,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), Error> {
        poll_fn(|cx| lock(&self.shared).poll_ready_to_send(cx)).await?;
        lock(&self.shared).queue_frame(kind, payload, fin)?;
        poll_fn(|cx| lock(&self.shared).poll_flush_queue(cx)).await
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        lock(&self.shared).buffered_amount()
    }

    /// Sends a Close frame; the read half sees the peer's reply and then
    /// `None`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        lock(&self.shared).start_close(code, reason)?;
        poll_fn(|cx| lock(&self.shared).poll_flush_queue(cx)).await
    }
}
