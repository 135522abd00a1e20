//! Prometheus metrics, served at `/metrics` in the text format.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::config::QueuePolicy;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabel {
    /// The close code, or "none" when the connection ended without one.
    code: String,
    /// Who started the close: "server" or "client".
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThreadLabel {
    /// The server thread's index, 0 to N - 1 (`herald serve --threads N`).
    thread: String,
}

/// The server's counters and gauges.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    connections_total: Counter,
    thread_connections: Family<ThreadLabel, Gauge>,
    subscriptions: Gauge,
    publications: Counter,
    messages_in: Counter,
    messages_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    queue_drops: Family<PolicyLabel, Counter>,
    slow_consumers: Counter,
    handshake_failures: Family<ReasonLabel, Counter>,
    closes: Family<CloseLabel, Counter>,
    panics: Counter,
    accept_errors: Counter,
    publish_to_write: Latency,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let m = Self {
            connections: Gauge::default(),
            connections_total: Counter::default(),
            thread_connections: Family::default(),
            subscriptions: Gauge::default(),
            publications: Counter::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            queue_drops: Family::default(),
            slow_consumers: Counter::default(),
            handshake_failures: Family::default(),
            closes: Family::default(),
            panics: Counter::default(),
            accept_errors: Counter::default(),
            publish_to_write: Latency::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_opened",
            "WebSocket connections accepted",
            m.connections_total.clone(),
        );
        registry.register(
            "thread_connections",
            "Open WebSocket connections per server thread, with more than one \
             (herald serve --threads N)",
            m.thread_connections.clone(),
        );
        registry.register(
            "subscriptions",
            "Channel subscriptions",
            m.subscriptions.clone(),
        );
        registry.register("publications", "Publications made", m.publications.clone());
        registry.register(
            "messages_in",
            "Commands received from clients",
            m.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Messages queued to clients",
            m.messages_out.clone(),
        );
        registry.register("bytes_in", "Bytes of commands received", m.bytes_in.clone());
        registry.register(
            "bytes_out",
            "Bytes of messages queued to clients",
            m.bytes_out.clone(),
        );
        registry.register(
            "queue_drops",
            "Messages dropped from a full client queue (drop_oldest, latest), per message",
            m.queue_drops.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Clients closed because their queue overflowed (policy disconnect), per client",
            m.slow_consumers.clone(),
        );
        registry.register(
            "closes",
            "Sessions ended, by close code and by who started the close",
            m.closes.clone(),
        );
        registry.register(
            "session_panics",
            "Sessions that panicked (closed with 1011 and cleaned up)",
            m.panics.clone(),
        );
        registry.register_with_unit(
            "publish_to_write",
            "Time from a publication to its write into a subscriber's socket",
            Unit::Seconds,
            m.publish_to_write.clone(),
        );
        registry.register(
            "handshake_failures",
            "WebSocket handshakes refused",
            m.handshake_failures.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts on the listeners (out of descriptors, mostly)",
            m.accept_errors.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// On the connection's own thread: a connection stays on the server
    /// thread that accepted it, so [`Metrics::connection_closed`] finds
    /// the same thread.
    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
        self.connections_total.inc();
        if let Some(thread) = self.thread() {
            thread.inc();
        }
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.dec();
        if let Some(thread) = self.thread() {
            thread.dec();
        }
    }

    /// The gauge of the server thread running the caller, if any.
    fn thread(&self) -> Option<Gauge> {
        let thread = crate::threads::index()?.to_string();
        Some(
            self.thread_connections
                .get_or_create(&ThreadLabel { thread })
                .clone(),
        )
    }

    pub(crate) fn subscriptions(&self, delta: i64) {
        self.subscriptions.inc_by(delta);
    }

    pub(crate) fn publication(&self, _bytes: usize) {
        self.publications.inc();
    }

    pub(crate) fn message_in(&self, bytes: usize) {
        self.messages_in.inc();
        self.bytes_in.inc_by(bytes as u64);
    }

    pub(crate) fn messages_out(&self, n: usize, bytes_each: usize) {
        self.messages_out.inc_by(n as u64);
        self.bytes_out.inc_by((n * bytes_each) as u64);
    }

    pub(crate) fn queue_drop(&self, policy: QueuePolicy) {
        let policy = match policy {
            QueuePolicy::Disconnect => "disconnect",
            QueuePolicy::DropOldest => "drop_oldest",
            QueuePolicy::Latest => "latest",
        };
        self.queue_drops
            .get_or_create(&PolicyLabel { policy })
            .inc();
    }

    pub(crate) fn slow_consumer_disconnect(&self) {
        self.slow_consumers.inc();
    }

    /// A session ended with `code` (`None`: without a close frame),
    /// started by the server or not.
    pub(crate) fn close(&self, code: Option<u16>, by_server: bool) {
        let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        let by = if by_server { "server" } else { "client" };
        self.closes.get_or_create(&CloseLabel { code, by }).inc();
    }

    pub(crate) fn panic(&self) {
        self.panics.inc();
    }

    /// A failed `accept`.
    pub(crate) fn accept_error(&self) {
        self.accept_errors.inc();
    }

    /// Observed once per delivery: kept to a few integer additions (no
    /// lock, no float search over the buckets).
    #[inline]
    pub(crate) fn publish_to_write(&self, elapsed: std::time::Duration) {
        self.publish_to_write.observe(elapsed);
    }

    pub(crate) fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

