//! `herald bench fanout`: one publication to many subscribers.
//!
//! N connections, spread over M generator threads (each a current-thread
//! runtime), subscribe to one channel. A publisher posts publications
//! carrying their send time (`{"ts":NS,"seq":N,"pad":".."}`) to the
//! server's `POST /api/publish`, either at a fixed rate (`--rate`, open
//! loop) or keeping at most K publications not yet received by every
//! subscriber (`--in-flight K`, closed loop: the saturation throughput
//! without unbounded queues).
//!
//! Reported: deliveries per second; per publication, the time until the
//! LAST subscriber got it (p50/p99), and per delivery the publish-to-receive
//! time; misses (publications not received by every subscriber) and
//! deliveries out of order; with `--server-pid`, the server's CPU per
//! delivery (user and kernel, from /proc/PID/stat) and its RSS per
//! subscribed connection (/proc/PID/status before and after connecting);
//! and the generator's own CPU use, its headroom.
//!
//! Several nodes sharing channels through a broker: `--server` repeated
//! spreads the subscribers round robin over them, the publishers post to
//! the first (or `--publish-to`), and `--server-pid` repeated sums their
//! CPU and RSS (and reports each one's CPU). bench/cluster.py runs it
//! against one node and three behind Redis.
//!
//! Two client protocols: `herald` (docs/protocol.md: `connect`, then
//! `subscribe`), which the fan-out baselines in bench/peers and the Node
//! `ws` peer also speak, and `socketio` (Engine.IO 4 over WebSocket, then a
//! `subscribe` event that joins a room, as bench/fanout_socketio.mjs
//! expects). Receiving is raw: frames are parsed from each connection's
//! own buffer, and only the `ts` and `seq` fields are looked at.

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use herald_proto::{FrameHeader, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

use super::echo::{connect_raw, json_str};
use super::{CpuTime, Percentiles, SplitMix, Target, json_opt, latency_histogram, rss_bytes};
use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Base URL of the server: its WebSocket endpoint and `POST
    /// /api/publish` are both there. Repeatable, for nodes that share
    /// channels through a broker: subscriber i connects to server i mod n
    /// (round robin), and the publishers post to the first (or to
    /// `--publish-to`).
    #[arg(long = "server", default_value = "http://127.0.0.1:8080")]
    servers: Vec<String>,
    /// Base URL the publishers post to [default: the first --server].
    #[arg(long, value_name = "URL")]
    publish_to: Option<String>,
    /// The WebSocket path (default: herald's `/connection/websocket`, or
    /// Socket.IO's `/socket.io/?EIO=4&transport=websocket`).
    #[arg(long)]
    path: Option<String>,
    /// What the subscribers speak.
    #[arg(long, value_enum, default_value = "herald")]
    protocol: Protocol,
    /// The channel (Socket.IO: the room) everyone subscribes to. Its
    /// namespace must let the HTTP API publish: herald's default config
    /// has the "" namespace.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Subscribed connections.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Generator threads; the subscribers are spread over them.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Publications per second (open loop).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Instead of a rate: publish whenever fewer than this many
    /// publications are still on their way to some subscriber (closed
    /// loop, for the saturation throughput).
    #[arg(long)]
    in_flight: Option<usize>,
    /// Publishers, each on a kept-alive HTTP connection of its own that
    /// waits for each answer before the next publication. With more than
    /// one, a server that answers only after its fan-out can still have
    /// several publications queued per subscriber. Order is checked per
    /// publisher.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// How long to wait, after the last publication, for it to arrive.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    drain: Duration,
    /// Size of each publication's `data` (JSON), in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Handshakes in flight at once while connecting (over all threads).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Pause between the last subscription and the RSS reading.
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    settle: Duration,
    /// The server's process id: its CPU per delivery and RSS per
    /// connection. Repeatable (one per node): the figures are summed over
    /// the processes, and each one's CPU is reported too.
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// A shell command run (and waited for) once every subscriber and
    /// publisher is connected, just before the first publication: with
    /// `--exec-delivered`, it brackets the publishing phase for a
    /// profiler (`bench/fanout_callgrind.py` dumps callgrind's counts).
    #[arg(long, value_name = "CMD")]
    exec_subscribed: Option<String>,
    /// A shell command run (and waited for) once every publication has
    /// reached every subscriber (or the drain time is up), just after the
    /// CPU readings, so that its own time is not in them.
    #[arg(long, value_name = "CMD")]
    exec_delivered: Option<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// herald's push protocol: `connect`, `subscribe`, then pushes.
    Herald,
    /// Engine.IO 4 over WebSocket, Socket.IO namespace `/`, then
    /// `42["subscribe",CHANNEL]` answered by `42["subscribed",..]`.
    Socketio,
}

/// At most this many publications in a closed-loop run.
const MAX_PUBLICATIONS: usize = 1 << 20;

