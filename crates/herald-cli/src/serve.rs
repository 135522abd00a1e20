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
    #[arg(long, value_name = "HOST:PORT")]
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
    /// An origin allowed besides the server's own (repeatable; `*` for any;
    /// replaces the file's and HERALD_ALLOWED_ORIGINS' list).
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
    /// Share channels with other nodes through Redis
    /// (`redis://HOST:PORT`; repeat it to spread channels over several
    /// Redis servers); default: in memory, this process only.
    #[arg(long, value_name = "URL")]
    broker: Vec<String>,
    /// This node's name in `/api/info` and logs (default: its listen
    /// address).
    #[arg(long)]
    node_name: Option<String>,
    /// Server threads [default: the number of cores]. Each runs its own
    /// event loop (a current-thread tokio runtime) and accepts on its own
    /// socket bound to the same address (SO_REUSEPORT), so the kernel
    /// spreads new connections over the threads; a connection stays on the
    /// thread that accepted it, and a publication reaches subscribers on
    /// every thread. The API's admin listener, the hub's timers and the
    /// demos run on the first thread.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// With --threads N: tokio's multi-thread runtime of N workers and one
    /// listener instead, the way herald serve ran before (for comparison
    /// in benchmarks; DESIGN.md, "Threads").
    #[arg(long)]
    multi_thread: bool,
}

/// Defaults, then the file, then `HERALD_*` variables (`vars`), then flags;
/// each layer replaces what the one before it set (a list included).
fn config(
    args: &Args,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<ServerConfig, BoxError> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!("cannot read the configuration file {}: {e}", path.display())
            })?;
            // toml's message carries the line and column.
            ServerConfig::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    config.apply_env(vars.iter().cloned())?;
    // `[broker] url` is a table's key, so it has no derived variable;
    // this one is read here, comma-separated like the lists.
    if let Some((_, urls)) = vars.iter().find(|(k, _)| k == "HERALD_BROKER_URL") {
        config.broker.url = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
    }
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
    if !args.allowed_origin.is_empty() {
        config.allowed_origins = args.allowed_origin.clone();
    }
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
    if !args.broker.is_empty() {
        config.broker.url = args.broker.clone();
    }
    if let Some(n) = &args.node_name {
        config.node_name = Some(n.clone());
    }
    config.validate()?;
    Ok(config)
}

