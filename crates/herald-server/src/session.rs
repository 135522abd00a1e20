//! One client connection: `connect`, then commands in and pushes out.
//!
//! The task polls two things at once: the WebSocket (commands, and
//! writing what is queued) and the connection's outbox (publications from
//! the hub, replies). The outbox is drained into the socket only while the
//! socket's own queue is under its high-water mark; past that the outbox
//! fills and the namespace's slow-consumer policy decides.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use herald::{CloseCode, Message, Utf8Bytes};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth;
use crate::endpoint::Session;
use crate::hub::{Client, Hub};
use crate::outbox::Item;
use crate::protocol::{self, ErrorCode, Method, close};

/// Outbox items moved into the socket per wakeup.
const BATCH: usize = 64;

enum Step {
    Frame(Message),
    Closed,
    Kicked(u16, String),
    SlowConsumer,
    TokenExpired,
}

/// Runs a connection to its end.
pub(crate) async fn run<S>(hub: Arc<Hub>, mut ws: herald::WebSocket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    hub.metrics().connection_opened();
    let timeout = hub.config().handshake_timeout;
    let (client, expiry) = match tokio::time::timeout(timeout, connect(&hub, &mut ws)).await {
        Ok(Ok(connected)) => connected,
        Ok(Err((code, reason))) => {
            let _ = ws.close(CloseCode(code), reason).await;
            hub.metrics().connection_closed();
            return;
        }
        Err(_) => {
            let _ = ws
                .close(CloseCode(close::CONNECT_TIMEOUT), "connect timeout")
                .await;
            hub.metrics().connection_closed();
            return;
        }
    };
    serve(&hub, &client, &mut ws, expiry).await;
    for (ns, endpoint) in hub.unregister(&client) {
        endpoint.on_close(&hub, &Session::new(client.clone()), &ns);
    }
    hub.metrics().connection_closed();
}