/// Time the threads of process `pid` (or this process) spent runnable but
/// waiting for a CPU, from /proc/PID/task/*/schedstat (field 2, ns): on a
/// shared machine, what other work took from the run. `None` where the
/// kernel has no schedstats.
fn runqueue_wait(pid: Option<u32>) -> Option<Duration> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let mut total = 0u64;
    for task in std::fs::read_dir(dir).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// [`runqueue_wait`] summed over `pids`; `None` without any.
fn runqueue_wait_of(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| runqueue_wait(Some(p))).sum()
}

/// Each process's CPU time, in the order of `pids`.
fn cpu_each(pids: &[u32]) -> Result<Vec<CpuTime>, BoxError> {
    pids.iter().map(|&p| CpuTime::of(p)).collect()
}

fn cpu_sum(each: &[CpuTime]) -> CpuTime {
    CpuTime {
        user: each.iter().map(|c| c.user).sum(),
        system: each.iter().map(|c| c.system).sum(),
    }
}

/// RSS summed over `pids`; `None` without any.
fn rss_of(pids: &[u32]) -> Result<Option<u64>, BoxError> {
    if pids.is_empty() {
        return Ok(None);
    }
    pids.iter()
        .map(|&p| rss_bytes(p))
        .sum::<Result<u64, _>>()
        .map(Some)
}

/// The server of thread `t`'s `k`-th subscriber: thread t holds
/// subscribers t, t + threads, t + 2 threads... of all, and subscriber i
/// goes to server i mod n, so every server gets its share whatever the
/// thread count.
fn server_of(t: usize, k: usize, threads: usize, servers: usize) -> usize {
    (t + k * threads) % servers
}

