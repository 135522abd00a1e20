//! The HTTP API through which backends publish, and its door: API key or
//! dev-mode loopback trust, the browser Origin rule, JSON bodies only,
//! bounded in size and time.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::hub::Hub;
use crate::protocol::{Error, ErrorCode};
use crate::server::Server;

/// Adds the API's routes to `router`.
pub(crate) fn routes(router: Router<Server>) -> Router<Server> {
    router
        .route("/api/publish", post(api_publish))
        .route("/api/broadcast", post(api_broadcast))
        .route("/api/disconnect", post(api_disconnect))
        .route("/api/channels", get(api_channels))
        .route("/api/presence/{channel}", get(api_presence))
        .route("/api/history/{channel}", get(api_history))
        .route("/api/info", get(crate::nodes::info))
}

/// Whether a browser page from `origin` may connect to `host`: same
/// origin, or listed. Clients that are not browsers send no Origin.
pub(crate) fn origin_allowed(origin: Option<&str>, host: &str, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|h| h.eq_ignore_ascii_case(host));
    same || allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

/// An API failure: a status and a JSON body `{"error": {code, message}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
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
            // The broker (Redis) out of reach: worth a retry, unlike a bug.
            ErrorCode::Internal if error.message.starts_with(crate::broker::UNAVAILABLE) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
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
        read_body(req, limit, "api_max_body_size").await.map(Self)
    }
}

/// Reads a request body of at most `limit` bytes (the setting named
/// `setting`): 413 past it, 408 when it does not arrive in time.
pub(crate) async fn read_body(
    req: Request,
    limit: usize,
    setting: &str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::LimitExceeded,
            format!("body larger than {limit} bytes ({setting})"),
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
        Ok(bytes) => Ok(bytes),
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
    publish(&server.hub, &body).await
}

/// `POST /api/publish` once the request is let in: the part the fuzz
/// target drives.
pub(crate) async fn publish(hub: &Hub, body: &[u8]) -> ApiResult {
    let body: PublishBody = parse(body)?;
    to_json(hub.publish(&body.channel, body.data, None).await?)
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
    broadcast(&server.hub, &body).await
}

/// `POST /api/broadcast` once the request is let in.
pub(crate) async fn broadcast(hub: &Hub, body: &[u8]) -> ApiResult {
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
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(body.channels.len());
    for c in &body.channels {
        results.push(match hub.publish_checked(c, body.data.clone(), None).await {
            Ok(p) => json!({"channel": c, "offset": p.offset, "epoch": p.epoch, "delivered": p.delivered}),
            Err(e) => json!({"channel": c, "error": {"code": e.code.code(), "message": e.message}}),
        });
    }
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
    disconnect(&server.hub, &body).await
}

/// `POST /api/disconnect` once the request is let in: here, or on the
/// node that holds the client.
pub(crate) async fn disconnect(hub: &Hub, body: &[u8]) -> ApiResult {
    let body: DisconnectBody = parse(body)?;
    let reason = body.reason.as_deref().unwrap_or("disconnected");
    if let Some(node) = hub.node_of(&body.client) {
        let request = crate::broker::Request::Disconnect {
            client: body.client.clone(),
            reason: reason.to_owned(),
        };
        let (status, answer) =
            crate::nodes::ask(hub, node, request, crate::nodes::no_such_client).await?;
        return if status.is_success() {
            Ok(axum::Json(answer))
        } else {
            Err(ApiError::new(
                status,
                ErrorCode::BadRequest,
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or("refused by the client's node"),
            ))
        };
    }
    if hub.disconnect(&body.client, reason) {
        Ok(axum::Json(json!({})))
    } else {
        Err(crate::nodes::no_such_client())
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

#[derive(Deserialize)]
struct PresenceQuery {
    /// Only how many: `{"count": N}`.
    #[serde(default)]
    count: bool,
}

async fn api_presence(
    State(server): State<Server>,
    _: Authorized,
    Path(channel): Path<String>,
    query: Result<Query<PresenceQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            e.body_text(),
        )
    })?;
    if q.count {
        return Ok(axum::Json(
            json!({ "count": server.hub.presence_count(&channel).await? }),
        ));
    }
    Ok(axum::Json(
        json!({ "clients": server.hub.presence(&channel).await? }),
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
    Ok(axum::Json(server.hub.history(&channel, q.limit).await?))
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
