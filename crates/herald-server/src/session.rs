//! One client connection: `connect`, then commands in and pushes out.
//!
//! The task polls two things at once: the WebSocket (commands, and
//! writing what is queued) and the connection's outbox (publications from
//! the hub, replies). The outbox is drained into the socket only while the
//! socket's own queue is under its high-water mark; past that the outbox
//! fills and the namespace's slow-consumer policy decides.

use std::borrow::Cow;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt as _;
use herald::{CloseCode, Message, Utf8Bytes};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::auth;
use crate::endpoint::Session;
use crate::hub::{Client, Hub};
use crate::outbox::Item;
use crate::protocol::{self, Error, ErrorCode, Method, close};

/// Outbox items moved into the socket per wakeup.
const BATCH: usize = 64;

enum Step {
    Frame(Message),
    Closed,
    Kicked(u16, String),
    SlowConsumer,
    TokenExpired,
}

/// How a session ended.
enum End {
    /// The server closes with (code, reason).
    Close(CloseCode, Cow<'static, str>),
    /// The peer closed, or the connection failed.
    Peer,
}

impl End {
    fn close(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Close(CloseCode(code), reason.into())
    }
}

/// The end of a session, run on every exit path (a normal return, an
/// error, a panic in the session or in an endpoint, the task being
/// dropped): the client leaves every channel and the registry, endpoints
/// hear `on_close`, the gauge goes down. Without it a panic left a ghost
/// in presence and in the connection count.
struct Cleanup {
    hub: Arc<Hub>,
    client: Option<Arc<Client>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            for (ns, endpoint) in self.hub.unregister(&client) {
                let session = Session::new(client.clone());
                // This may run while unwinding, where a second panic would
                // abort the process: an endpoint's panic stops here.
                let closed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    endpoint.on_close(&self.hub, &session, &ns);
                }));
                if let Err(panic) = closed {
                    self.hub.metrics().panic();
                    tracing::error!(
                        client = %client.info.client,
                        "endpoint on_close for {ns} panicked: {}",
                        panic_message(&*panic)
                    );
                }
            }
        }
        self.hub.metrics().connection_closed();
    }
}

/// Runs a connection to its end. A panic in the session (or in an
/// endpoint it calls) closes the connection with 1011, is logged once and
/// counted, and the cleanup runs as on any other exit.
pub(crate) async fn run<S>(hub: Arc<Hub>, mut ws: herald::WebSocket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    hub.metrics().connection_opened();
    let mut cleanup = Cleanup {
        hub: hub.clone(),
        client: None,
    };
    let session = AssertUnwindSafe(session(&hub, &mut ws, &mut cleanup.client));
    let end = match session.catch_unwind().await {
        Ok(end) => end,
        Err(panic) => {
            hub.metrics().panic();
            let client = cleanup.client.as_ref().map(|c| c.info.client.clone());
            tracing::error!(
                client = client.as_deref().unwrap_or("-"),
                "session panicked: {}",
                panic_message(&*panic)
            );
            End::Close(CloseCode::INTERNAL_ERROR, "internal error".into())
        }
    };
    match end {
        End::Close(code, reason) => {
            hub.metrics().close(Some(code.0), true);
            let _ = ws.close(code, close_reason(&reason)).await;
        }
        End::Peer => {
            let code = ws.close_frame().map(|f| f.code.0);
            hub.metrics().close(code, false);
        }
    }
    drop(cleanup);
}

/// The text of a panic's payload, for the log.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
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

/// `connect`, then commands until the end. Sets `registered` as soon as
/// the client is in the hub, so the cleanup finds it whatever happens.
async fn session<S>(
    hub: &Arc<Hub>,
    ws: &mut herald::WebSocket<S>,
    registered: &mut Option<Arc<Client>>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let timeout = hub.config().handshake_timeout;
    let (client, expiry) = match tokio::time::timeout(timeout, connect(hub, ws)).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(end)) => return end,
        Err(_) => return End::close(close::CONNECT_TIMEOUT, "connect timeout"),
    };
    *registered = Some(client.clone());
    serve(hub, &client, ws, expiry).await
}

