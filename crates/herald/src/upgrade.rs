//! WebSocket routes inside a hyper or axum server (feature `hyper`).
//!
//! The HTTP server has already parsed the request; [`Acceptor::upgrade_with`]
//! checks it as RFC 6455 4.2.1 asks, lets a hook decide, and hands back the
//! response for the route to return. The WebSocket exists only once hyper
//! has written that response and given up the connection, so it comes as a
//! future, [`Upgrading`], to await in a task of its own:
//!
//! ```text
//!  route(req)                                    herald
//!    |── acceptor.upgrade_with(&mut req, hook) ──> check, hook(&Request)
//!    |<── Ok((101 response, Upgrading)) ───────────┤
//!    |<── Err(4xx response, one-line reason) ──────┘
//!    |── spawn(Upgrading.await) ─> WebSocket<TokioIo<Upgraded>>
//!    └── return the response: hyper writes it, then upgrades
//! ```
//!
//! Ordinary routes live next to the WebSocket one on the same port; the
//! server must allow upgrades (hyper's `http1::Builder::serve_connection(..)
//! .with_upgrades()`, or `hyper_util::server::conn::auto` with
//! `serve_connection_with_upgrades`; axum's `serve` does it).
//!
//! # Example
//!
//! A plain hyper server with a health check and a WebSocket echo route:
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use herald::{Acceptor, Config, Reject, Upgrade};
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::server::conn::http1;
//! use hyper::service::service_fn;
//! use hyper::{Request, Response};
//! use hyper_util::rt::TokioIo;
//!
//! async fn route(
//!     acceptor: Acceptor,
//!     mut req: Request<Incoming>,
//! ) -> Result<Response<Full<Bytes>>, Infallible> {
//!     if req.uri().path() != "/ws" {
//!         return Ok(Response::new(Full::from("ok")));
//!     }
//!     let hook = |r: &herald::Request| match r.origin() {
//!         None | Some("https://example.com") => Ok(Upgrade::new()),
//!         Some(_) => Err(Reject::new(403, "origin not allowed")),
//!     };
//!     let (response, upgrading) = match acceptor.upgrade_with(&mut req, hook) {
//!         Ok(accepted) => accepted,
//!         Err(refusal) => return Ok(refusal),
//!     };
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = upgrading.await else { return };
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!     Ok(response)
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let acceptor = Acceptor::new(Config::default());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     // Out of descriptors, wait and accept again instead of exiting.
//!     let mut backoff = herald::AcceptBackoff::new();
//!     loop {
//!         let (tcp, _) = herald::accept_tcp(&listener, &mut backoff).await?;
//!         let acceptor = acceptor.clone();
//!         let service = service_fn(move |req| route(acceptor.clone(), req));
//!         tokio::spawn(
//!             http1::Builder::new()
//!                 .serve_connection(TokioIo::new(tcp), service)
//!                 .with_upgrades(),
//!         );
//!     }
//! }
//! ```
//!
//! In axum, take the whole `axum::extract::Request` in the handler and
//! return either response with `.into_response()`; see
//! `examples/axum_route.rs`.
//!
//! # Non-features
//!
//! WebSockets over HTTP/2 (RFC 8441, extended `CONNECT`) are refused: a
//! request over HTTP/2 gets 400 ("WebSocket handshake requires HTTP/1.1"),
//! as browsers fall back to HTTP/1.1 for WebSockets.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use herald_proto::DeflateParams;
use herald_proto::handshake::{HandshakeError, HandshakeLimits, Request};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{StatusCode, Version};
use http_body_util::Full;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;

use crate::{Acceptor, Decision, Error, Upgrade, WebSocket};

/// A WebSocket on a connection hyper has handed over.
pub type UpgradedSocket = WebSocket<TokioIo<Upgraded>>;

/// The answer to an upgrade request, for the route to return: the
/// `101 Switching Protocols` response, or a refusal (4xx with a one-line
/// reason as a `text/plain` body).
pub type HttpResponse = http::Response<Full<Bytes>>;

