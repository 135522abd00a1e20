//! The WebSocket transport: the upgrade, then one task per connection that
//! pumps text frames into the client's session and the session's outbox
//! into the socket.
//!
//! The task polls three things at once: the session's own end (a kick, the
//! token's expiry), the socket (commands, and writing what is queued) and
//! the outbox (publications, replies). The outbox is drained into the
//! socket only while the socket's own queue is under its high-water mark;
//! past that the outbox fills and the namespace's slow-consumer policy
//! decides.

use std::borrow::Cow;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use herald::{CloseCode, Message, Reject, Upgrade};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::delivery::Disconnect;
use crate::endpoint::Endpoints;
use crate::http::api::origin_allowed;
use crate::hub::Hub;
use crate::protocol::close;
use crate::server::Server;
use crate::session::{ClientSession, panic_message};

/// `GET /connection/websocket`: the upgrade, checked before the 101
/// (Origin, capacity), then a task per connection running [`run`].
pub(crate) async fn upgrade(State(server): State<Server>, mut req: Request) -> Response {
    let hub = server.hub.clone();
    let endpoints = server.endpoints.clone();
    let max = hub.config().max_connections;
    let connections = server.connections.clone();
    let hook = |r: &herald::Request| check(&hub, &connections, max, r);
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
    // The socket's own high-water mark: past it, the outbox fills instead.
    let high_water = server.acceptor.config().write_high_water;
    tokio::spawn(async move {
        // Held to the task's end, however it ends.
        let _slot = slot;
        if let Ok(ws) = upgrading.await {
            run(hub, endpoints, ws, high_water).await;
        }
    });
    response.into_response()
}

/// What a WebSocket handshake for our endpoint starts with.
const HANDSHAKE_START: &[u8] = b"GET /connection/websocket";

/// Takes `tcp` if its first request is a WebSocket handshake for our
/// endpoint, judged from the bytes already received (peeked, nothing
/// consumed): answers it with herald's own handshake (Origin and
/// capacity checked as in [`upgrade`]) and runs the session on the bare
/// socket, waiting at most `header_timeout` for the request. Any other
/// connection, or one whose first bytes have not arrived whole enough to
/// tell, is handed back for hyper to serve; it will never see a WebSocket
/// handshake it could not have answered the same way.
pub(crate) async fn direct(
    server: &Server,
    tcp: tokio::net::TcpStream,
    header_timeout: std::time::Duration,
) -> Option<tokio::net::TcpStream> {
    let mut start = [0u8; HANDSHAKE_START.len() + 1];
    let ours = match tokio::time::timeout(header_timeout, tcp.peek(&mut start)).await {
        // Silent past the timeout: hyper would close it the same way.
        Err(_) => return None,
        Ok(Ok(n)) => {
            n == start.len()
                && start.starts_with(HANDSHAKE_START)
                && matches!(start[HANDSHAKE_START.len()], b' ' | b'?')
        }
        Ok(Err(_)) => return None,
    };
    if !ours {
        return Some(tcp);
    }
    let hub = server.hub.clone();
    let max = hub.config().max_connections;
    let hook = |r: &herald::Request| {
        if r.path() != crate::server::WEBSOCKET_PATH {
            return Err(Reject::new(404, "not found"));
        }
        check(&hub, &server.connections, max, r)
    };
    // Boxed: a task is as large as the largest state of its future, for
    // its whole life, and the handshake's state (larger than the
    // session's) is needed only until the 101.
    let handshake = Box::pin(tokio::time::timeout(
        header_timeout,
        server.acceptor.accept_with(tcp, hook),
    ));
    let ws = match handshake.await {
        Ok(Ok(ws)) => ws,
        Ok(Err(herald::Error::Rejected { status, .. })) => {
            if status != 403 && status != 503 {
                hub.metrics().handshake_failure("invalid");
            }
            return None;
        }
        Ok(Err(_)) => {
            hub.metrics().handshake_failure("invalid");
            return None;
        }
        Err(_) => return None,
    };
    let _slot = Slot::take(&server.connections);
    // One allocation for the socket and the session, sized for what they
    // need, rather than room for them in the task beside the handshake's.
    run(
        hub,
        server.endpoints.clone(),
        ws,
        server.acceptor.config().write_high_water,
    )
    .await;
    None
}