/// Waits for the `connect` command and registers the client; also returns
/// the timer of the token's `exp`.
async fn connect<S>(
    hub: &Arc<Hub>,
    ws: &mut herald::WebSocket<S>,
) -> Result<(Arc<Client>, auth::Expiry), End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = match ws.recv().await {
        Some(Ok(Message::Text(t))) => t,
        Some(Ok(Message::Binary(_))) => {
            return Err(End::Close(
                CloseCode::UNSUPPORTED_DATA,
                "text frames only".into(),
            ));
        }
        _ => return Err(End::Peer),
    };
    hub.metrics().message_in(text.len());
    let command: protocol::Command = serde_json::from_str(&text)
        .map_err(|e| End::close(close::BAD_REQUEST, protocol::parse_error_message(&e)))?;
    let Method::Connect(params) = command.method else {
        return Err(End::close(
            close::BAD_REQUEST,
            "connect first: the first command must be connect",
        ));
    };
    let (user, name, allowed, exp) = match (hub.tokens(), params.token) {
        (Ok(Some(verifier)), Some(token)) => {
            let claims = verifier.verify(&token, auth::unix_now()).map_err(|e| {
                tracing::info!(check = %e, "connect refused: invalid token");
                End::close(close::UNAUTHORIZED, e.close_reason())
            })?;
            (
                claims.sub,
                claims.name.or(params.name),
                claims.channels,
                claims.exp,
            )
        }
        (Ok(Some(_)), None) => return Err(End::close(close::UNAUTHORIZED, "token required")),
        // Dev mode: anyone, every channel.
        (Ok(None), _) => (String::new(), params.name, None, None),
        // Logged once by `Server::new`.
        (Err(_), _) => {
            return Err(End::Close(
                CloseCode::INTERNAL_ERROR,
                "token verification unavailable".into(),
            ));
        }
    };
    let client = hub.register(user, name, allowed);
    let mut result = serde_json::json!({
        "client": client.info.client,
        "version": env!("CARGO_PKG_VERSION"),
        "ping": hub.config().ping_interval.as_secs(),
    });
    let mut expiry = auth::Expiry::default();
    if let (Ok(Some(verifier)), Some(exp)) = (hub.tokens(), exp) {
        let ttl = expiry.set(Some(exp), verifier.leeway(), auth::unix_now());
        result["expires"] = exp.into();
        result["ttl"] = ttl.into();
    }
    push_reply(&client, protocol::reply(command.id, &result));
    Ok((client, expiry))
}

fn push_reply(client: &Client, text: String) {
    // Replies are never dropped: the policies apply to publications.
    client.outbox.push(
        Item {
            key: None,
            text: Utf8Bytes::from(text),
            reply: true,
            published: None,
        },
        usize::MAX,
        crate::config::QueuePolicy::DropOldest,
    );
}

