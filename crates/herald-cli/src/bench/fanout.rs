//! `herald bench fanout`: one publication to many subscribers of
//! `herald serve`.
//!
//! N connections subscribe to one shared channel (and, with
//! `--own-channels`, each to a channel of its own as well). A publisher
//! posts timestamped publications to the shared channel through the HTTP
//! API. Reported: deliveries per second, publish-to-delivery latency as
//! measured at the clients (same machine, same clock), deliveries missed,
//! and, with `--server-pid`, the server's RSS per idle subscribed
//! connection.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use herald::{Client, Config, Message, ProtocolConfig, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{Percentiles, json_opt, latency_histogram, parse_duration, rss_bytes};
use crate::BoxError;

/// The shared channel: the default namespace, which the HTTP API may
/// publish to.
const SHARED: &str = "benchfanout";

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Base URL of `herald serve`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Subscribed connections.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Publications to send.
    #[arg(long, default_value_t = 50)]
    publications: usize,
    /// Time between publications.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    interval: Duration,
    /// Also subscribe each connection to a channel of its own.
    #[arg(long)]
    own_channels: bool,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The server's process id, for its RSS per connection.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The `ts` field of a publication push, found without a full JSON parse
/// (the generator must not be the bottleneck).
fn timestamp(text: &str) -> Option<u64> {
    let at = text.find("\"ts\":")? + 5;
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

async fn command(ws: &mut WebSocket<herald::MaybeTlsStream>, text: String) -> Result<(), BoxError> {
    ws.send(Message::text(text)).await?;
    match ws.recv().await {
        Some(Ok(Message::Text(reply))) if reply.contains("\"result\"") => Ok(()),
        other => Err(format!("unexpected reply: {other:?}").into()),
    }
}

async fn subscriber(
    ws_url: String,
    index: usize,
    own: bool,
) -> Result<WebSocket<herald::MaybeTlsStream>, BoxError> {
    // Idle means idle: no keepalive pings from the client side.
    let config = Config::default().protocol(ProtocolConfig::default().ping_interval(None));
    let (mut ws, _) = Client::new(ws_url).config(config).connect().await?;
    command(&mut ws, r#"{"id":1,"connect":{}}"#.into()).await?;
    command(
        &mut ws,
        format!(r#"{{"id":2,"subscribe":{{"channel":"{SHARED}"}}}}"#),
    )
    .await?;
    if own {
        command(
            &mut ws,
            format!(r#"{{"id":3,"subscribe":{{"channel":"{SHARED}{index}"}}}}"#),
        )
        .await?;
    }
    Ok(ws)
}

/// POSTs publications over one kept-alive HTTP/1.1 connection.
struct Publisher {
    tcp: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Publisher {
    async fn connect(addr: &str) -> Result<Self, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Self {
            tcp,
            host: addr.to_owned(),
            buf: Vec::new(),
        })
    }

    async fn publish(&mut self, channel: &str, data: &str) -> Result<(), BoxError> {
        let body = format!(r#"{{"channel":"{channel}","data":{data}}}"#);
        let head = format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.tcp.write_all(head.as_bytes()).await?;
        self.tcp.write_all(body.as_bytes()).await?;
        // Read the response head and its Content-Length body.
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 1024];
            let n = self.tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err("server closed the API connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&self.buf);
            if let Some(end) = text.find("\r\n\r\n") {
                if !text.starts_with("HTTP/1.1 200") {
                    return Err(
                        format!("publish failed: {}", text.lines().next().unwrap_or("")).into(),
                    );
                }
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    return Ok(());
                }
            }
        }
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let addr = args
        .server
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let ws_url = format!("ws://{addr}{}", herald_server::WEBSOCKET_PATH);
    crate::runtime(1)?.block_on(async move {
        let before = args.server_pid.map(rss_bytes).transpose()?;
        let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
        let start = Instant::now();
        let mut pending = Vec::with_capacity(args.subscribers);
        for i in 0..args.subscribers {
            let permit = gate.clone().acquire_owned().await?;
            let url = ws_url.clone();
            let own = args.own_channels;
            pending.push(tokio::spawn(async move {
                let r = subscriber(url, i, own).await;
                drop(permit);
                r
            }));
        }
        let mut sockets = Vec::with_capacity(args.subscribers);
        for p in pending {
            sockets.push(p.await??);
        }
        let connect_secs = start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = args.server_pid.map(rss_bytes).transpose()?;

        // Receivers: count deliveries and record latencies.
        let histogram = Arc::new(Mutex::new(latency_histogram()));
        let delivered = Arc::new(AtomicU64::new(0));
        let last_delivery = Arc::new(AtomicU64::new(0));
        let expected = args.publications as u64;
        let mut receivers = Vec::with_capacity(sockets.len());
        for mut ws in sockets {
            let (histogram, delivered, last) =
                (histogram.clone(), delivered.clone(), last_delivery.clone());
            receivers.push(tokio::spawn(async move {
                let mut seen = 0u64;
                let mut local: Vec<u64> = Vec::with_capacity(expected as usize);
                while seen < expected {
                    let Some(Ok(Message::Text(text))) = ws.recv().await else { break };
                    let now = unix_ns();
                    if let Some(ts) = timestamp(&text) {
                        local.push(now.saturating_sub(ts).max(1));
                        seen += 1;
                    }
                }
                delivered.fetch_add(seen, Ordering::Relaxed);
                last.fetch_max(unix_ns(), Ordering::Relaxed);
                let mut h: std::sync::MutexGuard<'_, Histogram<u64>> =
                    histogram.lock().unwrap_or_else(|p| p.into_inner());
                for v in local {
                    let _ = h.record(v);
                }
                drop(h);
                ws
            }));
        }

        let mut publisher = Publisher::connect(&addr).await?;
        let first_publish = unix_ns();
        let mut tick = tokio::time::interval(args.interval);
        for seq in 0..args.publications {
            tick.tick().await;
            let data = format!(r#"{{"ts":{},"seq":{seq}}}"#, unix_ns());
            publisher.publish(SHARED, &data).await?;
        }
        let deadline = args.interval * args.publications as u32 + Duration::from_secs(30);
        let mut sockets = Vec::new();
        let gather = async {
            for r in receivers {
                if let Ok(ws) = r.await {
                    sockets.push(ws);
                }
            }
        };
        let timed_out = tokio::time::timeout(deadline, gather).await.is_err();

        let n = args.subscribers as u64;
        let total = delivered.load(Ordering::Relaxed);
        let window = last_delivery.load(Ordering::Relaxed).saturating_sub(first_publish) as f64 / 1e9;
        let rate = if window > 0.0 { total as f64 / window } else { 0.0 };
        let p = Percentiles::of(&histogram.lock().unwrap_or_else(|p| p.into_inner()));
        let per_conn = match (before, after) {
            (Some(b), Some(a)) if n > 0 => Some(a.saturating_sub(b) as f64 / n as f64),
            _ => None,
        };
        let missed = n * expected - total;
        if args.json {
            println!(
                "{{\"subscribers\":{n},\"own_channels\":{},\"publications\":{expected},\"deliveries\":{total},\"missed\":{missed},\"deliveries_per_sec\":{rate:.0},\"latency_us\":{},\"connect_secs\":{connect_secs:.2},\"server_bytes_per_connection\":{}}}",
                args.own_channels,
                p.json(),
                json_opt(per_conn, 0),
            );
        } else {
            println!("subscribers          {n}{}", if args.own_channels { " (each also on its own channel)" } else { "" });
            println!("connected in         {connect_secs:.2} s");
            println!("publications         {expected} every {:?}", args.interval);
            println!("deliveries           {total} of {} ({missed} missed{})", n * expected, if timed_out { ", timed out" } else { "" });
            println!("deliveries/s         {rate:.0}");
            println!("latency (pub->recv)  p50 {:.0} us  p99 {:.0} us  p999 {:.0} us  max {:.0} us", p.p50, p.p99, p.p999, p.max);
            if let (Some(b), Some(a), Some(c)) = (before, after, per_conn) {
                println!("server RSS           {} KiB -> {} KiB", b / 1024, a / 1024);
                println!("server RSS / conn    {c:.0} B (idle, subscribed)");
            }
        }
        drop(sockets);
        Ok(if missed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_found() {
        let push = r#"{"push":{"channel":"benchfanout","epoch":"e","pub":{"offset":3,"data":{"ts":1700000000123,"seq":2}}}}"#;
        assert_eq!(timestamp(push), Some(1_700_000_000_123));
        assert_eq!(timestamp(r#"{"id":2,"result":{}}"#), None);
    }
}
