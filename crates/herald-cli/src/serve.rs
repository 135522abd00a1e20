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
    /// Serve the API, /metrics and /health on this address only (plain
    /// HTTP; keep it private), not on --listen.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// PEM certificate chain: serve https:// and wss://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    if let Some(a) = args.admin_listen {
        config.admin_listen = Some(a);
    }
    if let Some(c) = &args.tls_cert {
        config.tls_cert = Some(c.clone());
    }
    if let Some(k) = &args.tls_key {
        config.tls_key = Some(k.clone());
    }
    Ok(config)
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let config = config(&args)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Refuse bad TLS settings before the banner says https://; the server
    // loads the files again when it starts serving.
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => drop(herald::server_config_from_pem(cert, key)?),
        (None, None) => {}
        _ => return Err("tls_cert and tls_key are set together or not at all".into()),
    }
    crate::runtime(threads)?.block_on(async move {
        let listener = crate::listen(config.listen)?;
        let addr = listener.local_addr()?;
        let admin = match config.admin_listen {
            Some(a) => Some(crate::listen(a).map_err(|e| format!("admin listen on {a}: {e}"))?),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
        let mode = if config.token_secret.is_some() {
            "tokens required"
        } else {
            "dev mode: no token required"
        };
        let (http, ws) = if config.tls_cert.is_some() {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        eprintln!("herald serve: {http}://{addr}/ ({mode})");
        eprintln!(
            "  websocket  {ws}://{addr}{}",
            herald_server::WEBSOCKET_PATH
        );
        eprintln!("  demos      {http}://{addr}/demo/chat  /demo/quotes  /demo/game");
        match admin_addr {
            Some(admin) => eprintln!(
                "  admin      POST http://{admin}/api/publish   metrics  http://{admin}/metrics"
            ),
            None => eprintln!(
                "  api        POST {http}://{addr}/api/publish   metrics  {http}://{addr}/metrics"
            ),
        }
        Server::new(config)
            .serve_with_admin(listener, admin, shutdown_signal())
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
