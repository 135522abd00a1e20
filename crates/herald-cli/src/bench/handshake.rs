//! `herald bench handshake`: TCP connect, opening handshake, close
//! handshake, as fast as possible, from `--concurrency` workers.
//!
//! Each cycle: connect, write the upgrade request, read and check the
//! 101 (herald-proto's client checks: status, Upgrade, Connection, the
//! accept key), write a masked Close 1000, then read until the server has
//! answered with its Close and closed TCP: the server closes first, as
//! RFC 6455 7.1.1 asks, so its side keeps the TIME_WAIT and the
//! generator's ports are free again at once.
//!
//! The client's core saturates before most servers do, so the number that
//! compares servers is their CPU time per handshake (`--server-pid`), not
//! handshakes/s.

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use herald_proto::handshake::{ClientHandshake, ExpectResponse, HandshakeLimits};
use herald_proto::{FrameHeader, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CpuTime, Percentiles, SplitMix, Target};
use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Server URL (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// Load before measuring starts (not counted).
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    warmup: Duration,
    /// Instead of a duration: exactly this many handshakes, no warm-up.
    #[arg(long, conflicts_with = "duration")]
    handshakes: Option<u64>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The server's process id: report its CPU time per handshake.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Time allowed for one whole cycle before it counts as an error.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    timeout: Duration,
    /// Print one JSON object instead of text; no progress bar.
    #[arg(long)]
    json: bool,
}

