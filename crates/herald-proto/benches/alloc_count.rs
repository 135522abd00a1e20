//! Counts heap allocations on the receive path: "no allocation per frame".
//!
//! A plain `main` (harness = false) with a counting global allocator. After
//! a warm-up of 100 frames, 10,000 masked 20-byte frames are received and
//! their events drained and dropped; every `alloc`, `alloc_zeroed` and
//! `realloc` in that window is counted. Nothing else runs in the window
//! (inputs are built before, printing happens after).
//!
//! Two ways of feeding the same frames:
//! - `one_buffer`: all 10,000 frames in one `BytesMut`, one `receive`, then
//!   drain (events pile up in the connection's queue first).
//! - `socket_loop`: one reused 64 KiB `BytesMut`, filled 4 KiB at a time as a
//!   transport would, `receive` and drain after each read (frames straddle
//!   reads).
//!
//! Exits non-zero if any case exceeds 0.01 allocations per frame.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use bytes::BytesMut;
use herald_proto::{Config, Connection, Event, OpCode};

mod common;

use common::{BINARY_20, FRAMES, TEXT_20, masked_frames};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static REALLOCS: AtomicUsize = AtomicUsize::new(0);
static DEALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        DEALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM_UP: usize = 100;
const READ: usize = 4096;

#[derive(Clone, Copy)]
struct Counts {
    allocs: usize,
    reallocs: usize,
    deallocs: usize,
}

fn snapshot() -> Counts {
    Counts {
        allocs: ALLOCS.load(Relaxed),
        reallocs: REALLOCS.load(Relaxed),
        deallocs: DEALLOCS.load(Relaxed),
    }
}

fn since(start: Counts) -> Counts {
    let now = snapshot();
    Counts {
        allocs: now.allocs - start.allocs,
        reallocs: now.reallocs - start.reallocs,
        deallocs: now.deallocs - start.deallocs,
    }
}

/// Drops every queued event; returns how many data messages there were.
fn drain(conn: &mut Connection) -> usize {
    let mut n = 0;
    while let Some(ev) = conn.poll_event() {
        match ev {
            Event::Message(_) => n += 1,
            // No allocating formatting inside the counted window.
            _ => std::process::abort(),
        }
    }
    n
}

/// `receive` while it consumes bytes (it stops after each message).
fn receive_all(conn: &mut Connection, buf: &mut BytesMut, now: Instant) {
    loop {
        let before = buf.len();
        conn.receive(buf, now).expect("valid frames");
        if buf.is_empty() || buf.len() == before {
            return;
        }
    }
}

fn one_buffer(opcode: OpCode, payload: &[u8]) -> Counts {
    let now = Instant::now();
    let mut conn = Connection::server(Config::default().ping_interval(None), now);
    let mut warm = BytesMut::from(&masked_frames(WARM_UP, opcode, payload)[..]);
    let mut buf = BytesMut::from(&masked_frames(FRAMES, opcode, payload)[..]);
    receive_all(&mut conn, &mut warm, now);
    assert_eq!(drain(&mut conn), WARM_UP);

    let start = snapshot();
    receive_all(&mut conn, &mut buf, now);
    let n = drain(&mut conn);
    let counts = since(start);

    assert_eq!(n, FRAMES);
    assert!(buf.is_empty());
    counts
}

fn socket_loop(opcode: OpCode, payload: &[u8]) -> Counts {
    let now = Instant::now();
    let mut conn = Connection::server(Config::default().ping_interval(None), now);
    let wire = masked_frames(WARM_UP + FRAMES, opcode, payload);
    let (warm, rest) = wire.split_at(WARM_UP * (6 + payload.len()));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    buf.extend_from_slice(warm);
    receive_all(&mut conn, &mut buf, now);
    assert_eq!(drain(&mut conn), WARM_UP);

    let start = snapshot();
    let mut n = 0;
    for read in rest.chunks(READ) {
        buf.extend_from_slice(read);
        receive_all(&mut conn, &mut buf, now);
        n += drain(&mut conn);
    }
    let counts = since(start);

    assert_eq!(n, FRAMES);
    assert!(buf.is_empty());
    counts
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a name filter, if any, is ignored.
    let mut ok = true;
    println!(
        "allocations while receiving {FRAMES} masked 20-byte frames (after {WARM_UP} warm-up):"
    );
    println!(
        "{:<24} {:>7} {:>9} {:>9} {:>16}",
        "case", "allocs", "reallocs", "deallocs", "(allocs+reallocs)/frame"
    );
    for (kind, opcode, payload) in [
        ("binary", OpCode::Binary, &BINARY_20[..]),
        ("text", OpCode::Text, TEXT_20.as_bytes()),
    ] {
        for (mode, run) in [
            ("one_buffer", one_buffer as fn(OpCode, &[u8]) -> Counts),
            ("socket_loop_4KiB", socket_loop),
        ] {
            let c = run(opcode, payload);
            let per_frame = (c.allocs + c.reallocs) as f64 / FRAMES as f64;
            println!(
                "{:<24} {:>7} {:>9} {:>9} {:>16.5}",
                format!("{kind}/{mode}"),
                c.allocs,
                c.reallocs,
                c.deallocs,
                per_frame
            );
            if per_frame > 0.01 {
                ok = false;
            }
        }
    }
    if ok {
        println!("ok: at most 0.01 allocations per frame");
        ExitCode::SUCCESS
    } else {
        println!("FAIL: more than 0.01 allocations per frame");
        ExitCode::FAILURE
    }
}
