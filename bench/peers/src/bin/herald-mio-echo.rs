//! An experiment, not a product: herald-proto's core driven by a bare mio
//! (epoll) loop on one thread, with no tokio and no task per connection.
//!
//! Issue 4 asks where tokio's per-wakeup cost leaves herald against
//! uWebSockets, whose one event loop drives every connection. This binary
//! answers with a number: the same core, the same handshake code, the same
//! frames, with the wakeup machinery replaced by one `epoll_wait` loop.
//! `scripts/bench` runs it as `herald-mio` only when asked
//! (`--only herald,herald-mio`).
//!
//! Left out on purpose, since they cost nothing per echoed message: timers
//! (keepalive is off), TLS, handshake timeouts, and write backpressure
//! beyond waiting for the socket to become writable.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use herald_proto::connection::State;
use herald_proto::handshake::{self, Accept, HandshakeLimits};
use herald_proto::{Config, Connection, Event};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// Reads go through one buffer shared by every connection; only what a
/// read leaves unfinished is copied into the connection's own buffer.
const READ_SIZE: usize = 64 << 10;

struct Conn {
    tcp: TcpStream,
    buf: BytesMut,
    /// `None` until the opening handshake is done.
    ws: Option<Connection>,
    /// Registered for writable too: a write did not finish.
    waiting_write: bool,
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let config = Arc::new(Config::default().ping_interval(None));
    let limits = HandshakeLimits::default();
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut chunk = vec![0u8; READ_SIZE];
    eprintln!("herald-mio-echo listening on ws://{addr}");
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut tcp, _)) => {
                            tcp.set_nodelay(true)?;
                            let idx = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry()
                                .register(&mut tcp, Token(idx), Interest::READABLE)?;
                            conns[idx] = Some(Conn {
                                tcp,
                                buf: BytesMut::new(),
                                ws: None,
                                waiting_write: false,
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let idx = event.token().0;
            let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let keep = drive(conn, &config, &limits, &mut chunk).unwrap_or(false);
            if keep {
                let want = conn.ws.as_ref().is_some_and(Connection::has_transmits);
                if want != conn.waiting_write {
                    conn.waiting_write = want;
                    let interest = if want {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    poll.registry()
                        .reregister(&mut conn.tcp, Token(idx), interest)?;
                }
            } else {
                let _ = poll.registry().deregister(&mut conn.tcp);
                conns[idx] = None;
                free.push(idx);
            }
        }
    }
}

/// Reads what is there, answers it, writes the answers. `false`: close.
fn drive(
    conn: &mut Conn,
    config: &Arc<Config>,
    limits: &HandshakeLimits,
    chunk: &mut [u8],
) -> io::Result<bool> {
    loop {
        let n = match conn.tcp.read(chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        conn.buf.extend_from_slice(&chunk[..n]);
        if !feed(conn, config, limits)? {
            return Ok(false);
        }
        // A short read drained the socket: epoll reports the next data as a
        // new edge, so skip the read that would only say WouldBlock.
        if n < chunk.len() {
            break;
        }
    }
    write(conn)?;
    Ok(!conn
        .ws
        .as_ref()
        .is_some_and(|ws| ws.state() == State::Closed && !ws.has_transmits()))
}

/// Runs the handshake, then the core, over the bytes buffered so far.
fn feed(conn: &mut Conn, config: &Arc<Config>, limits: &HandshakeLimits) -> io::Result<bool> {
    let ws = match &mut conn.ws {
        Some(ws) => ws,
        None => match handshake::parse_request(&conn.buf, limits) {
            Ok(None) => return Ok(true),
            Ok(Some((request, len))) => {
                let _ = conn.buf.split_to(len);
                let Ok(accepted) = request.accept(Accept::new()) else {
                    return Ok(false);
                };
                conn.tcp.write_all(&accepted.response)?;
                conn.ws
                    .insert(Connection::server(config.clone(), Instant::now()))
            }
            Err(e) => {
                let _ = conn.tcp.write_all(&e.response());
                return Ok(false);
            }
        },
    };
    let now = Instant::now();
    loop {
        let before = conn.buf.len();
        let failed = ws.receive(&mut conn.buf, now).is_err();
        while let Some(event) = ws.poll_event() {
            if let Event::Message(m) = event {
                let _ = ws.send(m);
            }
        }
        if failed || conn.buf.is_empty() || conn.buf.len() == before {
            return Ok(true);
        }
    }
}

/// Writes queued frames, several per `writev`, until done or the socket is
/// full (the event loop then waits for it to become writable).
fn write(conn: &mut Conn) -> io::Result<()> {
    let Some(ws) = &mut conn.ws else {
        return Ok(());
    };
    while ws.has_transmits() {
        // One frame, the usual case: a two-slot array, as herald's socket
        // does (filling 128 slots cost more than the rest of the write).
        let r = if ws.transmit_count() == 1 {
            let mut slices = [IoSlice::new(&[]); 2];
            let n = ws.transmit_slices(&mut slices);
            conn.tcp.write_vectored(&slices[..n])
        } else {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = ws.transmit_slices(&mut slices);
            conn.tcp.write_vectored(&slices[..n])
        };
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => ws.advance_transmit(w),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
