//! The HTTP side: one port serves the WebSocket endpoint, the backend API,
//! health, metrics and the demo pages.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use herald::{Acceptor, Config};
use tokio::net::TcpListener;

use crate::config::{DeflateMode, ServerConfig};
use crate::endpoint::{Endpoint, Endpoints};
use crate::http::api::{self, ApiError};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::protocol::ErrorCode;

/// Path of the WebSocket endpoint.
pub const WEBSOCKET_PATH: &str = "/connection/websocket";

/// A configured server: the hub plus what the HTTP side needs.
#[derive(Debug, Clone)]
pub struct Server {
    pub(crate) hub: Arc<Hub>,
    /// Server-side logic per namespace; the sessions call it.
    pub(crate) endpoints: Arc<Endpoints>,
    /// The HTTP transports' streams, pollers and session tokens.
    pub(crate) sessions: Arc<crate::transport::Sessions>,
    /// The QR login demo's pending logins, shared by every thread's router.
    pub(crate) qr_logins: crate::demo_qr::Logins,
    pub(crate) acceptor: Acceptor,
    /// Open WebSocket connections, for `max_connections`.
    pub(crate) connections: Arc<AtomicUsize>,
}

impl Server {
    /// A server with `config`.
    pub fn new(config: ServerConfig) -> Self {
        let hub = Arc::new(Hub::new(Arc::new(config), Arc::new(Metrics::default())));
        Self::with_hub(hub)
    }

    /// A server with `config`, connected to its broker first: Redis when
    /// `[broker] url` is set (an error if it cannot be reached now; later
    /// outages are waited out), else the in-memory broker as
    /// [`Server::new`].
    pub async fn connect(config: ServerConfig) -> Result<Self, String> {
        use crate::broker::Broker;
        use crate::broker::redis::RedisBroker;

        if config.broker.url.is_empty() {
            return Ok(Self::new(config));
        }
        let node = crate::hub::new_node_id();
        let name = config
            .node_name
            .clone()
            .unwrap_or_else(|| config.listen.to_string());
        let mut shards = Vec::new();
        for url in &config.broker.url {
            let broker = RedisBroker::connect(
                url,
                node.clone(),
                name.clone(),
                &config.broker,
                config.channel_meta_ttl,
            )
            .await
            .map_err(|e| format!("broker {url}: {e}"))?;
            shards.push((url.clone(), Arc::new(broker)));
        }
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::with_broker(Arc::new(config), metrics, node, |sink| {
            for (_, broker) in &shards {
                broker.attach(sink.clone());
            }
            if shards.len() == 1 {
                shards[0].1.clone()
            } else {
                let shards = shards
                    .iter()
                    .map(|(url, b)| (url.clone(), b.clone() as Arc<dyn Broker>))
                    .collect();
                Arc::new(crate::broker::sharded::Sharded::new(shards))
            }
        });
        let server = Self::with_hub(Arc::new(hub));
        crate::nodes::answer_for(&server);
        Ok(server)
    }

    pub(crate) fn with_hub(hub: Arc<Hub>) -> Self {
        let config = hub.config();
        let ws_config = Config::default()
            .protocol(
                herald::ProtocolConfig::default()
                    .max_message_size(config.max_message_size)
                    .max_frame_size(config.max_message_size)
                    .ping_interval(Some(config.ping_interval))
                    .pong_timeout(config.pong_timeout),
            )
            .handshake_timeout(config.handshake_timeout)
            .deflate(match config.deflate {
                DeflateMode::Off => None,
                DeflateMode::Shared => Some(herald::DeflateConfig::no_context_takeover()),
                DeflateMode::PerConnection => Some(herald::DeflateConfig::default()),
            });
        for warning in hub.config().warnings() {
            tracing::warn!("{warning}");
        }
        // Fail closed: `herald serve` stops before this with the same
        // error (`TokenVerifier::from_config`); an embedder that did not
        // check gets a server that lets nobody in, and this log line.
        if let Err(e) = hub.tokens() {
            tracing::error!("connection tokens: {e}; every connect is refused");
        }
        Self {
            sessions: Arc::new(crate::transport::Sessions::new(hub.config(), hub.node())),
            hub,
            endpoints: Arc::default(),
            qr_logins: Arc::default(),
            acceptor: Acceptor::new(ws_config),
            connections: Arc::default(),
        }
    }

