//! The HTTP side: one port serves the WebSocket endpoint, the backend API,
//! health, metrics and the demo pages.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use herald::{Acceptor, Config, Reject, Upgrade};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::protocol::{Error, ErrorCode, close};

/// Path of the WebSocket endpoint.
pub const WEBSOCKET_PATH: &str = "/connection/websocket";

/// A configured server: the hub plus what the HTTP side needs.
#[derive(Debug, Clone)]
pub struct Server {
    hub: Arc<Hub>,
    acceptor: Acceptor,
    connections: Arc<AtomicUsize>,
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
            .deflate(Some(herald::DeflateConfig::default()));
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
            hub,
            acceptor: Acceptor::new(ws_config),
            connections: Arc::default(),
        }
    }

    /// The hub, for publishing from Rust and attaching endpoints.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
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
                .route("/demo/game", get(|| async { Html(crate::demo::GAME) }));
        }
        if surface != Surface::Admin {
            router = router
                .route("/herald.js", get(herald_js))
                .route(WEBSOCKET_PATH, get(websocket));
        }
        // On both listeners: a load balancer probes the public one, an
        // orchestrator the admin one.
        router = router.route("/health", get(|| async { "ok\n" }));
        if surface != Surface::Public {
            router = router
                .route("/metrics", get(metrics))
                .route("/api/publish", post(api_publish))
                .route("/api/broadcast", post(api_broadcast))
                .route("/api/disconnect", post(api_disconnect))
                .route("/api/channels", get(api_channels))
                .route("/api/presence/{channel}", get(api_presence))
                .route("/api/history/{channel}", get(api_history));
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
        let demos = hub.config().demos.then(|| crate::demo::start(&hub));
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
            stop_rx.clone(),
        );
        let admin = async {
            match admin {
                Some(admin) => {
                    let router = self.routes(Surface::Admin);
                    crate::http::serve(admin, None, router, limits, hub.clone(), stop_rx).await
                }
                None => Ok(()),
            }
        };
        let drain = {
            let hub = hub.clone();
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
                drain(&hub).await;
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

/// Tells every client to go, spread over the drain window.
async fn drain(hub: &Arc<Hub>) {
    let clients = hub.start_drain();
    let window = hub.config().drain;
    let n = clients.len().max(1) as u32;
    for (i, client) in clients.iter().enumerate() {
        // Client i is told to come back after its share of the window, so
        // reconnections arrive spread out even if they all obey at once.
        let retry_ms = (window / n * i as u32).as_millis();
        crate::hub::kick(
            client,
            herald::CloseCode::GOING_AWAY.0,
            &format!("shutdown; retry in {retry_ms} ms"),
        );
        tokio::time::sleep(window / n).await;
    }
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

/// Whether a browser page from `origin` may connect to `host`: same
/// origin, or listed. Clients that are not browsers send no Origin.
fn origin_allowed(origin: Option<&str>, host: &str, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|h| h.eq_ignore_ascii_case(host));
    same || allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

async fn websocket(State(server): State<Server>, mut req: Request) -> Response {
    let hub = server.hub.clone();
    let max = hub.config().max_connections;
    let connections = server.connections.clone();
    let hook = |r: &herald::Request| {
        // RFC 6455 10.2: servers reachable from browsers check Origin.
        if !origin_allowed(r.origin(), r.host(), &hub.config().allowed_origins) {
            hub.metrics().handshake_failure("origin");
            return Err(Reject::new(403, "origin not allowed"));
        }
        if connections.load(Ordering::Relaxed) >= max {
            hub.metrics().handshake_failure("capacity");
            return Err(Reject::new(503, "too many connections"));
        }
        Ok(Upgrade::new())
    };
    let (response, upgrading) = match server.acceptor.upgrade_with(&mut req, hook) {
        Ok(r) => r,
        Err(refusal) => {
            if refusal.status() != StatusCode::FORBIDDEN
                && refusal.status() != StatusCode::SERVICE_UNAVAILABLE
            {
                hub.metrics().handshake_failure("invalid");
            }
            return refusal.into_response();
        }
    };
    let slot = Slot::take(&server.connections);
    tokio::spawn(async move {
        // Held to the task's end, however it ends.
        let _slot = slot;
        if let Ok(ws) = upgrading.await {
            crate::session::run(hub, ws).await;
        }
    });
    response.into_response()
}

/// One place under `max_connections`, given back when dropped: on every
/// exit of the connection's task, a panic included.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

// ----- the HTTP API ---------------------------------------------------------

/// An API failure: a status and a JSON body `{"error": {code, message}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Error::from(code).into()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match error.code {
            ErrorCode::UnknownChannel => StatusCode::NOT_FOUND,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, error.code, error.message)
    }
}

impl ApiError {
    /// The JSON body: `{"error": {"code": N, "message": "..."}}`.
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code.code(), "message": self.message}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

pub(crate) type ApiResult = Result<axum::Json<serde_json::Value>, ApiError>;

/// Proof that the request may use the API: `Authorization: apikey <key>`,
/// or, in the zero-config dev mode (no `api_key`, no token key), a
/// loopback peer. Browsers are held to the WebSocket's Origin rule,
/// so a page on another site cannot drive a local server's API.
struct Authorized;

