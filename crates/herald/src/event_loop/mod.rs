//! A server on one event loop per thread (feature `event-loop`): callbacks
//! instead of a task per connection.
//!
//! [`WebSocket`](crate::WebSocket) gives each connection a tokio task, which
//! composes with any async code. The price is tokio's per-wakeup work:
//! measured with callgrind under `scripts/bench`, about 1,400 instructions
//! per echoed message, more than herald's own framing. This module drives
//! the same core ([`herald_proto::Connection`]), handshake and limits from
//! one `epoll` loop per thread (mio), and calls a [`Handler`] for each
//! event, as uWebSockets does:
//!
//! ```text
//!  thread 1..n: one listener each (SO_REUSEPORT), one epoll, one Handler
//!    epoll_wait ─> accept ─> handshake (Handler::on_request) ─> on_open
//!               ─> recv into a shared 64 KiB block ─> core ─> on_message
//!               ─> frames queued by the callbacks ─> one writev per connection
//!               ─> timers: handshake, keepalive, close (one heap per loop)
//! ```
//!
//! # Example: an echo server
//!
//! ```no_run
//! use herald::Config;
//! use herald::event_loop::{Conn, Handler, Server};
//! use herald::Message;
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
//!         conn.send(message);
//!     }
//! }
//!
//! let server = Server::builder(Config::default())
//!     .threads(2)
//!     .bind("127.0.0.1:9001".parse().unwrap())?;
//! server.run(|| Echo)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Behaviour worth knowing
//!
//! - **One thread per loop, no `Send` needed**: each thread builds its own
//!   handler, and a connection stays on the thread that accepted it. A
//!   callback reaches other connections of its loop with [`Conn::other`];
//!   across loops, use your own channel and a [`StopHandle`]-like wakeup,
//!   or the tokio API.
//! - **Backpressure**: [`Conn::send`] says [`SendStatus::Backpressure`]
//!   once more than [`Config::write_high_water`] bytes are queued. The peer
//!   is then not read from until the queue drains, and
//!   [`Handler::on_drain`] says when. Past [`Builder::max_buffered`], sends
//!   are refused ([`SendStatus::Dropped`]) rather than queued without end.
//! - **Memory**: an idle connection holds no buffers; reads land in one
//!   block per loop and messages are split off it without copying. A
//!   message kept after its callback keeps its part of that block alive,
//!   so copy small payloads you store for long.
//! - **Limits** are those of [`Config`], plus [`Builder::max_connections`]
//!   (503 beyond it). A handshake that does not finish in
//!   [`Config::handshake_timeout`] gets 408.
//! - **Closing**: after a clean close handshake (both Close frames through,
//!   nothing unread) the socket is closed at once: the peer has nothing
//!   more to send, and the kernel still delivers our Close, then the FIN.
//!   Every other ending (a protocol error, a timeout, a refusal) shuts our
//!   side down and waits for the client to close (at most the protocol's
//!   `close_timeout`), so unread input cannot turn the last frame into a
//!   reset.
//!   [`StopHandle::stop`] sends every client Close 1001 and returns from
//!   [`Server::run`] once they are gone or the close timeout has passed.
//! - **Not here**: TLS (`wss://`; use [`Acceptor`] over
//!   tokio-rustls, or a TLS terminator in front), clients, and platforms
//!   other than Unix.

mod conns;
mod driver;
mod timers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use herald_proto::CloseFrame;
use herald_proto::Message;
use herald_proto::connection::Fragment;
use herald_proto::handshake::Request;

pub use conns::Conn;

use crate::{Acceptor, Config, Decision, Upgrade};

/// The application's side of an event loop: called for each event of each
/// connection of one thread.
pub trait Handler {
    /// Decides on a valid handshake request: its path, headers, `Origin`
    /// and offered subprotocols. Accepts everything by default.
    fn on_request(&mut self, request: &Request) -> Decision {
        let _ = request;
        Ok(Upgrade::new())
    }

    /// The connection is open; the 101 response goes out before anything
    /// sent here.
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// A complete message arrived.
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message);

    /// A piece of a message arrived, with
    /// [`MessageMode::Streaming`](herald_proto::MessageMode) in the
    /// protocol config. Ignored by default.
    fn on_fragment(&mut self, conn: &mut Conn<'_>, fragment: Fragment) {
        let _ = (conn, fragment);
    }

    /// The send queue, which had passed the high-water mark, has drained
    /// below it; the peer is read from again.
    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// The connection is closed: the close handshake finished (the peer's
    /// code), the peer failed the protocol (the code we sent), or the
    /// connection was lost or timed out (1006). `id` is no longer valid.
    fn on_close(&mut self, id: ConnId, frame: CloseFrame) {
        let _ = (id, frame);
    }
}

/// Names a connection of one loop. Ids are not reused: a later connection
/// in the same slot has another generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

/// What [`Conn::send`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued.
    Sent,
    /// Queued, but the queue is above the high-water mark: the peer is
    /// slow. Wait for [`Handler::on_drain`] before sending more.
    Backpressure,
    /// Not queued: the queue is past [`Builder::max_buffered`].
    Dropped,
    /// Not queued: the connection is closing or gone.
    Closed,
}

