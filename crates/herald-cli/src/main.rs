//! `herald`: one binary for the WebSocket tools.
//!
//! - `herald serve`: the push server (channels, HTTP API, demos).
//! - `herald echo`: an echo server, the target of conformance and
//!   benchmark runs.
//! - `herald connect`: an interactive client (stdin lines out, messages in).
//! - `herald conformance-client`: drives a conformance test suite's
//!   fuzzing server in client mode.

mod bench;
mod conformance;
mod connect;
mod echo;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: its size classes pack the small,
/// long-lived objects of idle connections (task, socket, timer entry)
/// tighter, which is most of a server's memory at 10,000 connections
/// (`scripts/bench`, idle scenario), and its thread-local fast path costs
/// fewer instructions per echoed message.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "herald", version, about = "WebSocket server, client and tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the push server: WebSocket channels, HTTP publish API, demos.
    Serve(serve::Args),
    /// Echo every text and binary message back.
    Echo(echo::Args),
    /// Connect to a WebSocket server: stdin lines become messages, incoming
    /// messages are printed.
    Connect(connect::Args),
    /// Run a conformance suite's cases in client mode (fuzzing-server protocol).
    ConformanceClient(conformance::Args),
    /// Load generators: echo, handshake, idle memory per connection.
    Bench(bench::Args),
}

fn main() -> std::process::ExitCode {
    // HERALD_LOG=off|error|warn|info|debug|trace; warn by default.
    let warn = tracing_subscriber::filter::LevelFilter::WARN;
    let level = match std::env::var("HERALD_LOG") {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!(
                "herald: HERALD_LOG={v} is not a level (off, error, warn, info, debug, trace); \
                 logging at warn"
            );
            warn
        }),
        Err(_) => warn,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Echo(args) => echo::run(args),
        Command::Connect(args) => connect::run(args),
        Command::ConformanceClient(args) => conformance::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A listening socket whose accepted connections have `TCP_NODELAY` set
/// already: Linux copies it from the listener, which saves a `setsockopt`
/// per connection (see `handshake + close` in `scripts/bench`). Elsewhere
/// callers still set it per connection ([`NODELAY_INHERITED`]).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server can bind at once.
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Whether accepted sockets inherit `TCP_NODELAY` from [`listen`]'s socket.
const NODELAY_INHERITED: bool = cfg!(target_os = "linux");

/// A tokio runtime: current-thread for one thread (the lowest per-message
/// overhead), multi-thread otherwise. The servers run one current-thread
/// runtime per thread instead (DESIGN.md, "Threads"); the multi-thread one
/// is left for `herald echo --multi-thread`, the comparison.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