/// Buckets of [`Latency`]: the first bound, in nanoseconds, and how many
/// (each twice the one before: 50 us to ~1.6 s), then `+Inf`.
const LATENCY_FIRST_NS: u64 = 50_000;
const LATENCY_BOUNDS: usize = 16;

/// A latency histogram observed on the delivery path: doubling buckets
/// whose index is a division and a leading-zero count, and relaxed atomic
/// counters. Exposed as a Prometheus histogram in seconds, like
/// `prometheus_client`'s, whose `observe` locks a mutex and searches the
/// bounds as floats.
#[derive(Debug, Clone, Default)]
struct Latency(Arc<LatencyInner>);

#[derive(Debug, Default)]
struct LatencyInner {
    /// Per bucket, not cumulative; the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Latency {
    #[inline]
    fn observe(&self, elapsed: std::time::Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = latency_bucket(ns);
        let inner = &*self.0;
        inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        inner.count.fetch_add(1, Ordering::Relaxed);
        inner.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// The bucket for `ns`: the first whose bound is at least `ns`.
#[inline]
fn latency_bucket(ns: u64) -> usize {
    // 0 up to the first bound; then bucket i holds (first * 2^(i-1), first * 2^i].
    let q = ns.saturating_sub(1) / LATENCY_FIRST_NS;
    ((u64::BITS - q.leading_zeros()) as usize).min(LATENCY_BOUNDS)
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let inner = &*self.0;
        let buckets: Vec<(f64, u64)> = inner
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bound = if i < LATENCY_BOUNDS {
                    (LATENCY_FIRST_NS << i) as f64 / 1e9
                } else {
                    f64::INFINITY
                };
                (bound, n.load(Ordering::Relaxed))
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            inner.count.load(Ordering::Relaxed),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_match_their_bounds() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(50_000), 0);
        assert_eq!(latency_bucket(50_001), 1);
        assert_eq!(latency_bucket(100_000), 1);
        assert_eq!(latency_bucket(100_001), 2);
        assert_eq!(latency_bucket(50_000 << 15), 15);
        assert_eq!(latency_bucket((50_000 << 15) + 1), 16);
        assert_eq!(latency_bucket(u64::MAX), 16);
        let m = Metrics::default();
        m.publish_to_write(std::time::Duration::from_micros(70));
        m.publish_to_write(std::time::Duration::from_secs(5));
        let text = m.encode();
        assert!(
            text.contains(r#"herald_publish_to_write_seconds_bucket{le="0.00005"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"herald_publish_to_write_seconds_bucket{le="0.0001"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"herald_publish_to_write_seconds_bucket{le="+Inf"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("herald_publish_to_write_seconds_count 2"),
            "{text}"
        );
    }
}
