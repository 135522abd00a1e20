//! One loop's connections, and [`Conn`], the handle callbacks get.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use herald_proto::connection::State;
use herald_proto::{CloseCode, CloseFrame, Connection, Message, PreparedMessage, UserError};
use mio::net::TcpStream;

use super::{ConnId, SendStatus};

/// Where a connection is in its life.
#[expect(
    clippy::large_enum_variant,
    reason = "connections live in Open; a box would cost a pointer chase per message"
)]
pub(super) enum Phase {
    /// Reading the HTTP request into `Entry::buf`.
    Handshake,
    /// Upgraded. Stays here, with the core in [`State::Closed`], until the
    /// core's last frame (the Close) is written.
    Open(Connection),
    /// Writing a refusal (`Entry::out`), then closing.
    Refused,
    /// Our side is shut down; reading and discarding until the peer closes
    /// too or `Entry::deadline` passes. Closing only after the peer has, so
    /// that unread input does not make the kernel answer with a reset that
    /// can destroy our last frame before the peer reads it (RFC 6455 7.1.1
    /// has the server close first, and this is that, done gently). After
    /// a clean close handshake there is no such input, and the connection
    /// is closed without this wait.
    Draining,
}

/// One connection's state, held inline in the loop's slots: what every
/// message touches is here, the rest is in [`Rare`], so that an idle
/// connection costs its slot and nothing else.
pub(super) struct Entry {
    pub(super) tcp: TcpStream,
    /// Not read from while above the write high-water mark.
    pub(super) paused: bool,
    /// In `Connections::dirty`: queued frames from another connection's
    /// callback wait for a write.
    pub(super) dirty: bool,
    /// The deadline this connection has in the timer heap.
    pub(super) armed: Option<Instant>,
    pub(super) phase: Phase,
    /// Input not yet consumed: the handshake so far, or a partial frame
    /// (with room reserved for its rest). Empty, without an allocation,
    /// between messages.
    pub(super) buf: BytesMut,
    /// Allocated while there is something in it.
    pub(super) rare: Option<Box<Rare>>,
}

/// What a connection needs only at its edges: opening, closing, or with a
/// subprotocol.
#[derive(Default)]
pub(super) struct Rare {
    /// Raw bytes to write before any frame: the 101 response or a refusal.
    pub(super) out: Option<Bytes>,
    /// A deadline of the loop's own: the handshake timeout, or how long
    /// to wait for a closed connection's last bytes to drain.
    pub(super) deadline: Option<Instant>,
    /// The subprotocol the handshake selected.
    pub(super) protocol: Option<Box<str>>,
    /// Why the connection closed, for [`Handler::on_close`](super::Handler::on_close).
    pub(super) close_frame: Option<CloseFrame>,
    /// The peer's Close frame came in: it will send nothing more.
    pub(super) close_received: bool,
}

impl Entry {
    pub(super) fn core(&mut self) -> Option<&mut Connection> {
        match &mut self.phase {
            Phase::Open(core) => Some(core),
            _ => None,
        }
    }

    pub(super) fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.rare.as_ref()?.deadline
    }

    pub(super) fn has_out(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.out.is_some())
    }

    /// Frees [`Rare`] once it holds nothing.
    pub(super) fn trim(&mut self) {
        if let Some(r) = &self.rare
            && r.out.is_none()
            && r.deadline.is_none()
            && r.protocol.is_none()
            && r.close_frame.is_none()
        {
            self.rare = None;
        }
    }
}

#[derive(Default)]
pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) entry: Option<Entry>,
}

/// Slots in fixed pages: growing never moves (or copies) the connections
/// already there, and leaves no freed old array behind, which a doubling
/// `Vec` of 10,000 slots would (about as much again as the slots).
#[derive(Default)]
pub(super) struct Slots {
    /// Arrays rather than slices: an index masked to the page size needs
    /// no bounds check.
    pages: Vec<Box<[Slot; PAGE]>>,
    len: u32,
}

const PAGE: usize = 256;

impl Slots {
    pub(super) fn len(&self) -> u32 {
        self.len
    }

    #[inline]
    pub(super) fn get(&self, index: u32) -> Option<&Slot> {
        let page = self.pages.get(index as usize / PAGE)?;
        Some(&page[index as usize % PAGE])
    }

    #[inline]
    pub(super) fn get_mut(&mut self, index: u32) -> Option<&mut Slot> {
        let page = self.pages.get_mut(index as usize / PAGE)?;
        Some(&mut page[index as usize % PAGE])
    }

    /// A new empty slot's index.
    pub(super) fn push(&mut self) -> u32 {
        if (self.len as usize).is_multiple_of(PAGE) {
            // Built on the heap: 88 KB would strain a thread's stack.
            let page: Box<[Slot]> = (0..PAGE).map(|_| Slot::default()).collect();
            let page: Box<[Slot; PAGE]> = page.try_into().ok().expect("PAGE slots");
            self.pages.push(page);
        }
        self.len += 1;
        self.len - 1
    }
}

/// A loop's connections, addressed by slot index, plus what callbacks may
/// touch: [`Conn`] borrows this, while the loop keeps the handler apart.
pub(super) struct Connections {
    pub(super) slots: Slots,
    pub(super) free: Vec<u32>,
    /// Connections written to by another connection's callback.
    pub(super) dirty: Vec<u32>,
    /// The connection being driven; its writes are flushed anyway.
    pub(super) current: u32,
    /// The time of this wakeup.
    pub(super) now: Instant,
    pub(super) high_water: usize,
    pub(super) max_buffered: usize,
}

