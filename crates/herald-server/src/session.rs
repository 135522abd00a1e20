//! A client's session, whatever carries it: `connect`, then commands in,
//! replies and pushes out through the client's outbox, until it ends with
//! a [`Disconnect`]. The transports (`transport/`) only move text: a
//! WebSocket pump today, HTTP transports next, each mapping a
//! `Disconnect` to its own way of saying goodbye (a close code, an HTTP
//! status, an event).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::auth;
use crate::delivery::{Disconnect, Item};
use crate::endpoint::Endpoints;
use crate::endpoint::Session;
use crate::hub::{Client, Hub};
use crate::protocol::{self, Error, ErrorCode, Method};

/// How a session opens, beyond `connect` itself.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Opening<'a> {
    /// For a transport whose later requests must find this session: this
    /// node's tokens and the session's id; the reply gets a signed
    /// `session` token.
    pub(crate) session: Option<(&'a crate::transport::token::Tokens, u64)>,
    /// A poll's reader: not announced, no presence, no endpoint calls
    /// (see `hub::Client::silent`).
    pub(crate) silent: bool,
    /// The client id shown to others and to endpoints, where it is not
    /// the connection's own: a poller's, the same over all its polls.
    pub(crate) shown: Option<&'a str>,
}

/// A connected client: its registration in the hub, its token's expiry,
/// its command rate. Dropping it is the session's end (a guard, so that
/// it runs on every exit path, a panic included): the client leaves every
/// channel (leave pushes go out) and the registry, and endpoints hear
/// `on_close`.
pub(crate) struct ClientSession {
    hub: Arc<Hub>,
    endpoints: Arc<Endpoints>,
    client: Arc<Client>,
    expiry: auth::Expiry,
    limiter: RateLimiter,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("client", &self.client.info.client)
            .finish_non_exhaustive()
    }
}

impl ClientSession {
    /// Handles the first command, which must be `connect`: checks the
    /// token, registers the client and queues the reply.
    pub(crate) fn connect(
        hub: &Arc<Hub>,
        endpoints: &Arc<Endpoints>,
        text: &str,
    ) -> Result<Self, Disconnect> {
        Self::open(hub, endpoints, text, Opening::default())
    }

    /// [`ClientSession::connect`] with the HTTP transports' options.
    pub(crate) fn open(
        hub: &Arc<Hub>,
        endpoints: &Arc<Endpoints>,
        text: &str,
        opening: Opening<'_>,
    ) -> Result<Self, Disconnect> {
        let Opening {
            session,
            silent,
            shown,
        } = opening;
        let command: protocol::Command = serde_json::from_str(text)
            .map_err(|e| Disconnect::BadRequest(protocol::parse_error_message(&e).into()))?;
        let Method::Connect(params) = command.method else {
            return Err(Disconnect::BadRequest(
                "connect first: the first command must be connect".into(),
            ));
        };
        // A name is repeated in every join push and presence answer: a long
        // one would turn each join into a flood.
        let max_name = hub.config().max_name_size;
        if params.name.as_ref().is_some_and(|n| n.len() > max_name) {
            return Err(Disconnect::BadRequest(
                format!("name longer than {max_name} bytes (max_name_size)").into(),
            ));
        }
        let (user, name, allowed, exp) = match (hub.tokens(), params.token) {
            (Ok(Some(verifier)), Some(token)) => {
                let claims = verifier.verify(&token, auth::unix_now()).map_err(|e| {
                    tracing::info!(check = %e, "connect refused: invalid token");
                    Disconnect::Unauthorized(e.close_reason())
                })?;
                (
                    claims.sub,
                    claims.name.or(params.name),
                    claims.channels,
                    claims.exp,
                )
            }
            (Ok(Some(_)), None) => return Err(Disconnect::Unauthorized("token required")),
            // Dev mode: anyone, every channel.
            (Ok(None), _) => (String::new(), params.name, None, None),
            // Logged once by `Server::new`.
            (Err(_), _) => {
                return Err(Disconnect::Internal("token verification unavailable"));
            }
        };
        let client = hub.register_as(user, name, allowed, silent, shown.map(str::to_owned));
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
        if let Some((tokens, sid)) = session {
            result["session"] = tokens.sign("stream", sid, &client.info.user).into();
        }
        push_reply(&client, protocol::reply(command.id, &result));
        Ok(Self {
            hub: hub.clone(),
            endpoints: endpoints.clone(),
            limiter: RateLimiter::new(hub.config().max_commands_per_second),
            client,
            expiry,
        })
    }

