//! Shared by the echo binaries: a single-threaded runtime, the listen
//! address from argv, and a clean exit on SIGINT/SIGTERM (so that
//! callgrind, which writes its profile at exit, sees a normal exit).

use std::future::Future;
use std::net::SocketAddr;

/// The listen address: the first argument, or `default`.
pub fn listen_addr(default: &str) -> SocketAddr {
    std::env::args()
        .nth(1)
        .unwrap_or_else(|| default.to_owned())
        .parse()
        .expect("usage: <bin> [ip:port]")
}

/// Runs `server` on a current-thread runtime until it ends or a signal
/// arrives.
pub fn run<F: Future<Output = ()>>(server: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = server => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}

pub mod fanout;
