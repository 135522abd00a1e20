//! What permessage-deflate costs a server connection in heap memory, with
//! and without context takeover, counted by a global allocator that tracks
//! the live bytes of the current thread (so tests running in parallel do
//! not disturb each other).
//!
//! The scenario is a push server's: the client sends one compressed
//! message, the server sends it a publication; then the connection idles.
//! Under `DeflateConfig::no_context_takeover` the idle connection must hold
//! no zlib state, and sending a prepared publication must not compress
//! (nor allocate a compressor) per connection.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use herald_proto::{Config, Connection, DeflateConfig, DeflateParams, Message, PreparedMessage};
use support::{Peer, quiet, t0};

struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Bytes allocated on this thread.
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
    if delta > 0 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + delta as usize));
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn allocated() -> usize {
    ALLOCATED.with(Cell::get)
}

fn publication() -> Message {
    let mut s = String::new();
    for i in 0..60 {
        s.push_str(&format!(
            r#"{{"channel":"news","offset":{i},"data":"hello"}},"#
        ));
    }
    Message::text(s)
}

/// A compressed message from a client that agreed `params`.
fn client_message(params: DeflateParams, config: &DeflateConfig) -> Vec<u8> {
    let mut client = Peer::client_deflate(quiet(), || [1, 2, 3, 4], params, config).no_echo();
    client.conn.send(publication()).unwrap();
    client.drain();
    assert_eq!(client.written[0], 0xc1, "compressed");
    client.written
}

/// Heap bytes one server connection holds once idle after receiving
/// `incoming` and sending `outgoing`.
fn idle_connection_bytes(
    params: DeflateParams,
    config: &DeflateConfig,
    incoming: &[u8],
    outgoing: &PreparedMessage,
) -> isize {
    let protocol = std::sync::Arc::new(Config::default());
    let mut buf = bytes::BytesMut::from(incoming);
    let before = live();
    let mut conn = Connection::server(protocol, t0()).with_deflate(params, config);
    conn.receive(&mut buf, t0()).unwrap();
    while conn.poll_event().is_some() {}
    conn.send_prepared(outgoing).unwrap();
    while conn.poll_transmit().is_some() {}
    // What an I/O layer does when the connection goes quiet.
    conn.shrink_to_fit();
    let held = live() - before;
    drop(conn);
    held
}

#[test]
fn an_idle_connection_without_context_takeover_holds_no_zlib_state() {
    let shared = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let config = DeflateConfig::no_context_takeover();
    let incoming = client_message(shared, &config);
    let outgoing = PreparedMessage::new(publication());
    // The first connection compresses the publication, which the prepared
    // message keeps; the next holds only its own.
    idle_connection_bytes(shared, &config, &incoming, &outgoing);
    let held = idle_connection_bytes(shared, &config, &incoming, &outgoing);
    // The boxed codec settings and nothing else: zlib's smallest state
    // (an inflater) is tens of KiB.
    assert!(held <= 256, "an idle connection holds {held} heap bytes");
    eprintln!("no context takeover: {held} heap bytes per idle connection");

    // The default, context takeover both ways: compressor and inflater
    // stay for the connection's life. This is what the check above guards
    // against.
    let takeover = DeflateParams::default();
    let config = DeflateConfig::default();
    let incoming = client_message(takeover, &config);
    idle_connection_bytes(takeover, &config, &incoming, &outgoing);
    let held = idle_connection_bytes(takeover, &config, &incoming, &outgoing);
    assert!(held > 100 << 10, "context takeover holds only {held} bytes");
    eprintln!("context takeover: {held} heap bytes per idle connection");
}

#[test]
fn sending_a_prepared_message_compresses_once_for_all_connections() {
    let shared = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let config = DeflateConfig::no_context_takeover();
    let protocol = std::sync::Arc::new(Config::default());
    let mut conns: Vec<Connection> = (0..100)
        .map(|_| Connection::server(protocol.clone(), t0()).with_deflate(shared, &config))
        .collect();
    let msg = PreparedMessage::new(publication());

    // The first connection compresses (a whole zlib compressor, freed
    // again); the 99 others only queue the shared frame.
    let start = allocated();
    conns[0].send_prepared(&msg).unwrap();
    let first = allocated() - start;
    let start = allocated();
    for c in &mut conns[1..] {
        c.send_prepared(&msg).unwrap();
    }
    let rest = (allocated() - start) / 99;
    assert!(first > 100 << 10, "the first send allocated {first} bytes");
    // A transmit queue's first allocation, no compressor, no payload copy.
    assert!(rest <= 256, "each later send allocated {rest} bytes");
    for c in &mut conns {
        let t = c.poll_transmit().unwrap();
        assert_eq!(t.head.as_bytes()[0], 0xc1);
    }
}