/// Settings of an event-loop server beyond [`Config`].
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
    threads: usize,
    max_connections: usize,
    max_buffered: usize,
    backlog: i32,
    defer_accept: bool,
}

impl Builder {
    /// Loops (threads) to run, each with its own listener on the same port
    /// (`SO_REUSEPORT`; the kernel spreads connections). Default 1.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Connections open at once, over all loops, counting handshakes and
    /// closed connections whose socket is still draining; beyond it a new
    /// connection gets 503. Default 10,000.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Bytes queued for one connection past which [`Conn::send`] refuses
    /// messages. Default 16 times [`Config::write_high_water`].
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// The listen backlog. Default 1024.
    pub fn backlog(mut self, n: i32) -> Self {
        self.backlog = n;
        self
    }

    /// Linux: have the kernel hold each new connection until its first
    /// bytes (the request) arrive (`TCP_DEFER_ACCEPT`, for at most a
    /// second), so that accepting it, reading its request and answering
    /// take one wakeup instead of two. A connection still silent after
    /// that is accepted as usual and meets the handshake timeout. Default
    /// on: a WebSocket client always speaks first.
    pub fn defer_accept(mut self, on: bool) -> Self {
        self.defer_accept = on;
        self
    }

    /// Binds the listeners (`addr` with port 0 picks one port for all).
    pub fn bind(self, addr: SocketAddr) -> io::Result<Server> {
        let mut local_addr = addr;
        let mut loops = Vec::with_capacity(self.threads);
        let mut wakers = Vec::with_capacity(self.threads);
        for _ in 0..self.threads {
            let listener = driver::listen(
                local_addr,
                self.threads > 1,
                self.backlog,
                self.defer_accept,
            )?;
            local_addr = listener.local_addr()?;
            let (parts, waker) = driver::Parts::new(listener)?;
            loops.push(parts);
            wakers.push(waker);
        }
        let max_buffered = if self.max_buffered == 0 {
            self.config.write_high_water.saturating_mul(16)
        } else {
            self.max_buffered
        };
        let shared = Arc::new(Shared {
            acceptor: Acceptor::new(self.config),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            max_connections: self.max_connections,
            max_buffered,
            defer_accept: self.defer_accept && cfg!(target_os = "linux"),
            wakers,
        });
        Ok(Server {
            loops,
            local_addr,
            shared,
        })
    }
}

/// Listeners bound and loops ready; [`Server::run`] starts them.
#[derive(Debug)]
pub struct Server {
    loops: Vec<driver::Parts>,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    /// Settings for a server with `config`.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            threads: 1,
            max_connections: 10_000,
            max_buffered: 0,
            backlog: 1024,
            defer_accept: true,
        }
    }

    /// A one-loop server with `config`, bound to `addr`.
    pub fn bind(addr: SocketAddr, config: Config) -> io::Result<Self> {
        Self::builder(config).bind(addr)
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.shared.clone())
    }

    /// Runs the loops, the first on this thread, each with a handler from
    /// `new_handler`, until [`StopHandle::stop`], or until one loop fails
    /// or its handler panics, which stops the others too. Returns the
    /// first loop error (from `epoll` itself; connection errors only close
    /// their connection).
    pub fn run<H, F>(self, new_handler: F) -> io::Result<()>
    where
        H: Handler,
        F: Fn() -> H + Sync,
    {
        let shared = self.shared;
        // The server is all its loops: when one ends, by error or panic,
        // the others stop too, rather than serve on with a share of the
        // port dead (or, after a panic on this thread, keep `run` from
        // ever returning).
        let run_loop = |parts| {
            let _stop_all = StopOnExit(StopHandle(shared.clone()));
            driver::Loop::new(parts, shared.clone(), new_handler()).run()
        };
        let run_loop = &run_loop;
        let mut loops = self.loops.into_iter();
        let first = loops.next().expect("at least one loop");
        std::thread::scope(|scope| {
            let others: Vec<_> = loops
                .map(|parts| scope.spawn(move || run_loop(parts)))
                .collect();
            let mut result = run_loop(first);
            for handle in others {
                let r = handle
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("event loop thread panicked")));
                result = result.and(r);
            }
            result
        })
    }
}

/// Stops a running [`Server`]; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<Shared>);

impl StopHandle {
    /// Asks every loop to close its connections (Close 1001) and return.
    pub fn stop(&self) {
        self.0.stop.store(true, Ordering::Release);
        for waker in &self.0.wakers {
            let _ = waker.wake();
        }
    }
}

/// Stops the server when dropped; see [`Server::run`].
struct StopOnExit(StopHandle);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// What the loops of one server share.
#[derive(Debug)]
struct Shared {
    acceptor: Acceptor,
    stop: AtomicBool,
    /// Open connections over all loops, for `max_connections`.
    connections: AtomicUsize,
    max_connections: usize,
    max_buffered: usize,
    /// The listeners defer accepting until the request arrives.
    defer_accept: bool,
    wakers: Vec<mio::Waker>,
}
