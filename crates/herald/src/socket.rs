//! [`WebSocket`]: the pump between a byte stream and the protocol core.
//!
//! Every operation is a `poll_*` function over `&mut self` that reads,
//! feeds the core, writes what the core queued and arms its timer, then
//! returns; all state lives in the struct, so dropping a future that
//! called one loses nothing (cancel safety).

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use herald_proto::connection::{Event, Fragment, MessageKind, State};
use herald_proto::{CloseCode, CloseFrame, Connection, Message, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use crate::error::Error;

/// Frames gathered into one vectored write.
const MAX_IOV: usize = 64;

/// A WebSocket connection over any byte stream `S` (TCP, TLS, an HTTP
/// upgrade).
///
/// Receive with [`WebSocket::recv`] or as a [`Stream`] of messages; send
/// with [`WebSocket::send`], [`WebSocket::try_send`] or as a [`Sink`].
/// Pings are answered and keepalive pings sent while the connection is
/// being polled for input: keep a task in `recv` (or [`split`] the socket
/// and keep the read half busy), as with any tokio socket.
///
/// [`split`]: WebSocket::split
pub struct WebSocket<S> {
    io: S,
    core: Connection,
    /// Bytes read but not yet consumed by the core. Empty, with no
    /// allocation, whenever the connection is idle.
    read_buf: BytesMut,
    timer: Timer,
    phase: Phase,
    /// What most connections never use, or use once: boxed, because every
    /// byte of this struct is paid by every idle connection (the struct is
    /// sized to stay in a 384-byte allocator class).
    rare: Option<Box<Rare>>,
    /// Task waiting in a receive; woken by [`WebSocket::try_send`] so it
    /// writes what was queued.
    reader: Option<Waker>,
    read_chunk: u32,
    high_water: u32,
    /// The reader stopped reading because the write queue is over the
    /// high-water mark; wake it when the queue drains.
    reader_parked: bool,
    /// `read_buf` may hold more complete frames: the core stops after each
    /// data message so the application answers it first.
    refeed: bool,
    /// See [`Timer::poll`]; here rather than in `Timer` because a bool
    /// there would be padded to 8 bytes.
    timer_registered: bool,
}

/// See [`WebSocket::rare`].
#[derive(Default)]
struct Rare {
    protocol: Option<Box<str>>,
    close_frame: Option<CloseFrame>,
    /// A task waiting for the write queue to drain. With split halves, the
    /// reader's writes may take the transport's write waker from it.
    writer: Option<Waker>,
    /// For streams without vectored writes (TLS): frames are packed here
    /// so that each write makes one large record. Vectored streams are
    /// written straight from the core's queue.
    wbuf: BytesMut,
}

/// Where the connection is in its shutdown.
#[derive(Debug)]
enum Phase {
    Open,
    /// The core is closed: write what it queued (the Close frame), then
    /// shut the transport down. Boxed: only closing connections pay for it.
    Closing(Box<Closing>),
    /// The transport is shut down. `error` is reported once.
    Done {
        error: Option<Box<Error>>,
    },
}

/// A client first waits (bounded) for the server to close TCP, as RFC 6455
/// 7.1.1 asks.
#[derive(Debug)]
struct Closing {
    error: Option<Box<Error>>,
    eof: bool,
    deadline: Option<Instant>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("core", &self.core)
            .field("phase", &self.phase)
            .field("read_buf", &self.read_buf.len())
            .field("queued", &self.core.buffered_amount())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream whose opening handshake is complete. `read_buf` holds
    /// any bytes read past the handshake (the peer's first frames).
    pub fn from_parts(
        io: S,
        core: Connection,
        read_buf: BytesMut,
        protocol: Option<String>,
        config: &crate::Config,
    ) -> Self {
        Self {
            io,
            core,
            read_buf,
            timer: Timer::default(),
            phase: Phase::Open,
            rare: protocol.map(|p| {
                Box::new(Rare {
                    protocol: Some(p.into_boxed_str()),
                    ..Rare::default()
                })
            }),
            reader: None,
            read_chunk: config.read_chunk.clamp(64, u32::MAX as usize) as u32,
            high_water: config.write_high_water.min(u32::MAX as usize) as u32,
            reader_parked: false,
            refeed: true,
            timer_registered: false,
        }
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.rare.as_ref()?.protocol.as_deref()
    }

    /// Whether permessage-deflate is in use.
    pub fn is_compressed(&self) -> bool {
        self.core.is_compressed()
    }

    /// The permessage-deflate parameters the handshake agreed, if it is in
    /// use (see [`Connection::deflate_params`]).
    pub fn deflate_params(&self) -> Option<herald_proto::DeflateParams> {
        self.core.deflate_params()
    }

    /// Whether permessage-deflate holds zlib state now: always `false`
    /// between messages when neither side has context takeover (see
    /// [`Connection::holds_deflate_state`]). For memory accounting.
    pub fn holds_deflate_state(&self) -> bool {
        self.core.holds_deflate_state()
    }

    /// The end's role.
    pub fn role(&self) -> Role {
        self.core.role()
    }

    /// Why the connection closed, once it has: the peer's close code and
    /// reason, [`CloseCode::NO_STATUS_RECEIVED`] for an empty Close frame,
    /// or [`CloseCode::ABNORMAL`] if it ended without a close handshake.
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.rare.as_ref()?.close_frame.as_ref()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Frees the memory of the connection's empty queues and of an empty
    /// read buffer, as the keepalive timer does when it fires: for a caller
    /// that knows the connection goes quiet now (a push server after a
    /// command), so that an idle connection holds only this struct until
    /// then. Nothing queued is dropped.
    pub fn shrink_to_fit(&mut self) {
        self.core.shrink_to_fit();
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
    }

    /// Bytes queued for the peer and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.core.buffered_amount() + self.rare.as_ref().map_or(0, |r| r.wbuf.len())
    }

    // ----- receiving ------------------------------------------------------

    /// Receives the next data message; `None` once the connection has
    /// closed (see [`WebSocket::close_frame`]).
    ///
    /// Cancel safe: if the future is dropped before it completes, no
    /// message is lost.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next piece of a message, for
    /// [`MessageMode::Streaming`](herald_proto::MessageMode). Cancel safe.
    pub async fn recv_fragment(&mut self) -> Option<Result<Fragment, Error>> {
        poll_fn(|cx| self.poll_recv_fragment(cx)).await
    }

    /// Polls for the next data message.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            match ready!(self.poll_event(cx)) {
                Some(Ok(Event::Message(m))) => return Poll::Ready(Some(Ok(m))),
                // A caller of `recv` in streaming mode gets each piece as a
                // message of its own rather than nothing.
                // A piece may split a UTF-8 code point, so it is binary.
                Some(Ok(Event::Fragment(f))) => {
                    return Poll::Ready(Some(Ok(Message::Binary(f.payload))));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            }
        }
    }

    /// Polls for the next piece of a message (streaming mode); in buffered
    /// mode each message comes as a single final piece.
    pub fn poll_recv_fragment(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Fragment, Error>>> {
        loop {
            match ready!(self.poll_event(cx)) {
                Some(Ok(Event::Fragment(f))) => return Poll::Ready(Some(Ok(f))),
                Some(Ok(Event::Message(m))) => {
                    let (kind, payload) = match m {
                        Message::Text(t) => (MessageKind::Text, t.into_bytes()),
                        Message::Binary(b) => (MessageKind::Binary, b),
                    };
                    return Poll::Ready(Some(Ok(Fragment {
                        kind,
                        payload,
                        fin: true,
                    })));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            }
        }
    }

    /// The pump: the next event of the core, driving reads, writes and
    /// timers until there is one. `None` when finished.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Error>>> {
        if !self
            .reader
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.reader = Some(cx.waker().clone());
            // The timer wakes whoever polled it last.
            self.timer_registered = false;
        }
        loop {
            if let Some(event) = self.core.poll_event() {
                if let Event::Closed(frame) = event {
                    self.rare().close_frame = Some(frame);
                    self.enter_closing(None);
                    continue;
                }
                return Poll::Ready(Some(Ok(event)));
            }
            match self.phase {
                Phase::Open => {}
                Phase::Closing { .. } => ready!(self.poll_closing(cx)),
                Phase::Done { ref mut error } => {
                    return Poll::Ready(error.take().map(|e| Err(*e)));
                }
            }
            if !matches!(self.phase, Phase::Open) {
                continue;
            }

            // Frames already read come first: all of them are handled before
            // anything is written, so every reply to one read leaves in one
            // vectored write.
            if self.refeed && !self.read_buf.is_empty() {
                self.feed();
                continue;
            }

            // Write what the core queued (pongs, echoes), without waiting.
            if let Poll::Ready(Err(e)) = self.poll_write_queue(cx) {
                self.fail_io(e);
                continue;
            }

            // Backpressure: a peer that sends but does not read (pings
            // whose pongs pile up, say) is not read from until it drains.
            if self.buffered_amount() > self.high_water as usize {
                self.reader_parked = true;
                if self.poll_timer(cx).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }

            match self.poll_read(cx) {
                Poll::Pending => {
                    // The timer is looked at only on the way to sleep, once
                    // per wakeup: while bytes keep arriving the peer is alive
                    // and the keepalive has nothing to do, and tokio's budget
                    // makes even a flooded socket come here regularly.
                    if self.poll_timer(cx).is_ready() {
                        continue;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => self.core.receive_eof(),
                Poll::Ready(Ok(_)) => self.feed(),
                Poll::Ready(Err(e)) => self.fail_io(e),
            }
        }
    }

    /// Arms the core's timer; when it has fired, lets the core act on it.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.core.poll_timeout() else {
            return Poll::Pending;
        };
        ready!(self.timer.poll(cx, deadline, &mut self.timer_registered));
        self.core
            .handle_timeout(tokio::time::Instant::now().into_std());
        // Quiet for a while: give back queue memory, and the small read
        // buffer a stack read leaves behind (kept between messages, as
        // freeing and reallocating it per message costs more than it).
        self.core.shrink_to_fit();
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        Poll::Ready(())
    }

    /// Hands buffered bytes to the core.
    fn feed(&mut self) {
        let before = self.read_buf.len();
        let now = tokio::time::Instant::now().into_std();
        let result = self.core.receive(&mut self.read_buf, now);
        self.refeed = self.read_buf.len() != before;
        if let Err(e) = result {
            self.enter_closing(Some(Box::new(Error::Protocol(e))));
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() == 0 {
            return self.poll_read_idle(cx);
        }
        let chunk = self.read_chunk as usize;
        let spare = self.read_buf.capacity() - self.read_buf.len();
        // Room for the rest of the frame at the front, so a 16 KiB message
        // is one read, not four 8 KiB-chunk reads.
        let want = frame_rest(&self.read_buf) + chunk / 4;
        if spare < want {
            self.read_buf.reserve(want.max(chunk));
        }
        let r = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf);
        if r.is_pending() && self.read_buf.is_empty() {
            // Idle: give the buffer back. This is what keeps an idle
            // connection at a few hundred bytes (house style: no eager
            // per-connection read buffers).
            self.read_buf = BytesMut::new();
        }
        r
    }

    /// A read with no buffer: into the stack first, so a wakeup that finds
    /// nothing, or a small message, allocates nothing or only its size.
    /// Allocating a full chunk for each wakeup and freeing it again
    /// fragments the heap the long-lived connections live in.
    fn poll_read_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        const STACK_READ: usize = 2048;
        // Uninitialized: zeroing 2 KiB on every poll cost ~266
        // instructions per echoed message (memset), and a poll that finds
        // nothing does not even read.
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut rb = tokio::io::ReadBuf::uninit(&mut stack);
        if Pin::new(&mut self.io).poll_read(cx, &mut rb)?.is_pending() {
            // No `shrink_to_fit` here: freeing and regrowing the core's
            // queues after every message cost ~400 instructions; they are
            // shrunk when the keepalive timer fires instead.
            return Poll::Pending;
        }
        let filled = rb.filled();
        if filled.len() == STACK_READ {
            // Busy: more is probably waiting; switch to a real buffer, with
            // room for the whole frame that started.
            // Some slack past the frame: a read that fills the buffer
            // exactly leaves tokio's readiness set, and the next read is a
            // syscall that finds nothing.
            let rest = frame_rest(filled) + self.read_chunk as usize / 4;
            self.read_buf
                .reserve(filled.len() + rest.max(self.read_chunk as usize));
        }
        self.read_buf.extend_from_slice(filled);
        Poll::Ready(Ok(filled.len()))
    }

    fn enter_closing(&mut self, error: Option<Box<Error>>) {
        if matches!(self.phase, Phase::Open) {
            self.phase = Phase::Closing(Box::new(Closing {
                error,
                eof: false,
                deadline: None,
            }));
        }
    }

    fn fail_io(&mut self, e: io::Error) {
        self.core.receive_eof();
        while self.core.poll_event().is_some() {}
        let rare = self.rare();
        if rare.close_frame.is_none() {
            rare.close_frame = Some(CloseFrame::new(CloseCode::ABNORMAL, "transport error"));
        }
        self.phase = Phase::Done {
            error: Some(Box::new(Error::Io(e))),
        };
    }

    /// Flushes the Close frame and shuts the transport down.
    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Write errors do not matter any more: the peer may be gone.
        if self.poll_write_queue(cx).is_pending() {
            return Poll::Pending;
        }
        let client = self.core.role() == Role::Client;
        let close_timeout = self.core.config().close_timeout;
        if let Phase::Closing(closing) = &mut self.phase
            && client
            && !closing.eof
        {
            // RFC 6455 7.1.1: "the client SHOULD wait for the server to
            // close the connection"; bounded by the close timeout.
            let deadline = *closing
                .deadline
                .get_or_insert_with(|| tokio::time::Instant::now().into_std() + close_timeout);
            loop {
                if self
                    .timer
                    .poll(cx, deadline, &mut self.timer_registered)
                    .is_ready()
                {
                    break;
                }
                self.read_buf.clear();
                match self.poll_read(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(_)) => continue,
                }
            }
            if let Phase::Closing(closing) = &mut self.phase {
                closing.eof = true;
            }
        }
        // Errors from shutdown are ignored for the same reason. Always
        // called, even on plain TCP where close(2) would send the FIN: a
        // TLS stream needs it for close_notify, and `S` is generic.
        let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
        self.read_buf = BytesMut::new();
        let error = match std::mem::replace(&mut self.phase, Phase::Done { error: None }) {
            Phase::Closing(closing) => closing.error,
            _ => None,
        };
        self.phase = Phase::Done { error };
        Poll::Ready(())
    }

    // ----- sending --------------------------------------------------------

    /// Sends a message, waiting while more than the high-water mark is
    /// queued, and until it is written to the transport.
    ///
    /// Not cancel safe once the message has been queued: if the future is
    /// dropped while writing, the message may still go out later.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_to_send(cx)).await?;
        self.core.send(message)?;
        poll_fn(|cx| self.poll_flush_queue(cx)).await
    }

    /// Queues a message without waiting, for broadcasters: fails with
    /// [`TrySendError::Full`] (giving the message back) while more than the
    /// high-water mark is queued. The frames are written by whichever task
    /// next polls this socket (a task in `recv` is woken for it).
    pub fn try_send(&mut self, message: Message) -> Result<(), TrySendError> {
        if !matches!(self.phase, Phase::Open) || !matches!(self.core.state(), State::Open) {
            return Err(TrySendError::Closed(message));
        }
        if self.buffered_amount() >= self.high_water as usize {
            return Err(TrySendError::Full(message));
        }
        match self.core.send(message) {
            Ok(()) => {
                if let Some(w) = &self.reader {
                    w.wake_by_ref();
                }
                Ok(())
            }
            Err(_) => Err(TrySendError::Closed(Message::Binary(Bytes::new()))),
        }
    }

    /// Sends one frame of a message sent in pieces (see
    /// [`Connection::send_frame`]), waiting like [`WebSocket::send`].
    pub async fn send_frame(
        &mut self,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_to_send(cx)).await?;
        self.core.send_frame(kind, payload, fin)?;
        poll_fn(|cx| self.poll_flush_queue(cx)).await
    }

    /// Sends a Ping.
    pub async fn ping(&mut self, payload: Bytes) -> Result<(), Error> {
        self.core.ping(payload)?;
        poll_fn(|cx| self.poll_flush_queue(cx)).await
    }

    /// Runs the close handshake: sends a Close frame with `code` and
    /// `reason`, then keeps reading (discarding data) until the peer's Close
    /// arrives or [`herald_proto::Config::close_timeout`] passes, and shuts
    /// the transport down. Returns the peer's close frame.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseFrame, Error> {
        if matches!(self.core.state(), State::Open) {
            self.core
                .close(code, reason, tokio::time::Instant::now().into_std())?;
        }
        while let Some(r) = self.recv().await {
            r?;
        }
        Ok(self
            .close_frame()
            .cloned()
            .unwrap_or_else(|| CloseFrame::new(CloseCode::ABNORMAL, "")))
    }

    /// Splits into halves that can be used from different tasks.
    pub fn split(self) -> (crate::split::ReadHalf<S>, crate::split::WriteHalf<S>) {
        crate::split::split(self)
    }

    /// Ready when the queue is under the high-water mark.
    pub fn poll_ready_to_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !matches!(self.phase, Phase::Open) || !matches!(self.core.state(), State::Open) {
            return Poll::Ready(Err(Error::User(herald_proto::UserError::AlreadyClosed)));
        }
        while self.buffered_amount() >= self.high_water as usize {
            if self.poll_write_queue(cx)?.is_pending() {
                self.park_writer(cx);
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a message without waiting or checking the high-water mark.
    pub fn start_send_message(&mut self, message: Message) -> Result<(), Error> {
        Ok(self.core.send(message)?)
    }

    /// Queues a message framed once for many connections, without waiting
    /// or checking the high-water mark, and without copying it: the frame
    /// this connection agreed to (plain, or compressed for its window
    /// size) is shared with every other connection sending the same
    /// [`PreparedMessage`](herald_proto::PreparedMessage). See
    /// [`Connection::send_prepared`] for which frame that is. It is written
    /// by the next poll of this socket ([`WebSocket::poll_recv`],
    /// [`WebSocket::poll_flush_queue`]...).
    pub fn start_send_prepared(
        &mut self,
        message: &herald_proto::PreparedMessage,
    ) -> Result<(), Error> {
        Ok(self.core.send_prepared(message)?)
    }

    /// Sends a prepared message, waiting like [`WebSocket::send`]; see
    /// [`WebSocket::start_send_prepared`]. Not cancel safe once queued.
    pub async fn send_prepared(
        &mut self,
        message: &herald_proto::PreparedMessage,
    ) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_to_send(cx)).await?;
        self.core.send_prepared(message)?;
        poll_fn(|cx| self.poll_flush_queue(cx)).await
    }

    /// Queues one frame of a message sent in pieces, without waiting.
    pub fn queue_frame(
        &mut self,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), Error> {
        Ok(self.core.send_frame(kind, payload, fin)?)
    }

    /// Queues a Close frame without waiting for anything.
    pub fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let now = tokio::time::Instant::now().into_std();
        self.core.close(code, reason, now)?;
        if let Some(w) = &self.reader {
            w.wake_by_ref();
        }
        Ok(())
    }

    /// Writes everything queued.
    pub fn poll_flush_queue(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.poll_write_queue(cx) {
            Poll::Pending => {
                self.park_writer(cx);
                Poll::Pending
            }
            Poll::Ready(r) => Poll::Ready(r.map_err(Error::Io)),
        }
    }

    fn park_writer(&mut self, cx: &mut Context<'_>) {
        let rare = self.rare();
        if !rare
            .writer
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            rare.writer = Some(cx.waker().clone());
        }
    }

    /// Writes queued frames until none are left: several frames per
    /// syscall (vectored), header and payload never copied together.
    fn poll_write_queue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.io.is_write_vectored() {
            while self.core.has_transmits() {
                let io = Pin::new(&mut self.io);
                let w = ready!(with_transmit_slices(&self.core, |slices| {
                    io.poll_write_vectored(cx, slices)
                }))?;
                if w == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.core.advance_transmit(w);
            }
        } else {
            loop {
                let buf = &mut self.rare.get_or_insert_with(Box::default).wbuf;
                while let Some(t) = self.core.poll_transmit() {
                    buf.extend_from_slice(t.head.as_bytes());
                    buf.extend_from_slice(&t.payload);
                }
                if buf.is_empty() {
                    // Give the memory back between bursts.
                    *buf = BytesMut::new();
                    break;
                }
                let w = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
                if w == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                buf.advance(w);
            }
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        // Drained: whoever waits for that in another task may go on.
        if std::mem::take(&mut self.reader_parked)
            && let Some(w) = &self.reader
        {
            w.wake_by_ref();
        }
        if let Some(w) = self.rare.as_mut().and_then(|r| r.writer.take()) {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

/// Calls `write` with the core's queued frames as slices (header and
/// payload of each), for one vectored write. The common case is one frame:
/// a two-slot array for it, as filling a 128-slot one cost ~400
/// instructions per echoed message.
#[inline]
pub(crate) fn with_transmit_slices<R>(
    core: &Connection,
    write: impl FnOnce(&[IoSlice<'_>]) -> R,
) -> R {
    if core.transmit_count() == 1 {
        let mut slices = [IoSlice::new(&[]); 2];
        let n = core.transmit_slices(&mut slices);
        write(&slices[..n])
    } else {
        let mut slices = [IoSlice::new(&[]); MAX_IOV * 2];
        let n = core.transmit_slices(&mut slices);
        write(&slices[..n])
    }
}

/// Bytes still missing from the frame at the front of `buf`, or 0 if its
/// header is incomplete. Capped at 32 KiB: a 14-byte header announcing a
/// huge frame must not make an idle peer cost us its whole size up front
/// (tungstenite's eager 128 KiB buffers are the cautionary tale).
pub(crate) fn frame_rest(buf: &[u8]) -> usize {
    const MAX_AHEAD: u64 = 32 << 10;
    match herald_proto::FrameHeader::parse(buf) {
        Ok(Some((h, head))) => (head as u64 + h.payload_len)
            .saturating_sub(buf.len() as u64)
            .min(MAX_AHEAD) as usize,
        _ => 0,
    }
}

/// Why [`WebSocket::try_send`] did not queue a message.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrySendError {
    /// More than the high-water mark is queued: the peer is slow.
    Full(Message),
    /// The connection is closing or closed.
    Closed(Message),
}

impl std::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "send queue full",
            Self::Closed(_) => "connection closed",
        })
    }
}