    /// The client, as the hub knows it.
    pub(crate) fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The hub it is registered in.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Handles one command text: rate limit, then the command. `Err`: the
    /// session must end.
    pub(crate) async fn command(&mut self, text: &str) -> Result<(), Disconnect> {
        self.hub.metrics().message_in(text.len());
        if !self.limiter.allow(Instant::now()) {
            if self.limiter.exhausted() {
                return Err(Disconnect::RateLimited);
            }
            if let Some(id) = command_id(text) {
                push_reply(
                    &self.client,
                    protocol::reply_error(id, &ErrorCode::RateLimited.into()),
                );
            }
            return Ok(());
        }
        handle(
            &self.hub,
            &self.endpoints,
            &self.client,
            &mut self.expiry,
            text,
        )
        .await
        .map_err(|reason| Disconnect::BadRequest(reason.into()))
    }

    /// Ready when the session must end for a reason of the server's: a
    /// kick (API, endpoint, shutdown) or the token's expiry. Registers the
    /// task's waker for both.
    pub(crate) fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<Disconnect> {
        if let Some(d) = self
            .client
            .kick
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Poll::Ready(d);
        }
        if self.expiry.poll(cx).is_ready() {
            tracing::info!(client = %self.client.info.client, "closed: token expired");
            return Poll::Ready(Disconnect::TokenExpired);
        }
        Poll::Pending
    }
}

impl Drop for ClientSession {
    fn drop(&mut self) {
        let client = &self.client;
        let left = self.hub.unregister(client);
        if client.silent {
            return;
        }
        for (ns, endpoint) in self.endpoints.for_channels(&self.hub, &left) {
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
}

/// The text of a panic's payload, for the log.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn push_reply(client: &Client, text: String) {
    // Replies are never dropped: the policies apply to publications.
    client.outbox.push(
        Item {
            key: None,
            message: crate::delivery::prepared(text),
            reply: true,
            published: None,
        },
        usize::MAX,
        crate::config::QueuePolicy::DropOldest,
    );
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
/// id to answer) ends the session with the reason.
pub(crate) async fn handle(
    hub: &Arc<Hub>,
    endpoints: &Endpoints,
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
        Method::Subscribe(params) => match hub.subscribe(client, id, &params).await {
            // Once per client and namespace, however many channels.
            Ok(true) => {
                if let Some((ns, endpoint)) = endpoints.for_channel(hub, &params.channel) {
                    endpoint.on_open(hub, &Session::new(client.clone()), &ns);
                }
            }
            Ok(false) => {}
            Err(code) => reply(Err(code.into())),
        },
        Method::Unsubscribe(params) => {
            let result = hub.unsubscribe(client, &params.channel);
            if result == Ok(true)
                && let Some((ns, endpoint)) = endpoints.for_channel(hub, &params.channel)
            {
                endpoint.on_close(hub, &Session::new(client.clone()), &ns);
            }
            reply(
                result
                    .map(|_| protocol::reply(id, &serde_json::json!({})))
                    .map_err(Error::from),
            );
        }
        Method::Publish(params) => reply(
            publish(hub, endpoints, client, params)
                .await
                .map(|v| protocol::reply(id, &v)),
        ),
        Method::Presence(params) => reply(if !client.may_access(&params.channel) {
            Err(ErrorCode::PermissionDenied.into())
        } else if params.count {
            hub.presence_count(&params.channel)
                .await
                .map(|count| protocol::reply(id, &serde_json::json!({ "count": count })))
        } else {
            hub.presence(&params.channel)
                .await
                .map(|clients| protocol::reply(id, &serde_json::json!({ "clients": clients })))
        }),
        Method::History(params) => reply(if client.may_access(&params.channel) {
            hub.history(&params.channel, params.limit)
                .await
                .map(|history| protocol::reply(id, &history))
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

async fn publish(
    hub: &Arc<Hub>,
    endpoints: &Endpoints,
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
    if let Some((_, endpoint)) = endpoints.for_channel(hub, &params.channel) {
        crate::limits::check_data(&params.data, hub.config())?;
        endpoint.on_message(
            hub,
            &Session::new(client.clone()),
            &params.channel,
            &params.data,
        );
        return Ok(serde_json::json!({}));
    }
    let published = hub
        .publish(&params.channel, params.data, Some(&client.info))
        .await?;
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
