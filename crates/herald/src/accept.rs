//! What a server loop does when `accept` fails: [`AcceptBackoff`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// The first wait after running out of resources.
const FIRST_DELAY: Duration = Duration::from_millis(10);
/// The longest wait: a freed descriptor is used within this.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one log line per this interval.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What to do after a failed `accept`; see [`AcceptBackoff::on_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcceptAction {
    /// The failure was one connection's: accept again now.
    Retry,
    /// The process is out of descriptors or memory: serve the connections
    /// it has, and accept again after this long.
    Wait(Duration),
    /// The listener itself is unusable (closed, not a socket).
    Fatal,
}

/// Called with every failed `accept`, to count it (a metric, say).
type OnError = Arc<dyn Fn(&io::Error) + Send + Sync>;

/// A listener loop's memory of its `accept` failures: how long to wait
/// next, and when it last logged.
///
/// Most `accept` errors are about one connection (it was reset before it
/// was taken, a signal interrupted the call) and the next call succeeds.
/// Running out of descriptors or kernel memory (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`) is about the whole process: calling again at once
/// fails again and spins, while giving up would drop every connection the
/// server still holds. [`AcceptBackoff`] says which is which, waits longer
/// each time the process stays out of resources, logs at most once a
/// second, and counts every failure; the listener keeps its queue, so the
/// connections that wait there are taken when descriptors free up.
///
/// ```text
/// accept() ── ok ───────────────> reset()      (next failure waits 10 ms)
///    └─── err ─> on_error(&e) ──> Retry        (one connection's problem)
///                             ├─> Wait(delay)  (EMFILE...: 10 ms .. 1 s)
///                             └─> Fatal        (the listener itself is bad)
/// ```
///
/// [`accept_tcp`] is the tokio loop's use of it; the event loop
/// (`event_loop`) arms the delay as a timer instead of sleeping.
#[derive(Clone)]
pub struct AcceptBackoff {
    delay: Duration,
    last_log: Option<Instant>,
    /// Failures since the last log line.
    unlogged: u64,
    on_error: Option<OnError>,
}

impl fmt::Debug for AcceptBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptBackoff")
            .field("delay", &self.delay)
            .field("last_log", &self.last_log)
            .field("unlogged", &self.unlogged)
            .finish_non_exhaustive()
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl AcceptBackoff {
    /// A backoff that has seen no failure.
    pub fn new() -> Self {
        Self {
            delay: FIRST_DELAY,
            last_log: None,
            unlogged: 0,
            on_error: None,
        }
    }

    /// Calls `f` with every failed `accept` (including the ones retried at
    /// once), to count them.
    pub fn on_error_hook(mut self, f: impl Fn(&io::Error) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(f));
        self
    }

    /// An `accept` succeeded: the next shortage starts with a short wait.
    pub fn reset(&mut self) {
        self.delay = FIRST_DELAY;
    }

    /// Classifies a failed `accept` at `now`, logs it (at most once a
    /// second, with the number of failures in between) and says what to do.
    pub fn on_error(&mut self, error: &io::Error, now: Instant) -> AcceptAction {
        if let Some(f) = &self.on_error {
            f(error);
        }
        let action = match classify(error) {
            Class::Connection => AcceptAction::Retry,
            Class::Resources => {
                let delay = self.delay;
                self.delay = (self.delay * 2).min(MAX_DELAY);
                AcceptAction::Wait(delay)
            }
            Class::Listener => AcceptAction::Fatal,
        };
        self.unlogged += 1;
        if action == AcceptAction::Fatal || self.last_log.is_none_or(|t| now - t >= LOG_EVERY) {
            self.last_log = Some(now);
            let n = std::mem::take(&mut self.unlogged);
            match action {
                AcceptAction::Retry => tracing::debug!("accept: {error} ({n} since last logged)"),
                AcceptAction::Wait(d) => tracing::warn!(
                    "accept: {error} ({n} failures since last logged); \
                     serving open connections, accepting again in {d:?}"
                ),
                AcceptAction::Fatal => tracing::error!("accept: {error}; listener unusable"),
            }
        }
        action
    }
}

enum Class {
    Connection,
    Resources,
    Listener,
}

fn classify(error: &io::Error) -> Class {
    #[cfg(unix)]
    if let Some(code) = error.raw_os_error() {
        return match code {
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => Class::Resources,
            libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EFAULT => Class::Listener,
            // accept(2), Linux: pending network errors of the new
            // connection (ECONNABORTED, EPROTO, ENETDOWN, EOPNOTSUPP...)
            // "should be treated like EAGAIN by retrying"; EPERM is a
            // firewall refusing that one connection.
            _ => Class::Connection,
        };
    }
    match error.kind() {
        io::ErrorKind::OutOfMemory => Class::Resources,
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported => Class::Listener,
        _ => Class::Connection,
    }
}

/// Accepts the next connection on `listener`, riding out failures as
/// `backoff` says: a server's accept loop never ends because the process
/// ran out of descriptors. Returns an error only for a listener that is
/// unusable.
///
/// Cancel safe: a connection is only taken when this returns it.
pub async fn accept_tcp(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
) -> io::Result<(TcpStream, SocketAddr)> {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                return Ok(accepted);
            }
            Err(e) => match backoff.on_error(&e, Instant::now()) {
                AcceptAction::Retry => {}
                AcceptAction::Wait(delay) => tokio::time::sleep(delay).await,
                AcceptAction::Fatal => return Err(e),
            },
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn out_of_descriptors_waits_longer_each_time_then_resets() {
        let mut b = AcceptBackoff::new();
        let now = Instant::now();
        let waits: Vec<_> = (0..9).map(|_| b.on_error(&os(libc::EMFILE), now)).collect();
        assert_eq!(waits[0], AcceptAction::Wait(FIRST_DELAY));
        assert_eq!(waits[1], AcceptAction::Wait(FIRST_DELAY * 2));
        assert_eq!(waits[8], AcceptAction::Wait(MAX_DELAY));
        b.reset();
        assert_eq!(
            b.on_error(&os(libc::ENFILE), now),
            AcceptAction::Wait(FIRST_DELAY)
        );
    }

    #[test]
    fn one_connections_failure_is_retried_and_a_bad_listener_is_fatal() {
        let mut b = AcceptBackoff::new();
        let now = Instant::now();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.on_error(&aborted, now), AcceptAction::Retry);
        assert_eq!(b.on_error(&os(libc::EBADF), now), AcceptAction::Fatal);
    }

    #[test]
    fn every_failure_is_counted_and_logging_is_rate_limited() {
        let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut b = AcceptBackoff::new().on_error_hook({
            let count = count.clone();
            move |_| {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            b.on_error(&os(libc::EMFILE), t0);
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 100);
        assert_eq!(b.last_log, Some(t0));
        assert_eq!(b.unlogged, 99, "one line for the first, none after");
        b.on_error(&os(libc::EMFILE), t0 + LOG_EVERY);
        assert_eq!(b.unlogged, 0);
    }
}