/// The WebSocket target at `path` of the server at base URL `server`
/// (`http://HOST:PORT`).
fn target_of(server: &str, path: &str) -> Result<Target, BoxError> {
    let authority = server
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or("--server must be http://HOST:PORT (the generator does not do TLS)")?;
    Target::parse(&format!("ws://{authority}{path}"))
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The number after `"key":` in `text`, found without a JSON parse (the
/// generator must not be the bottleneck).
fn field(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = &text[at..];
    let end = digits
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

fn timestamp(text: &[u8]) -> Option<u64> {
    field(text, b"\"ts\":")
}

fn sequence(text: &[u8]) -> Option<u64> {
    field(text, b"\"seq\":")
}

/// Which publisher sent it, and its count of that publisher's publications.
fn origin(text: &[u8]) -> Option<(u64, u64)> {
    Some((field(text, b"\"p\":")?, field(text, b"\"n\":")?))
}

/// The publication's `data`: exactly `size` bytes when `size` leaves room
/// for the fields. `seq` counts all publications, `n` those of publisher `p`.
fn data(ts: u64, seq: u64, p: usize, n: u64, size: usize) -> String {
    let mut d = format!(r#"{{"ts":{ts},"seq":{seq},"p":{p},"n":{n},"pad":""#);
    let pad = size.saturating_sub(d.len() + 2);
    d.extend(std::iter::repeat_n('x', pad));
    d.push_str("\"}");
    d
}

/// What every thread and the publisher share: per publication, when it
/// was sent, how many subscribers got it, and when the last one did.
struct Board {
    subscribers: AtomicU32,
    publishers: usize,
    sent: Vec<AtomicU64>,
    got: Vec<AtomicU32>,
    last: Vec<AtomicU64>,
    complete: AtomicU64,
    deliveries: AtomicU64,
    out_of_order: AtomicU64,
    unexpected: AtomicU64,
    lost: AtomicU64,
    first_error: Mutex<Option<String>>,
    progress: Notify,
    /// Set once every thread has connected its share: receiving starts.
    go: AtomicBool,
    stop: AtomicBool,
}

impl Board {
    fn new(capacity: usize, publishers: usize) -> Self {
        Self {
            subscribers: AtomicU32::new(0),
            publishers,
            sent: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            got: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            last: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            complete: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            first_error: Mutex::new(None),
            progress: Notify::new(),
            go: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// Per publication, the time until the last of `n` subscribers had
    /// it; the publications some subscriber never got; the last delivery.
    fn tally(&self, published: usize, n: u32, first_ns: u64) -> Tally {
        let mut t = Tally {
            all_reached: latency_histogram(),
            missed: 0,
            last_ns: first_ns,
        };
        for i in 0..published {
            let got = self.got[i].load(Ordering::Relaxed);
            let last = self.last[i].load(Ordering::Relaxed);
            t.last_ns = t.last_ns.max(last);
            if got >= n {
                let sent = self.sent[i].load(Ordering::Relaxed);
                t.all_reached
                    .saturating_record(last.saturating_sub(sent).max(1));
            } else {
                t.missed += 1;
            }
        }
        t
    }

    fn error(&self, e: &dyn std::fmt::Display) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}

struct Tally {
    all_reached: Histogram<u64>,
    missed: u64,
    last_ns: u64,
}

/// One subscriber's socket past the handshake, its read buffer, and its
/// masking key for the few frames it sends.
struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    key: [u8; 4],
}

/// What a whole frame from the server was.
enum Got {
    Text(std::ops::Range<usize>),
    Other,
}

impl Conn {
    fn frame(&self, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.mask = Some(self.key);
        let mut f = header.encode().as_bytes().to_vec();
        let at = f.len();
        f.extend_from_slice(payload);
        herald_proto::frame::apply_mask(&mut f[at..], self.key, 0);
        f
    }

    async fn send_text(&mut self, text: &str) -> Result<(), BoxError> {
        let f = self.frame(OpCode::Text, text.as_bytes());
        self.tcp.write_all(&f).await?;
        Ok(())
    }

    /// The next whole frame in the buffer, if any; answers pings (and
    /// Engine.IO's "2") on the way. Consumed by `consume`.
    async fn next_buffered(
        &mut self,
        protocol: Protocol,
    ) -> Result<Option<(Got, usize)>, BoxError> {
        let Some((h, head)) = FrameHeader::parse(&self.buf[..self.filled])? else {
            return Ok(None);
        };
        let end = head + h.payload_len as usize;
        if end > self.buf.len() {
            self.buf.resize(end, 0);
        }
        if self.filled < end {
            return Ok(None);
        }
        let got = match h.opcode {
            OpCode::Text if h.fin => {
                if protocol == Protocol::Socketio && &self.buf[head..end] == b"2" {
                    self.send_text("3").await?;
                    Got::Other
                } else {
                    Got::Text(head..end)
                }
            }
            OpCode::Ping => {
                let payload = self.buf[head..end].to_vec();
                let pong = self.frame(OpCode::Pong, &payload);
                self.tcp.write_all(&pong).await?;
                Got::Other
            }
            OpCode::Close => return Err("the server sent a Close frame".into()),
            OpCode::Pong => Got::Other,
            _ => return Err(format!("unexpected frame from the server: {h:?}").into()),
        };
        Ok(Some((got, end)))
    }

    fn consume(&mut self, end: usize) {
        self.buf.copy_within(end..self.filled, 0);
        self.filled -= end;
    }

    async fn fill(&mut self) -> Result<(), BoxError> {
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.tcp.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        self.filled += n;
        Ok(())
    }

    /// Reads text frames until one passes `done`; an `Err` from `done`
    /// ends the handshake.
    async fn wait_for(
        &mut self,
        protocol: Protocol,
        done: impl Fn(&[u8]) -> Result<bool, String>,
    ) -> Result<(), BoxError> {
        loop {
            while let Some((got, end)) = self.next_buffered(protocol).await? {
                let ok = match got {
                    Got::Text(r) => done(&self.buf[r])?,
                    Got::Other => false,
                };
                self.consume(end);
                if ok {
                    return Ok(());
                }
            }
            self.fill().await?;
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A herald reply to command `id`: `Ok(true)` on a result.
fn reply(id: &'static [u8]) -> impl Fn(&[u8]) -> Result<bool, String> {
    move |t| {
        if !contains(t, id) {
            return Ok(false);
        }
        if contains(t, b"\"result\"") {
            Ok(true)
        } else {
            Err(format!("refused: {}", String::from_utf8_lossy(t)))
        }
    }
}

async fn subscribe(
    target: &Target,
    key: [u8; 16],
    mask: [u8; 4],
    protocol: Protocol,
    channel: &str,
) -> Result<Conn, BoxError> {
    let (tcp, leftover) = connect_raw(target, key, false).await?;
    let filled = leftover.len();
    let mut buf = leftover;
    buf.resize(filled.max(2048), 0);
    let mut c = Conn {
        tcp,
        buf,
        filled,
        key: mask,
    };
    match protocol {
        Protocol::Herald => {
            c.send_text(r#"{"id":1,"connect":{}}"#).await?;
            c.wait_for(protocol, reply(b"\"id\":1")).await?;
            c.send_text(&format!(
                r#"{{"id":2,"subscribe":{{"channel":"{channel}"}}}}"#
            ))
            .await?;
            c.wait_for(protocol, reply(b"\"id\":2")).await?;
        }
        Protocol::Socketio => {
            // Engine.IO "open", then Socket.IO CONNECT to "/", then the room.
            c.wait_for(protocol, |t| Ok(t.first() == Some(&b'0')))
                .await?;
            c.send_text("40").await?;
            c.wait_for(protocol, |t| match t {
                [b'4', b'0', ..] => Ok(true),
                [b'4', b'4', ..] => {
                    Err(format!("namespace refused: {}", String::from_utf8_lossy(t)))
                }
                _ => Ok(false),
            })
            .await?;
            c.send_text(&format!(r#"42["subscribe","{channel}"]"#))
                .await?;
            c.wait_for(protocol, |t| Ok(t.starts_with(b"42[\"subscribed\"")))
                .await?;
        }
    }
    // Room for a few pushes at once; the handshake may have grown it.
    if c.buf.len() < 8192 {
        c.buf.resize(8192, 0);
    }
    Ok(c)
}

/// Counts every publication this subscriber gets until the run stops.
async fn receive(
    mut c: Conn,
    protocol: Protocol,
    board: &Board,
    latency: &RefCell<Histogram<u64>>,
) -> Result<(), BoxError> {
    let n = board.subscribers.load(Ordering::Relaxed);
    // Per publisher, the count of the next publication expected.
    let mut next = vec![0u64; board.publishers];
    loop {
        c.fill().await?;
        let now = unix_ns();
        let mut count = 0;
        while let Some((got, end)) = c.next_buffered(protocol).await? {
            if let Got::Text(r) = got {
                let text = &c.buf[r];
                match (sequence(text), timestamp(text), origin(text)) {
                    (Some(seq), Some(ts), Some((p, nth)))
                        if (seq as usize) < board.got.len() && (p as usize) < next.len() =>
                    {
                        let expect = &mut next[p as usize];
                        if nth != *expect {
                            board.out_of_order.fetch_add(1, Ordering::Relaxed);
                        }
                        *expect = nth + 1;
                        let i = seq as usize;
                        board.last[i].fetch_max(now, Ordering::Relaxed);
                        if board.got[i].fetch_add(1, Ordering::AcqRel) + 1 == n {
                            board.complete.fetch_add(1, Ordering::AcqRel);
                            board.progress.notify_one();
                        }
                        latency
                            .borrow_mut()
                            .saturating_record(now.saturating_sub(ts).max(1));
                        count += 1;
                    }
                    _ => {
                        board.unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            c.consume(end);
        }
        board.deliveries.fetch_add(count, Ordering::Relaxed);
    }
}

/// POSTs publications over one kept-alive HTTP/1.1 connection and waits
/// for each answer.
struct Publisher {
    tcp: TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl Publisher {
    async fn connect(addr: std::net::SocketAddr, host: String) -> Result<Self, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Self {
            tcp,
            host,
            buf: Vec::new(),
        })
    }

    async fn publish(&mut self, channel: &str, data: &str) -> Result<(), BoxError> {
        let body = format!(r#"{{"channel":"{channel}","data":{data}}}"#);
        let request = format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.tcp.write_all(request.as_bytes()).await?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(
                        format!("publish failed: {}", head.lines().next().unwrap_or("")).into(),
                    );
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    self.buf.drain(..end + 4 + len);
                    return Ok(());
                }
            }
            let mut chunk = [0u8; 1024];
            let n = self.tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err("the server closed the API connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

enum Pace {
    /// Open loop: a publication every `period`, from `start`.
    Rate {
        start: tokio::time::Instant,
        period: Duration,
    },
    /// Closed loop: publish while fewer than `k` publications are still
    /// on their way to someone, until `until`.
    InFlight { k: u64, until: Instant },
}

/// One publisher's share of the load.
struct Load {
    publisher: Publisher,
    p: usize,
    board: Arc<Board>,
    /// Publications claimed by all publishers (the next `seq`).
    claimed: Arc<AtomicUsize>,
    capacity: usize,
    channel: String,
    size: usize,
    pace: Pace,
}

/// Publishes until the load says stop; `false` if a publication failed
/// (recorded on the board), which ends this publisher. With it, the time
/// each publication took to be answered.
async fn publish_loop(mut load: Load) -> (bool, Histogram<u64>) {
    let mut answered = latency_histogram();
    let ok = publish_each(&mut load, &mut answered).await;
    (ok, answered)
}

async fn publish_each(load: &mut Load, answered: &mut Histogram<u64>) -> bool {
    let board = &load.board;
    let mut tick = match load.pace {
        Pace::Rate { start, period } => Some(tokio::time::interval_at(start, period)),
        Pace::InFlight { .. } => None,
    };
    let mut count = 0u64;
    loop {
        match (&mut tick, &load.pace) {
            (Some(t), _) => {
                t.tick().await;
            }
            (None, Pace::InFlight { k, until }) => {
                if Instant::now() >= *until {
                    return true;
                }
                let wait = board.progress.notified();
                let claimed = load.claimed.load(Ordering::Acquire) as u64;
                if claimed.saturating_sub(board.complete.load(Ordering::Acquire)) >= *k {
                    let _ = tokio::time::timeout(Duration::from_millis(50), wait).await;
                    continue;
                }
            }
            (None, Pace::Rate { .. }) => return true,
        }
        let seq = load.claimed.fetch_add(1, Ordering::AcqRel);
        if seq >= load.capacity {
            return true;
        }
        let ts = unix_ns();
        board.sent[seq].store(ts, Ordering::Relaxed);
        let body = data(ts, seq as u64, load.p, count, load.size);
        let asked = Instant::now();
        if let Err(e) = load.publisher.publish(&load.channel, &body).await {
            board.error(&format!("publication {seq}: {e}"));
            return false;
        }
        answered.saturating_record((asked.elapsed().as_nanos() as u64).max(1));
        count += 1;
    }
}

/// What one generator thread hands back.
struct ThreadReport {
    latency: Histogram<u64>,
}

/// Connects this thread's share, reports how many made it, then receives
/// until the board says stop.
fn generator_thread(
    targets: Arc<Vec<Target>>,
    t: usize,
    args: Arc<ThreadArgs>,
    share: usize,
    board: Arc<Board>,
    ready: std::sync::mpsc::Sender<Result<usize, String>>,
) -> Result<ThreadReport, String> {
    let rt = crate::runtime(1).map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let gate = Rc::new(Semaphore::new(args.concurrency.max(1)));
        let mut rng = SplitMix::seeded();
        let mut connecting = Vec::with_capacity(share);
        for k in 0..share {
            let gate = gate.clone();
            let target = targets[server_of(t, k, args.threads, targets.len())].clone();
            let args = args.clone();
            let (key, mask) = (rng.key16(), rng.key4());
            connecting.push(tokio::task::spawn_local(async move {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                subscribe(&target, key, mask, args.protocol, &args.channel)
                    .await
                    .map_err(|e| e.to_string())
            }));
        }
        let mut conns = Vec::with_capacity(share);
        let mut failed = None;
        for c in connecting {
            match c.await {
                Ok(Ok(c)) => conns.push(c),
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(e) => failed = failed.or(Some(e.to_string())),
            }
        }
        let _ = ready.send(match failed {
            Some(e) => Err(e),
            None => Ok(conns.len()),
        });
        // Everyone connected (the subscriber count is final) before anyone
        // counts.
        while !board.go.load(Ordering::Acquire) && !board.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let latency = Rc::new(RefCell::new(latency_histogram()));
        let mut tasks = Vec::with_capacity(conns.len());
        for c in conns {
            let (board, latency) = (board.clone(), latency.clone());
            let protocol = args.protocol;
            tasks.push(tokio::task::spawn_local(async move {
                if let Err(e) = receive(c, protocol, &board, &latency).await
                    && !board.stop.load(Ordering::Relaxed)
                {
                    board.lost.fetch_add(1, Ordering::Relaxed);
                    board.error(&e);
                }
            }));
        }
        while !board.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let latency = latency.borrow().clone();
        Ok(ThreadReport { latency })
    })
}

struct ThreadArgs {
    threads: usize,
    protocol: Protocol,
    channel: String,
    concurrency: usize,
}

/// Runs `cmd` with `sh -c` and waits for it; a failure ends the run.
fn exec_hook(cmd: &str) -> Result<(), BoxError> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()?;
    if !status.success() {
        return Err(format!("`{cmd}` failed: {status}").into());
    }
    Ok(())
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    if args.subscribers == 0 {
        return Err("--subscribers must be at least 1".into());
    }
    if args.in_flight.is_none() && !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be positive".into());
    }
    if args.channel.contains(['"', '\\']) {
        return Err("the channel name must not need JSON escapes".into());
    }
    let path = args.path.clone().unwrap_or_else(|| match args.protocol {
        Protocol::Herald => herald_server::WEBSOCKET_PATH.to_owned(),
        Protocol::Socketio => "/socket.io/?EIO=4&transport=websocket".to_owned(),
    });
    let targets = args
        .servers
        .iter()
        .map(|s| target_of(s, &path))
        .collect::<Result<Vec<_>, _>>()?;
    let publish_to = args.publish_to.as_ref().unwrap_or(&args.servers[0]);
    let api = target_of(publish_to, "/")?;
    let per_server: Vec<usize> = (0..targets.len())
        .map(|s| {
            (0..args.subscribers)
                .filter(|i| i % targets.len() == s)
                .count()
        })
        .collect();
    let targets = Arc::new(targets);
    let capacity = match args.in_flight {
        Some(_) => MAX_PUBLICATIONS,
        None => {
            ((args.rate * args.duration.as_secs_f64()).ceil() as usize).clamp(1, MAX_PUBLICATIONS)
        }
    };
    let publishers = args.publishers.max(1);
    let board = Arc::new(Board::new(capacity, publishers));
    let threads = args.threads.clamp(1, args.subscribers);
    let thread_args = Arc::new(ThreadArgs {
        threads,
        protocol: args.protocol,
        channel: args.channel.clone(),
        concurrency: args.concurrency.div_ceil(threads),
    });

    let pids = &args.server_pids;
    let rss_before = rss_of(pids)?;
    let connect_start = Instant::now();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let share = args.subscribers / threads + usize::from(t < args.subscribers % threads);
        let (targets, thread_args, board, ready) = (
            targets.clone(),
            thread_args.clone(),
            board.clone(),
            ready_tx.clone(),
        );
        handles.push(
            std::thread::Builder::new()
                .name(format!("fanout-{t}"))
                .spawn(move || generator_thread(targets, t, thread_args, share, board, ready))?,
        );
    }
    drop(ready_tx);
    let mut connected = 0usize;
    let mut connect_error = None;
    for r in ready_rx.iter().take(threads) {
        match r {
            Ok(v) => connected += v,
            Err(e) => {
                connect_error.get_or_insert(e);
            }
        }
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    if let Some(e) = connect_error {
        board.stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = h.join();
        }
        return Err(format!(
            "{} of {} subscribers connected; first error: {e}",
            connected, args.subscribers
        )
        .into());
    }
    board.subscribers.store(connected as u32, Ordering::Relaxed);

    let rt = crate::runtime(1)?;
    let outcome = rt.block_on(async {
        tokio::time::sleep(args.settle).await;
        let rss_after = rss_of(pids)?;
        // The receivers start before the first publication.
        board.go.store(true, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut connections = Vec::with_capacity(publishers);
        for _ in 0..publishers {
            connections.push(Publisher::connect(api.addr, api.authority.clone()).await?);
        }
        if let Some(cmd) = &args.exec_subscribed {
            exec_hook(cmd)?;
        }
        let server0 = cpu_each(pids)?;
        let own0 = CpuTime::own()?;
        let waits0 = (runqueue_wait_of(pids), runqueue_wait(None));
        let t0 = Instant::now();
        let first_ns = unix_ns();
        let claimed = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for (p, publisher) in connections.into_iter().enumerate() {
            tasks.spawn(publish_loop(Load {
                publisher,
                p,
                board: board.clone(),
                claimed: claimed.clone(),
                capacity,
                channel: args.channel.clone(),
                size: args.size,
                // Publisher p starts p/rate s after the first, then every
                // `publishers`/rate s: together, `rate` per second.
                pace: match args.in_flight {
                    None => Pace::Rate {
                        start: tokio::time::Instant::now()
                            + Duration::from_secs_f64(p as f64 / args.rate),
                        period: Duration::from_secs_f64(publishers as f64 / args.rate),
                    },
                    Some(k) => Pace::InFlight {
                        k: k.max(1) as u64,
                        until: t0 + args.duration,
                    },
                },
            }));
        }
        let mut publish_failed = false;
        let mut answered = latency_histogram();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((ok, h)) => {
                    publish_failed |= !ok;
                    let _ = answered.add(&h);
                }
                Err(_) => publish_failed = true,
            }
        }
        let published = claimed.load(Ordering::Acquire).min(capacity);
        let publish_secs = t0.elapsed().as_secs_f64();
        // Drain: until every publication is in everywhere, or time is up.
        let deadline = Instant::now() + args.drain;
        while (board.complete.load(Ordering::Acquire) as usize) < published
            && Instant::now() < deadline
        {
            let wait = board.progress.notified();
            let _ = tokio::time::timeout(Duration::from_millis(20), wait).await;
        }
        let server_each: Vec<CpuTime> = cpu_each(pids)?
            .into_iter()
            .zip(server0)
            .map(|(now, then)| now.since(then))
            .collect();
        let server = (!pids.is_empty()).then(|| cpu_sum(&server_each));
        let own = CpuTime::own()?.since(own0);
        let since =
            |now: Option<Duration>, then: Option<Duration>| Some(now?.saturating_sub(then?));
        let server_wait = since(runqueue_wait_of(pids), waits0.0);
        let own_wait = since(runqueue_wait(None), waits0.1);
        let wall = t0.elapsed().as_secs_f64();
        // After the readings: the hook's own time is not in the window.
        if let Some(cmd) = &args.exec_delivered {
            exec_hook(cmd)?;
        }
        let rss_end = rss_of(pids)?;
        Ok::<_, BoxError>(Outcome {
            rss_after,
            rss_end,
            first_ns,
            published,
            publish_secs,
            wall,
            server,
            server_each,
            own,
            server_wait,
            own_wait,
            publish_failed,
            answered,
        })
    });
    board.stop.store(true, Ordering::Relaxed);
    let mut latency = latency_histogram();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => {
                let _ = latency.add(&r.latency);
            }
            Ok(Err(e)) => board.error(&e),
            Err(_) => board.error(&"a generator thread panicked"),
        }
    }
    let o = outcome?;

    let n = connected as u32;
    let Tally {
        all_reached,
        missed,
        last_ns,
    } = board.tally(o.published, n, o.first_ns);
    let deliveries = board.deliveries.load(Ordering::Relaxed);
    let expected = o.published as u64 * u64::from(n);
    let window = last_ns.saturating_sub(o.first_ns) as f64 / 1e9;
    let rate = if window > 0.0 {
        deliveries as f64 / window
    } else {
        0.0
    };
    let reached = Percentiles::of(&all_reached);
    let answered = Percentiles::of(&o.answered);
    let each = Percentiles::of(&latency);
    let per_conn = match (rss_before, o.rss_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / connected.max(1) as f64),
        _ => None,
    };
    let per_delivery =
        |d: Duration| (deliveries > 0).then(|| d.as_secs_f64() * 1e6 / deliveries as f64);
    let server_util = o.server.map(|c| c.total().as_secs_f64() / o.wall);
    let own_util = o.own.total().as_secs_f64() / o.wall;
    let out_of_order = board.out_of_order.load(Ordering::Relaxed);
    let unexpected = board.unexpected.load(Ordering::Relaxed);
    let lost = board.lost.load(Ordering::Relaxed);
    let first_error = board
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let load = match args.in_flight {
        Some(k) => format!("in flight {k}"),
        None => format!("{} /s", args.rate),
    };

    if args.json {
        let server_cpu = match o.server {
            Some(c) => format!(
                "{{\"util\":{},\"user_s\":{:.3},\"system_s\":{:.3},\"us_per_delivery\":{},\"user_us_per_delivery\":{},\"system_us_per_delivery\":{},\"runqueue_wait_s\":{}}}",
                json_opt(server_util, 4),
                c.user.as_secs_f64(),
                c.system.as_secs_f64(),
                json_opt(per_delivery(c.total()), 4),
                json_opt(per_delivery(c.user), 4),
                json_opt(per_delivery(c.system), 4),
                json_opt(o.server_wait.map(|d| d.as_secs_f64()), 3),
            ),
            None => "null".into(),
        };
        let protocol = match args.protocol {
            Protocol::Herald => "herald",
            Protocol::Socketio => "socketio",
        };
        let list = |items: Vec<String>| format!("[{}]", items.join(","));
        let servers = list(args.servers.iter().map(|s| json_str(Some(s))).collect());
        let per_server = list(per_server.iter().map(usize::to_string).collect());
        let server_cpu_each = list(
            pids.iter()
                .zip(&o.server_each)
                .map(|(pid, c)| {
                    format!(
                        "{{\"pid\":{pid},\"user_s\":{:.3},\"system_s\":{:.3},\"us_per_delivery\":{}}}",
                        c.user.as_secs_f64(),
                        c.system.as_secs_f64(),
                        json_opt(per_delivery(c.total()), 4),
                    )
                })
                .collect(),
        );
        println!(
            "{{\"scenario\":\"fanout\",\"server\":{},\"servers\":{servers},\"publish_to\":{},\"subscribers_per_server\":{per_server},\"protocol\":\"{protocol}\",\"channel\":{},\"subscribers\":{connected},\"threads\":{threads},\"publishers\":{publishers},\"rate\":{},\"in_flight\":{},\"size\":{},\"connect_seconds\":{connect_secs:.3},\"publications\":{},\"publish_seconds\":{:.3},\"seconds\":{window:.3},\"deliveries\":{deliveries},\"expected_deliveries\":{expected},\"deliveries_per_sec\":{rate:.0},\"missed_publications\":{missed},\"out_of_order\":{out_of_order},\"unexpected_frames\":{unexpected},\"connections_lost\":{lost},\"first_error\":{},\"all_reached_us\":{},\"delivery_us\":{},\"publish_answered_us\":{},\"server_rss_bytes\":{{\"before\":{},\"connected\":{},\"end\":{}}},\"server_bytes_per_connection\":{},\"server_cpu\":{server_cpu},\"server_cpu_each\":{server_cpu_each},\"generator_cpu\":{{\"util\":{own_util:.4},\"user_s\":{:.3},\"system_s\":{:.3},\"runqueue_wait_s\":{}}},\"wall_seconds\":{:.3}}}",
            json_str(Some(&args.servers[0])),
            json_str(Some(publish_to)),
            json_str(Some(&args.channel)),
            if args.in_flight.is_some() {
                "null".into()
            } else {
                format!("{}", args.rate)
            },
            args.in_flight.map_or("null".into(), |k| k.to_string()),
            args.size,
            o.published,
            o.publish_secs,
            json_str(first_error.as_deref()),
            reached.json(),
            each.json(),
            answered.json(),
            json_opt(rss_before.map(|v| v as f64), 0),
            json_opt(o.rss_after.map(|v| v as f64), 0),
            json_opt(o.rss_end.map(|v| v as f64), 0),
            json_opt(per_conn, 0),
            o.own.user.as_secs_f64(),
            o.own.system.as_secs_f64(),
            json_opt(o.own_wait.map(|d| d.as_secs_f64()), 3),
            o.wall,
        );
    } else {
        println!(
            "fanout {} ({:?}), {connected} subscribers on {threads} thread(s), {load}, {} B",
            args.servers.join(" "),
            args.protocol,
            args.size
        );
        if args.servers.len() > 1 {
            println!("subscribers/server  {per_server:?}, publishing to {publish_to}");
        }
        println!("connected in        {connect_secs:.2} s");
        println!(
            "publications        {} in {:.2} s",
            o.published, o.publish_secs
        );
        println!(
            "deliveries          {deliveries} of {expected} ({missed} publications missed by someone, {out_of_order} out of order)"
        );
        println!("deliveries/s        {rate:.0}");
        println!(
            "all reached (us)    p50 {:.0}  p99 {:.0}  max {:.0}",
            reached.p50, reached.p99, reached.max
        );
        println!(
            "each delivery (us)  p50 {:.0}  p99 {:.0}  max {:.0}",
            each.p50, each.p99, each.max
        );
        println!(
            "publish answered    p50 {:.0}  p99 {:.0}  max {:.0} (us)",
            answered.p50, answered.p99, answered.max
        );
        if lost > 0 || unexpected > 0 {
            println!("connections lost    {lost}, unexpected frames {unexpected}");
        }
        if let Some(e) = &first_error {
            println!("first error         {e}");
        }
        if let (Some(b), Some(a), Some(c)) = (rss_before, o.rss_after, per_conn) {
            println!(
                "server RSS          {} KiB -> {} KiB, {c:.0} B per subscribed connection",
                b / 1024,
                a / 1024
            );
        }
        if let (Some(c), Some(u)) = (o.server, server_util) {
            println!(
                "server CPU          {:.1} %, {} us per delivery (user {}, kernel {})",
                u * 100.0,
                json_opt(per_delivery(c.total()), 3),
                json_opt(per_delivery(c.user), 3),
                json_opt(per_delivery(c.system), 3),
            );
            if pids.len() > 1 {
                for (pid, c) in pids.iter().zip(&o.server_each) {
                    println!(
                        "  pid {pid:<8}        {} us per delivery",
                        json_opt(per_delivery(c.total()), 3)
                    );
                }
            }
        }
        println!("generator CPU       {:.1} % of one core", own_util * 100.0);
        if let Some(w) = o.server_wait {
            println!(
                "waiting for a CPU   server {:.1} % of the time, generator {}",
                w.as_secs_f64() / o.wall * 100.0,
                o.own_wait.map_or("?".into(), |g| format!(
                    "{:.1} %",
                    g.as_secs_f64() / o.wall * 100.0
                )),
            );
        }
    }
    Ok(
        if missed == 0
            && out_of_order == 0
            && lost == 0
            && !o.publish_failed
            && connected == args.subscribers
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

struct Outcome {
    rss_after: Option<u64>,
    rss_end: Option<u64>,
    first_ns: u64,
    published: usize,
    publish_secs: f64,
    wall: f64,
    server: Option<CpuTime>,
    /// Each `--server-pid`'s share of `server`.
    server_each: Vec<CpuTime>,
    own: CpuTime,
    server_wait: Option<Duration>,
    own_wait: Option<Duration>,
    /// The API refused a publication or went away: publishing stopped.
    publish_failed: bool,
    /// Per publication, the time until the API answered it.
    answered: Histogram<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found() {
        let push = br#"{"push":{"channel":"bench","epoch":"e","pub":{"offset":3,"data":{"ts":1700000000123,"seq":2,"pad":"x"}}}}"#;
        assert_eq!(timestamp(push), Some(1_700_000_000_123));
        assert_eq!(sequence(push), Some(2));
        assert_eq!(timestamp(br#"{"id":2,"result":{}}"#), None);
        let sio = br#"42["pub",{"ts":5,"seq":7,"p":1,"n":3,"pad":""}]"#;
        assert_eq!((timestamp(sio), sequence(sio)), (Some(5), Some(7)));
        assert_eq!(origin(sio), Some((1, 3)));
    }

    #[test]
    fn a_publication_one_subscriber_lacks_is_missed() {
        let board = Board::new(4, 1);
        // Sent at 1000, 2000, 3000 ns; three subscribers.
        for (i, (got, last)) in [(3, 1500), (2, 2900), (3, 3400)].into_iter().enumerate() {
            board.sent[i].store(1000 * (i as u64 + 1), Ordering::Relaxed);
            board.got[i].store(got, Ordering::Relaxed);
            board.last[i].store(last, Ordering::Relaxed);
        }
        let t = board.tally(3, 3, 1000);
        assert_eq!(t.missed, 1);
        assert_eq!(t.last_ns, 3400);
        // Only the complete ones are timed: 500 and 400 ns.
        assert_eq!(t.all_reached.len(), 2);
        assert_eq!(t.all_reached.max(), 500);
        assert_eq!(t.all_reached.min(), 400);
    }

    #[test]
    fn subscribers_go_round_robin_over_the_servers() {
        // 10 subscribers on 3 threads (shares 4, 3, 3), 3 servers.
        let mut per_server = [0; 3];
        for (t, share) in [4, 3, 3].into_iter().enumerate() {
            for k in 0..share {
                per_server[server_of(t, k, 3, 3)] += 1;
            }
        }
        assert_eq!(per_server, [4, 3, 3]);
        assert_eq!(server_of(0, 5, 1, 1), 0);
    }

    #[test]
    fn data_has_the_asked_size() {
        for size in [70, 100, 1000] {
            let d = data(1_700_000_000_000_000_000, 12345, 3, 4115, size);
            assert_eq!(d.len(), size, "{d}");
            assert_eq!(sequence(d.as_bytes()), Some(12345));
            assert_eq!(origin(d.as_bytes()), Some((3, 4115)));
        }
        // Too small for the fields: as small as they allow.
        assert!(data(1, 2, 0, 2, 0).starts_with(r#"{"ts":1,"seq":2,"p":0,"n":2"#));
    }
}
