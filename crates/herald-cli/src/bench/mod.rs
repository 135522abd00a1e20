//! `herald bench`: load generators for any WebSocket server.
//!
//! - `echo`: N connections, each with one message in flight; messages/s,
//!   round-trip percentiles, the server's CPU per message.
//! - `handshake`: connect, upgrade, close, as fast as possible;
//!   handshakes/s, latency, the server's CPU per handshake.
//! - `idle`: N idle connections; the server's memory per connection.
//! - `fanout`: for `herald serve` (and servers speaking enough of its
//!   protocol, or Socket.IO's): one publication to N subscribers spread
//!   over threads; deliveries/s, the time until the last subscriber has a
//!   publication, misses, the server's CPU per delivery and memory per
//!   subscribed connection.
//!
//! `echo`, `handshake` and `idle` run on one thread (pin it with
//! `taskset`); their hot loops are raw: the opening handshake is herald-proto's, but each echo
//! connection then writes one pre-built, pre-masked frame from a shared
//! buffer and reads the reply into a buffer of its own, so a message costs
//! the generator one `write`, a `read` or two and no allocation. The
//! server cannot tell: the bytes are the same as any client's. See
//! bench/README.md for how we checked that the generator is not the
//! bottleneck.

mod echo;
mod fanout;
mod handshake;
mod idle;
mod transports;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Subcommand, Debug)]
enum Scenario {
    /// Echo load: every connection keeps one message in flight.
    Echo(echo::Args),
    /// Opening handshake + close handshake, in a loop.
    Handshake(handshake::Args),
    /// Open N idle connections and report the server's RSS per connection.
    Idle(idle::Args),
    /// Push server fan-out: one publication to N subscribers.
    Fanout(fanout::Args),
    /// The same traffic over every transport of the push server.
    Transports(transports::Args),
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    match args.scenario {
        Scenario::Echo(a) => echo::run(a),
        Scenario::Handshake(a) => handshake::run(a),
        Scenario::Idle(a) => idle::run(a),
        Scenario::Fanout(a) => fanout::run(a),
        Scenario::Transports(a) => transports::run(a),
    }
}

/// Resident set size of a process, from /proc/PID/status (Linux).
pub(crate) fn rss_bytes(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("bad VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}

/// CPU time of a process (all its threads), user and system.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTime {
    pub(crate) user: Duration,
    pub(crate) system: Duration,
}

impl CpuTime {
    /// From /proc/PID/stat, fields 14 and 15 (utime, stime), in clock
    /// ticks of USER_HZ, which is 100 on every Linux the kernel's ABI
    /// documents for /proc: 10 ms resolution, so measure for seconds.
    pub(crate) fn of(pid: u32) -> Result<Self, BoxError> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
    }

    /// This process.
    pub(crate) fn own() -> Result<Self, BoxError> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat")?)
    }

    fn parse(stat: &str) -> Result<Self, BoxError> {
        // The command name (field 2) is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').ok_or("bad /proc stat")? + 2..];
        let mut fields = rest.split_whitespace().skip(11); // field 14 is the 12th after ')'
        let mut ticks = || -> Result<Duration, BoxError> {
            let t: u64 = fields.next().ok_or("short /proc stat")?.parse()?;
            Ok(Duration::from_millis(t * 10))
        };
        Ok(Self {
            user: ticks()?,
            system: ticks()?,
        })
    }

    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    pub(crate) fn total(self) -> Duration {
        self.user + self.system
    }
}

/// Parses "10s", "500ms", "2m", "1.5" (seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return Err(format!("unknown unit in {s:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// Where a `ws://` URL points: the address to connect to, and the `Host`
/// header and request target for the handshake. Plain `ws://` only: the
/// generator measures servers, not TLS.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) authority: String,
    pub(crate) path: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, BoxError> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or("the bench URL must be ws:// (the generator does not do TLS)")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()?
            .next()
            .ok_or("the host has no address")?;
        Ok(Self {
            addr,
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// A small non-cryptographic generator (SplitMix64) for handshake keys and
/// masking keys. RFC 6455 wants them unpredictable to the network's
/// intermediaries; a load generator on loopback has none, and a server
/// cannot tell the difference.
#[derive(Debug)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn key16(&mut self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        k[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        k
    }

    pub(crate) fn key4(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_le_bytes()
    }
}

/// Latencies in nanoseconds, 1 ns to 100 s, 3 significant figures.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }

    pub(crate) fn json(&self) -> String {
        format!(
            "{{\"p50\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1}}}",
            self.p50, self.p99, self.p999, self.max
        )
    }
}

/// A progress bar on stderr over `total`, or a hidden one when `hide`
/// (JSON output) or stderr is not a terminal.
pub(crate) fn progress(total: Duration, hide: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if hide || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {elapsed:>3}/{duration} {msg}")
            .expect("valid template"),
    );
    bar
}

/// Updates `bar` every 200 ms with the elapsed time and the rate of
/// `count` (a running total) in `unit`; abort the handle to stop it.
pub(crate) fn spawn_ticker(
    bar: indicatif::ProgressBar,
    load_start: std::time::Instant,
    count: impl Fn() -> u64 + 'static,
    unit: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        let mut last = (std::time::Instant::now(), count());
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = std::time::Instant::now();
            let n = count();
            let rate = (n - last.1) as f64 / (now - last.0).as_secs_f64();
            last = (now, n);
            bar.set_position(load_start.elapsed().as_millis() as u64);
            bar.set_message(format!("{rate:>9.0} {unit}"));
        }
    })
}

/// A number for JSON, or `null`.
pub(crate) fn json_opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn proc_stat() {
        let stat = "42 (a b) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        let cpu = CpuTime::parse(stat).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(300));
    }

    #[test]
    fn targets() {
        let t = Target::parse("ws://127.0.0.1:9001/echo").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:9001", "/echo")
        );
        let t = Target::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(t.path, "/");
        assert!(Target::parse("wss://127.0.0.1/").is_err());
    }
}