    /// The hub, for publishing from Rust.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Attaches `endpoint` to `namespace` (which must exist in the
    /// configuration): its client publications go to the endpoint, which
    /// also hears its sessions join and leave.
    pub fn set_endpoint(&self, namespace: &str, endpoint: Arc<dyn Endpoint>) {
        self.endpoints.set(namespace, endpoint);
    }

    /// The axum router; mount it in a larger app or serve it with
    /// [`Server::serve`].
    pub fn router(&self) -> Router {
        self.routes(Surface::All)
    }

    fn routes(&self, surface: Surface) -> Router {
        let mut router = Router::new();
        if surface != Surface::Admin && self.hub.config().demos {
            router = router
                .route("/", get(|| async { Html(crate::demo::INDEX) }))
                .route("/demo/chat", get(|| async { Html(crate::demo::CHAT) }))
                .route("/demo/quotes", get(|| async { Html(crate::demo::QUOTES) }))
                .route("/demo/game", get(|| async { Html(crate::demo::GAME) }))
                .merge(crate::demo_qr::routes(&self.hub, &self.qr_logins));
        }
        if surface != Surface::Admin {
            router = router
                .route("/herald.js", get(herald_js))
                .route(WEBSOCKET_PATH, get(crate::transport::websocket::upgrade))
                .route(
                    "/connection/stream",
                    post(crate::transport::stream::open_ndjson),
                )
                .route("/connection/sse", get(crate::transport::sse::get))
                .route("/connection/send", post(crate::transport::stream::send))
                .route("/connection/poll", post(crate::transport::poll::poll));
        }
        // On both listeners: a load balancer probes the public one, an
        // orchestrator the admin one.
        router = router.route("/health", get(health));
        if surface != Surface::Public {
            router = api::routes(router.route("/metrics", get(metrics)));
        }
        router
            .method_not_allowed_fallback(method_not_allowed)
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then drains: stops
    /// accepting, asks every client to reconnect elsewhere (close 1001
    /// with a retry hint), spread over the drain window so they do not all
    /// come back at once, and returns when they are gone (or the window
    /// plus the close timeout has passed).
    ///
    /// With `admin_listen` configured, binds it and serves the API,
    /// metrics and health there instead (see [`Server::serve_with_admin`]).
    /// With `tls_cert` and `tls_key`, `listener` speaks TLS.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let admin =
            match self.hub.config().admin_listen {
                Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("admin_listen {addr}: {e}"))
                })?),
                None => None,
            };
        self.serve_with_admin(listener, admin, shutdown).await
    }

    /// [`Server::serve`] with the admin listener given: when `admin` is
    /// set, it serves `/api/*`, `/metrics` and `/health` (plain HTTP), and
    /// `listener` serves the WebSocket endpoint, the demos and `/health`
    /// only.
    pub async fn serve_with_admin(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_inner(listener, Vec::new(), admin, shutdown)
            .await
    }

    /// [`Server::serve_with_admin`] on one thread per listener, all
    /// sharing this server's hub (`herald serve --threads N`).
    ///
    /// `listeners[0]` is served on the calling task's runtime, which also
    /// runs the admin listener, the timers of the hub (history sweep,
    /// presence flush), the demos and the drain. Every other listener gets
    /// a thread of its own with a current-thread runtime; a connection
    /// stays on the thread that accepted it. Bind the listeners with
    /// [`bind_threads`], so that the kernel spreads new connections over
    /// them (`SO_REUSEPORT`). A publication made on any thread reaches
    /// subscribers on every thread: the hub queues it in each subscriber's
    /// outbox and wakes that connection's task wherever it runs.
    ///
    /// On shutdown every thread stops accepting, and this returns once
    /// the drain is over and every thread has finished; the first error
    /// of a listener, if any, is returned then. The calling runtime should
    /// be a current-thread one: it then counts as thread 0 in
    /// `herald_thread_connections`.
    pub async fn serve_threads(
        self,
        listeners: Vec<std::net::TcpListener>,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut listeners = listeners.into_iter();
        let Some(first) = listeners.next() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "serve_threads needs at least one listener",
            ));
        };
        first.set_nonblocking(true)?;
        let first = TcpListener::from_std(first)?;
        self.serve_inner(first, listeners.collect(), admin, shutdown)
            .await
    }

    async fn serve_inner(
        self,
        listener: TcpListener,
        more: Vec<std::net::TcpListener>,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let hub = self.hub.clone();
        let tls = crate::http::tls_acceptor(hub.config())?;
        let limits = crate::http::Limits::from(hub.config());
        let public_surface = if admin.is_some() {
            Surface::Public
        } else {
            Surface::All
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Started before anything else, so that a thread that cannot start
        // stops the server before it serves anyone.
        let mut threads = Vec::with_capacity(more.len());
        for (i, listener) in more.into_iter().enumerate() {
            let thread = self.clone().spawn_thread(
                i + 1,
                listener,
                tls.clone(),
                public_surface,
                limits,
                stop_rx.clone(),
            );
            match thread {
                Ok(done) => threads.push(done),
                Err(e) => {
                    let _ = stop_tx.send(true);
                    for done in threads {
                        let _ = done.await;
                    }
                    return Err(e);
                }
            }
        }
        let first_thread = (!threads.is_empty()
            && tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread)
            .then(|| {
                let (home, drainer) = crate::threads::Home::set(0);
                (home, tokio::spawn(drainer))
            });
        let sweeper = tokio::spawn({
            let hub = hub.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    hub.sweep();
                }
            }
        });
        // The broker's heartbeat: node list, probes, presence refresh.
        let heartbeat = tokio::spawn({
            let hub = hub.clone();
            async move {
                let every = (hub.config().broker.heartbeat / 2)
                    .clamp(Duration::from_millis(50), Duration::from_secs(1));
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    hub.broker().heartbeat(hub.connection_count());
                }
            }
        });
        // Presence batches, and pollers whose grace has passed.
        let presence = tokio::spawn({
            let hub = hub.clone();
            let sessions = self.sessions.clone();
            let endpoints = self.endpoints.clone();
            async move {
                let mut tick = tokio::time::interval(hub.config().join_leave_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    sessions.pollers.sweep(&hub, &endpoints);
                    hub.flush_presence();
                }
            }
        });
        let demos = hub
            .config()
            .demos
            .then(|| crate::demo::start(&hub, &self.endpoints));
        let connections = self.connections.clone();
        let public = crate::http::serve(
            listener,
            tls,
            self.routes(public_surface),
            limits,
            hub.clone(),
            Some(self.clone()),
            stop_rx.clone(),
        );
        let admin = async {
            match admin {
                Some(admin) => {
                    let router = self.routes(Surface::Admin);
                    crate::http::serve(admin, None, router, limits, hub.clone(), None, stop_rx)
                        .await
                }
                None => Ok(()),
            }
        };
        let drain = {
            let hub = hub.clone();
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
                crate::http::drain::drain(&hub).await;
                // Wait for sessions, on every thread, to finish their close
                // handshakes.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while connections.load(Ordering::Relaxed) > 0
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let others = async {
            let mut result = Ok(());
            for done in threads {
                let r = done
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::other("a server thread panicked")));
                result = result.and(r);
            }
            result
        };
        let (public, admin, (), others) = tokio::join!(public, admin, drain, others);
        sweeper.abort();
        heartbeat.abort();
        presence.abort();
        if let Some(d) = demos {
            d.abort();
        }
        if let Some((home, drainer)) = first_thread {
            drainer.abort();
            drop(home);
        }
        public.and(admin).and(others)
    }

    /// Serves `listener` on a new thread `herald-{index}` with a
    /// current-thread runtime of its own, until `stop`; the receiver
    /// gets the result once that runtime is gone, with every task that
    /// was left on it.
    fn spawn_thread(
        self,
        index: usize,
        listener: std::net::TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        surface: Surface,
        limits: crate::http::Limits,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("herald-{index}"))
            .spawn(move || {
                let (_home, drainer) = crate::threads::Home::set(index);
                let result = runtime.block_on(async move {
                    tokio::spawn(drainer);
                    let listener = TcpListener::from_std(listener)?;
                    let router = self.routes(surface);
                    let hub = self.hub.clone();
                    crate::http::serve(listener, tls, router, limits, hub, Some(self), stop).await
                });
                // Tasks left on this runtime (sessions past the drain's
                // deadline) are dropped here, their cleanup with them,
                // before the server is said to be done.
                drop(runtime);
                let _ = done_tx.send(result);
            })?;
        Ok(done_rx)
    }
}