impl Connections {
    fn entry_ref(&self, index: u32) -> Option<&Entry> {
        self.slots.get(index)?.entry.as_ref()
    }

    pub(super) fn entry(&mut self, index: u32) -> Option<&mut Entry> {
        self.slots.get_mut(index)?.entry.as_mut()
    }

    pub(super) fn id(&self, index: u32) -> ConnId {
        ConnId {
            index,
            generation: self.slots.get(index).map_or(0, |s| s.generation),
        }
    }

    /// The slot of `id`, if that connection still exists.
    fn find(&mut self, id: ConnId) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(id.index)?;
        if slot.generation != id.generation {
            return None;
        }
        // After `on_close` the slot keeps its generation while the socket
        // drains (timers name it by generation), but the id is no longer
        // valid: `on_close` said so.
        slot.entry
            .as_mut()
            .filter(|e| matches!(e.phase, Phase::Open(_)))
    }

    /// Queues with `send` on the connection's core.
    fn send(
        &mut self,
        index: u32,
        send: impl FnOnce(&mut Connection) -> Result<(), UserError>,
    ) -> SendStatus {
        let (high_water, max_buffered) = (self.high_water, self.max_buffered);
        let current = self.current;
        let Some(entry) = self.entry(index) else {
            return SendStatus::Closed;
        };
        let Some(core) = entry.core() else {
            return SendStatus::Closed;
        };
        if core.buffered_amount() > max_buffered {
            return SendStatus::Dropped;
        }
        if send(core).is_err() {
            return SendStatus::Closed;
        }
        let status = if core.buffered_amount() > high_water {
            // Stop reading the peer until its queue drains (`on_drain`).
            entry.paused = true;
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        };
        if index != current && !entry.dirty {
            entry.dirty = true;
            self.dirty.push(index);
        }
        status
    }

    fn close(&mut self, index: u32, code: CloseCode, reason: &str) {
        let (now, current) = (self.now, self.current);
        let Some(entry) = self.entry(index) else {
            return;
        };
        if let Some(core) = entry.core() {
            let _ = core.close(code, reason, now);
        }
        if index != current && !entry.dirty {
            entry.dirty = true;
            self.dirty.push(index);
        }
    }
}

/// A connection, as callbacks see it: send to it, close it, or reach
/// another connection of the same loop by its [`ConnId`].
pub struct Conn<'a> {
    pub(super) conns: &'a mut Connections,
    pub(super) index: u32,
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("id", &self.id()).finish()
    }
}

impl Conn<'_> {
    /// This connection's id, valid for as long as it exists; a later
    /// connection in the same slot gets another.
    pub fn id(&self) -> ConnId {
        self.conns.id(self.index)
    }

    /// Queues `message`. It is written when the callback returns, together
    /// with whatever else the callbacks of this wakeup queued.
    pub fn send(&mut self, message: Message) -> SendStatus {
        self.conns.send(self.index, |core| core.send(message))
    }

    /// Queues a message framed (and compressed) once for many connections,
    /// as [`WebSocket::start_send_prepared`](crate::WebSocket::start_send_prepared)
    /// does; written like [`Conn::send`]'s.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> SendStatus {
        self.conns
            .send(self.index, |core| core.send_prepared(message))
    }

    /// Starts the close handshake with `code` and `reason` (at most 123
    /// bytes). [`Handler::on_close`](super::Handler::on_close) follows when
    /// the peer answers or the close timeout passes.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        self.conns.close(self.index, code, reason);
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&mut self) -> usize {
        let entry = self.conns.entry(self.index);
        entry
            .and_then(Entry::core)
            .map_or(0, |c| c.buffered_amount())
    }

    /// Whether the connection can still send: open, and not closing.
    pub fn is_open(&mut self) -> bool {
        let entry = self.conns.entry(self.index);
        entry
            .and_then(Entry::core)
            .is_some_and(|c| c.state() == State::Open)
    }

    /// Whether permessage-deflate was negotiated for this connection.
    pub fn is_compressed(&self) -> bool {
        let entry = self.conns.entry_ref(self.index);
        matches!(entry.map(|e| &e.phase), Some(Phase::Open(core)) if core.is_compressed())
    }

    /// The subprotocol the handshake selected.
    pub fn protocol(&self) -> Option<&str> {
        let entry = self.conns.entry_ref(self.index)?;
        entry.rare.as_ref()?.protocol.as_deref()
    }

    /// The peer's address (a system call: the loop does not keep it).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.conns.entry_ref(self.index) {
            Some(entry) => entry.tcp.peer_addr(),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Another connection of this loop, if it still exists. Its frames are
    /// written before the loop waits again.
    pub fn other(&mut self, id: ConnId) -> Option<Conn<'_>> {
        self.conns.find(id)?;
        Some(Conn {
            conns: self.conns,
            index: id.index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot is all an idle connection costs in user space; keep it lean.
    #[test]
    fn slot_size() {
        let slot = size_of::<Slot>();
        assert!(slot <= 344, "Slot grew to {slot} bytes (budget 344)");
    }
}
