//! HTTP streaming and SSE: one long response carries a session's replies
//! and pushes, in order, as WebSocket frames would; commands after
//! `connect` arrive as `POST /connection/send`, naming the session by its
//! signed token.
//!
//! The response body is fed through a small channel by the session's task.
//! A client that stops reading fills hyper's buffers, then that channel,
//! then the outbox, and the namespace's slow-consumer policy decides, as
//! on WebSocket; a write that cannot be made for two keepalive intervals
//! ends the session as a slow consumer, so a stuck reader cannot hold its
//! presence forever.

use std::convert::Infallible;
use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::token::Refused;
use super::websocket::{Open, Slot, close_frame};
use super::{Sessions, check_content_type, check_origin, one_line, streaming_headers};
use crate::delivery::{Disconnect, Item};
use crate::http::api::{ApiError, read_body};
use crate::protocol::ErrorCode;
use crate::server::Server;
use crate::session::{ClientSession, Opening, panic_message};

/// Outbox items written per chunk.
const BATCH: usize = 64;

/// How a stream frames messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `application/x-ndjson`: one message per line.
    Ndjson,
    /// `text/event-stream`: one `data:` event per message.
    Sse,
}

/// How a stream writes what it sends: messages, its goodbye, keepalives.
pub(crate) trait Render: Send + 'static {
    /// Appends `item` (a reply or a push) to `out`.
    fn item(&mut self, item: &Item, out: &mut Vec<u8>);
    /// Appends the last message: why the stream ends.
    fn goodbye(&mut self, code: u16, reason: &str, out: &mut Vec<u8>);
    /// What an idle stream sends now and then.
    fn keepalive(&self) -> &'static [u8];
}

impl Render for Framing {
    fn item(&mut self, item: &Item, out: &mut Vec<u8>) {
        self.message(&item.text(), out);
    }

    fn goodbye(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) {
        let text = serde_json::json!({"disconnect": {"code": code, "reason": reason}});
        self.message(&text.to_string(), out);
    }

    fn keepalive(&self) -> &'static [u8] {
        Framing::keepalive(*self)
    }
}

impl Framing {
    fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Sse => "text/event-stream",
        }
    }

    pub(crate) fn message(self, text: &str, out: &mut Vec<u8>) {
        match self {
            Self::Ndjson => {
                one_line(text, out);
                out.push(b'\n');
            }
            Self::Sse => {
                out.extend_from_slice(b"data: ");
                one_line(text, out);
                out.extend_from_slice(b"\n\n");
            }
        }
    }

    pub(crate) fn keepalive(self) -> &'static [u8] {
        match self {
            Self::Ndjson => b"\n",
            Self::Sse => b": keepalive\n\n",
        }
    }
}