impl Acceptor {
    /// Accepts a WebSocket upgrade inside a hyper or axum route, with no
    /// subprotocol. See [`Acceptor::upgrade_with`].
    #[allow(
        clippy::result_large_err,
        reason = "Ok is larger: boxing Err saves nothing"
    )]
    pub fn upgrade<B>(
        &self,
        req: &mut http::Request<B>,
    ) -> Result<(HttpResponse, Upgrading), HttpResponse> {
        self.upgrade_with(req, |_| Ok(Upgrade::new()))
    }

    /// Accepts a WebSocket upgrade inside a hyper or axum route; `hook`
    /// sees the validated request (path, query, headers, `Origin`, offered
    /// subprotocols) and accepts or rejects it, as in
    /// [`Acceptor::accept_with`].
    ///
    /// On `Ok`, return the 101 response from the route and await
    /// [`Upgrading`] in another task: it completes only after hyper has
    /// written the response. On `Err`, return the refusal: an invalid
    /// request gets its status (400, 405 with `Allow: GET`, 426 with
    /// `Upgrade: websocket`, 431) and reason, a rejection by `hook` its
    /// [`Reject`](crate::Reject). The HTTP connection stays open for
    /// further requests either way.
    ///
    /// The checks are those of [`Acceptor::accept_with`], on the request as
    /// hyper parsed it: HTTP/1.1, `GET`, the RFC 6455 fields, and
    /// [`Config::handshake_limits`](crate::Config::handshake_limits) on the
    /// head's size as it would be on the wire. Nothing is read from the
    /// body. [`Config::handshake_timeout`](crate::Config::handshake_timeout)
    /// does not apply: hyper reads the head.
    ///
    /// A request that passes every check but carries no upgrade from hyper
    /// (the server was not started with upgrades, or the request was built
    /// by hand) is answered with 500 before `hook` runs: sending a 101 that
    /// no WebSocket follows would leave the client hanging.
    #[allow(
        clippy::result_large_err,
        reason = "Ok is larger: boxing Err saves nothing"
    )]
    pub fn upgrade_with<B, F>(
        &self,
        req: &mut http::Request<B>,
        hook: F,
    ) -> Result<(HttpResponse, Upgrading), HttpResponse>
    where
        F: FnOnce(&Request) -> Decision,
    {
        let request = self.validate(req).map_err(|e| refuse(&e))?;
        if req.extensions().get::<OnUpgrade>().is_none() {
            tracing::warn!(
                "WebSocket upgrade refused: the request has no hyper upgrade \
                 (serve the connection with upgrades enabled)"
            );
            return Err(server_error());
        }
        let upgrade = hook(&request).map_err(|reject| {
            tracing::debug!(
                reject.status,
                reject.reason,
                "WebSocket upgrade rejected by hook"
            );
            to_http(&request.reject(reject.status, &reject.reason))
        })?;
        // Fails for the client's unparseable Sec-WebSocket-Extensions (400)
        // or for what the hook picked (500, "server error").
        let accepted = self.answer(&request, upgrade).map_err(|e| refuse(&e))?;
        let upgrading = Upgrading {
            on_upgrade: hyper::upgrade::on(req),
            acceptor: self.clone(),
            protocol: accepted.protocol,
            deflate: accepted.deflate,
        };
        Ok((to_http(&accepted.response), upgrading))
    }

    /// RFC 6455 4.2.1 on a request hyper parsed, within our head limits.
    fn validate<B>(&self, req: &http::Request<B>) -> Result<Request, HandshakeError> {
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        check_limits(req, target, &self.config().handshake_limits)?;
        Request::from_parts(
            req.method().as_str(),
            target,
            req.version() == Version::HTTP_11,
            req.headers()
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        )
    }
}