impl FromRequestParts<Server> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, server: &Server) -> Result<Self, ApiError> {
        let config = server.hub.config();
        let origin = parts
            .headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("(not text)"));
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !origin_allowed(origin, host, &config.allowed_origins) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::PermissionDenied,
                format!(
                    "origin {} is not allowed (allowed_origins)",
                    origin.unwrap_or("")
                ),
            ));
        }
        match &config.api_key {
            Some(key) => {
                let given = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("apikey "));
                if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
                    return Ok(Self);
                }
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "missing or wrong API key",
                ))
            }
            None if !config.is_dev_mode() => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "no API key configured: with tokens required, the API needs api_key",
            )),
            None => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0);
                if peer.is_some_and(|p| p.ip().is_loopback()) {
                    return Ok(Self);
                }
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "no API key configured: the API answers loopback only",
                ))
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request body for the API: `Content-Type: application/json` (so that a
/// cross-site form or `text/plain` fetch, which browsers send without
/// asking, is refused), at most `api_max_body_size` bytes (413 past it).
struct JsonBody(Bytes);

impl FromRequest<Server> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, server: &Server) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::BadRequest,
                "Content-Type must be application/json",
            ));
        }
        let limit = server.hub.config().api_max_body_size;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::LimitExceeded,
                format!("body larger than {limit} bytes (api_max_body_size)"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(e) if caused_by::<http_body_util::LengthLimitError>(&e) => Err(too_large()),
            Err(e) if caused_by::<crate::http::BodyTimeout>(&e) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BadRequest,
                "the request body did not arrive in time (http_body_timeout)",
            )),
            Err(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "could not read the request body",
            )),
        }
    }
}

/// Whether reading a body failed because of an `E`.
fn caused_by<E: std::error::Error + 'static>(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<E>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Parses a JSON body into a 400 with the parser's reason on failure.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("invalid JSON body: {e}"),
        )
    })
}

fn to_json<T: serde::Serialize>(value: T) -> ApiResult {
    serde_json::to_value(value)
        .map(axum::Json)
        .map_err(|_| ErrorCode::Internal.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    channel: String,
    data: Box<RawValue>,
}

async fn api_publish(
    State(server): State<Server>,
    _: Authorized,
    JsonBody(body): JsonBody,
) -> ApiResult {
    publish(&server.hub, &body)
}

/// `POST /api/publish` once the request is let in: the part the fuzz
/// target drives.
pub(crate) fn publish(hub: &Hub, body: &[u8]) -> ApiResult {
    let body: PublishBody = parse(body)?;
    to_json(hub.publish(&body.channel, body.data, None)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastBody {
    channels: Vec<String>,
    data: Box<RawValue>,
}

async fn api_broadcast(
    State(server): State<Server>,
    _: Authorized,
    JsonBody(body): JsonBody,
) -> ApiResult {
    broadcast(&server.hub, &body)
}

/// `POST /api/broadcast` once the request is let in.
pub(crate) fn broadcast(hub: &Hub, body: &[u8]) -> ApiResult {
    let mut body: BroadcastBody = parse(body)?;
    // A channel listed twice is published to once, in first-listed order.
    let mut seen = std::collections::HashSet::new();
    body.channels.retain(|c| seen.insert(c.clone()));
    // The same data for every channel: refused once, not once per channel.
    crate::limits::check_data(&body.data, hub.config())?;
    // All or nothing on names: a typo should not publish to half the list.
    if let Some(bad) = body
        .channels
        .iter()
        .find(|c| hub.config().namespace_of(c).is_none())
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownChannel,
            format!("unknown channel {bad}"),
        ));
    }
    let results: Vec<serde_json::Value> = body
        .channels
        .iter()
        .map(|c| match hub.publish(c, body.data.clone(), None) {
            Ok(p) => json!({"channel": c, "offset": p.offset, "epoch": p.epoch, "delivered": p.delivered}),
            Err(e) => json!({"channel": c, "error": {"code": e.code.code(), "message": e.message}}),
        })
        .collect();
    Ok(axum::Json(json!({ "results": results })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    client: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn api_disconnect(
    State(server): State<Server>,
    _: Authorized,
    JsonBody(body): JsonBody,
) -> ApiResult {
    disconnect(&server.hub, &body)
}

/// `POST /api/disconnect` once the request is let in.
pub(crate) fn disconnect(hub: &Hub, body: &[u8]) -> ApiResult {
    let body: DisconnectBody = parse(body)?;
    let reason = body.reason.as_deref().unwrap_or("disconnected");
    if hub.disconnect(&body.client, close::DISCONNECTED, reason) {
        Ok(axum::Json(json!({})))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BadRequest,
            "no such client",
        ))
    }
}

async fn api_channels(State(server): State<Server>, _: Authorized) -> ApiResult {
    let channels: Vec<serde_json::Value> = server
        .hub
        .channels()
        .into_iter()
        .map(|(name, n)| json!({"channel": name, "subscribers": n}))
        .collect();
    Ok(axum::Json(json!({ "channels": channels })))
}

async fn api_presence(
    State(server): State<Server>,
    _: Authorized,
    Path(channel): Path<String>,
) -> ApiResult {
    Ok(axum::Json(
        json!({ "clients": server.hub.presence(&channel)? }),
    ))
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn api_history(
    State(server): State<Server>,
    _: Authorized,
    Path(channel): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<axum::Json<crate::hub::History>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            e.body_text(),
        )
    })?;
    Ok(axum::Json(server.hub.history(&channel, q.limit)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(origin_allowed(None, "h:1", &[]));
        assert!(origin_allowed(Some("http://h:1"), "h:1", &[]));
        assert!(origin_allowed(Some("https://H:1"), "h:1", &[]));
        assert!(!origin_allowed(Some("http://evil"), "h:1", &[]));
        assert!(origin_allowed(
            Some("http://app"),
            "h:1",
            &["http://app".into()]
        ));
        assert!(origin_allowed(Some("http://any"), "h:1", &["*".into()]));
    }
}
