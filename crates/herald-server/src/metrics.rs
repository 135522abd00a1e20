//! Prometheus metrics, served at `/metrics` in the text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
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
    publish_to_write: Histogram,
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
            // 50 us to ~1.6 s, doubling.
            publish_to_write: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
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

    pub(crate) fn publish_to_write(&self, elapsed: std::time::Duration) {
        self.publish_to_write.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}