/// Binds `threads` listening sockets to `addr` for
/// [`Server::serve_threads`], with `SO_REUSEPORT` when there is more than
/// one: the kernel then spreads incoming connections over them (by a hash
/// of the connection's addresses and ports). With port 0 the first socket
/// picks the port and the others share it. Accepted sockets inherit
/// `TCP_NODELAY` from these on Linux.
///
/// `SO_REUSEPORT` also lets another process of the same user bind the
/// same port with the option set and take a share of the connections;
/// one server thread (one socket, without it) refuses that with
/// "address in use".
pub fn bind_threads(
    addr: std::net::SocketAddr,
    threads: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(threads.max(1));
    for _ in 0..threads.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // As `TcpListener::bind` does: a restarted server can bind at once.
        socket.set_reuse_address(true)?;
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        if threads > 1 {
            socket.set_reuse_port(true)?;
        }
        socket.set_tcp_nodelay(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener = std::net::TcpListener::from(socket);
        // Port 0: the others bind the port the first one got.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// Everything, on one port (no admin listener).
    All,
    /// The WebSocket endpoint, the demos, `/health`.
    Public,
    /// The API, `/metrics`, `/health`.
    Admin,
}

/// A 405 that says why: JSON under /api, a line of text elsewhere.
async fn method_not_allowed(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "method not allowed",
        )
        .into_response();
    }
    let reason = if uri.path() == WEBSOCKET_PATH {
        "method not allowed: a WebSocket upgrade is a GET\n"
    } else {
        "method not allowed\n"
    };
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET")],
        reason,
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BadRequest,
            "no such endpoint",
        )
        .into_response();
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn herald_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        crate::demo::HERALD_JS,
    )
}

async fn metrics(State(server): State<Server>) -> impl IntoResponse {
    // prometheus-client writes the OpenMetrics text format.
    let mut text = server.hub.metrics().encode();
    let stats = server.hub.broker().stats();
    if !stats.is_empty() {
        // The broker's own counters, before the closing `# EOF`.
        let end = text.rfind("# EOF").unwrap_or(text.len());
        let mut extra = String::new();
        for (name, help, value) in stats {
            let (family, kind) = match name.strip_suffix("_total") {
                Some(family) => (family, "counter"),
                None => (name, "gauge"),
            };
            extra.push_str(&format!(
                "# HELP {family} {help}\n# TYPE {family} {kind}\n{name} {value}\n"
            ));
        }
        text.insert_str(end, &extra);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// `GET /health`: 200 while this node can serve, 503 with the reason
/// when its broker cannot (Redis down, or its pub/sub probes lost).
async fn health(State(server): State<Server>) -> Response {
    match server.hub.broker().health() {
        Ok(()) => "ok\n".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("broker: {why}\n")).into_response(),
    }
}
