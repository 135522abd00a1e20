//! `herald bench echo`: every connection keeps one message in flight
//! (uWebSockets' load_test pattern): send, wait for the echo, send again.
//!
//! Two engines:
//!
//! - `raw` (the default without `--deflate`): after herald-proto's opening
//!   handshake, each connection writes one pre-built frame, masked once
//!   with a random key, straight from a buffer shared by all connections,
//!   and reads the echo into a buffer of its own: no allocation and no
//!   copy per message, one `write` and usually one `read`.
//! - `client` (with `--deflate`, or on request): herald's own `Client`,
//!   a fresh masking key and a copy per message, inflating the replies.
//!
//! With `--server-pid`, the server's CPU time over the measured window is
//! read from /proc: if the server is not near 100 % of its core, the
//! generator (or something else) was the bottleneck, and messages/s says
//! little about the server.

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use herald::{Client, Config, DeflateConfig, Message, ProtocolConfig, Utf8Bytes};
use herald_proto::handshake::{ClientHandshake, HandshakeLimits};
use herald_proto::{FrameHeader, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{CpuTime, Percentiles, SplitMix, Target};
use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Server URL (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Connections, each with one message in flight.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// How long to measure ("10s", "500ms", "1m"), after the warm-up.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// Load before measuring starts (not counted).
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    warmup: Duration,
    /// Instead of a duration: echo exactly this many messages in all
    /// (spread evenly over the connections), with no warm-up. For
    /// counting the server's instructions or syscalls per message.
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Text frames (valid UTF-8, mostly ASCII) instead of binary.
    #[arg(long)]
    text: bool,
    /// Offer permessage-deflate (implies the `client` engine).
    #[arg(long)]
    deflate: bool,
    /// `raw` (pre-built frames, the default) or `client` (herald::Client).
    #[arg(long, value_enum)]
    engine: Option<Engine>,
    /// The server's process id: report its CPU time per message.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// The server is a raw TCP echo (bench/peers tcp-echo): no opening
    /// handshake, and frames come back exactly as sent, masked. For
    /// measuring the generator's own ceiling.
    #[arg(long, hide = true)]
    tcp: bool,
    /// Print one JSON object instead of text; no progress bar.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Raw,
    Client,
}

/// Counters shared by the connection tasks (one thread: `Cell`s).
struct Shared {
    /// Messages are counted and timed only while this is set.
    measuring: Cell<bool>,
    stop: Cell<bool>,
    messages: Cell<u64>,
    /// Every echo, warm-up included: for the progress bar.
    echoed: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    rtt: RefCell<Histogram<u64>>,
}

impl Shared {
    #[inline]
    fn echoed(&self, rtt: Duration) {
        self.echoed.set(self.echoed.get() + 1);
        if self.measuring.get() {
            self.messages.set(self.messages.get() + 1);
            self.rtt
                .borrow_mut()
                .saturating_record(rtt.as_nanos() as u64);
        }
    }

    fn error(&self, e: &dyn std::fmt::Display) {
        self.errors.set(self.errors.get() + 1);
        let mut first = self.first_error.borrow_mut();
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}

/// What a correct echo looks like.
struct Expect {
    opcode: OpCode,
    size: usize,
    /// Only with `--tcp`: the frame comes back masked, as sent.
    masked: bool,
    /// The payload as it should come back, to spot-check its ends.
    payload: Bytes,
}

/// The payload: random bytes, or text that is valid UTF-8 and mostly
/// ASCII with some 2- and 3-byte characters (a validator's fast path and
/// its slow one), cut at a character boundary and padded with ASCII.
fn payload(size: usize, text: bool, rng: &mut SplitMix) -> Bytes {
    if !text {
        let mut v = Vec::with_capacity(size + 8);
        while v.len() < size {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        v.truncate(size);
        return v.into();
    }
    const PATTERN: &str =
        "{\"user\":\"zoë\",\"text\":\"héllo wörld, the quick brown fox ✓\",\"seq\":12345} ";
    let mut s = String::with_capacity(size + PATTERN.len());
    while s.len() < size {
        s.push_str(PATTERN);
    }
    let mut cut = size;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    while s.len() < size {
        s.push(' ');
    }
    Bytes::from(s)
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let engine = match (args.engine, args.deflate) {
        (Some(Engine::Raw), true) => return Err("--deflate needs --engine client".into()),
        (Some(e), _) => e,
        (None, true) => Engine::Client,
        (None, false) => Engine::Raw,
    };
    if args.tcp && engine != Engine::Raw {
        return Err("--tcp needs the raw engine".into());
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let target = Target::parse(&args.url)?;
    let mut rng = SplitMix::seeded();
    let body = payload(args.size, args.text, &mut rng);
    let opcode = if args.text {
        OpCode::Text
    } else {
        OpCode::Binary
    };

    // One masked frame for every raw connection.
    let mut header = FrameHeader::new(opcode, args.size as u64);
    let key = rng.key4();
    header.mask = Some(key);
    let mut frame = header.encode().as_bytes().to_vec();
    let start_payload = frame.len();
    frame.extend_from_slice(&body);
    herald_proto::frame::apply_mask(&mut frame[start_payload..], key, 0);
    let frame: Rc<[u8]> = frame.into();
    let expect = Rc::new(Expect {
        opcode,
        size: args.size,
        masked: args.tcp,
        payload: if args.tcp {
            Bytes::copy_from_slice(&frame[start_payload..])
        } else {
            body.clone()
        },
    });
    let message = if args.text {
        Message::Text(Utf8Bytes::try_from_bytes(body.clone()).map_err(|_| "payload is not UTF-8")?)
    } else {
        Message::Binary(body.clone())
    };

    let shared = Rc::new(Shared {
        measuring: Cell::new(args.messages.is_some()),
        stop: Cell::new(false),
        messages: Cell::new(0),
        echoed: Cell::new(0),
        errors: Cell::new(0),
        first_error: RefCell::new(None),
        rtt: RefCell::new(super::latency_histogram()),
    });

    let rt = crate::runtime(1)?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&rt, async {
        // ----- connect everything first --------------------------------
        let connect_start = Instant::now();
        let gate = Rc::new(Semaphore::new(args.connect_concurrency.max(1)));
        let mut connecting = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let gate = gate.clone();
            let target = target.clone();
            let key = rng.key16();
            let deflate = args.deflate;
            let tcp = args.tcp;
            connecting.push(tokio::task::spawn_local(async move {
                let _permit = gate.acquire().await?;
                match engine {
                    Engine::Raw => connect_raw(&target, key, tcp)
                        .await
                        .map(|(t, rest)| Conn::Raw(t, rest)),
                    Engine::Client => connect_client(&target, deflate).await.map(Conn::Client),
                }
            }));
        }
        let mut conns = Vec::with_capacity(args.connections);
        for c in connecting {
            match c.await? {
                Ok(c) => conns.push(c),
                Err(e) => shared.error(&e),
            }
        }
        let connect_time = connect_start.elapsed();
        if conns.is_empty() {
            return Err::<Report, BoxError>(
                format!(
                    "no connection succeeded: {}",
                    shared.first_error.borrow().as_deref().unwrap_or("?")
                )
                .into(),
            );
        }

        // ----- load ----------------------------------------------------
        let n = conns.len() as u64;
        let mut tasks = Vec::with_capacity(conns.len());
        for (i, conn) in conns.into_iter().enumerate() {
            let quota = match args.messages {
                Some(total) => total / n + u64::from((i as u64) < total % n),
                None => u64::MAX,
            };
            let shared = shared.clone();
            let frame = frame.clone();
            let expect = expect.clone();
            let message = message.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let r = match conn {
                    Conn::Raw(tcp, leftover) => {
                        echo_raw(tcp, leftover, &frame, &expect, &shared, quota).await
                    }
                    Conn::Client(ws) => echo_client(ws, message, &expect, &shared, quota).await,
                };
                if let Err(e) = r
                    && !shared.stop.get()
                {
                    shared.error(&e);
                }
            }));
        }

        let total = args.warmup + args.duration;
        let bar = super::progress(
            if args.messages.is_some() {
                Duration::ZERO
            } else {
                total
            },
            args.json || args.messages.is_some(),
        );
        let load_start = Instant::now();
        let window = if let Some(total_messages) = args.messages {
            // Fixed count: measure from the first message to the last.
            let cpu0 = cpu_now(args.server_pid)?;
            for t in tasks {
                let _ = t.await;
            }
            let elapsed = load_start.elapsed();
            let _ = total_messages;
            Window {
                elapsed,
                server: cpu_delta(args.server_pid, cpu0)?,
                generator: CpuTime::own()?.since(cpu0.1),
            }
        } else {
            // Warm-up, then the measured window.
            let ticker = {
                let shared = shared.clone();
                super::spawn_ticker(
                    bar.clone(),
                    load_start,
                    move || shared.echoed.get(),
                    "msg/s",
                )
            };
            tokio::time::sleep(args.warmup).await;
            let cpu0 = cpu_now(args.server_pid)?;
            let start = Instant::now();
            shared.measuring.set(true);
            tokio::time::sleep(args.duration).await;
            shared.measuring.set(false);
            let elapsed = start.elapsed();
            let server = cpu_delta(args.server_pid, cpu0)?;
            let generator = CpuTime::own()?.since(cpu0.1);
            shared.stop.set(true);
            ticker.abort();
            for t in &tasks {
                t.abort();
            }
            Window {
                elapsed,
                server,
                generator,
            }
        };
        bar.finish_and_clear();
        Ok(Report {
            connected: n,
            connect_time,
            window,
        })
    })?;

    let messages = shared.messages.get();
    let rtt = Percentiles::of(&shared.rtt.borrow());
    let secs = report.window.elapsed.as_secs_f64();
    let rate = messages as f64 / secs;
    let bytes_per_sec = rate * args.size as f64;
    let errors = shared.errors.get();
    let server_util = report.window.server.map(|c| c.total().as_secs_f64() / secs);
    let server_us_per_msg = report
        .window
        .server
        .filter(|_| messages > 0)
        .map(|c| c.total().as_secs_f64() * 1e6 / messages as f64);
    let generator_util = report.window.generator.total().as_secs_f64() / secs;
    let kind = if args.text { "text" } else { "binary" };
    let engine_name = match engine {
        Engine::Raw => "raw",
        Engine::Client => "client",
    };

    if args.json {
        let server_cpu = match report.window.server {
            Some(c) => format!(
                "{{\"util\":{},\"user_s\":{:.3},\"system_s\":{:.3},\"us_per_message\":{}}}",
                super::json_opt(server_util, 4),
                c.user.as_secs_f64(),
                c.system.as_secs_f64(),
                super::json_opt(server_us_per_msg, 3),
            ),
            None => "null".into(),
        };
        println!(
            "{{\"scenario\":\"echo\",\"url\":\"{}\",\"engine\":\"{engine_name}\",\"connections\":{},\"size\":{},\"kind\":\"{kind}\",\"deflate\":{},\"seconds\":{secs:.3},\"messages\":{messages},\"messages_per_sec\":{rate:.1},\"bytes_per_sec\":{bytes_per_sec:.0},\"rtt_us\":{},\"errors\":{errors},\"first_error\":{},\"connect_seconds\":{:.3},\"server_cpu\":{server_cpu},\"generator_cpu_util\":{generator_util:.4}}}",
            args.url,
            report.connected,
            args.size,
            args.deflate,
            rtt.json(),
            json_str(shared.first_error.borrow().as_deref()),
            report.connect_time.as_secs_f64(),
        );
    } else {
        println!(
            "echo {} x {} B {kind}{} over {} connections ({engine_name} engine), {secs:.1} s",
            args.url,
            args.size,
            if args.deflate { ", deflate" } else { "" },
            report.connected,
        );
        println!("messages/s        {rate:.0}");
        println!("payload           {:.1} MB/s each way", bytes_per_sec / 1e6);
        println!(
            "RTT (us)          p50 {:.1}  p99 {:.1}  p999 {:.1}  max {:.1}",
            rtt.p50, rtt.p99, rtt.p999, rtt.max
        );
        println!("errors            {errors}");
        if let Some(e) = shared.first_error.borrow().as_deref() {
            println!("first error       {e}");
        }
        if let (Some(c), Some(u)) = (report.window.server, server_util) {
            println!(
                "server CPU        {:.1} % (user {:.1} %, system {:.1} %), {} us per message",
                u * 100.0,
                c.user.as_secs_f64() / secs * 100.0,
                c.system.as_secs_f64() / secs * 100.0,
                super::json_opt(server_us_per_msg, 2),
            );
        }
        println!("generator CPU     {:.1} %", generator_util * 100.0);
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

struct Report {
    connected: u64,
    connect_time: Duration,
    window: Window,
}

struct Window {
    elapsed: Duration,
    server: Option<CpuTime>,
    generator: CpuTime,
}

fn cpu_now(server: Option<u32>) -> Result<(Option<CpuTime>, CpuTime), BoxError> {
    Ok((server.map(CpuTime::of).transpose()?, CpuTime::own()?))
}

fn cpu_delta(
    server: Option<u32>,
    before: (Option<CpuTime>, CpuTime),
) -> Result<Option<CpuTime>, BoxError> {
    Ok(match (server, before.0) {
        (Some(pid), Some(b)) => Some(CpuTime::of(pid)?.since(b)),
        _ => None,
    })
}

pub(super) fn json_str(s: Option<&str>) -> String {
    match s {
        None => "null".into(),
        Some(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

enum Conn {
    /// A TCP stream past the handshake, and any bytes read past it.
    Raw(TcpStream, Vec<u8>),
    Client(Box<herald::WebSocket<herald::MaybeTlsStream>>),
}

/// TCP connect and herald-proto's opening handshake, no extensions.
pub(super) async fn connect_raw(
    target: &Target,
    key: [u8; 16],
    tcp_only: bool,
) -> Result<(TcpStream, Vec<u8>), BoxError> {
    let mut tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    if tcp_only {
        return Ok((tcp, Vec::new()));
    }
    let (request, expect) =
        ClientHandshake::new(target.authority.as_str(), target.path.as_str())?.encode(key);
    tcp.write_all(&request).await?;
    let limits = HandshakeLimits::default();
    let mut buf = Vec::with_capacity(512);
    loop {
        if let Some((_, len)) = expect.parse_response(&buf, &limits)? {
            buf.drain(..len);
            return Ok((tcp, buf));
        }
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err("the server closed the connection during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connect_client(
    target: &Target,
    deflate: bool,
) -> Result<Box<herald::WebSocket<herald::MaybeTlsStream>>, BoxError> {
    // No keepalive pings of our own, and room for any payload size.
    let protocol = ProtocolConfig::default().ping_interval(None);
    let config = Config::default()
        .protocol(protocol)
        .deflate(deflate.then(DeflateConfig::default));
    let url = format!("ws://{}{}", target.authority, target.path);
    let (ws, response) = Client::new(url).config(config).connect().await?;
    if deflate && response.deflate().is_none() {
        return Err("the server did not accept permessage-deflate".into());
    }
    Ok(Box::new(ws))
}

/// The raw echo loop: write the shared frame, read until the echo is in.
async fn echo_raw(
    mut tcp: TcpStream,
    leftover: Vec<u8>,
    frame: &[u8],
    expect: &Expect,
    shared: &Shared,
    quota: u64,
) -> Result<(), BoxError> {
    let mut buf = leftover;
    let mut filled = buf.len();
    buf.resize(frame.len().max(4096) + 64, 0);
    let mut done = 0;
    while done < quota && !shared.stop.get() {
        let t0 = Instant::now();
        tcp.write_all(frame).await?;
        loop {
            if let Some((h, head_len)) = FrameHeader::parse(&buf[..filled])? {
                let end = head_len + h.payload_len as usize;
                if end > buf.len() {
                    buf.resize(end, 0);
                }
                if filled >= end {
                    let data = check_frame(&h, &buf[head_len..end], expect)?;
                    buf.copy_within(end..filled, 0);
                    filled -= end;
                    if data {
                        break;
                    }
                    continue;
                }
            }
            let n = tcp.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            filled += n;
        }
        shared.echoed(t0.elapsed());
        done += 1;
    }
    Ok(())
}

/// Whether a whole frame from the server is the echo we wait for (`true`),
/// a control frame to skip (`false`), or wrong (an error).
fn check_frame(h: &FrameHeader, payload: &[u8], expect: &Expect) -> Result<bool, BoxError> {
    match h.opcode {
        OpCode::Ping | OpCode::Pong => return Ok(false),
        OpCode::Close => return Err("the server sent a Close frame".into()),
        _ => {}
    }
    if h.opcode != expect.opcode || !h.fin || h.rsv1 || h.mask.is_some() != expect.masked {
        return Err(format!("unexpected frame from the server: {h:?}").into());
    }
    if payload.len() != expect.size {
        return Err(format!("echo of {} bytes, expected {}", payload.len(), expect.size).into());
    }
    // Spot-check both ends: a full compare would cost the generator more
    // than the server spends on large messages.
    let edge = expect.size.min(64);
    if payload[..edge] != expect.payload[..edge]
        || payload[expect.size - edge..] != expect.payload[expect.size - edge..]
    {
        return Err("the echo differs from the message sent".into());
    }
    Ok(true)
}

/// The echo loop over herald's own client.
async fn echo_client(
    mut ws: Box<herald::WebSocket<herald::MaybeTlsStream>>,
    message: Message,
    expect: &Expect,
    shared: &Shared,
    quota: u64,
) -> Result<(), BoxError> {
    let mut done = 0;
    while done < quota && !shared.stop.get() {
        let t0 = Instant::now();
        ws.send(message.clone()).await?;
        match ws.recv().await {
            Some(Ok(m)) => {
                let ok = match (&m, expect.opcode) {
                    (Message::Text(t), OpCode::Text) => t.as_bytes() == &expect.payload[..],
                    (Message::Binary(b), OpCode::Binary) => b == &expect.payload,
                    _ => false,
                };
                if !ok {
                    return Err("the echo differs from the message sent".into());
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the server closed the connection".into()),
        }
        shared.echoed(t0.elapsed());
        done += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_payloads_are_utf8_of_the_exact_size() {
        let mut rng = SplitMix(7);
        for size in [0, 1, 20, 21, 22, 23, 1024, 16 << 10] {
            let p = payload(size, true, &mut rng);
            assert_eq!(p.len(), size);
            assert!(std::str::from_utf8(&p).is_ok());
            assert_eq!(payload(size, false, &mut rng).len(), size);
        }
    }
}
