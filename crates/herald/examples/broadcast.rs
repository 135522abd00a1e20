//! A broadcast server: every connection receives every publication, each
//! prepared once (`PreparedMessage`) and, for clients that offer
//! permessage-deflate, compressed once.
//!
//! ```sh
//! cargo run --release -p herald --example broadcast -- [MODE] [PORT] [INTERVAL_MS]
//! ```
//!
//! MODE is how permessage-deflate is accepted:
//! - `shared` (default): `DeflateConfig::no_context_takeover()`; one
//!   compressed frame per window size, shared by every connection, and no
//!   zlib state kept between messages;
//! - `per-connection`: `DeflateConfig::default()` (context takeover);
//!   each connection compresses each publication and keeps its compressor
//!   and inflater;
//! - `off`: no compression.
//!
//! A 1 KiB JSON publication goes out every INTERVAL_MS (default 100). Every second the
//! server prints its connection count and resident memory, as
//! `connections=N rss_kib=M`. `bench/deflate_memory.py` connects clients
//! to it and reports memory per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald::{Acceptor, Config, DeflateConfig, Message, PreparedMessage};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

// As in `herald serve`, so that memory per connection is comparable.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Shared,
    PerConnection,
    Off,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn publication(n: u64) -> Message {
    let mut s = format!(r#"{{"channel":"news","offset":{n},"items":["#);
    let mut i = 0;
    while s.len() < 1000 {
        s.push_str(&format!(r#"{{"id":{i},"title":"item {i} of {n}"}},"#));
        i += 1;
    }
    s.push_str("0]}");
    Message::text(s)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        None | Some("shared") => Mode::Shared,
        Some("per-connection") => Mode::PerConnection,
        Some("off") => Mode::Off,
        Some(other) => return Err(format!("unknown mode {other:?}").into()),
    };
    let port: u16 = args.next().map_or(Ok(9400), |p| p.parse())?;
    let interval = Duration::from_millis(args.next().map_or(Ok(100), |p| p.parse())?);
    let deflate = match mode {
        // What a push server should answer browsers with.
        Mode::Shared => Some(DeflateConfig::no_context_takeover()),
        Mode::PerConnection => Some(DeflateConfig::default()),
        Mode::Off => None,
    };
    let acceptor = Acceptor::new(Config::default().deflate(deflate));
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening port={port}");

    // A PreparedMessage clones by reference count: one per publication,
    // shared by every connection task.
    let (publish, _) = broadcast::channel::<PreparedMessage>(16);
    let connections = Arc::new(AtomicUsize::new(0));

    let sender = publish.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        for n in 0.. {
            tick.tick().await;
            let _ = sender.send(PreparedMessage::new(publication(n)));
        }
    });
    let count = connections.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let n = count.load(Ordering::Relaxed);
            println!("connections={n} rss_kib={}", rss_kib());
        }
    });

    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let publish = publish.clone();
        let count = connections.clone();
        tokio::spawn(async move {
            let Ok(mut ws) = acceptor.accept(tcp).await else {
                return;
            };
            let mut publications = publish.subscribe();
            count.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::select! {
                    // `recv` is cancel safe: nothing is lost when a
                    // publication wins the race.
                    incoming = ws.recv() => match incoming {
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    publication = publications.recv() => {
                        let p = match publication {
                            Ok(p) => p,
                            // Behind by more than the channel holds: skip.
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => break,
                        };
                        // A slow consumer is dropped rather than buffered
                        // without bound.
                        if ws.buffered_amount() > 1 << 20 {
                            break;
                        }
                        let sent = if mode == Mode::PerConnection {
                            // What a server without prepared messages does.
                            ws.send(p.to_message()).await
                        } else {
                            // Queued without copying; written by the next
                            // poll of the socket (`recv` above).
                            ws.start_send_prepared(&p)
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                }
            }
            count.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
