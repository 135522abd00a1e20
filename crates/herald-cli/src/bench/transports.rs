//! `herald bench transports`: the same traffic over every transport, in
//! one run: polling every 1 s and 5 s, long polling, SSE, HTTP streaming,
//! WebSocket, and WebSocket with permessage-deflate.
//!
//! N clients each subscribe to a channel of their own and to one shared
//! channel. Two scenarios, each for `--duration`:
//!
//! - `personal`: one publication per client per minute, on its own channel
//!   (N/60 publications a second in all);
//! - `broadcast`: one publication a second on the shared channel.
//!
//! Publications carry their send time and a sequence number per channel
//! (`{"t": US, "s": N}`), published through `POST /api/publish`. Every
//! client socket counts the bytes it sends and receives (TCP payload: HTTP
//! heads and bodies, WebSocket frames; not IP or TCP headers) and the HTTP
//! requests it makes. Reported per transport and scenario: bytes on the
//! wire per delivered publication in each direction, publish-to-delivery
//! latency p50/p99, the server's CPU per delivered publication (with
//! `--server-pid`), requests per second, and publications lost (never
//! delivered by the end of the drain) or delivered twice.
//!
//! The server needs a namespace (`--namespace`, default `bench`) with
//! history: polls are answered from it (bench/transports.py starts one).

use std::collections::HashSet;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{CpuTime, Percentiles, latency_histogram};
use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Base URL of the server (`herald serve`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Clients per transport.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// The channels' namespace; it must keep history.
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Transports to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "poll-1s,poll-5s,long-poll,sse,stream,websocket,websocket-deflate"
    )]
    transports: Vec<Kind>,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "personal,broadcast"
    )]
    scenarios: Vec<Scenario>,
    /// How long each scenario publishes.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    duration: Duration,
    /// How long to wait after the last publication (longer than the
    /// slowest poll interval).
    #[arg(long, default_value = "7s", value_parser = super::parse_duration)]
    drain: Duration,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The server's process id: its CPU per delivered publication.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object per run (one per line) instead of text.
    #[arg(long)]
    json: bool,
}

/// A transport, as a client uses it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `POST /connection/poll` every second.
    #[value(name = "poll-1s")]
    Poll1,
    /// `POST /connection/poll` every 5 seconds.
    #[value(name = "poll-5s")]
    Poll5,
    /// `POST /connection/poll` with `wait: 25`, again at once.
    LongPoll,
    /// `GET /connection/sse?connect=` plus `POST /connection/send`.
    Sse,
    /// `POST /connection/stream` (NDJSON) plus `POST /connection/send`.
    Stream,
    /// `/connection/websocket`.
    Websocket,
    /// `/connection/websocket`, offering permessage-deflate.
    WebsocketDeflate,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Poll1 => "polling every 1 s",
            Self::Poll5 => "polling every 5 s",
            Self::LongPoll => "long polling",
            Self::Sse => "SSE",
            Self::Stream => "HTTP streaming",
            Self::Websocket => "WebSocket",
            Self::WebsocketDeflate => "WebSocket + deflate",
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// One publication per client per minute, on its own channel.
    Personal,
    /// One publication per second on the shared channel.
    Broadcast,
}

/// What every client of a run shares.
struct Shared {
    start: Instant,
    namespace: String,
    host: String,
    addr: std::net::SocketAddr,
    up: AtomicU64,
    down: AtomicU64,
    requests: AtomicU64,
    ready: AtomicUsize,
    failed: AtomicUsize,
    stop: AtomicBool,
    stats: Mutex<Stats>,
}

struct Stats {
    latency: Histogram<u64>,
    unique: u64,
    duplicates: u64,
    /// Per client: the sequence numbers seen on (its own, the shared)
    /// channel.
    seen: Vec<[HashSet<u64>; 2]>,
}