/// Waits for the `connect` command and registers the client; also returns
/// the timer of the token's `exp`.
async fn connect<S>(
    hub: &Arc<Hub>,
    ws: &mut herald::WebSocket<S>,
) -> Result<(Arc<Client>, auth::Expiry), (u16, &'static str)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = match ws.recv().await {
        Some(Ok(Message::Text(t))) => t,
        Some(Ok(Message::Binary(_))) => {
            return Err((CloseCode::UNSUPPORTED_DATA.0, "text frames only"));
        }
        _ => return Err((CloseCode::NORMAL.0, "")),
    };
    hub.metrics().message_in(text.len());
    let command: protocol::Command =
        serde_json::from_str(&text).map_err(|_| (close::BAD_REQUEST, "bad request"))?;
    let Method::Connect(params) = command.method else {
        return Err((close::BAD_REQUEST, "connect first"));
    };
    let (user, name, allowed, exp) = match (hub.tokens(), params.token) {
        (Ok(Some(verifier)), Some(token)) => {
            let claims = verifier.verify(&token, auth::unix_now()).map_err(|e| {
                tracing::info!(check = %e, "connect refused: invalid token");
                (close::UNAUTHORIZED, e.close_reason())
            })?;
            (
                claims.sub,
                claims.name.or(params.name),
                claims.channels,
                claims.exp,
            )
        }
        (Ok(Some(_)), None) => return Err((close::UNAUTHORIZED, "token required")),
        // Dev mode: anyone, every channel.
        (Ok(None), _) => (String::new(), params.name, None, None),
        // Logged once by `Server::new`.
        (Err(_), _) => {
            return Err((
                CloseCode::INTERNAL_ERROR.0,
                "token verification unavailable",
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
) where
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
                            for item in batch.drain(..) {
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
                        let _ = ws
                            .close(CloseCode(close::RATE_LIMITED), "rate limited")
                            .await;
                        return;
                    }
                    if let Some(id) = command_id(&text) {
                        push_reply(client, protocol::reply_error(id, ErrorCode::RateLimited));
                    }
                    continue;
                }
                if let Err(reason) = handle(hub, client, &mut expiry, &text) {
                    let _ = ws.close(CloseCode(close::BAD_REQUEST), reason).await;
                    return;
                }
            }
            Step::Frame(Message::Binary(_)) => {
                let _ = ws
                    .close(CloseCode::UNSUPPORTED_DATA, "text frames only")
                    .await;
                return;
            }
            Step::Closed => return,
            Step::Kicked(code, reason) => {
                let _ = ws.close(CloseCode(code), &reason).await;
                return;
            }
            Step::SlowConsumer => {
                let _ = ws
                    .close(CloseCode(close::SLOW_CONSUMER), "slow consumer")
                    .await;
                return;
            }
            Step::TokenExpired => {
                tracing::info!(client = %client.info.client, "closed: token expired");
                let _ = ws
                    .close(CloseCode(close::TOKEN_EXPIRED), "token expired")
                    .await;
                return;
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

/// Handles one command; `Err` closes the connection (4101).
fn handle(
    hub: &Arc<Hub>,
    client: &Arc<Client>,
    expiry: &mut auth::Expiry,
    text: &str,
) -> Result<(), &'static str> {
    let command: protocol::Command = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(_) => {
            return match command_id(text) {
                Some(id) => {
                    push_reply(client, protocol::reply_error(id, ErrorCode::BadRequest));
                    Ok(())
                }
                None => Err("bad request"),
            };
        }
    };
    let id = command.id;
    let reply = |r: Result<serde_json::Value, ErrorCode>| match r {
        Ok(v) => push_reply(client, protocol::reply(id, &v)),
        Err(code) => push_reply(client, protocol::reply_error(id, code)),
    };
    match command.method {
        Method::Connect(_) => reply(Err(ErrorCode::BadRequest)),
        // The hub queues the reply itself, ahead of any publication.
        Method::Subscribe(params) => match hub.subscribe(client, id, &params) {
            // Once per client and namespace, however many channels.
            Ok(true) => {
                if let Some((ns, endpoint)) = hub.endpoint_for(&params.channel) {
                    endpoint.on_open(hub, &Session::new(client.clone()), &ns);
                }
            }
            Ok(false) => {}
            Err(code) => reply(Err(code)),
        },
        Method::Unsubscribe(params) => {
            let result = hub.unsubscribe(client, &params.channel);
            if result == Ok(true)
                && let Some((ns, endpoint)) = hub.endpoint_for(&params.channel)
            {
                endpoint.on_close(hub, &Session::new(client.clone()), &ns);
            }
            reply(result.map(|_| serde_json::json!({})));
        }
        Method::Publish(params) => reply(publish(hub, client, params)),
        Method::Presence(params) => reply(if client.may_access(&params.channel) {
            hub.presence(&params.channel)
                .map(|clients| serde_json::json!({ "clients": clients }))
        } else {
            Err(ErrorCode::PermissionDenied)
        }),
        Method::History(params) => reply(if client.may_access(&params.channel) {
            hub.history(&params.channel, params.limit)
        } else {
            Err(ErrorCode::PermissionDenied)
        }),
        Method::Ping(_) => reply(Ok(serde_json::json!({}))),
        Method::Refresh(params) => reply(refresh(hub, client, expiry, &params.token)),
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
) -> Result<serde_json::Value, ErrorCode> {
    let verifier = match hub.tokens() {
        Ok(Some(verifier)) => verifier,
        // Dev mode: tokens are not checked and nothing expires.
        Ok(None) => return Ok(serde_json::json!({})),
        Err(_) => return Err(ErrorCode::Unauthorized),
    };
    let now = auth::unix_now();
    let claims = verifier.verify(token, now).map_err(|e| {
        tracing::info!(client = %client.info.client, check = %e, "refresh refused: invalid token");
        ErrorCode::Unauthorized
    })?;
    if claims.sub != client.info.user {
        tracing::info!(client = %client.info.client, "refresh refused: token for another user");
        return Err(ErrorCode::PermissionDenied);
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
) -> Result<serde_json::Value, ErrorCode> {
    let (_, ns) = hub
        .config()
        .namespace_of(&params.channel)
        .ok_or(ErrorCode::UnknownChannel)?;
    if !ns.allow_publish || !client.may_access(&params.channel) {
        return Err(ErrorCode::PermissionDenied);
    }
    // An endpoint owns its namespace's client publications: it decides
    // what, if anything, is broadcast.
    if let Some((_, endpoint)) = hub.endpoint_for(&params.channel) {
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