impl std::error::Error for TrySendError {}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_ready_to_send(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().start_send_message(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_queue(cx)
    }

    /// Sends a Close frame (1000) and flushes; it does not wait for the
    /// peer's reply; [`WebSocket::close`] runs the whole handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if matches!(this.core.state(), State::Open) {
            let now = tokio::time::Instant::now().into_std();
            this.core.close(CloseCode::NORMAL, "", now)?;
        }
        this.poll_flush_queue(cx)
    }
}

/// The core's single timer, allocated on first use and re-armed lazily: a
/// deadline that moves later (every received message pushes the keepalive
/// ping back) does not touch the timer wheel; the timer fires at the old
/// time, the core does nothing, and it is re-armed then.
///
/// Eight bytes: the armed deadline is the sleep's own.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timer {
    /// `registered`: the sleep was polled with the waker the reader holds
    /// and has not fired since; [`WebSocket::poll_event`] clears it when
    /// the task changes.
    fn poll(&mut self, cx: &mut Context<'_>, deadline: Instant, registered: &mut bool) -> Poll<()> {
        let at = tokio::time::Instant::from_std(deadline);
        let sleep = match &mut self.sleep {
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at))),
            Some(sleep) => {
                if sleep.is_elapsed() {
                    if at <= sleep.deadline() {
                        // Fired for this deadline (or a later one).
                        *registered = false;
                        return Poll::Ready(());
                    }
                    sleep.as_mut().reset(at);
                } else if at < sleep.deadline() {
                    sleep.as_mut().reset(at);
                } else if *registered {
                    // Armed for this deadline or an earlier one, and our
                    // waker is registered already: polling the sleep again
                    // would only re-register it (~370 instructions per
                    // echoed message).
                    return Poll::Pending;
                }
                sleep
            }
        };
        let r = sleep.as_mut().poll(cx);
        *registered = r.is_pending();
        r
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("armed", &self.sleep.as_ref().map(|s| s.deadline()))
            .finish()
    }
}
