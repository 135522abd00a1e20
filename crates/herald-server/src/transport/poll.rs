//! Long polling and polling, stateless: each `POST /connection/poll`
//! carries the client's token and its position in every channel, and is
//! answered from the broker's history, so it may land on any node.
//!
//! A poll runs as a short session: connect with the poll's token (a
//! `silent` client: no join or leave pushes, no presence), run the
//! poll's commands, subscribe to each channel recovering from its
//! position (the hub's subscribe merge, so nothing falls between the
//! history read and the live stream), and answer at once if anything was
//! missed, else wait for the first push up to `wait`. The session ends
//! with the answer. Presence outlives the request: a poller holds a lease
//! on its channels' presence, renewed by each poll and ended
//! `poll_presence_grace` after its last one.

use std::collections::{BTreeMap, HashMap};
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::{check_content_type, check_origin, drain};
use crate::delivery::Item;
use crate::endpoint::{Endpoints, Session};
use crate::http::api::{ApiError, read_body};
use crate::hub::{Client, Hub};
use crate::protocol::{ClientInfo, ErrorCode, SubscribeParams};
use crate::server::Server;
use crate::session::{ClientSession, Opening};

/// A channel position as the client sends it; `{}`: from now on.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    epoch: Option<String>,
    offset: Option<u64>,
}

/// A channel position in the answer.
#[derive(Debug, Serialize, Deserialize)]
struct Position {
    epoch: String,
    offset: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollBody<'a> {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    channels: BTreeMap<String, Cursor>,
    #[serde(default)]
    wait: f64,
    #[serde(default, borrow)]
    commands: Vec<&'a RawValue>,
}

#[derive(Serialize)]
struct Answer {
    client: String,
    /// The poller's client id in presence and join/leave pushes.
    id: String,
    replies: Vec<Box<RawValue>>,
    channels: BTreeMap<String, Position>,
    messages: Vec<Box<RawValue>>,
}

/// Methods a poll may carry: the ones that need no subscription.
const POLL_METHODS: &[&str] = &["publish", "presence", "history", "ping"];