/// Whether `req` asks for a WebSocket (`Upgrade: websocket`), for a route
/// that serves a page to plain `GET`s and a WebSocket to upgrades on the
/// same path. Only a hint: [`Acceptor::upgrade_with`] does the checking.
pub fn is_upgrade_request<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get_all(http::header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// A WebSocket upgrade accepted but not yet done: resolves to the
/// WebSocket once hyper has sent the 101 response and handed over the
/// connection.
///
/// Await it in a task of its own, not in the route that returns the
/// response: the route must return first. It fails with [`Error::Io`] if
/// the connection closes before the upgrade. Dropping it drops the
/// connection.
#[derive(Debug)]
#[must_use = "the WebSocket exists only once this future is awaited"]
pub struct Upgrading {
    on_upgrade: OnUpgrade,
    acceptor: Acceptor,
    protocol: Option<String>,
    deflate: Option<DeflateParams>,
}

impl Upgrading {
    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

impl Future for Upgrading {
    type Output = Result<UpgradedSocket, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let upgraded = ready!(Pin::new(&mut this.on_upgrade).poll(cx)).map_err(io::Error::other)?;
        // Bytes hyper read past the request (the client's first frames)
        // come back out of `Upgraded` itself, so the read buffer starts
        // empty.
        Poll::Ready(Ok(this.acceptor.socket(
            TokioIo::new(upgraded),
            BytesMut::new(),
            this.protocol.take(),
            this.deflate.take(),
        )))
    }
}

/// [`HandshakeLimits`] on a head hyper parsed, measured as it would be on
/// the wire, so both accept paths refuse the same requests.
fn check_limits<B>(
    req: &http::Request<B>,
    target: &str,
    limits: &HandshakeLimits,
) -> Result<(), HandshakeError> {
    if req.headers().len() > limits.max_headers {
        return Err(HandshakeError::TooManyHeaders);
    }
    // "GET <target> HTTP/1.1\r\n", "<name>: <value>\r\n" each, "\r\n".
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if req.method().as_str().len() + target.len() + 12 + fields + 2 > limits.max_header_bytes {
        return Err(HandshakeError::HeadersTooLarge);
    }
    Ok(())
}

/// The refusal of an invalid request, logged for the server's operator
/// (the client sees only the one-line reason).
fn refuse(e: &HandshakeError) -> HttpResponse {
    tracing::debug!(status = e.status(), error = %e, "WebSocket upgrade refused");
    to_http(&e.response())
}

/// A complete HTTP/1.1 response from `herald_proto` (the 101, or a
/// refusal) as an `http::Response`, so there is one source of truth for
/// its fields.
///
/// A refusal loses its framing and `Connection: close`: hyper frames the
/// body itself, and the HTTP connection outlives a refused upgrade.
fn to_http(raw: &[u8]) -> HttpResponse {
    // At most one field per line.
    let lines = raw.iter().filter(|&&b| b == b'\n').count();
    let mut fields = vec![httparse::EMPTY_HEADER; lines];
    let mut head = httparse::Response::new(&mut fields);
    let Ok(httparse::Status::Complete(len)) = head.parse(raw) else {
        return server_error();
    };
    let Some(Ok(status)) = head.code.map(StatusCode::from_u16) else {
        return server_error();
    };
    let mut response = http::Response::new(Full::new(Bytes::copy_from_slice(&raw[len..])));
    *response.status_mut() = status;
    for field in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return server_error();
        };
        let framing = name == CONTENT_LENGTH || name == TRANSFER_ENCODING;
        if framing || (name == CONNECTION && status != StatusCode::SWITCHING_PROTOCOLS) {
            continue;
        }
        response.headers_mut().append(name, value);
    }
    response
}

