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
    pub(crate) acceptor: Acceptor,
    /// Open WebSocket connections, for `max_connections`.
    pub(crate) connections: Arc<AtomicUsize>,
}

impl Server {
    /// A server with `config`.
    pub fn new(config: ServerConfig) -> Self {
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
        let hub = Arc::new(Hub::new(Arc::new(config), Arc::new(Metrics::default())));
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
            sessions: Arc::new(crate::transport::Sessions::new(hub.config())),
            hub,
            endpoints: Arc::default(),
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
                .merge(crate::demo_qr::routes(&self.hub));
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
        router = router.route("/health", get(|| async { "ok\n" }));
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
        let hub = self.hub.clone();
        let tls = crate::http::tls_acceptor(hub.config())?;
        let limits = crate::http::Limits::from(hub.config());
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
        // Presence batches, and pollers whose grace has passed.
        let presence = tokio::spawn({
            let hub = hub.clone();
            let sessions = self.sessions.clone();
            async move {
                let mut tick = tokio::time::interval(hub.config().join_leave_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    sessions.pollers.sweep(&hub);
                    hub.flush_presence();
                }
            }
        });
        let demos = hub
            .config()
            .demos
            .then(|| crate::demo::start(&hub, &self.endpoints));
        let connections = self.connections.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let public_surface = if admin.is_some() {
            Surface::Public
        } else {
            Surface::All
        };
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
                // Wait for sessions to finish their close handshakes.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while connections.load(Ordering::Relaxed) > 0
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let (public, admin, ()) = tokio::join!(public, admin, drain);
        sweeper.abort();
        presence.abort();
        if let Some(d) = demos {
            d.abort();
        }
        public.and(admin)
    }
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
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        server.hub.metrics().encode(),
    )
}