/// `POST /connection/poll`.
pub(crate) async fn poll(State(server): State<Server>, req: Request) -> Response {
    answer(&server, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
}

async fn answer(server: &Server, req: Request) -> Result<Response, ApiError> {
    let hub = &server.hub;
    let config = hub.config();
    check_origin(req.headers(), config)?;
    check_content_type(req.headers())?;
    let limit = config
        .max_message_size
        .saturating_mul(config.max_commands_per_post.max(1));
    let body = read_body(req, limit, "max_message_size x max_commands_per_post").await?;
    let body: PollBody<'_> =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid body: {e}")))?;
    super::check_commands(body.commands.len(), config)?;
    if body.channels.len() > config.max_subscriptions {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::LimitExceeded,
            format!(
                "more than {} channels (max_subscriptions)",
                config.max_subscriptions
            ),
        ));
    }
    if !body.wait.is_finite() || body.wait < 0.0 {
        return Err(bad("wait must be a number of seconds, 0 or more"));
    }
    let wait = Duration::from_secs_f64(body.wait.min(config.poll_max_wait.as_secs_f64()));

    // The poller's identity over all its polls: from its last answer, if
    // this node made it.
    let sessions = &server.sessions;
    let known = body
        .client
        .as_deref()
        .and_then(|t| sessions.tokens.verify(t, "poll").ok());
    let sid = known.as_ref().map_or_else(|| sessions.next_id(), |c| c.sid);
    let shown = format!("p{sid}");
    let connect = serde_json::json!({"id": 0, "connect": {"token": body.token, "name": body.name}});
    let opening = Opening {
        session: None,
        silent: true,
        shown: Some(&shown),
    };
    let mut session = ClientSession::open(hub, &server.endpoints, &connect.to_string(), opening)
        .map_err(super::stream::refused)?;
    let client = session.client().clone();
    // The connect reply: not part of a poll's answer.
    drain(&client);
    if known.is_some_and(|c| c.sub != client.info.user) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            "the client token is another user's: poll without it",
        ));
    }

    // Refused channels refuse the poll before its commands run, so a
    // poll that fails has done nothing.
    for channel in body.channels.keys() {
        let code = if config.namespace_of(channel).is_none() {
            ErrorCode::UnknownChannel
        } else if !client.may_access(channel) {
            ErrorCode::PermissionDenied
        } else {
            continue;
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code,
            format!("{channel}: {}", code.message()),
        ));
    }
    // The lease first: an endpoint hears the poller arrive before its
    // commands (a game's player exists before its first move).
    let lease = server
        .sessions
        .pollers
        .renew(server, sid, &client.info, &body.channels);
    let mut messages = Vec::new();
    // What endpoints sent the poller itself (`Session::send`).
    for item in lease.take() {
        pushed(&item.text(), &mut BTreeMap::new(), &mut messages);
    }
    let mut replies = Vec::new();
    for command in &body.commands {
        if !poll_method(command) {
            let id = command_id(command);
            let error = crate::protocol::Error::new(
                ErrorCode::BadRequest,
                "a poll carries only publish, presence, history and ping",
            );
            replies.push(raw(crate::protocol::reply_error(id, &error)));
            continue;
        }
        if let Err(d) = session.command(command.get()).await {
            return Err(super::stream::refused(d));
        }
        replies.extend(drain(&client).iter().map(|i| raw(i.text())));
    }

    let mut positions = BTreeMap::new();
    for (channel, cursor) in &body.channels {
        let recover = cursor.epoch.is_some() || cursor.offset.is_some();
        let params = SubscribeParams {
            channel: channel.clone(),
            recover,
            epoch: cursor.epoch.clone(),
            offset: cursor.offset,
        };
        hub.subscribe(&client, 0, &params).await.map_err(|code| {
            let status = match code {
                ErrorCode::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::FORBIDDEN,
            };
            ApiError::new(status, code, format!("{channel}: {}", code.message()))
        })?;
        for item in drain(&client) {
            let text = item.text();
            if item.reply {
                subscribed(channel, &text, cursor, &mut positions, &mut messages);
            } else {
                pushed(&text, &mut positions, &mut messages);
            }
        }
    }

    if messages.is_empty() && !wait.is_zero() && !body.channels.is_empty() {
        let deadline = Instant::now() + wait;
        let mut batch = Vec::new();
        let got = tokio::time::timeout_at(
            deadline,
            poll_fn(|cx| {
                if session.poll_end(cx).is_ready() {
                    return Poll::Ready(());
                }
                match client.outbox.poll_take(cx, usize::MAX, &mut batch) {
                    Poll::Ready(_) => Poll::Ready(()),
                    Poll::Pending => Poll::Pending,
                }
            }),
        )
        .await;
        if got.is_ok() {
            for item in batch {
                pushed(&item.text(), &mut positions, &mut messages);
            }
        }
    }
    drop(session);
    server.sessions.pollers.ended(&lease, hub);
    for item in lease.take() {
        pushed(&item.text(), &mut positions, &mut messages);
    }
    let answer = Answer {
        id: format!("p{}", lease.sid),
        client: lease.token,
        replies,
        channels: positions,
        messages,
    };
    Ok(axum::Json(answer).into_response())
}

fn raw(text: String) -> Box<RawValue> {
    // Our own replies and pushes: valid JSON.
    RawValue::from_string(text).unwrap_or_else(|_| {
        RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!("null is JSON"))
    })
}

fn poll_method(command: &RawValue) -> bool {
    #[derive(Deserialize)]
    struct Keys(BTreeMap<String, serde::de::IgnoredAny>);
    serde_json::from_str::<Keys>(command.get())
        .map(|Keys(keys)| {
            keys.keys()
                .filter(|k| *k != "id")
                .all(|k| POLL_METHODS.contains(&k.as_str()))
        })
        .unwrap_or(true)
}

fn command_id(command: &RawValue) -> u32 {
    #[derive(Deserialize)]
    struct Id {
        id: u32,
    }
    serde_json::from_str::<Id>(command.get()).map_or(0, |i| i.id)
}

