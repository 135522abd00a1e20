//! `herald bench idle`: memory per idle connection.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::{Client, Config, ProtocolConfig};
use tokio::sync::Semaphore;

use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Server URL.
    #[arg(long)]
    url: String,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Handshakes in flight at once (bounds the connect rate).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The server's process id, to read its RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How long to hold the connections open before measuring, in seconds.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    crate::runtime(1)?.block_on(async move {
        let before = args.server_pid.map(super::rss_bytes).transpose()?;
        // Idle means idle: no keepalive pings from our side.
        let config = Config::default().protocol(ProtocolConfig::default().ping_interval(None));
        let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let permit = gate.clone().acquire_owned().await?;
            let client = Client::new(&args.url).config(config.clone());
            tasks.push(tokio::spawn(async move {
                let r = client.connect().await.map(|(ws, _)| ws);
                drop(permit);
                r
            }));
        }
        let mut sockets = Vec::with_capacity(args.connections);
        let mut errors = 0usize;
        for t in tasks {
            match t.await? {
                Ok(ws) => sockets.push(ws),
                Err(e) => {
                    if errors == 0 {
                        eprintln!("connect failed: {e}");
                    }
                    errors += 1;
                }
            }
        }
        let elapsed = start.elapsed();
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let after = args.server_pid.map(super::rss_bytes).transpose()?;
        let n = sockets.len();
        let rate = n as f64 / elapsed.as_secs_f64();
        let per_conn = match (before, after) {
            (Some(b), Some(a)) if n > 0 => Some(a.saturating_sub(b) as f64 / n as f64),
            _ => None,
        };
        if args.json {
            println!(
                "{{\"connections\":{n},\"errors\":{errors},\"connects_per_sec\":{rate:.0},\"server_rss_before\":{},\"server_rss_after\":{},\"server_bytes_per_connection\":{}}}",
                before.map_or("null".into(), |v| v.to_string()),
                after.map_or("null".into(), |v| v.to_string()),
                per_conn.map_or("null".into(), |v| format!("{v:.0}")),
            );
        } else {
            println!("connections open     {n} ({errors} failed)");
            println!("connect rate         {rate:.0} /s");
            if let (Some(b), Some(a), Some(p)) = (before, after, per_conn) {
                println!("server RSS           {} KiB -> {} KiB", b / 1024, a / 1024);
                println!("server RSS / conn    {p:.0} B");
            }
        }
        drop(sockets);
        Ok(if errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}