/// The checks before a 101, on either path: RFC 6455 10.2's Origin check
/// for servers reachable from browsers, and the connection limit.
fn check(
    hub: &Hub,
    connections: &AtomicUsize,
    max: usize,
    r: &herald::Request,
) -> herald::Decision {
    if !origin_allowed(r.origin(), r.host(), &hub.config().allowed_origins) {
        hub.metrics().handshake_failure("origin");
        return Err(Reject::new(403, "origin not allowed"));
    }
    if connections.load(Ordering::Relaxed) >= max {
        hub.metrics().handshake_failure("capacity");
        return Err(Reject::new(503, "too many connections"));
    }
    Ok(Upgrade::new())
}

/// One place under `max_connections`, given back when dropped: on every
/// exit of the connection's task, a panic included.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    pub(crate) fn take(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The close frame that says `d` (RFC 6455 7.4: 4000-4999 are the
/// application's; docs/protocol.md lists ours).
pub(crate) fn close_frame(d: &Disconnect) -> Option<(CloseCode, Cow<'_, str>)> {
    let (code, reason): (u16, Cow<'_, str>) = match d {
        Disconnect::Gone => return None,
        Disconnect::BadRequest(reason) => (close::BAD_REQUEST, reason.as_ref().into()),
        Disconnect::Unauthorized(reason) => (close::UNAUTHORIZED, (*reason).into()),
        Disconnect::ConnectTimeout => (close::CONNECT_TIMEOUT, "connect timeout".into()),
        Disconnect::RateLimited => (close::RATE_LIMITED, "rate limited".into()),
        Disconnect::SlowConsumer => (close::SLOW_CONSUMER, "slow consumer".into()),
        Disconnect::TokenExpired => (close::TOKEN_EXPIRED, "token expired".into()),
        Disconnect::Api(reason) => (close::DISCONNECTED, reason.as_str().into()),
        Disconnect::Shutdown { retry_ms } => (
            CloseCode::GOING_AWAY.0,
            format!("shutdown; retry in {retry_ms} ms").into(),
        ),
        Disconnect::Endpoint { code, reason } => (*code, reason.as_str().into()),
        Disconnect::Internal(reason) => (CloseCode::INTERNAL_ERROR.0, (*reason).into()),
    };
    Some((CloseCode(code), reason))
}

/// `reason` cut to what a Close frame holds.
fn close_reason(reason: &str) -> &str {
    // RFC 6455 5.5: control frame payloads are at most 125 bytes, two of
    // them the code.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The gauge of open connections, down again on every exit.
pub(crate) struct Open(Arc<Hub>);

impl Open {
    pub(crate) fn new(hub: &Arc<Hub>) -> Self {
        hub.metrics().connection_opened();
        Self(hub.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.metrics().connection_closed();
    }
}

/// Runs a connection to its end. A panic in the session (or in an
/// endpoint it calls) closes the connection with 1011, is logged once and
/// counted; the session's cleanup runs as on any other exit (it is the
/// session's `Drop`).
///
/// Not an `async fn`: that would move `ws` from its argument slot into a
/// local slot of its own, and the future would keep room for both (a
/// socket's worth of memory per connection, for its whole life); the
/// block uses the captured socket in place.
#[allow(clippy::manual_async_fn)] // see above: the async fn costs memory
pub(crate) fn run<S>(
    hub: Arc<Hub>,
    endpoints: Arc<Endpoints>,
    mut ws: herald::WebSocket<S>,
    high_water: usize,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let _open = Open::new(&hub);
        let mut who = None;
        let pump = AssertUnwindSafe(pump(&hub, &endpoints, &mut ws, high_water, &mut who));
        let end = match pump.catch_unwind().await {
            Ok(end) => end,
            Err(panic) => {
                hub.metrics().panic();
                tracing::error!(
                    client = who.as_deref().unwrap_or("-"),
                    "session panicked: {}",
                    panic_message(&*panic)
                );
                Disconnect::Internal("internal error")
            }
        };
        match close_frame(&end) {
            Some((code, reason)) => {
                hub.metrics().close(Some(code.0), true);
                let _ = ws.close(code, close_reason(&reason)).await;
            }
            None => {
                let code = ws.close_frame().map(|f| f.code.0);
                hub.metrics().close(code, false);
            }
        }
    }
}

/// `connect` within the handshake timeout, then the session until it
/// ends. The session (and so its cleanup) is dropped before this returns,
/// also when it unwinds.
async fn pump<S>(
    hub: &Arc<Hub>,
    endpoints: &Arc<Endpoints>,
    ws: &mut herald::WebSocket<S>,
    high_water: usize,
    who: &mut Option<String>,
) -> Disconnect
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = match tokio::time::timeout(hub.config().handshake_timeout, ws.recv()).await {
        Err(_) => return Disconnect::ConnectTimeout,
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Ok(Message::Binary(_)))) => return text_frames_only(),
        Ok(_) => return Disconnect::Gone,
    };
    hub.metrics().message_in(first.len());
    let mut session = match ClientSession::connect(hub, endpoints, &first) {
        Ok(session) => session,
        Err(d) => return d,
    };
    *who = Some(session.client().info.client.clone());
    serve(&mut session, ws, high_water).await
}

