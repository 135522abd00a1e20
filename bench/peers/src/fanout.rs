//! Two baseline fan-out servers for `herald bench fanout`: the least work
//! a server on this runtime can do to deliver every publication to every
//! subscriber, in order.
//!
//! They speak just enough of herald's push protocol (docs/protocol.md)
//! for the generator to drive them exactly like `herald serve`:
//!
//! - `GET /connection/websocket` (any path): the WebSocket opening
//!   handshake, no extensions. Then every text frame from the client is a
//!   command; `{"id":N,"connect":...}` and `{"id":N,"subscribe":{"channel":C}}`
//!   get `{"id":N,"result":{}}`, anything else is ignored. Pings get pongs.
//! - `POST /api/publish` with `{"channel":C,"data":D}`: every subscriber
//!   of C gets `{"push":{"channel":C,"epoch":"base","pub":{"offset":N,"data":D}}}`.
//!
//! The frame is encoded once per publication and shared. The two modes:
//!
//! - [`Mode::SendLoop`]: on each publication, one `write` of the frame per
//!   subscriber, there and then; the HTTP answer follows the loop.
//! - [`Mode::Combining`]: each publication is appended to every
//!   subscriber's queue and answered at once; a flusher then writes
//!   everything queued for a subscriber with one `writev`.
//!
//! Honest: a write that would block or is short keeps the rest in the
//! subscriber's backlog, later publications queue behind it, and a task
//! waits for the socket to become writable: every subscriber gets every
//! publication, in order, or its connection is gone.
//!
//! One thread (pin it with `taskset`). No limits, no timeouts, no
//! validation beyond what the generator sends: a measuring device, not a
//! server.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How a publication reaches the subscribers' sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One write per subscriber per publication, inside the publish call.
    SendLoop,
    /// Queue per subscriber; one write of everything queued, later.
    Combining,
}

struct Subscriber {
    sock: Rc<TcpStream>,
    /// Frames not yet written, oldest first, and how much of the first
    /// one is already out.
    queue: RefCell<Vec<Rc<[u8]>>>,
    sent: Cell<usize>,
    /// A task waits for writability (send loop), or the subscriber is on
    /// the flusher's list or waiting for writability (combining).
    busy: Cell<bool>,
    dead: Cell<bool>,
}

struct State {
    mode: Mode,
    channels: RefCell<HashMap<String, Vec<Rc<Subscriber>>>>,
    offset: Cell<u64>,
    dirty: RefCell<Vec<Rc<Subscriber>>>,
    flush: Notify,
}