/// `POST /connection/stream`: the body is the `connect` command; the
/// answer streams NDJSON.
pub(crate) async fn open_ndjson(State(server): State<Server>, req: Request) -> Response {
    let opened = async {
        let config = server.hub.config();
        check_origin(req.headers(), config)?;
        check_content_type(req.headers())?;
        let body = read_body(req, config.max_message_size, "max_message_size").await?;
        let text = String::from_utf8(body.to_vec()).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "the body is not UTF-8",
            )
        })?;
        start(&server, &text, Framing::Ndjson)
    };
    opened.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /connection/sse?connect=...`: the bidirectional SSE stream, whose
/// `connect` command comes in the query (EventSource only makes GETs).
pub(crate) fn open_sse(server: &Server, headers: &HeaderMap, connect: &str) -> Response {
    let opened = check_origin(headers, server.hub.config())
        .and_then(|()| start(server, connect, Framing::Sse));
    opened.unwrap_or_else(IntoResponse::into_response)
}

/// Connects the session and starts its task; the response streams.
fn start(server: &Server, connect: &str, framing: Framing) -> Result<Response, ApiError> {
    let hub = &server.hub;
    let config = hub.config();
    super::check_capacity(server)?;
    let sessions = &server.sessions;
    let sid = sessions.next_id();
    let opening = Opening {
        session: Some((&sessions.tokens, sid)),
        silent: false,
        shown: None,
    };
    let session = match ClientSession::open(hub, &server.endpoints, connect, opening) {
        Ok(session) => session,
        // EventSource cannot read an error status (its `error` event has
        // none), so a refused SSE connect is said the stream's way: one
        // `disconnect` message with the close code, then the end.
        Err(d) if framing == Framing::Sse => {
            let mut out = Vec::new();
            if let Some((code, reason)) = close_frame(&d) {
                Framing::Sse.goodbye(code.0, &reason, &mut out);
            }
            let (chunks, body) = mpsc::channel(1);
            let _ = chunks.try_send(Bytes::from(out));
            return Ok(streaming(framing.content_type(), body));
        }
        Err(d) => return Err(refused(d)),
    };
    let (commands, inbox) = mpsc::channel(config.max_commands_per_post.max(1));
    sessions.streams().insert(sid, commands);
    let (chunks, body) = mpsc::channel::<Bytes>(4);
    let slot = Slot::take(&server.connections);
    tokio::spawn(run(
        Some(Registered(sessions.clone(), sid)),
        session,
        Some(inbox),
        chunks,
        framing,
        config.http_keepalive,
        slot,
    ));
    Ok(streaming(framing.content_type(), body))
}

/// A 200 whose body is what arrives on `body`.
pub(crate) fn streaming(content_type: &'static str, mut body: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::poll_fn(move |cx| {
        body.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>))
    });
    (streaming_headers(content_type), Body::from_stream(stream)).into_response()
}

/// A failed `connect` as an HTTP answer.
pub(crate) fn refused(d: Disconnect) -> ApiError {
    let (status, code) = match d {
        Disconnect::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
        Disconnect::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        _ => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
    };
    let reason = close_frame(&d).map_or_else(String::new, |(_, r)| r.into_owned());
    ApiError::new(status, code, reason)
}

/// The stream's place in the node's table; removed on every exit.
pub(crate) struct Registered(Arc<Sessions>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.streams().remove(&self.1);
    }
}

/// Runs a stream's session to its end and writes why it ended.
pub(crate) async fn run(
    registered: Option<Registered>,
    mut session: ClientSession,
    mut inbox: Option<mpsc::Receiver<String>>,
    chunks: mpsc::Sender<Bytes>,
    mut render: impl Render,
    keepalive: Duration,
    slot: Slot,
) {
    let _slot = slot;
    let hub = session.hub().clone();
    let _open = Open::new(&hub);
    let pumped = AssertUnwindSafe(pump(
        &mut session,
        inbox.as_mut(),
        &chunks,
        &mut render,
        keepalive,
    ))
    .catch_unwind()
    .await;
    let end = match pumped {
        Ok(end) => end,
        Err(panic) => {
            hub.metrics().panic();
            tracing::error!(
                client = %session.client().info.client,
                "stream session panicked: {}",
                panic_message(&*panic)
            );
            Disconnect::Internal("internal error")
        }
    };
    // The session (and its cleanup) ends before the goodbye is written.
    drop(registered);
    drop(session);
    let code = match close_frame(&end) {
        Some((code, reason)) => {
            let mut out = Vec::new();
            render.goodbye(code.0, &reason, &mut out);
            let _ = chunks.try_send(out.into());
            Some(code.0)
        }
        None => None,
    };
    hub.metrics().close(code, code.is_some());
}

enum Step {
    Command(Option<String>),
    Out(Result<bool, ()>),
    End(Disconnect),
    Keepalive,
    Gone,
}

async fn pump(
    session: &mut ClientSession,
    mut inbox: Option<&mut mpsc::Receiver<String>>,
    chunks: &mpsc::Sender<Bytes>,
    render: &mut impl Render,
    keepalive: Duration,
) -> Disconnect {
    let client = session.client().clone();
    let mut batch: Vec<Item> = Vec::new();
    let mut closed = pin!(chunks.closed());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = poll_fn(|cx| {
            if let Poll::Ready(d) = session.poll_end(cx) {
                return Poll::Ready(Step::End(d));
            }
            if let Poll::Ready(r) = client.outbox.poll_take(cx, BATCH, &mut batch) {
                return Poll::Ready(Step::Out(r));
            }
            if let Some(inbox) = inbox.as_mut()
                && let Poll::Ready(c) = inbox.poll_recv(cx)
            {
                return Poll::Ready(Step::Command(c));
            }
            if closed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::Gone);
            }
            if tick.poll_tick(cx).is_ready() {
                return Poll::Ready(Step::Keepalive);
            }
            Poll::Pending
        })
        .await;
        let chunk: Vec<u8> = match step {
            Step::End(d) => return d,
            Step::Gone | Step::Command(None) => return Disconnect::Gone,
            Step::Out(Err(())) => return Disconnect::SlowConsumer,
            Step::Command(Some(text)) => {
                if let Err(d) = session.command(&text).await {
                    return d;
                }
                continue;
            }
            Step::Keepalive => render.keepalive().to_vec(),
            Step::Out(Ok(_)) => {
                let mut out = Vec::new();
                for item in batch.drain(..) {
                    render.item(&item, &mut out);
                }
                if out.is_empty() {
                    continue;
                }
                out
            }
        };
        match tokio::time::timeout(2 * keepalive, chunks.send(chunk.into())).await {
            Ok(Ok(())) => tick.reset(),
            Ok(Err(_)) => return Disconnect::Gone,
            Err(_) => return Disconnect::SlowConsumer,
        }
    }
}

/// `POST /connection/send`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody<'a> {
    session: String,
    #[serde(borrow)]
    commands: Vec<&'a RawValue>,
}

/// A stream session that is gone.
fn ended() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotConnected,
        "the session has ended: open a new stream",
    )
}

/// Hands `commands` to this node's stream session `sid`, in order.
pub(crate) fn hand_over(
    sessions: &Sessions,
    sid: u64,
    commands: Vec<String>,
) -> Result<(), ApiError> {
    let Some(queue) = sessions.streams().get(&sid).cloned() else {
        return Err(ended());
    };
    for command in commands {
        match queue.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    "too many commands waiting for this session; send fewer at a time",
                ));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(ended()),
        }
    }
    Ok(())
}

/// `POST /connection/send`: hands commands to a stream's session, in
/// order (on the node that holds it); their replies come on the stream.
pub(crate) async fn send(State(server): State<Server>, req: Request) -> Response {
    let sent = async {
        let config = server.hub.config();
        check_origin(req.headers(), config)?;
        check_content_type(req.headers())?;
        let limit = config
            .max_message_size
            .saturating_mul(config.max_commands_per_post.max(1));
        let body = read_body(req, limit, "max_message_size x max_commands_per_post").await?;
        let body: SendBody<'_> = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("invalid body: {e}"),
            )
        })?;
        super::check_commands(body.commands.len(), config)?;
        let sessions = &server.sessions;
        let commands = body.commands.iter().map(|c| c.get().to_owned()).collect();
        let claims = match sessions.tokens.verify(&body.session, "stream") {
            Ok(claims) => claims,
            Err(Refused::Invalid) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::Unauthorized,
                    "session token not made by this server (transport_secret): open a new stream",
                ));
            }
            Err(Refused::ElseWhere(claims)) if server.hub.broker().shared() => {
                // Another node holds the stream: the commands go there.
                let request = crate::broker::Request::Send {
                    sid: claims.sid,
                    commands,
                };
                let (status, answer) =
                    crate::nodes::ask(&server.hub, &claims.node, request, ended).await?;
                let status = if status.is_success() {
                    StatusCode::ACCEPTED
                } else {
                    status
                };
                return Ok((status, axum::Json(answer)).into_response());
            }
            Err(Refused::ElseWhere(_)) => {
                return Err(ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    ErrorCode::Internal,
                    "the session is held by another node, which cannot be reached from here \
                     (no shared broker)",
                ));
            }
        };
        hand_over(sessions, claims.sid, commands)?;
        Ok((StatusCode::ACCEPTED, axum::Json(serde_json::json!({}))).into_response())
    };
    sent.await.unwrap_or_else(IntoResponse::into_response)
}