struct Shared {
    measuring: Cell<bool>,
    stop: Cell<bool>,
    done: Cell<u64>,
    cycles: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    /// Connect to 101.
    upgrade: RefCell<Histogram<u64>>,
    /// Connect to the server's close of TCP.
    cycle: RefCell<Histogram<u64>>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let target = Target::parse(&args.url)?;
    let mut rng = SplitMix::seeded();
    let shared = Rc::new(Shared {
        measuring: Cell::new(args.handshakes.is_some()),
        stop: Cell::new(false),
        done: Cell::new(0),
        cycles: Cell::new(0),
        errors: Cell::new(0),
        first_error: RefCell::new(None),
        upgrade: RefCell::new(super::latency_histogram()),
        cycle: RefCell::new(super::latency_histogram()),
    });
    let workers = args.concurrency.max(1);
    let rt = crate::runtime(1)?;
    let local = tokio::task::LocalSet::new();
    let (elapsed, server, generator) = local.block_on(&rt, async {
        let mut tasks = Vec::with_capacity(workers);
        for i in 0..workers {
            // One key per worker: the request and its expected answer are
            // built once; a server does the same work for any key.
            let (request, expect) =
                ClientHandshake::new(target.authority.as_str(), target.path.as_str())?
                    .encode(rng.key16());
            let close = close_frame(rng.key4());
            let quota = match args.handshakes {
                Some(total) => {
                    total / workers as u64 + u64::from((i as u64) < total % workers as u64)
                }
                None => u64::MAX,
            };
            let shared = shared.clone();
            let target = target.clone();
            let timeout = args.timeout;
            tasks.push(tokio::task::spawn_local(async move {
                let mut done = 0;
                while done < quota && !shared.stop.get() {
                    let t0 = Instant::now();
                    let r = tokio::time::timeout(
                        timeout,
                        cycle(&target, &request, &expect, &close, &shared, t0),
                    )
                    .await;
                    let r = r.unwrap_or_else(|_| Err("timed out".into()));
                    match r {
                        Ok(()) => {
                            shared.cycles.set(shared.cycles.get() + 1);
                            if shared.measuring.get() {
                                shared.done.set(shared.done.get() + 1);
                                shared
                                    .cycle
                                    .borrow_mut()
                                    .saturating_record(t0.elapsed().as_nanos() as u64);
                            }
                        }
                        Err(e) if !shared.stop.get() => {
                            shared.errors.set(shared.errors.get() + 1);
                            shared.first_error.borrow_mut().get_or_insert(e.to_string());
                            // Do not spin on a dead server.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(_) => {}
                    }
                    done += 1;
                }
            }));
        }

        let own0 = CpuTime::own()?;
        if args.handshakes.is_some() {
            let server0 = args.server_pid.map(CpuTime::of).transpose()?;
            let start = Instant::now();
            for t in tasks {
                let _ = t.await;
            }
            let elapsed = start.elapsed();
            let server = match (args.server_pid, server0) {
                (Some(pid), Some(s0)) => Some(CpuTime::of(pid)?.since(s0)),
                _ => None,
            };
            return Ok::<_, BoxError>((elapsed, server, CpuTime::own()?.since(own0)));
        }
        let bar = super::progress(args.warmup + args.duration, args.json);
        let load_start = Instant::now();
        let ticker = {
            let shared = shared.clone();
            super::spawn_ticker(
                bar.clone(),
                load_start,
                move || shared.cycles.get(),
                "handshakes/s",
            )
        };
        tokio::time::sleep(args.warmup).await;
        let server0 = args.server_pid.map(CpuTime::of).transpose()?;
        let own0 = CpuTime::own()?;
        let start = Instant::now();
        shared.measuring.set(true);
        tokio::time::sleep(args.duration).await;
        shared.measuring.set(false);
        let elapsed = start.elapsed();
        let server = match (args.server_pid, server0) {
            (Some(pid), Some(s0)) => Some(CpuTime::of(pid)?.since(s0)),
            _ => None,
        };
        let generator = CpuTime::own()?.since(own0);
        shared.stop.set(true);
        ticker.abort();
        for t in &tasks {
            t.abort();
        }
        bar.finish_and_clear();
        Ok((elapsed, server, generator))
    })?;

    let n = shared.done.get();
    let secs = elapsed.as_secs_f64();
    let rate = n as f64 / secs;
    let upgrade = Percentiles::of(&shared.upgrade.borrow());
    let whole = Percentiles::of(&shared.cycle.borrow());
    let errors = shared.errors.get();
    let server_util = server.map(|c| c.total().as_secs_f64() / secs);
    let server_us = server
        .filter(|_| n > 0)
        .map(|c| c.total().as_secs_f64() * 1e6 / n as f64);
    let generator_util = generator.total().as_secs_f64() / secs;
    if args.json {
        let server_cpu = match server {
            Some(c) => format!(
                "{{\"util\":{},\"user_s\":{:.3},\"system_s\":{:.3},\"us_per_handshake\":{}}}",
                super::json_opt(server_util, 4),
                c.user.as_secs_f64(),
                c.system.as_secs_f64(),
                super::json_opt(server_us, 3),
            ),
            None => "null".into(),
        };
        println!(
            "{{\"scenario\":\"handshake\",\"url\":\"{}\",\"concurrency\":{workers},\"seconds\":{secs:.3},\"handshakes\":{n},\"handshakes_per_sec\":{rate:.1},\"upgrade_us\":{},\"cycle_us\":{},\"errors\":{errors},\"first_error\":{},\"server_cpu\":{server_cpu},\"generator_cpu_util\":{generator_util:.4}}}",
            args.url,
            upgrade.json(),
            whole.json(),
            super::echo::json_str(shared.first_error.borrow().as_deref()),
        );
    } else {
        println!(
            "handshake + close {} with {workers} in flight, {secs:.1} s",
            args.url
        );
        println!("handshakes/s      {rate:.0}");
        println!(
            "upgrade (us)      p50 {:.1}  p99 {:.1}  p999 {:.1}  max {:.1}",
            upgrade.p50, upgrade.p99, upgrade.p999, upgrade.max
        );
        println!(
            "whole cycle (us)  p50 {:.1}  p99 {:.1}  p999 {:.1}  max {:.1}",
            whole.p50, whole.p99, whole.p999, whole.max
        );
        println!("errors            {errors}");
        if let Some(e) = shared.first_error.borrow().as_deref() {
            println!("first error       {e}");
        }
        if let (Some(c), Some(u)) = (server, server_util) {
            println!(
                "server CPU        {:.1} % (user {:.1} %, system {:.1} %), {} us per handshake",
                u * 100.0,
                c.user.as_secs_f64() / secs * 100.0,
                c.system.as_secs_f64() / secs * 100.0,
                super::json_opt(server_us, 1),
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

/// A masked Close frame with code 1000 and no reason.
fn close_frame(key: [u8; 4]) -> Vec<u8> {
    let mut h = FrameHeader::new(OpCode::Close, 2);
    h.mask = Some(key);
    let mut frame = h.encode().as_bytes().to_vec();
    let start = frame.len();
    frame.extend_from_slice(&1000u16.to_be_bytes());
    herald_proto::frame::apply_mask(&mut frame[start..], key, 0);
    frame
}

async fn cycle(
    target: &Target,
    request: &[u8],
    expect: &ExpectResponse,
    close: &[u8],
    shared: &Shared,
    t0: Instant,
) -> Result<(), BoxError> {
    let mut tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(request).await?;
    let limits = HandshakeLimits::default();
    let mut buf = [0u8; 1024];
    let mut filled = 0;
    let rest = loop {
        if let Some((_, len)) = expect.parse_response(&buf[..filled], &limits)? {
            break len;
        }
        if filled == buf.len() {
            return Err("the server's answer is over 1 KiB".into());
        }
        let n = tcp.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err("the server closed the connection during the handshake".into());
        }
        filled += n;
    };
    if shared.measuring.get() {
        shared
            .upgrade
            .borrow_mut()
            .saturating_record(t0.elapsed().as_nanos() as u64);
    }
    buf.copy_within(rest..filled, 0);
    filled -= rest;
    tcp.write_all(close).await?;
    // The server's Close, then its end of TCP.
    let mut got_close = false;
    loop {
        if !got_close
            && let Some((h, len)) = FrameHeader::parse(&buf[..filled])?
            && filled >= len + h.payload_len as usize
        {
            if h.opcode != OpCode::Close {
                return Err(format!("expected a Close frame, got {:?}", h.opcode).into());
            }
            got_close = true;
        }
        if filled == buf.len() {
            filled = 0;
        }
        let n = tcp.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    if !got_close {
        return Err("the server closed TCP without a Close frame".into());
    }
    Ok(())
}