/// Serves on `addr` until the process ends.
pub async fn serve(addr: std::net::SocketAddr, mode: Mode) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    eprintln!("fan-out baseline ({mode:?}) listening on {addr}");
    let state = Rc::new(State {
        mode,
        channels: RefCell::new(HashMap::new()),
        offset: Cell::new(0),
        dirty: RefCell::new(Vec::new()),
        flush: Notify::new(),
    });
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            if mode == Mode::Combining {
                tokio::task::spawn_local(flusher(state.clone()));
            }
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(connection(state.clone(), stream));
            }
        })
        .await;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn connection(state: Rc<State>, mut stream: TcpStream) {
    let mut buf = Vec::new();
    let Some(end) = read_head(&mut stream, &mut buf).await else {
        return;
    };
    if buf.starts_with(b"POST ") {
        api(state, stream, buf).await;
        return;
    }
    let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
    let Some(key) = header(head, "sec-websocket-key") else {
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = [0u8; 160];
    let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
    let mut n = 0;
    for part in [&head[..], accept.as_bytes(), b"\r\n\r\n"] {
        response[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    drop(accept);
    buf.drain(..end);
    buf.shrink_to_fit();
    if stream.write_all(&response[..n]).await.is_err() {
        return;
    }
    websocket(state, Rc::new(stream), buf).await;
}

/// Reads until the end of an HTTP head; returns its length. The read
/// buffer is on the stack between two awaits, so it is not part of the
/// task (a task keeps the size of its largest state for its whole life).
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Some(i + 4);
        }
        stream.readable().await.ok()?;
        let mut chunk = [0u8; 2048];
        match stream.try_read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
}

/// The publish API: keep-alive HTTP/1.1, one request at a time.
async fn api(state: Rc<State>, mut stream: TcpStream, mut buf: Vec<u8>) {
    loop {
        let Some(end) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let len: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + len {
            buf.reserve(end + len - buf.len());
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body = String::from_utf8_lossy(&buf[end..end + len]).into_owned();
        buf.drain(..end + len);
        let answer: Vec<u8> = match publication(&body) {
            Some((channel, data)) => {
                let body = format!("{{\"offset\":{}}}", publish(&state, channel, data));
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            None => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// `{"channel":"C","data":D}` as the generator sends it: the channel,
/// and D as raw JSON text.
fn publication(body: &str) -> Option<(&str, &str)> {
    let c = body.find("\"channel\":\"")? + 11;
    let channel = &body[c..c + body[c..].find('"')?];
    let d = body.find("\"data\":")? + 7;
    let data = body[d..].trim_end().strip_suffix('}')?;
    Some((channel, data))
}

/// A server-to-client text frame: unmasked header, then the payload.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x81);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n < 65536 => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

fn publish(state: &Rc<State>, channel: &str, data: &str) -> u64 {
    let offset = state.offset.get() + 1;
    state.offset.set(offset);
    let push = format!(
        "{{\"push\":{{\"channel\":\"{channel}\",\"epoch\":\"base\",\"pub\":{{\"offset\":{offset},\"data\":{data}}}}}}}"
    );
    let frame: Rc<[u8]> = text_frame(push.as_bytes()).into();
    let mut channels = state.channels.borrow_mut();
    let Some(subs) = channels.get_mut(channel) else {
        return offset;
    };
    if subs.iter().any(|s| s.dead.get()) {
        subs.retain(|s| !s.dead.get());
    }
    match state.mode {
        Mode::SendLoop => {
            for sub in subs.iter() {
                if sub.busy.get() {
                    sub.queue.borrow_mut().push(frame.clone());
                    continue;
                }
                match sub.sock.try_write(&frame) {
                    Ok(n) if n == frame.len() => {}
                    Ok(n) => backlog(sub, frame.clone(), n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        backlog(sub, frame.clone(), 0)
                    }
                    Err(_) => sub.dead.set(true),
                }
            }
        }
        Mode::Combining => {
            let mut dirty = state.dirty.borrow_mut();
            for sub in subs.iter() {
                sub.queue.borrow_mut().push(frame.clone());
                if !sub.busy.replace(true) {
                    dirty.push(sub.clone());
                }
            }
            drop(dirty);
            state.flush.notify_one();
        }
    }
    offset
}

/// Send loop: the rest of a frame the socket did not take, and a task
/// that writes the backlog as the socket drains.
fn backlog(sub: &Rc<Subscriber>, frame: Rc<[u8]>, sent: usize) {
    sub.queue.borrow_mut().push(frame);
    sub.sent.set(sent);
    sub.busy.set(true);
    let sub = sub.clone();
    tokio::task::spawn_local(async move {
        loop {
            if sub.sock.writable().await.is_err() {
                sub.dead.set(true);
                return;
            }
            match write_queue(&sub) {
                Ok(true) => {
                    sub.busy.set(false);
                    return;
                }
                Ok(false) => {}
                Err(_) => {
                    sub.dead.set(true);
                    return;
                }
            }
        }
    });
}

/// One `writev` of everything queued for `sub`. `Ok(true)`: the queue is
/// empty now.
fn write_queue(sub: &Subscriber) -> io::Result<bool> {
    let mut queue = sub.queue.borrow_mut();
    if queue.is_empty() {
        return Ok(true);
    }
    let written = {
        let first = sub.sent.get();
        let slices: Vec<IoSlice<'_>> = queue
            .iter()
            .take(1024)
            .enumerate()
            .map(|(i, f)| IoSlice::new(if i == 0 { &f[first..] } else { &f[..] }))
            .collect();
        match sub.sock.try_write_vectored(&slices) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        }
    };
    let mut left = written + sub.sent.get();
    let mut done = 0;
    for f in queue.iter() {
        if left < f.len() {
            break;
        }
        left -= f.len();
        done += 1;
    }
    queue.drain(..done);
    sub.sent.set(left);
    Ok(queue.is_empty())
}

/// Combining: writes each dirty subscriber's queue with one `writev`,
/// yielding now and then so publications keep coming in (and combine).
async fn flusher(state: Rc<State>) {
    loop {
        state.flush.notified().await;
        loop {
            let batch = std::mem::take(&mut *state.dirty.borrow_mut());
            if batch.is_empty() {
                break;
            }
            for (i, sub) in batch.into_iter().enumerate() {
                if i % 256 == 255 {
                    tokio::task::yield_now().await;
                }
                if sub.dead.get() {
                    continue;
                }
                match write_queue(&sub) {
                    Ok(true) => sub.busy.set(false),
                    Ok(false) => {
                        // The socket is full: wait for it, then back on the list.
                        let state = state.clone();
                        tokio::task::spawn_local(async move {
                            if sub.sock.writable().await.is_err() {
                                sub.dead.set(true);
                                return;
                            }
                            state.dirty.borrow_mut().push(sub);
                            state.flush.notify_one();
                        });
                    }
                    Err(_) => sub.dead.set(true),
                }
            }
        }
    }
}

/// A client frame: (opcode, unmasked payload, bytes used), or `None` if
/// incomplete.
fn client_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let key: [u8; 4] = if masked {
        let k = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        k
    } else {
        [0; 4]
    };
    let payload = buf.get(at..at + len)?;
    let data = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    Some((opcode, data, at + len))
}

/// Reads commands until the connection ends.
async fn websocket(state: Rc<State>, sock: Rc<TcpStream>, mut buf: Vec<u8>) {
    let me = Rc::new(Subscriber {
        sock: sock.clone(),
        queue: RefCell::new(Vec::new()),
        sent: Cell::new(0),
        busy: Cell::new(false),
        dead: Cell::new(false),
    });
    'conn: loop {
        while let Some((opcode, data, used)) = client_frame(&buf) {
            buf.drain(..used);
            let reply = match opcode {
                0x1 => command(&state, &me, &data).map(|r| text_frame(r.as_bytes())),
                0x9 => {
                    let mut pong = text_frame(&data);
                    pong[0] = 0x8A;
                    Some(pong)
                }
                0x8 => break 'conn,
                _ => None,
            };
            // Replies share the subscriber's queue so they never overtake
            // a push (or cut one in half).
            if let Some(reply) = reply {
                if me.busy.get() || !me.queue.borrow().is_empty() {
                    me.queue.borrow_mut().push(reply.into());
                } else if sock.try_write(&reply).ok() != Some(reply.len()) {
                    break 'conn;
                }
            }
        }
        // Commands are small and rare: between them, no read buffer.
        if buf.is_empty() {
            buf = Vec::new();
        }
        if sock.readable().await.is_err() {
            break;
        }
        let mut chunk = [0u8; 512];
        match sock.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    me.dead.set(true);
}

fn command(state: &State, me: &Rc<Subscriber>, data: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(data).ok()?;
    let i = text.find("\"id\":")? + 5;
    let id: u64 = text[i..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    if text.contains("\"subscribe\"") {
        let c = text.find("\"channel\":\"")? + 11;
        let channel = &text[c..c + text[c..].find('"')?];
        state
            .channels
            .borrow_mut()
            .entry(channel.to_owned())
            .or_default()
            .push(me.clone());
    }
    Some(format!("{{\"id\":{id},\"result\":{{}}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_are_parsed() {
        let (c, d) = publication(r#"{"channel":"bench","data":{"ts":1,"seq":2}}"#).unwrap();
        assert_eq!((c, d), ("bench", r#"{"ts":1,"seq":2}"#));
    }
}