impl Shared {
    fn new(
        args: &Args,
        addr: std::net::SocketAddr,
        host: &str,
        start: Instant,
        clients: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            start,
            namespace: args.namespace.clone(),
            host: host.to_owned(),
            addr,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            stats: Mutex::new(Stats {
                latency: latency_histogram(),
                unique: 0,
                duplicates: 0,
                seen: (0..clients)
                    .map(|_| [HashSet::new(), HashSet::new()])
                    .collect(),
            }),
        })
    }

    fn own(&self, client: usize) -> String {
        format!("{}:c{client}", self.namespace)
    }

    fn all(&self) -> String {
        format!("{}:all", self.namespace)
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A publication `data` of `channel` reached `client`.
    fn delivered(&self, client: usize, channel: &str, data: &Value) {
        let (Some(t), Some(s)) = (data["t"].as_u64(), data["s"].as_u64()) else {
            return;
        };
        let which = usize::from(channel != self.own(client));
        let now = self.micros();
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if stats.seen[client][which].insert(s) {
            stats.unique += 1;
            // The histogram is in nanoseconds (`Percentiles::of`).
            let _ = stats
                .latency
                .record(now.saturating_sub(t).max(1).saturating_mul(1000));
        } else {
            stats.duplicates += 1;
        }
    }

    /// A push message (any transport's JSON form): a publication counts.
    fn push(&self, client: usize, message: &Value) {
        let push = &message["push"];
        if let (Some(channel), Some(data)) = (push["channel"].as_str(), push["pub"].get("data")) {
            self.delivered(client, channel, data);
        }
    }
}

/// A TCP stream that counts what crosses it.
struct Counted {
    tcp: TcpStream,
    shared: Arc<Shared>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.shared.down.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.shared.up.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A kept-alive HTTP/1.1 connection over a counted stream.
struct Http {
    io: Counted,
    buf: Vec<u8>,
    /// In a chunked body: bytes of the current chunk still to come.
    chunk_left: usize,
}

impl Http {
    async fn connect(shared: &Arc<Shared>) -> Result<Self, BoxError> {
        let tcp = TcpStream::connect(shared.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Self {
            io: Counted {
                tcp,
                shared: shared.clone(),
            },
            buf: Vec::new(),
            chunk_left: 0,
        })
    }

    async fn fill(&mut self) -> Result<(), BoxError> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.io.read(&mut chunk).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Sends a request; returns the status and whether the body is
    /// chunked (else its length).
    async fn start(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Option<usize>), BoxError> {
        let host = self.io.shared.host.clone();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body.unwrap_or_default());
        self.io.write_all(request.as_bytes()).await?;
        self.io.shared.requests.fetch_add(1, Ordering::Relaxed);
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = if chunked {
            None
        } else {
            Some(
                header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )
        };
        Ok((status, length))
    }

    /// A whole request and its whole body.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Vec<u8>), BoxError> {
        let (status, length) = self.start(method, path, body).await?;
        let mut out = Vec::new();
        match length {
            Some(n) => {
                while self.buf.len() < n {
                    self.fill().await?;
                }
                out.extend(self.buf.drain(..n));
            }
            None => while self.chunk(&mut out).await? {},
        }
        Ok((status, out))
    }

    /// Decodes what is there of a chunked body into `out`, reading once
    /// if nothing is; false at the body's end.
    async fn chunk(&mut self, out: &mut Vec<u8>) -> Result<bool, BoxError> {
        loop {
            if self.chunk_left > 0 {
                if self.buf.is_empty() {
                    self.fill().await?;
                }
                let n = self.chunk_left.min(self.buf.len());
                out.extend(self.buf.drain(..n));
                self.chunk_left -= n;
                if self.chunk_left == 0 {
                    // The CRLF after the chunk.
                    while self.buf.len() < 2 {
                        self.fill().await?;
                    }
                    self.buf.drain(..2);
                }
                return Ok(true);
            }
            let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                self.fill().await?;
                continue;
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&self.buf[..eol]).trim(), 16)?;
            self.buf.drain(..eol + 2);
            if size == 0 {
                while self.buf.len() < 2 {
                    self.fill().await?;
                }
                self.buf.drain(..2);
                return Ok(false);
            }
            self.chunk_left = size;
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs client `i` over `kind` until the run stops.
async fn client(kind: Kind, i: usize, shared: Arc<Shared>) -> Result<(), BoxError> {
    match kind {
        Kind::Poll1 => poll(i, &shared, Some(Duration::from_secs(1))).await,
        Kind::Poll5 => poll(i, &shared, Some(Duration::from_secs(5))).await,
        Kind::LongPoll => poll(i, &shared, None).await,
        Kind::Sse | Kind::Stream => stream(kind, i, &shared).await,
        Kind::Websocket | Kind::WebsocketDeflate => websocket(kind, i, &shared).await,
    }
}