/// The `HERALD_*` variables of the environment. `std::env::vars` would
/// panic on any variable that is not UTF-8, ours or not.
fn herald_vars() -> Result<Vec<(String, String)>, String> {
    std::env::vars_os()
        .filter(|(k, _)| k.as_encoded_bytes().starts_with(b"HERALD_"))
        .map(|(k, v)| match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => Ok((k, v)),
            (Ok(k), Err(_)) => Err(format!("{k}: the value is not valid UTF-8")),
            (Err(k), _) => Err(format!("{}: not a valid name", k.to_string_lossy())),
        })
        .collect()
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let config = config(&args, herald_vars()?)?;
    // A key that does not load stops startup here, naming the setting.
    let tokens = herald_server::TokenVerifier::from_config(&config)?;
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    // Refuse bad TLS settings before the banner says https://; the server
    // loads the files again when it starts serving.
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => drop(herald::server_config_from_pem(cert, key)?),
        (None, None) => {}
        _ => return Err("tls_cert and tls_key are set together or not at all".into()),
    }
    // This thread is server thread 0; `serve_threads` starts the others,
    // each with a runtime of its own (DESIGN.md, "Threads").
    let (runtime, sockets) = if args.multi_thread {
        (crate::runtime(threads)?, 1)
    } else {
        (crate::runtime(1)?, threads)
    };
    runtime.block_on(async move {
        let listeners = herald_server::bind_threads(config.listen, sockets)?;
        let addr = listeners[0].local_addr()?;
        let admin = match config.admin_listen {
            Some(a) => Some(crate::listen(a).map_err(|e| format!("admin listen on {a}: {e}"))?),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
        let mode = match &tokens {
            Some(v) => format!("tokens required, {}", v.algorithm().name()),
            None => "dev mode: no token required".into(),
        };
        let (http, ws) = if config.tls_cert.is_some() {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        let on = match (threads, args.multi_thread) {
            (1, _) => "thread",
            (_, false) => "threads",
            (_, true) => "threads, tokio multi-thread",
        };
        eprintln!("herald serve: {http}://{addr}/ ({mode}; {threads} {on})");
        for warning in config.warnings() {
            eprintln!("  warning    {warning}");
        }
        eprintln!(
            "  websocket  {ws}://{addr}{}",
            herald_server::WEBSOCKET_PATH
        );
        if config.demos {
            eprintln!("  demos      {http}://{addr}/demo/chat  /demo/quotes  /demo/game");
        }
        let api = match admin_addr {
            Some(admin) => {
                eprintln!(
                    "  admin      POST http://{admin}/api/publish   metrics  http://{admin}/metrics"
                );
                format!("http://{admin}")
            }
            None => {
                eprintln!(
                    "  api        POST {http}://{addr}/api/publish   metrics  {http}://{addr}/metrics"
                );
                format!("{http}://{addr}")
            }
        };
        match (&config.api_key, config.is_dev_mode()) {
            (Some(_), _) => eprintln!("  api auth   Authorization: apikey <api_key>"),
            (None, false) => eprintln!("  api auth   disabled: set api_key to use the API"),
            (None, true) => eprintln!(
                "  api auth   dev mode: {api}/api trusts loopback without a key \
                 (never behind a reverse proxy on this host; set api_key)"
            ),
        }
        Server::connect(config)
            .await
            .map_err(std::io::Error::other)?
            .serve_threads(listeners, admin, shutdown_signal())
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("serve").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A file that removes itself.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let path = std::env::temp_dir().join(format!("herald-{}-{name}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn defaults_then_file_then_env_then_flags() {
        let file = TempFile::new(
            "layers.toml",
            "listen = \"127.0.0.1:1111\"\nmax_connections = 5\nmax_subscriptions = 6\n\
             allowed_origins = [\"https://file.example\"]\n",
        );
        let path = file.0.to_str().unwrap();
        let env = vars(&[
            ("HERALD_LISTEN", "127.0.0.1:2222"),
            ("HERALD_MAX_SUBSCRIPTIONS", "7"),
            ("HERALD_ALLOWED_ORIGINS", "https://env.example"),
        ]);

        let c = config(&parse(&["--config", path]), vars(&[])).unwrap();
        assert_eq!(c.listen.port(), 1111);
        assert_eq!(c.max_subscriptions, 6);
        assert_eq!(c.max_commands_per_second, 100, "a default the file left");

        let c = config(&parse(&["--config", path]), env.clone()).unwrap();
        assert_eq!(c.listen.port(), 2222);
        assert_eq!(c.max_subscriptions, 7);
        assert_eq!(c.max_connections, 5, "from the file");
        assert_eq!(c.allowed_origins, ["https://env.example"]);

        let argv = [
            "--config",
            path,
            "--listen",
            "127.0.0.1:3333",
            "--allowed-origin",
            "https://flag.example",
            "--max-connections",
            "9",
        ];
        let c = config(&parse(&argv), env).unwrap();
        assert_eq!(c.listen.port(), 3333);
        assert_eq!(c.max_connections, 9);
        assert_eq!(c.max_subscriptions, 7, "from the environment");
        assert_eq!(c.allowed_origins, ["https://flag.example"]);
    }

    /// Every flag of `herald serve` has a row in docs/configuration.md's
    /// `## Flags` table, and every row is a flag.
    #[test]
    fn every_flag_is_documented() {
        use clap::CommandFactory;
        const DOC: &str = include_str!("../../../docs/configuration.md");
        let section = &DOC[DOC.find("\n## Flags\n").expect("## Flags")..];
        let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `--"))
            .filter_map(|l| l.split([' ', '`']).next())
            .collect();
        let flags: Vec<String> = Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(String::from))
            .filter(|f| f != "help")
            .collect();
        for f in &flags {
            assert!(
                documented.contains(&f.as_str()),
                "--{f} is missing from docs/configuration.md, ## Flags"
            );
        }
        for f in documented {
            assert!(
                flags.iter().any(|g| g == f),
                "--{f} is documented but not a flag"
            );
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = config(&parse(&["--config", "/nonexistent.toml"]), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read the configuration file /nonexistent.toml: "),
            "{e}"
        );
    }
}