fn text_frames_only() -> Disconnect {
    // 1003 is WebSocket's own "cannot accept this data type".
    Disconnect::Endpoint {
        code: CloseCode::UNSUPPORTED_DATA.0,
        reason: "text frames only".into(),
    }
}

enum Step {
    /// Woken after waiting on the outbox: let the runtime's other ready
    /// tasks and its I/O driver run first (see `serve`).
    Defer,
    Frame(Message),
    Closed,
    End(Disconnect),
    SlowConsumer,
}

async fn serve<S>(
    session: &mut ClientSession,
    ws: &mut herald::WebSocket<S>,
    high_water: usize,
) -> Disconnect
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client = session.client().clone();
    let hub = session.hub().clone();
    let metrics = hub.metrics();
    // Set when the last poll ended waiting on the outbox. A publication
    // wakes every subscriber's task at once; on a current-thread runtime
    // they run in turn, and the publisher's connection (made ready by the
    // I/O driver) would queue behind all of them, so the next publication
    // could never join the previous one in a subscriber's write. Deferring
    // once (`yield_now` waits until the driver has been polled) lets it
    // arrive first; under load, one write then carries several.
    let mut waited = false;
    loop {
        let step = poll_fn(|cx| {
            if std::mem::take(&mut waited) {
                return Poll::Ready(Step::Defer);
            }
            loop {
                if let Poll::Ready(d) = session.poll_end(cx) {
                    return Poll::Ready(Step::End(d));
                }
                // Whether the outbox said "empty" (and so holds our waker).
                let mut outbox_waits = false;
                let mut now = None;
                while ws.buffered_amount() < high_water {
                    match client.outbox.poll_next(cx) {
                        Poll::Ready(Ok((item, drained))) => {
                            if let Some(at) = item.published {
                                let now = *now.get_or_insert_with(Instant::now);
                                metrics.publish_to_write(now.duration_since(at));
                            }
                            if ws.start_send_prepared(&item.message).is_err() {
                                return Poll::Ready(Step::Closed);
                            }
                            if drained {
                                // It took the last item and holds our waker.
                                outbox_waits = true;
                                break;
                            }
                        }
                        Poll::Ready(Err(())) => return Poll::Ready(Step::SlowConsumer),
                        Poll::Pending => {
                            outbox_waits = true;
                            break;
                        }
                    }
                }
                // Also writes what was just queued.
                match ws.poll_recv(cx) {
                    Poll::Ready(Some(Ok(m))) => return Poll::Ready(Step::Frame(m)),
                    Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Step::Closed),
                    Poll::Pending => {}
                }
                // The write just made room and the outbox may hold more: no
                // one would wake us for it (its waker is only armed when
                // it is found empty), so go round again. Still above the
                // mark, the socket's write readiness wakes us.
                if outbox_waits || ws.buffered_amount() >= high_water {
                    waited = outbox_waits;
                    return Poll::Pending;
                }
            }
        })
        .await;
        match step {
            Step::Defer => tokio::task::yield_now().await,
            Step::Frame(Message::Text(text)) => {
                if let Err(d) = session.command(&text).await {
                    return d;
                }
                // Commands are rare on a push connection: the queues their
                // frames and replies grew need not stay until the keepalive.
                ws.shrink_to_fit();
            }
            Step::Frame(Message::Binary(_)) => return text_frames_only(),
            Step::Closed => return Disconnect::Gone,
            Step::End(d) => return d,
            Step::SlowConsumer => return Disconnect::SlowConsumer,
        }
    }
}