/// The subscribe reply for `channel`: its position, what was recovered,
/// or a gap.
fn subscribed(
    channel: &str,
    reply: &str,
    cursor: &Cursor,
    positions: &mut BTreeMap<String, Position>,
    messages: &mut Vec<Box<RawValue>>,
) {
    #[derive(Deserialize)]
    struct Reply<'a> {
        #[serde(borrow)]
        result: Option<Subscribed<'a>>,
    }
    #[derive(Deserialize)]
    struct Subscribed<'a> {
        epoch: String,
        offset: u64,
        recovered: Option<bool>,
        #[serde(borrow, default)]
        publications: Vec<&'a RawValue>,
    }
    let Ok(reply) = serde_json::from_str::<Reply<'_>>(reply) else {
        return;
    };
    let Some(result) = reply.result else {
        return;
    };
    if result.recovered == Some(false) {
        // Continue from what can be given: after the gap, or the top.
        let from = if cursor.epoch.as_deref() == Some(&result.epoch) {
            result
                .publications
                .first()
                .and_then(|p| offset_of(p))
                .map_or(result.offset, |o| o - 1)
        } else {
            result.offset
        };
        let gap = serde_json::json!({"push": {"channel": channel, "gap": {"epoch": result.epoch, "offset": from}}});
        messages.push(raw(gap.to_string()));
    }
    let same_epoch = cursor.epoch.as_deref() == Some(&result.epoch);
    if result.recovered == Some(true) || same_epoch {
        for p in &result.publications {
            let push = format!(
                r#"{{"push":{{"channel":{},"epoch":{},"pub":{}}}}}"#,
                serde_json::Value::from(channel),
                serde_json::Value::from(result.epoch.as_str()),
                p.get()
            );
            messages.push(raw(push));
        }
    }
    positions.insert(
        channel.to_owned(),
        Position {
            epoch: result.epoch,
            offset: result.offset,
        },
    );
}

fn offset_of(publication: &RawValue) -> Option<u64> {
    #[derive(Deserialize)]
    struct Offset {
        offset: u64,
    }
    serde_json::from_str::<Offset>(publication.get())
        .ok()
        .map(|o| o.offset)
}

/// A push that arrived while waiting: kept, and a publication (or a gap:
/// what the broker lost) moves its channel's position.
fn pushed(
    text: &str,
    positions: &mut BTreeMap<String, Position>,
    messages: &mut Vec<Box<RawValue>>,
) {
    #[derive(Deserialize)]
    struct Push<'a> {
        #[serde(borrow)]
        push: Inner<'a>,
    }
    #[derive(Deserialize)]
    struct Inner<'a> {
        channel: String,
        epoch: Option<String>,
        #[serde(borrow, rename = "pub")]
        publication: Option<&'a RawValue>,
        gap: Option<Position>,
    }
    let Ok(Push { push }) = serde_json::from_str::<Push<'_>>(text) else {
        return;
    };
    if let (Some(epoch), Some(offset)) = (push.epoch, push.publication.and_then(offset_of)) {
        positions.insert(push.channel, Position { epoch, offset });
    } else if let Some(gap) = push.gap {
        positions.insert(push.channel, gap);
    }
    messages.push(raw(text.to_owned()));
}

/// A poller's presence: the channels it is present in (where the
/// namespace keeps presence) until `until`.
#[derive(Debug)]
struct Lease {
    info: Arc<ClientInfo>,
    /// The poller as endpoints see it (`Session`): a silent client of
    /// the hub that lives as long as the lease, named like the poller.
    client: Arc<Client>,
    /// Namespaces whose endpoint heard `on_open` for this poller.
    opened: Vec<String>,
    channels: Vec<String>,
    /// `None` while one of its polls is being answered.
    until: Option<Instant>,
    /// Polls under way.
    polling: usize,
}

/// The pollers present on this node.
#[derive(Debug, Default)]
pub(crate) struct Pollers {
    leases: Mutex<HashMap<u64, Lease>>,
}

/// The lease a poll renewed.
pub(crate) struct Renewed {
    sid: u64,
    token: String,
    client: Arc<Client>,
}

impl Renewed {
    /// What endpoints queued for the poller since its last poll.
    fn take(&self) -> Vec<Item> {
        drain(&self.client)
    }
}

