//! hyper's timer, with the keep-alive idle timeout put in.
//!
//! hyper has one timeout for reading a request head, and starts it when
//! it begins to wait for that head: at the connection's opening for the
//! first request, at the end of the previous response for the next ones.
//! The second wait is the keep-alive idle time, which deserves a bound of
//! its own (longer, so API clients can reuse connections) without
//! lengthening the first (short, against slowloris). hyper asks its timer
//! for `now + header_read_timeout`; once a request has been served, this
//! timer moves that deadline to `now + idle_timeout`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioTimer;

/// One connection's timer; see the module docs.
#[derive(Debug, Clone)]
pub(super) struct HeadTimer {
    inner: TokioTimer,
    header: Duration,
    idle: Duration,
    /// Set by the service when a request's head has been read.
    served: Arc<AtomicBool>,
}

impl HeadTimer {
    /// `header` must be hyper's `header_read_timeout`.
    pub(super) fn new(header: Duration, idle: Duration) -> Self {
        Self {
            inner: TokioTimer::new(),
            header,
            idle,
            served: Arc::default(),
        }
    }

    /// The flag to set once a request has been read.
    pub(super) fn served(&self) -> Arc<AtomicBool> {
        self.served.clone()
    }

    fn adjust(&self, deadline: Instant) -> Instant {
        if !self.served.load(Ordering::Relaxed) {
            return deadline;
        }
        deadline
            .checked_sub(self.header)
            .map_or(deadline, |start| start + self.idle)
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.inner.sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.inner.sleep_until(self.adjust(deadline))
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        self.inner.reset(sleep, self.adjust(new_deadline));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_head_gets_the_header_timeout_later_ones_the_idle_timeout() {
        let t = HeadTimer::new(Duration::from_secs(10), Duration::from_secs(30));
        let now = Instant::now();
        let asked = now + Duration::from_secs(10);
        assert_eq!(t.adjust(asked), asked);
        t.served().store(true, Ordering::Relaxed);
        assert_eq!(t.adjust(asked), now + Duration::from_secs(30));
    }
}