async fn poll(i: usize, shared: &Arc<Shared>, every: Option<Duration>) -> Result<(), BoxError> {
    let mut http = Http::connect(shared).await?;
    let mut cursors = json!({ shared.own(i): {}, shared.all(): {} });
    let mut client = Value::Null;
    let mut first = true;
    // Pollers spread over the interval, as independent browsers would be.
    let phase = every.map(|e| {
        e.mul_f64(i as f64 / shared.stats.lock().map_or(1, |s| s.seen.len().max(1)) as f64)
    });
    let mut next = tokio::time::Instant::now() + phase.unwrap_or_default();
    loop {
        let wait = if every.is_none() && !first { 25 } else { 0 };
        let body = json!({"client": client, "channels": cursors, "wait": wait}).to_string();
        let (status, answer) = http
            .request("POST", "/connection/poll", Some(&body))
            .await?;
        if status != 200 {
            return Err(format!("poll: {status} {}", String::from_utf8_lossy(&answer)).into());
        }
        let answer: Value = serde_json::from_slice(&answer)?;
        for m in answer["messages"].as_array().into_iter().flatten() {
            shared.push(i, m);
        }
        cursors = answer["channels"].clone();
        client = answer["client"].clone();
        if first {
            first = false;
            shared.ready.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(every) = every {
            next += every;
            tokio::time::sleep_until(next).await;
        }
    }
}

async fn stream(kind: Kind, i: usize, shared: &Arc<Shared>) -> Result<(), BoxError> {
    let connect = json!({"id": 1, "connect": {}}).to_string();
    let mut http = Http::connect(shared).await?;
    let (status, _) = if kind == Kind::Sse {
        let path = format!("/connection/sse?connect={}", urlencode(&connect));
        http.start("GET", &path, None).await?
    } else {
        http.start("POST", "/connection/stream", Some(&connect))
            .await?
    };
    if status != 200 {
        return Err(format!("stream: {status}").into());
    }
    let sep: &[u8] = if kind == Kind::Sse { b"\n\n" } else { b"\n" };
    let mut body = Vec::new();
    let mut sender: Option<Http> = None;
    let mut subscribed = 0;
    loop {
        while let Some(at) = body.windows(sep.len()).position(|w| w == sep) {
            let piece: Vec<u8> = body.drain(..at + sep.len()).collect();
            let text = String::from_utf8_lossy(&piece);
            let json = text
                .lines()
                .find_map(|l| {
                    if kind == Kind::Sse {
                        l.strip_prefix("data: ")
                    } else {
                        Some(l)
                    }
                })
                .unwrap_or("")
                .trim();
            if json.is_empty() {
                continue;
            }
            let message: Value = serde_json::from_str(json)?;
            if let Some(session) = message["result"]["session"].as_str() {
                let mut post = Http::connect(shared).await?;
                let commands = json!({"session": session, "commands": [
                    {"id": 2, "subscribe": {"channel": shared.own(i)}},
                    {"id": 3, "subscribe": {"channel": shared.all()}},
                ]})
                .to_string();
                let (status, answer) = post
                    .request("POST", "/connection/send", Some(&commands))
                    .await?;
                if status != 202 {
                    return Err(
                        format!("send: {status} {}", String::from_utf8_lossy(&answer)).into(),
                    );
                }
                sender = Some(post);
            } else if matches!(message["id"].as_u64(), Some(2 | 3)) {
                subscribed += 1;
                if subscribed == 2 {
                    shared.ready.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                shared.push(i, &message);
            }
        }
        if !http.chunk(&mut body).await? {
            drop(sender);
            return Err("the stream ended".into());
        }
    }
}

async fn websocket(kind: Kind, i: usize, shared: &Arc<Shared>) -> Result<(), BoxError> {
    let tcp = TcpStream::connect(shared.addr).await?;
    tcp.set_nodelay(true)?;
    let io = Counted {
        tcp,
        shared: shared.clone(),
    };
    let mut client = herald::Client::new(format!("ws://{}/connection/websocket", shared.host));
    if kind == Kind::WebsocketDeflate {
        client = client.deflate(herald::DeflateConfig::default());
    }
    let (mut ws, _) = client
        .handshake(io, &shared.host, "/connection/websocket")
        .await?;
    shared.requests.fetch_add(1, Ordering::Relaxed);
    for command in [
        json!({"id": 1, "connect": {}}),
        json!({"id": 2, "subscribe": {"channel": shared.own(i)}}),
        json!({"id": 3, "subscribe": {"channel": shared.all()}}),
    ] {
        ws.send(herald::Message::text(command.to_string())).await?;
    }
    let mut subscribed = 0;
    while let Some(message) = ws.recv().await {
        let herald::Message::Text(text) = message? else {
            continue;
        };
        let message: Value = serde_json::from_str(&text)?;
        if matches!(message["id"].as_u64(), Some(2 | 3)) {
            subscribed += 1;
            if subscribed == 2 {
                shared.ready.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            shared.push(i, &message);
        }
    }
    Err("the server closed the WebSocket".into())
}

/// What one transport did in one scenario.
#[derive(Debug, serde::Serialize)]
struct Report {
    transport: &'static str,
    scenario: &'static str,
    clients: usize,
    seconds: f64,
    published: u64,
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    bytes_down_per_message: f64,
    bytes_up_per_message: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    requests_per_second: f64,
    server_cpu_us_per_message: Option<f64>,
    failed_clients: usize,
}

async fn run_one(
    args: &Args,
    kind: Kind,
    scenario: Scenario,
    addr: std::net::SocketAddr,
    host: &str,
) -> Result<Report, BoxError> {
    let n = args.clients;
    let shared = Shared::new(args, addr, host, Instant::now(), n);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let shared = shared.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let ready = shared.ready.load(Ordering::Relaxed);
            let run = client(kind, i, shared.clone());
            tokio::pin!(run);
            // Hold the permit until this client is ready (or fails).
            let result = loop {
                tokio::select! {
                    r = &mut run => break Some(r),
                    () = tokio::time::sleep(Duration::from_millis(5)) => {
                        if shared.ready.load(Ordering::Relaxed) > ready { break None; }
                    }
                }
            };
            drop(permit);
            let result = match result {
                Some(r) => r,
                None => run.await,
            };
            if let Err(e) = result
                && !shared.stop.load(Ordering::Relaxed)
                && shared.failed.fetch_add(1, Ordering::Relaxed) == 0
            {
                eprintln!("client {i}: {e}");
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} clients ready after 120 s",
                shared.ready.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let connection set-up traffic settle, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (up0, down0, req0) = (
        shared.up.load(Ordering::Relaxed),
        shared.down.load(Ordering::Relaxed),
        shared.requests.load(Ordering::Relaxed),
    );
    let cpu0 = args.server_pid.map(CpuTime::of).transpose()?;
    let t0 = Instant::now();
    // The publisher's bytes are not the clients'.
    let publisher_shared = Shared::new(args, addr, host, shared.start, 0);
    let mut publisher = Http::connect(&publisher_shared).await?;
    let (rate, targets): (f64, usize) = match scenario {
        Scenario::Personal => (n as f64 / 60.0, n),
        Scenario::Broadcast => (1.0, 1),
    };
    let mut published = 0u64;
    let mut expected = 0u64;
    let mut seq = vec![0u64; targets];
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut next = tokio::time::Instant::now();
    while t0.elapsed() < args.duration {
        let k = (published as usize) % targets;
        let channel = match scenario {
            Scenario::Personal => shared.own(k),
            Scenario::Broadcast => shared.all(),
        };
        seq[k] += 1;
        let body =
            json!({"channel": channel, "data": {"t": shared.micros(), "s": seq[k]}}).to_string();
        let (status, answer) = publisher
            .request("POST", "/api/publish", Some(&body))
            .await?;
        if status != 200 {
            return Err(format!("publish: {status} {}", String::from_utf8_lossy(&answer)).into());
        }
        published += 1;
        expected += match scenario {
            Scenario::Personal => 1,
            Scenario::Broadcast => n as u64,
        };
        next += interval;
        tokio::time::sleep_until(next).await;
    }
    // Wait for the last ones, up to the drain.
    let drain_end = Instant::now() + args.drain;
    while Instant::now() < drain_end {
        let unique = shared.stats.lock().map_or(0, |s| s.unique);
        if unique >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = match (args.server_pid, cpu0) {
        (Some(pid), Some(c0)) => Some(CpuTime::of(pid)?.since(c0)),
        _ => None,
    };
    let (up, down, requests) = (
        shared.up.load(Ordering::Relaxed) - up0,
        shared.down.load(Ordering::Relaxed) - down0,
        shared.requests.load(Ordering::Relaxed) - req0,
    );
    shared.stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
    let delivered = stats.unique;
    let per = |bytes: u64| {
        if delivered == 0 {
            0.0
        } else {
            bytes as f64 / delivered as f64
        }
    };
    let pct = Percentiles::of(&stats.latency);
    Ok(Report {
        transport: kind.name(),
        scenario: match scenario {
            Scenario::Personal => "personal",
            Scenario::Broadcast => "broadcast",
        },
        clients: n,
        seconds,
        published,
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicated: stats.duplicates,
        bytes_down_per_message: per(down),
        bytes_up_per_message: per(up),
        latency_p50_ms: pct.p50 / 1000.0,
        latency_p99_ms: pct.p99 / 1000.0,
        requests_per_second: requests as f64 / seconds,
        server_cpu_us_per_message: cpu.map(|c| {
            if delivered == 0 {
                0.0
            } else {
                (c.user + c.system).as_secs_f64() * 1e6 / delivered as f64
            }
        }),
        failed_clients: shared.failed.load(Ordering::Relaxed),
    })
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let rest = args
        .server
        .strip_prefix("http://")
        .ok_or("--server must be http://HOST:PORT")?;
    let host = rest.trim_end_matches('/').to_owned();
    let addr: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&host)?
        .next()
        .ok_or("--server: no address")?;
    let rt = crate::runtime(1)?;
    let mut failed = false;
    for &scenario in &args.scenarios {
        for &kind in &args.transports {
            let report = rt.block_on(run_one(&args, kind, scenario, addr, &host))?;
            failed |= report.lost > 0 || report.duplicated > 0 || report.failed_clients > 0;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{:<9} {:<20} delivered {:>7} of {:>7} (lost {}, dup {}), bytes/msg down {:>9.1} up {:>9.1}, p50 {:>8.1} ms p99 {:>8.1} ms, {:>7.1} req/s{}",
                    report.scenario,
                    report.transport,
                    report.delivered,
                    report.expected,
                    report.lost,
                    report.duplicated,
                    report.bytes_down_per_message,
                    report.bytes_up_per_message,
                    report.latency_p50_ms,
                    report.latency_p99_ms,
                    report.requests_per_second,
                    report
                        .server_cpu_us_per_message
                        .map(|c| format!(", server CPU {c:.1} us/msg"))
                        .unwrap_or_default(),
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
