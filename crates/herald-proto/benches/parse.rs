//! The receive path of a server `Connection`: 10,000 masked 20-byte frames
//! in one buffer, `receive` then drain `poll_event`. Throughput is in
//! frames, so criterion prints frames/s; time / 10,000 is the per-frame cost.
//!
//! - `binary`, `text`: all 10,000 frames in one buffer, one `receive`, then
//!   drain. One connection is reused across iterations (its event queue
//!   keeps its capacity, as on a long-lived connection); every iteration gets
//!   a fresh `BytesMut` copy of the frames, made and freed outside the timed
//!   section. The 10,000 events (48 bytes each) queue up before the drain.
//! - `binary_4KiB_reads`: the same frames fed 4 KiB at a time into one reused
//!   buffer, draining after each read, as a transport loop would.
//! - `header_only`: `FrameHeader::parse` of one masked 20-byte frame.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use herald_proto::{Config, Connection, Event, FrameHeader, Message, OpCode};

mod common;

use common::{BINARY_20, FRAMES, TEXT_20, masked_frame, masked_frames};

/// `receive` then drain every event, while `receive` consumes bytes (it
/// stops after each message); returns the number of messages.
fn receive_drain(conn: &mut Connection, buf: &mut BytesMut, now: Instant) -> usize {
    let mut n = 0;
    loop {
        let before = buf.len();
        conn.receive(buf, now).expect("valid frames");
        n += drain_events(conn);
        if buf.is_empty() || buf.len() == before {
            return n;
        }
    }
}

fn drain_events(conn: &mut Connection) -> usize {
    let mut n = 0;
    while let Some(ev) = conn.poll_event() {
        match ev {
            Event::Message(Message::Binary(b)) => {
                black_box(&b);
            }
            Event::Message(Message::Text(t)) => {
                black_box(&t);
            }
            other => panic!("unexpected event {other:?}"),
        }
        n += 1;
    }
    n
}

fn parse(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("parse/20B_masked_x10000");
    g.throughput(Throughput::Elements(FRAMES as u64));
    for (name, opcode, payload) in [
        ("binary", OpCode::Binary, &BINARY_20[..]),
        ("text", OpCode::Text, TEXT_20.as_bytes()),
    ] {
        let wire = masked_frames(FRAMES, opcode, payload);
        let mut conn = Connection::server(Config::default().ping_interval(None), now);
        g.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    let n = receive_drain(&mut conn, &mut buf, now);
                    assert_eq!((n, buf.len()), (FRAMES, 0));
                    // Freed outside the timed section, like it was made.
                    buf
                },
                BatchSize::LargeInput,
            );
        });
    }
    // The same frames arriving as a transport would read them: 4 KiB at a
    // time appended to one reused buffer, events drained after each read
    // (frames straddle reads). Includes copying each read into the buffer.
    let wire = masked_frames(FRAMES, OpCode::Binary, &BINARY_20);
    let mut conn = Connection::server(Config::default().ping_interval(None), now);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    g.bench_function("binary_4KiB_reads", |b| {
        b.iter(|| {
            let mut n = 0;
            for read in wire.chunks(4096) {
                buf.extend_from_slice(read);
                n += receive_drain(&mut conn, &mut buf, now);
            }
            assert_eq!((n, buf.len()), (FRAMES, 0));
        });
    });
    g.finish();

    let mut g = c.benchmark_group("parse/header_only");
    g.throughput(Throughput::Elements(1));
    let mut one = Vec::new();
    masked_frame(&mut one, OpCode::Binary, &BINARY_20, common::key(7));
    g.bench_function("FrameHeader::parse_20B_masked", |b| {
        b.iter(|| FrameHeader::parse(black_box(&one)).expect("valid"));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = parse
}
criterion_main!(benches);