/// 500 with the reason every server-side mistake gets.
fn server_error() -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from_static(b"server error\n")));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::{Config, Reject};

    /// The request of RFC 6455 1.3, as hyper would hand it over (with its
    /// pending upgrade when `upgradable`).
    fn rfc_request(upgradable: bool) -> http::Request<()> {
        let mut req = http::Request::get("/chat?room=1")
            .header("Host", "server.example.com")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Origin", "http://example.com")
            .header("Sec-WebSocket-Protocol", "chat, superchat")
            .header("Sec-WebSocket-Version", "13")
            .body(())
            .unwrap();
        if upgradable {
            // Stands in for hyper's pending upgrade (this one fails if
            // awaited).
            req.extensions_mut()
                .insert(hyper::upgrade::on(http::Request::new(())));
        }
        req
    }

    fn body(response: HttpResponse) -> String {
        // `Full` is ready at once: no runtime needed.
        let mut collect = std::pin::pin!(response.into_body().collect());
        let cx = &mut Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Ok(collected)) = collect.as_mut().poll(cx) else {
            unreachable!("Full is always ready")
        };
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn the_101_has_the_fields_of_rfc_6455_4_2_2() {
        let mut req = rfc_request(true);
        let (response, upgrading) = Acceptor::default()
            .upgrade_with(&mut req, |r| {
                assert_eq!((r.path(), r.query()), ("/chat", Some("room=1")));
                assert_eq!(r.origin(), Some("http://example.com"));
                Ok(Upgrade::new()
                    .protocol("chat")
                    .header("Set-Cookie", "sid=1"))
            })
            .unwrap();
        assert_eq!(response.status(), 101);
        let h = response.headers();
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h["set-cookie"], "sid=1");
        assert_eq!(h.len(), 5);
        assert_eq!(upgrading.protocol(), Some("chat"));
        assert_eq!(body(response), "");
    }

    #[test]
    fn refusals_carry_status_reason_and_their_fields_but_no_framing() {
        let acceptor = Acceptor::default();

        let mut req = rfc_request(true);
        req.headers_mut().remove("sec-websocket-key");
        let refusal = acceptor.upgrade(&mut req).unwrap_err();
        assert_eq!(refusal.status(), 400);
        assert_eq!(
            refusal.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert!(refusal.headers().get("content-length").is_none());
        assert!(refusal.headers().get("connection").is_none());
        assert_eq!(body(refusal), "missing Sec-WebSocket-Key header\n");

        let mut req = rfc_request(true);
        *req.method_mut() = http::Method::POST;
        let refusal = acceptor.upgrade(&mut req).unwrap_err();
        assert_eq!(refusal.status(), 405);
        assert_eq!(refusal.headers()["allow"], "GET");

        let mut req = http::Request::get("/chat")
            .header("Host", "a")
            .body(())
            .unwrap();
        assert!(!is_upgrade_request(&req));
        let refusal = acceptor.upgrade(&mut req).unwrap_err();
        assert_eq!(refusal.status(), 426);
        assert_eq!(refusal.headers()["upgrade"], "websocket");

        let mut req = rfc_request(true);
        *req.version_mut() = Version::HTTP_2;
        let refusal = acceptor.upgrade(&mut req).unwrap_err();
        assert_eq!(refusal.status(), 400);
        assert_eq!(body(refusal), "WebSocket handshake requires HTTP/1.1\n");
    }

    #[test]
    fn the_hook_rejects_and_mistakes_are_500() {
        let acceptor = Acceptor::default();
        let mut req = rfc_request(true);
        let refusal = acceptor
            .upgrade_with(&mut req, |_| Err(Reject::new(403, "origin\r\nnot allowed")))
            .unwrap_err();
        assert_eq!(refusal.status(), 403);
        assert_eq!(body(refusal), "origin  not allowed\n");

        let refusal = acceptor
            .upgrade_with(&mut req, |_| Ok(Upgrade::new().protocol("mqtt")))
            .unwrap_err();
        assert_eq!(refusal.status(), 500);
        assert_eq!(body(refusal), "server error\n");
    }

    #[test]
    fn no_upgrade_from_hyper_is_500_before_the_hook() {
        let mut req = rfc_request(false);
        let refusal = Acceptor::default()
            .upgrade_with(&mut req, |_| unreachable!("hook must not run"))
            .unwrap_err();
        assert_eq!(refusal.status(), 500);
    }

    #[test]
    fn head_limits_apply_as_on_the_wire() {
        // RFC 6455 1.3's request is 7 fields, 230 bytes on the wire.
        let limits = HandshakeLimits::default()
            .max_headers(7)
            .max_header_bytes(230);
        let acceptor = Acceptor::new(Config::default().handshake_limits(limits));
        let mut req = rfc_request(true);
        *req.uri_mut() = "/chat".parse().unwrap();
        assert!(acceptor.upgrade(&mut req).is_ok());

        let limits = limits.max_header_bytes(229);
        let acceptor = Acceptor::new(Config::default().handshake_limits(limits));
        assert_eq!(acceptor.upgrade(&mut req).unwrap_err().status(), 431);

        req.headers_mut()
            .insert("x-more", HeaderValue::from_static("1"));
        let acceptor = Acceptor::new(Config::default().handshake_limits(limits.max_headers(7)));
        assert_eq!(acceptor.upgrade(&mut req).unwrap_err().status(), 431);
    }

    #[test]
    fn upgrade_requests_are_recognised_by_token() {
        let with = |v: &'static str| {
            http::Request::get("/")
                .header("upgrade", v)
                .body(())
                .unwrap()
        };
        assert!(is_upgrade_request(&with("websocket")));
        assert!(is_upgrade_request(&with("h2c, WebSocket ")));
        assert!(!is_upgrade_request(&with("websocketx")));
    }
}
