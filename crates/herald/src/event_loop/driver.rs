//! One thread's loop: wait for readiness, accept, read, call back, write.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use herald_proto::connection::State;
use herald_proto::handshake::{self, reject_response};
use herald_proto::{CloseCode, CloseFrame, Connection, Event};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::conns::{Conn, Connections, Entry, Phase, Rare, Slots};
use super::timers::Timers;
use super::{ConnId, Handler, Shared};
use crate::accept::{AcceptAction, AcceptBackoff};
use crate::socket::{frame_rest, with_transmit_slices};

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// No connection is being driven (`Connections::current`).
const NONE: u32 = u32::MAX;
/// Size of the shared read block. Reads take all of its free room, so a
/// burst of 16 KiB messages is one `recv`, and a new block is taken when
/// less than a quarter is left.
const BLOCK: usize = 64 << 10;
/// First read of a handshake; requests are rarely longer.
const HANDSHAKE_READ: usize = 1024;

/// A listening socket for `addr`: non-blocking, `TCP_NODELAY` (inherited by
/// accepted sockets on Linux), `SO_REUSEPORT` when several loops share the
/// port, and `TCP_DEFER_ACCEPT` if asked (see [`Builder::defer_accept`]).
///
/// [`Builder::defer_accept`]: super::Builder::defer_accept
pub(super) fn listen(
    addr: SocketAddr,
    reuse_port: bool,
    backlog: i32,
    defer_accept: bool,
) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    #[cfg(target_os = "linux")]
    if defer_accept {
        // Seconds; the kernel rounds up to its SYN-ACK retransmissions.
        set_int_option(&socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = defer_accept;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// `setsockopt` for an `int` option that socket2 does not name.
#[cfg(target_os = "linux")]
fn set_int_option(
    socket: &socket2::Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, and a pointer to an `int` with its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A loop's `epoll` instance and listener, made at bind time so that a
/// [`StopHandle`](super::StopHandle) exists before the loop runs.
#[derive(Debug)]
pub(super) struct Parts {
    poll: Poll,
    listener: TcpListener,
}

impl Parts {
    pub(super) fn new(mut listener: TcpListener) -> io::Result<(Self, Waker)> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok((Self { poll, listener }, waker))
    }
}

pub(super) struct Loop<H> {
    poll: Poll,
    /// `None` once stopping.
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    handler: H,
    conns: Connections,
    timers: Timers,
    /// Where reads of connections without a partial frame land; messages
    /// are split off it without copying.
    block: BytesMut,
    /// When a stopping loop gives up waiting for its connections.
    stopping: Option<Instant>,
    backoff: AcceptBackoff,
    /// Out of descriptors: when to call `accept` again. Edge-triggered, the
    /// listener reports no new readiness for the connections already
    /// queued, so this timer, not an event, takes them once descriptors
    /// free up.
    accept_again: Option<Instant>,
}

impl<H: Handler> Loop<H> {
    pub(super) fn new(parts: Parts, shared: Arc<Shared>, handler: H) -> Self {
        let config = shared.acceptor.config();
        let conns = Connections {
            slots: Slots::default(),
            free: Vec::new(),
            dirty: Vec::new(),
            current: NONE,
            now: Instant::now(),
            high_water: config.write_high_water,
            max_buffered: shared.max_buffered,
        };
        Self {
            poll: parts.poll,
            listener: Some(parts.listener),
            shared,
            handler,
            conns,
            timers: Timers::default(),
            block: BytesMut::new(),
            stopping: None,
            backoff: AcceptBackoff::new(),
            accept_again: None,
        }
    }

    pub(super) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let next = [self.timers.next(), self.stopping, self.accept_again]
                .into_iter()
                .flatten()
                .min();
            let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.conns.now = Instant::now();
            if self.accept_again.is_some_and(|t| t <= self.conns.now) {
                self.accept_again = None;
                self.accept();
            }
            for event in events.iter() {
                match event.token() {
                    // While backing off, the timer accepts: calling now
                    // would only fail again.
                    LISTENER if self.accept_again.is_none() => self.accept(),
                    LISTENER => {}
                    WAKER => {}
                    Token(index) => {
                        let end = event.is_read_closed() || event.is_error();
                        // A writable-only edge (the first one after
                        // registering, or a drained send buffer) has no
                        // input behind it: the `recv` would only say so.
                        let readable = end || event.is_readable();
                        self.ready(index as u32, readable, end);
                    }
                }
            }
            self.fire_timers();
            self.flush_dirty();
            if self.shared.stop.load(Ordering::Acquire) && self.stop() {
                for index in 0..self.conns.slots.len() {
                    self.remove(index);
                }
                return Ok(());
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let mut tcp = match listener.accept() {
                Ok((tcp, _)) => {
                    self.backoff.reset();
                    tcp
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => match self.backoff.on_error(&e, self.conns.now) {
                    AcceptAction::Retry => continue,
                    AcceptAction::Wait(delay) => {
                        self.accept_again = Some(self.conns.now + delay);
                        return;
                    }
                    // Serve the connections there are; `stop` ends the loop.
                    _ => {
                        self.listener = None;
                        return;
                    }
                },
            };
            if !cfg!(target_os = "linux") {
                let _ = tcp.set_nodelay(true);
            }
            let open = self.shared.connections.fetch_add(1, Ordering::Relaxed);
            if open >= self.shared.max_connections {
                self.shared.connections.fetch_sub(1, Ordering::Relaxed);
                let _ = tcp.write(&reject_response(503, "too many connections", &[]));
                continue;
            }
            let index = match self.conns.free.pop() {
                Some(i) => i,
                None => self.conns.slots.push(),
            };
            // Both directions, once: edge-triggered, so no re-registration
            // when a write blocks and no wakeups while the socket stays
            // writable.
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut tcp, Token(index as usize), interest)
            {
                tracing::warn!("register: {e}");
                self.conns.free.push(index);
                self.shared.connections.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let deadline = self.conns.now + self.shared.acceptor.config().handshake_timeout;
            let slot = self.conns.slots.get_mut(index).expect("a slot just taken");
            slot.entry = Some(Entry {
                tcp,
                paused: false,
                dirty: false,
                armed: None,
                phase: Phase::Handshake,
                buf: BytesMut::new(),
                rare: Some(Box::new(Rare {
                    deadline: Some(deadline),
                    ..Rare::default()
                })),
            });
            self.rearm(index);
            if self.shared.defer_accept {
                // The request is in already: answer it now. The event that
                // registering queued finds nothing left to read.
                self.ready(index, true, false);
            }
        }
    }

    /// A readiness event for connection `index`; `readable`: it has input
    /// to read; `end`: it says the peer has closed its side or the
    /// connection failed.
    fn ready(&mut self, index: u32, readable: bool, end: bool) {
        if self.conns.entry(index).is_none() {
            // Closed earlier in this batch of events.
            return;
        }
        self.conns.current = index;
        if readable {
            self.read(index, end);
        }
        self.after(index);
        self.conns.current = NONE;
    }

    /// Writes what the connection has queued, resumes reading a peer whose
    /// queue drained, finishes a connection that is done, and arms its
    /// timer.
    fn after(&mut self, index: u32) {
        while self.flush(index) {
            // The readable edges that came while paused are spent: read
            // until the socket says so, or an end of stream among them
            // would never be seen.
            self.read(index, true);
        }
        self.settle(index);
    }

    /// Reads until the socket is drained or the connection stops reading.
    /// `until_blocked`: until `recv` says "would block" or EOF, even after
    /// a short read.
    fn read(&mut self, index: u32, until_blocked: bool) {
        let read_chunk = self.shared.acceptor.config().read_chunk;
        loop {
            let Some(entry) = self.conns.entry(index) else {
                return;
            };
            if entry.paused {
                return;
            }
            // A handshake or a partial frame continues in the connection's
            // own buffer; anything else goes to the shared block.
            let own = match entry.phase {
                Phase::Handshake => {
                    entry.buf.reserve(HANDSHAKE_READ);
                    true
                }
                Phase::Refused => return,
                Phase::Open(_) if !entry.buf.is_empty() => {
                    let rest = frame_rest(&entry.buf) + read_chunk / 4;
                    entry.buf.reserve(rest.max(read_chunk));
                    true
                }
                Phase::Open(_) | Phase::Draining => {
                    if self.block.capacity() < BLOCK / 4 {
                        self.block = BytesMut::with_capacity(BLOCK);
                    }
                    false
                }
            };
            let target = if own { &mut entry.buf } else { &mut self.block };
            let room = target.capacity() - target.len();
            let n = match recv_into(&entry.tcp, target) {
                Ok(0) => return self.lost(index),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.lost(index),
            };
            let data = if own {
                std::mem::take(&mut entry.buf)
            } else {
                self.block.split_to(n)
            };
            if !self.feed(index, data, own) {
                return;
            }
            // A short read drained the socket; with edge-triggered epoll
            // the next bytes are a new event, so skip the read that would
            // only say "would block". Not when the peer's FIN (or a reset)
            // came before that event was taken: it is behind the data,
            // and no later event will tell.
            if n < room && !until_blocked {
                return;
            }
        }
    }

    /// Hands input to the handshake or the core. `false`: stop reading.
    fn feed(&mut self, index: u32, mut data: BytesMut, own: bool) -> bool {
        let Some(entry) = self.conns.entry(index) else {
            return false;
        };
        match entry.phase {
            Phase::Handshake => {
                entry.buf = data;
                return self.handshake(index);
            }
            Phase::Draining => return true,
            Phase::Refused => return false,
            Phase::Open(_) => {}
        }
        let now = self.conns.now;
        loop {
            let Some(core) = self.conns.entry(index).and_then(Entry::core) else {
                return false;
            };
            let before = data.len();
            let result = core.receive(&mut data, now);
            self.dispatch(index);
            if let Err(e) = result {
                if let Some(entry) = self.conns.entry(index) {
                    let frame = CloseFrame::new(e.close_code(), e.reason());
                    entry.rare().close_frame = Some(frame);
                }
                return false;
            }
            // Each `receive` stops after one message, so that its answer
            // is queued before a later frame can fail the connection.
            if data.is_empty() || data.len() == before {
                break;
            }
        }
        let read_chunk = self.shared.acceptor.config().read_chunk;
        let Some(entry) = self.conns.entry(index) else {
            return false;
        };
        entry.buf = if data.is_empty() {
            BytesMut::new()
        } else if own {
            data
        } else {
            // A partial frame moves out of the shared block, with room for
            // its rest: a stalled peer must not pin a whole block.
            let mut buf = BytesMut::with_capacity(data.len() + frame_rest(&data) + read_chunk / 4);
            buf.extend_from_slice(&data);
            buf
        };
        entry.core().is_some_and(|c| c.state() != State::Closed)
    }

    /// Delivers the core's events to the handler.
    fn dispatch(&mut self, index: u32) {
        loop {
            let entry = self.conns.entry(index);
            let Some(event) = entry.and_then(Entry::core).and_then(Connection::poll_event) else {
                return;
            };
            let conn = &mut Conn {
                conns: &mut self.conns,
                index,
            };
            match event {
                Event::Message(m) => self.handler.on_message(conn, m),
                Event::Fragment(f) => self.handler.on_fragment(conn, f),
                Event::Closed(frame) => {
                    if let Some(entry) = self.conns.entry(index) {
                        let rare = entry.rare();
                        // The core reports 1006 when it closes without the
                        // peer's Close frame; a peer never sends that code.
                        rare.close_received = frame.code != CloseCode::ABNORMAL;
                        rare.close_frame = Some(frame);
                    }
                }
                // The core has queued the Pong; keepalive saw the Pong.
                _ => {}
            }
        }
    }

    /// Parses the request so far; answers it once complete. `false`: the
    /// connection was refused.
    fn handshake(&mut self, index: u32) -> bool {
        let limits = &self.shared.acceptor.config().handshake_limits;
        let Some(entry) = self.conns.entry(index) else {
            return false;
        };
        let (request, len) = match handshake::parse_request(&entry.buf, limits) {
            Ok(None) => return true,
            Ok(Some(parsed)) => parsed,
            Err(e) => {
                self.refuse(index, e.response());
                return false;
            }
        };
        let rest = entry.buf.split_off(len);
        let accepted = match self.handler.on_request(&request) {
            Ok(upgrade) => self.shared.acceptor.answer(&request, upgrade),
            Err(reject) => {
                self.refuse(index, request.reject(reject.status, &reject.reason));
                return false;
            }
        };
        let Ok(accepted) = accepted else {
            // The handler picked something invalid: our side's fault.
            self.refuse(index, request.reject(500, "internal error"));
            return false;
        };
        let core = self.shared.acceptor.core(accepted.deflate, self.conns.now);
        let Some(entry) = self.conns.entry(index) else {
            return false;
        };
        let rare = entry.rare();
        rare.out = Some(Bytes::from(accepted.response));
        rare.protocol = accepted.protocol.map(String::into_boxed_str);
        rare.deadline = None;
        entry.buf = BytesMut::new();
        entry.phase = Phase::Open(core);
        self.handler.on_open(&mut Conn {
            conns: &mut self.conns,
            index,
        });
        // Frames the client sent right behind its request.
        rest.is_empty() || self.feed(index, rest, true)
    }

    /// Answers the handshake with an HTTP error, then closes.
    fn refuse(&mut self, index: u32, response: Vec<u8>) {
        let close_timeout = self.shared.acceptor.config().protocol.close_timeout;
        let now = self.conns.now;
        if let Some(entry) = self.conns.entry(index) {
            entry.phase = Phase::Refused;
            entry.buf = BytesMut::new();
            let rare = entry.rare();
            rare.out = Some(Bytes::from(response));
            rare.deadline = Some(now + close_timeout);
        }
    }

    /// Writes raw bytes, then queued frames. `true`: the queue drained
    /// below the high-water mark and the peer may be read from again.
    fn flush(&mut self, index: u32) -> bool {
        let high_water = self.conns.high_water;
        let Some(entry) = self.conns.entry(index) else {
            return false;
        };
        entry.dirty = false;
        let result = match entry.rare.as_mut().and_then(|r| r.out.as_mut()) {
            Some(out) => write_raw(&entry.tcp, out),
            None => Ok(true),
        };
        let written = match result {
            Ok(done) => done,
            Err(_) => {
                self.lost(index);
                return false;
            }
        };
        if !written {
            return false;
        }
        if let Some(rare) = &mut entry.rare {
            rare.out = None;
            entry.trim();
        }
        let Phase::Open(core) = &mut entry.phase else {
            return false;
        };
        if write_transmits(&entry.tcp, core).is_err() {
            self.lost(index);
            return false;
        }
        if entry.paused && core.buffered_amount() <= high_water {
            entry.paused = false;
            self.handler.on_drain(&mut Conn {
                conns: &mut self.conns,
                index,
            });
            return true;
        }
        false
    }

    /// Finishes a connection that has written its last bytes, and arms the
    /// timer of one that has not.
    fn settle(&mut self, index: u32) {
        let close_timeout = self.shared.acceptor.config().protocol.close_timeout;
        let now = self.conns.now;
        let Some(entry) = self.conns.entry(index) else {
            return;
        };
        let clean = entry.rare.as_ref().is_some_and(|r| r.close_received);
        let done = match &entry.phase {
            Phase::Open(core) if core.state() == State::Closed => {
                let done = !core.has_transmits() && !entry.has_out();
                let rare = entry.rare();
                if rare.deadline.is_none() {
                    // Bound the wait for a peer that does not read.
                    rare.deadline = Some(now + close_timeout);
                }
                done
            }
            Phase::Refused => !entry.has_out(),
            _ => false,
        };
        if done && clean && entry.buf.is_empty() {
            // Both Close frames are through and nothing is unread, so the
            // peer has nothing more to send: close now. The kernel still
            // delivers our last bytes, then the FIN; waiting for the
            // peer's FIN would cost a wakeup and a `recv` per connection.
            self.remove(index);
            return;
        }
        if done {
            let _ = entry.tcp.shutdown(Shutdown::Write);
            entry.buf = BytesMut::new();
            let was = std::mem::replace(&mut entry.phase, Phase::Draining);
            let rare = entry.rare();
            rare.deadline = Some(now + close_timeout);
            let frame = rare.close_frame.take();
            if matches!(was, Phase::Open(_)) {
                let id = self.conns.id(index);
                self.handler.on_close(id, close_frame(frame));
            }
        }
        self.rearm(index);
    }

    /// The peer closed the connection, or it failed: forget it.
    fn lost(&mut self, index: u32) {
        if let Some(core) = self.conns.entry(index).and_then(Entry::core) {
            core.receive_eof();
            self.dispatch(index);
        }
        self.remove(index);
    }

    fn remove(&mut self, index: u32) {
        let Some(slot) = self.conns.slots.get_mut(index) else {
            return;
        };
        let Some(entry) = slot.entry.take() else {
            return;
        };
        let id = ConnId {
            index,
            generation: slot.generation,
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.conns.free.push(index);
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        if self.accept_again.is_some() {
            // A descriptor is free now: take a queued connection soon.
            self.accept_again = Some(self.conns.now);
        }
        if matches!(entry.phase, Phase::Open(_)) {
            let frame = entry.rare.and_then(|r| r.close_frame);
            self.handler.on_close(id, close_frame(frame));
        }
        // Dropping the socket closes it, which also takes it out of epoll.
    }

    /// Arms the connection's earliest deadline if the heap does not hold
    /// it or an earlier one already.
    fn rearm(&mut self, index: u32) {
        let Some(slot) = self.conns.slots.get_mut(index) else {
            return;
        };
        let generation = slot.generation;
        let Some(entry) = &mut slot.entry else {
            return;
        };
        let core = entry.core().and_then(|c| c.poll_timeout());
        let want = match (entry.deadline(), core) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(want) = want
            && entry.armed.is_none_or(|armed| want < armed)
        {
            entry.armed = Some(want);
            self.timers.arm(want, index, generation);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.conns.now;
        while let Some((deadline, index, generation)) = self.timers.pop_due(now) {
            let Some(slot) = self.conns.slots.get_mut(index) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            let Some(entry) = slot.entry.as_mut() else {
                continue;
            };
            if entry.armed != Some(deadline) {
                continue;
            }
            entry.armed = None;
            self.conns.current = index;
            self.on_timer(index);
            self.conns.current = NONE;
        }
        let live = (self.conns.slots.len() as usize) - self.conns.free.len();
        if self.timers.len() > 2 * live + 1024 {
            let slots = &self.conns.slots;
            self.timers.retain(|t, i, g| {
                slots.get(i).is_some_and(|slot| {
                    slot.generation == g && slot.entry.as_ref().is_some_and(|e| e.armed == Some(t))
                })
            });
        }
    }

    fn on_timer(&mut self, index: u32) {
        let now = self.conns.now;
        let Some(entry) = self.conns.entry(index) else {
            return;
        };
        if entry.deadline().is_some_and(|d| d <= now) {
            if matches!(entry.phase, Phase::Handshake) {
                self.refuse(index, reject_response(408, "handshake timeout", &[]));
            } else {
                // A refusal or a last frame the peer would not read, or a
                // peer that never closed its side.
                return self.remove(index);
            }
        } else if let Some(core) = entry.core() {
            core.handle_timeout(now);
            // Quiet for a while: give back queue memory.
            core.shrink_to_fit();
            self.dispatch(index);
        }
        self.after(index);
    }

    /// Writes for connections that other connections' callbacks sent to.
    fn flush_dirty(&mut self) {
        while let Some(index) = self.conns.dirty.pop() {
            if self.conns.entry(index).is_some_and(|e| e.dirty) {
                self.conns.current = index;
                self.after(index);
                self.conns.current = NONE;
            }
        }
    }

    /// Starts stopping, or goes on with it. `true`: every connection is
    /// gone, or the time allowed is up.
    fn stop(&mut self) -> bool {
        let now = self.conns.now;
        if self.stopping.is_none() {
            let close_timeout = self.shared.acceptor.config().protocol.close_timeout;
            self.stopping = Some(now + close_timeout);
            self.listener = None;
            for index in 0..self.conns.slots.len() {
                let Some(entry) = self.conns.entry(index) else {
                    continue;
                };
                if let Some(core) = entry.core() {
                    let _ = core.close(CloseCode::GOING_AWAY, "server shutting down", now);
                } else if matches!(entry.phase, Phase::Handshake) {
                    self.refuse(index, reject_response(503, "server shutting down", &[]));
                }
                self.conns.current = index;
                self.after(index);
                self.conns.current = NONE;
            }
        }
        self.conns.slots.len() as usize == self.conns.free.len()
            || self.stopping.is_some_and(|t| now >= t)
    }
}

/// The frame `on_close` reports: the one recorded, or 1006.
fn close_frame(recorded: Option<CloseFrame>) -> CloseFrame {
    recorded.unwrap_or_else(|| CloseFrame::new(CloseCode::ABNORMAL, "connection lost"))
}

/// One `recv` into `buf`'s spare room, without zeroing it first.
fn recv_into(tcp: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let n = socket2::SockRef::from(tcp).recv(buf.spare_capacity_mut())?;
    // SAFETY: `recv` initialized the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Writes `out` as far as the socket takes it. `true`: all written.
fn write_raw(mut tcp: &TcpStream, out: &mut Bytes) -> io::Result<bool> {
    while !out.is_empty() {
        match tcp.write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes queued frames, several per `writev`, until done or the socket is
/// full (its writable edge brings the loop back).
fn write_transmits(mut tcp: &TcpStream, core: &mut Connection) -> io::Result<()> {
    // After the Close nothing more is sent, and the FIN follows at once
    // (`settle`): hold these bytes back (Linux's MSG_MORE) so that the FIN
    // leaves with them in one segment, one packet fewer per connection.
    let last = core.state() == State::Closed;
    while core.has_transmits() {
        let written = with_transmit_slices(core, |slices| {
            if last {
                socket2::SockRef::from(tcp).send_vectored_with_flags(slices, LAST_FLAGS)
            } else {
                tcp.write_vectored(slices)
            }
        });
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => core.advance_transmit(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `send` flags for a connection's last bytes.
#[cfg(target_os = "linux")]
const LAST_FLAGS: libc::c_int = libc::MSG_MORE | libc::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const LAST_FLAGS: libc::c_int = 0;
