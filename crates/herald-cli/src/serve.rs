//! `herald serve`: the push server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use herald_server::{Server, ServerConfig};

use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// TOML configuration file (optional: the defaults run as they are).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// HMAC secret for connection tokens (JWT HS256); makes tokens required.
    #[arg(long)]
    token_secret: Option<String>,
    /// Token signature algorithm: HS256 (default), HS384, HS512 (with
    /// --token-secret), RS256 or ES256 (with --token-public-key).
    #[arg(long)]
    token_algorithm: Option<herald_server::TokenAlgorithm>,
    /// PEM file with the public key for RS256/ES256 tokens; makes tokens
    /// required.
    #[arg(long)]
    token_public_key: Option<PathBuf>,
    /// Key for the HTTP API (`Authorization: apikey <key>`).
    #[arg(long)]
    api_key: Option<String>,
    /// An origin allowed besides the server's own (repeatable; `*` for any).
    #[arg(long)]
    allowed_origin: Vec<String>,
    /// Most concurrent connections.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Do not run the demo feeds (quotes, game).
    #[arg(long)]
    no_demos: bool,
    /// Worker threads [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
}

/// Defaults, then the file, then `HERALD_*` variables, then flags.
fn config(args: &Args) -> Result<ServerConfig, BoxError> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_toml(&std::fs::read_to_string(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => ServerConfig::default(),
    };
    config.apply_env(std::env::vars())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(s) = &args.token_secret {
        config.token_secret = Some(s.clone());
    }
    if let Some(a) = args.token_algorithm {
        config.token_algorithm = a;
    }
    if let Some(p) = &args.token_public_key {
        config.token_public_key = Some(p.clone());
    }
    if let Some(k) = &args.api_key {
        config.api_key = Some(k.clone());
    }
    config
        .allowed_origins
        .extend(args.allowed_origin.iter().cloned());
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    if args.no_demos {
        config.demos = false;
    }
    Ok(config)
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let config = config(&args)?;
    // A key that does not load stops startup here, naming the setting.
    let tokens = herald_server::TokenVerifier::from_config(&config)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    crate::runtime(threads)?.block_on(async move {
        let listener = crate::listen(config.listen)?;
        let addr = listener.local_addr()?;
        let mode = match &tokens {
            Some(v) => format!("tokens required, {}", v.algorithm().name()),
            None => "dev mode: no token required".into(),
        };
        eprintln!("herald serve: http://{addr}/ ({mode})");
        for warning in config.warnings() {
            eprintln!("  warning    {warning}");
        }
        eprintln!("  websocket  ws://{addr}{}", herald_server::WEBSOCKET_PATH);
        eprintln!("  demos      http://{addr}/demo/chat  /demo/quotes  /demo/game");
        eprintln!("  api        POST http://{addr}/api/publish   metrics  http://{addr}/metrics");
        Server::new(config)
            .serve(listener, shutdown_signal())
            .await?;
        eprintln!("herald serve: drained, bye");
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