async fn serve<S>(
    hub: &Arc<Hub>,
    client: &Arc<Client>,
    ws: &mut herald::WebSocket<S>,
    mut expiry: auth::Expiry,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut batch = Vec::new();
    let mut limiter = RateLimiter::new(hub.config().max_commands_per_second);
    let high_water = herald::Config::default().write_high_water;
    loop {
        let step = poll_fn(|cx| {
            loop {
                if let Some((code, reason)) =
                    client.kick.lock().unwrap_or_else(|p| p.into_inner()).take()
                {
                    return Poll::Ready(Step::Kicked(code, reason));
                }
                if expiry.poll(cx).is_ready() {
                    return Poll::Ready(Step::TokenExpired);
                }
                // Whether the outbox said "empty" (and so holds our waker).
                let mut outbox_waits = false;
                while ws.buffered_amount() < high_water {
                    match client.outbox.poll_take(cx, BATCH, &mut batch) {
                        Poll::Ready(Ok(())) => {
                            let mut now = None;
                            for item in batch.drain(..) {
                                if let Some(at) = item.published {
                                    let now = *now.get_or_insert_with(Instant::now);
                                    hub.metrics().publish_to_write(now.duration_since(at));
                                }
                                if ws.start_send_message(Message::Text(item.text)).is_err() {
                                    return Poll::Ready(Step::Closed);
                                }
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
                    return Poll::Pending;
                }
            }
        })
        .await;
        match step {
            Step::Frame(Message::Text(text)) => {
                hub.metrics().message_in(text.len());
                if !limiter.allow(Instant::now()) {
                    if limiter.exhausted() {
                        return End::close(close::RATE_LIMITED, "rate limited");
                    }
                    if let Some(id) = command_id(&text) {
                        push_reply(
                            client,
                            protocol::reply_error(id, &ErrorCode::RateLimited.into()),
                        );
                    }
                    continue;
                }
                if let Err(reason) = handle(hub, client, &mut expiry, &text) {
                    return End::close(close::BAD_REQUEST, reason);
                }
            }
            Step::Frame(Message::Binary(_)) => {
                return End::Close(CloseCode::UNSUPPORTED_DATA, "text frames only".into());
            }
            Step::Closed => return End::Peer,
            Step::Kicked(code, reason) => return End::close(code, reason),
            Step::SlowConsumer => return End::close(close::SLOW_CONSUMER, "slow consumer"),
            Step::TokenExpired => {
                tracing::info!(client = %client.info.client, "closed: token expired");
                return End::close(close::TOKEN_EXPIRED, "token expired");
            }
        }
    }
}

/// The `id` of a command that did not parse, so the error can be
/// addressed to it.
fn command_id(text: &str) -> Option<u32> {
    #[derive(Deserialize)]
    struct Id {
        id: u32,
    }
    serde_json::from_str::<Id>(text).ok().map(|i| i.id)
}

/// Handles one command. `Err` (a frame that is not a command and has no
/// id to answer) closes the connection with 4101 and the reason.
pub(crate) fn handle(
    hub: &Arc<Hub>,
    client: &Arc<Client>,
    expiry: &mut auth::Expiry,
    text: &str,
) -> Result<(), String> {
    let command: protocol::Command = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            let error = Error::new(ErrorCode::BadRequest, protocol::parse_error_message(&e));
            return match command_id(text) {
                Some(id) => {
                    push_reply(client, protocol::reply_error(id, &error));
                    Ok(())
                }
                None => Err(error.message.into_owned()),
            };
        }
    };
    let id = command.id;
    let reply = |r: Result<String, Error>| match r {
        Ok(text) => push_reply(client, text),
        Err(e) => push_reply(client, protocol::reply_error(id, &e)),
    };
    match command.method {
        Method::Connect(_) => reply(Err(Error::new(
            ErrorCode::BadRequest,
            "already connected: connect is sent once, first",
        ))),
        // The hub queues the reply itself, ahead of any publication.
        Method::Subscribe(params) => match hub.subscribe(client, id, &params) {
            // Once per client and namespace, however many channels.
            Ok(true) => {
                if let Some((ns, endpoint)) = hub.endpoint_for(&params.channel) {
                    endpoint.on_open(hub, &Session::new(client.clone()), &ns);
                }
            }
            Ok(false) => {}
            Err(code) => reply(Err(code.into())),
        },
        Method::Unsubscribe(params) => {
            let result = hub.unsubscribe(client, &params.channel);
            if result == Ok(true)
                && let Some((ns, endpoint)) = hub.endpoint_for(&params.channel)
            {
                endpoint.on_close(hub, &Session::new(client.clone()), &ns);
            }
            reply(
                result
                    .map(|_| protocol::reply(id, &serde_json::json!({})))
                    .map_err(Error::from),
            );
        }
        Method::Publish(params) => {
            reply(publish(hub, client, params).map(|v| protocol::reply(id, &v)))
        }
        Method::Presence(params) => reply(if client.may_access(&params.channel) {
            hub.presence(&params.channel)
                .map(|clients| protocol::reply(id, &serde_json::json!({ "clients": clients })))
                .map_err(Error::from)
        } else {
            Err(ErrorCode::PermissionDenied.into())
        }),
        Method::History(params) => reply(if client.may_access(&params.channel) {
            hub.history(&params.channel, params.limit)
                .map(|history| protocol::reply(id, &history))
                .map_err(Error::from)
        } else {
            Err(ErrorCode::PermissionDenied.into())
        }),
        Method::Ping(_) => reply(Ok(protocol::reply(id, &serde_json::json!({})))),
        Method::Refresh(params) => {
            reply(refresh(hub, client, expiry, &params.token).map(|v| protocol::reply(id, &v)))
        }
    }
    Ok(())
}

/// Replaces the connection's token: a valid token for the same user moves
/// the connection's expiry to the new `exp`. The channels and name stay
/// those of the `connect` token.
fn refresh(
    hub: &Arc<Hub>,
    client: &Arc<Client>,
    expiry: &mut auth::Expiry,
    token: &str,
) -> Result<serde_json::Value, Error> {
    let verifier = match hub.tokens() {
        Ok(Some(verifier)) => verifier,
        // Dev mode: tokens are not checked and nothing expires.
        Ok(None) => return Ok(serde_json::json!({})),
        Err(_) => return Err(ErrorCode::Unauthorized.into()),
    };
    let now = auth::unix_now();
    let claims = verifier.verify(token, now).map_err(|e| {
        tracing::info!(client = %client.info.client, check = %e, "refresh refused: invalid token");
        Error::new(
            ErrorCode::Unauthorized,
            format!("unauthorized: {}", e.close_reason()),
        )
    })?;
    if claims.sub != client.info.user {
        tracing::info!(client = %client.info.client, "refresh refused: token for another user");
        return Err(Error::new(
            ErrorCode::PermissionDenied,
            "permission denied: the token is for another user",
        ));
    }
    let ttl = expiry.set(claims.exp, verifier.leeway(), now);
    Ok(match (claims.exp, ttl) {
        (Some(exp), Some(ttl)) => serde_json::json!({ "expires": exp, "ttl": ttl }),
        _ => serde_json::json!({}),
    })
}

fn publish(
    hub: &Arc<Hub>,
    client: &Arc<Client>,
    params: protocol::PublishParams,
) -> Result<serde_json::Value, Error> {
    let (_, ns) = hub
        .config()
        .namespace_of(&params.channel)
        .ok_or(ErrorCode::UnknownChannel)?;
    if !ns.allow_publish || !client.may_access(&params.channel) {
        return Err(ErrorCode::PermissionDenied.into());
    }
    // An endpoint owns its namespace's client publications: it decides
    // what, if anything, is broadcast. The limits hold for what it is
    // handed too.
    if let Some((_, endpoint)) = hub.endpoint_for(&params.channel) {
        crate::limits::check_data(&params.data, hub.config())?;
        endpoint.on_message(
            hub,
            &Session::new(client.clone()),
            &params.channel,
            &params.data,
        );
        return Ok(serde_json::json!({}));
    }
    let published = hub.publish(&params.channel, params.data, Some(&client.info))?;
    Ok(serde_json::json!({"offset": published.offset, "epoch": published.epoch}))
}

/// Token bucket: `rate` commands per second, bursts of twice that.
#[derive(Debug)]
struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: Instant,
    /// Commands refused in a row.
    refused: u32,
}

impl RateLimiter {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate * 2.0,
            last: Instant::now(),
            refused: 0,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).min(Duration::from_secs(10));
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// A second's worth of commands refused in a row: the client ignores
    /// the errors, so it is closed.
    fn exhausted(&self) -> bool {
        f64::from(self.refused) >= self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_bursts_then_refuses() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(10);
        assert!((0..20).all(|_| l.allow(t0)));
        assert!(!l.allow(t0));
        assert!(l.allow(t0 + Duration::from_millis(150)));
        for _ in 0..10 {
            l.allow(t0 + Duration::from_millis(150));
        }
        assert!(l.exhausted());
    }
}