impl Pollers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews (or starts) the lease `sid`, for `info` (the poll's user),
    /// on `channels`: joins what is new, leaves what was dropped, and
    /// opens or closes the poller's session with the namespaces'
    /// endpoints.
    fn renew(
        &self,
        server: &Server,
        sid: u64,
        info: &Arc<ClientInfo>,
        channels: &BTreeMap<String, Cursor>,
    ) -> Renewed {
        let hub = &server.hub;
        let token = server.sessions.tokens.sign("poll", sid, &info.user);
        let config = hub.config();
        let present: Vec<String> = channels
            .keys()
            .filter(|c| {
                config
                    .namespace_of(c)
                    .is_some_and(|(_, ns)| ns.presence || ns.join_leave)
            })
            .cloned()
            .collect();
        let mut namespaces: Vec<String> = Vec::new();
        for channel in channels.keys() {
            if let Some((ns, _)) = server.endpoints.for_channel(hub, channel)
                && !namespaces.contains(&ns)
            {
                namespaces.push(ns);
            }
        }
        let (joined, left, opened, closed, who, client) = {
            let mut leases = self.lock();
            let lease = leases.entry(sid).or_insert_with(|| Lease {
                info: info.clone(),
                client: hub.register_as(
                    info.user.clone(),
                    info.name.clone(),
                    None,
                    true,
                    Some(info.client.clone()),
                ),
                opened: Vec::new(),
                channels: Vec::new(),
                until: None,
                polling: 0,
            });
            lease.polling += 1;
            lease.until = None;
            let joined: Vec<String> = present
                .iter()
                .filter(|c| !lease.channels.contains(c))
                .cloned()
                .collect();
            let left: Vec<String> = lease
                .channels
                .iter()
                .filter(|c| !present.contains(c))
                .cloned()
                .collect();
            lease.channels = present;
            let opened: Vec<String> = namespaces
                .iter()
                .filter(|ns| !lease.opened.contains(ns))
                .cloned()
                .collect();
            let closed: Vec<String> = lease
                .opened
                .iter()
                .filter(|ns| !namespaces.contains(ns))
                .cloned()
                .collect();
            lease.opened = namespaces;
            let who = lease.info.clone();
            (joined, left, opened, closed, who, lease.client.clone())
        };
        for channel in &left {
            hub.lease_leave(channel, &who);
        }
        for channel in &joined {
            hub.lease_join(channel, &who);
        }
        let session = Session::new(client.clone());
        for ns in &closed {
            if let Some(endpoint) = server.endpoints.get(ns) {
                endpoint.on_close(hub, &session, ns);
            }
        }
        for ns in &opened {
            if let Some(endpoint) = server.endpoints.get(ns) {
                endpoint.on_open(hub, &session, ns);
            }
        }
        Renewed { sid, token, client }
    }

    /// A poll of `renewed` was answered: its grace starts when its last
    /// poll under way ends.
    fn ended(&self, renewed: &Renewed, hub: &Hub) {
        let grace = hub.config().poll_presence_grace;
        if let Some(lease) = self.lock().get_mut(&renewed.sid) {
            lease.polling = lease.polling.saturating_sub(1);
            if lease.polling == 0 {
                lease.until = Some(Instant::now() + grace);
            }
        }
    }

    /// Ends the leases whose grace has passed: leave pushes, out of
    /// presence, endpoints' `on_close`. `Server::serve` calls it every
    /// second.
    pub(crate) fn sweep(&self, hub: &Arc<Hub>, endpoints: &Endpoints) {
        let now = Instant::now();
        let expired: Vec<Lease> = {
            let mut leases = self.lock();
            let gone: Vec<u64> = leases
                .iter()
                .filter(|(_, l)| l.until.is_some_and(|t| t <= now))
                .map(|(sid, _)| *sid)
                .collect();
            gone.iter().filter_map(|sid| leases.remove(sid)).collect()
        };
        for lease in expired {
            for channel in &lease.channels {
                hub.lease_leave(channel, &lease.info);
            }
            let session = Session::new(lease.client.clone());
            for ns in &lease.opened {
                if let Some(endpoint) = endpoints.get(ns) {
                    endpoint.on_close(hub, &session, ns);
                }
            }
            hub.unregister(&lease.client);
        }
    }
}
