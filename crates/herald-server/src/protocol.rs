//! The client protocol: JSON text frames. `docs/protocol.md` is the
//! reference for client authors; this module is its implementation.
//!
//! Client to server, one command per frame:
//! `{"id": 1, "subscribe": {"channel": "chat:lobby"}}`.
//! Server to client: a reply with the command's id (`result` or `error`),
//! or a push without id: `{"push": {"channel": ..., "pub": {...}}}`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A command from a client.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawCommand")]
pub struct Command {
    /// Echoed in the reply so the client can match it.
    pub id: u32,
    /// What to do; exactly one method per command.
    pub method: Method,
}

/// The wire shape: an id and exactly one method key. (Not `serde(flatten)`:
/// it buffers the input, which loses `RawValue` payloads and unknown-field
/// checks.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    id: u32,
    connect: Option<ConnectParams>,
    subscribe: Option<SubscribeParams>,
    unsubscribe: Option<ChannelParams>,
    publish: Option<PublishParams>,
    presence: Option<PresenceParams>,
    history: Option<HistoryParams>,
    ping: Option<Empty>,
    refresh: Option<RefreshParams>,
}

impl TryFrom<RawCommand> for Command {
    type Error = &'static str;

    fn try_from(raw: RawCommand) -> Result<Self, Self::Error> {
        let methods = [
            raw.connect.map(Method::Connect),
            raw.subscribe.map(Method::Subscribe),
            raw.unsubscribe.map(Method::Unsubscribe),
            raw.publish.map(Method::Publish),
            raw.presence.map(Method::Presence),
            raw.history.map(Method::History),
            raw.ping.map(Method::Ping),
            raw.refresh.map(Method::Refresh),
        ];
        let mut present = methods.into_iter().flatten();
        match (present.next(), present.next()) {
            (Some(method), None) => Ok(Self { id: raw.id, method }),
            (None, _) => Err(
                "no method: one of connect, subscribe, unsubscribe, publish, presence, history, ping",
            ),
            (Some(_), Some(_)) => Err("more than one method in one command"),
        }
    }
}

/// The methods a client may call.
#[derive(Debug)]
pub enum Method {
    /// Authenticate; must be the first command.
    Connect(ConnectParams),
    /// Start receiving a channel's publications.
    Subscribe(SubscribeParams),
    /// Stop receiving a channel's publications.
    Unsubscribe(ChannelParams),
    /// Publish into a channel, where its namespace allows clients to.
    Publish(PublishParams),
    /// Who is subscribed to a channel.
    Presence(PresenceParams),
    /// A channel's kept publications.
    History(HistoryParams),
    /// Application-level heartbeat (browsers cannot send WebSocket pings).
    Ping(Empty),
    /// Replace the connection's token before its `exp` passes.
    Refresh(RefreshParams),
}

/// No parameters.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Parameters of `connect`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectParams {
    /// A JWT carrying the user id and allowed channels.
    #[serde(default)]
    pub token: Option<String>,
    /// A display name shown in presence.
    #[serde(default)]
    pub name: Option<String>,
}

/// Parameters of `refresh`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshParams {
    /// A new JWT for the same `sub`; its `exp` replaces the connection's.
    pub token: String,
}

/// Parameters naming a channel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelParams {
    /// The channel.
    pub channel: String,
}

/// Parameters of `presence`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceParams {
    /// The channel.
    pub channel: String,
    /// Only how many: `{"count": N}` instead of the list (for a channel
    /// too large to list).
    #[serde(default)]
    pub count: bool,
}

/// Parameters of `subscribe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// The channel.
    pub channel: String,
    /// Ask for the publications missed since (`epoch`, `offset`).
    #[serde(default)]
    pub recover: bool,
    /// The channel epoch the client last saw.
    #[serde(default)]
    pub epoch: Option<String>,
    /// The last offset the client received.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// Parameters of `publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishParams {
    /// The channel.
    pub channel: String,
    /// Any JSON value.
    pub data: Box<RawValue>,
}

/// Parameters of `history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// The channel.
    pub channel: String,
    /// At most this many publications, the newest. Default: all kept.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Who published, or who joined or left.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientInfo {
    /// The connection's id.
    pub client: String,
    /// The user id from the token; empty for anonymous connections.
    pub user: String,
    /// The name given in `connect`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One publication as kept in history and sent to clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    /// The channel's sequence number of this publication.
    pub offset: u64,
    /// The published JSON value.
    pub data: Box<RawValue>,
    /// Who published it; absent for publications from the HTTP API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// When the server accepted it, in milliseconds since the Unix epoch,
    /// where the namespace asks for it (`server_time`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
}

/// Error codes of replies. Documented in docs/protocol.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 100: something failed on our side.
    Internal,
    /// 101: the token is missing, invalid or expired.
    Unauthorized,
    /// 102: the channel name is invalid or its namespace does not exist.
    UnknownChannel,
    /// 103: the token or the namespace does not allow this.
    PermissionDenied,
    /// 104: the command is not valid JSON or not a known method.
    BadRequest,
    /// 105: already subscribed to the channel.
    AlreadySubscribed,
    /// 106: not subscribed to the channel.
    NotSubscribed,
    /// 107: too many commands per second.
    RateLimited,
    /// 108: `connect` must come first, once.
    NotConnected,
    /// 109: too many subscriptions on this connection.
    LimitExceeded,
}

impl ErrorCode {
    /// The number on the wire.
    pub fn code(self) -> u32 {
        match self {
            Self::Internal => 100,
            Self::Unauthorized => 101,
            Self::UnknownChannel => 102,
            Self::PermissionDenied => 103,
            Self::BadRequest => 104,
            Self::AlreadySubscribed => 105,
            Self::NotSubscribed => 106,
            Self::RateLimited => 107,
            Self::NotConnected => 108,
            Self::LimitExceeded => 109,
        }
    }

    /// The message on the wire.
    pub fn message(self) -> &'static str {
        match self {
            Self::Internal => "internal error",
            Self::Unauthorized => "unauthorized",
            Self::UnknownChannel => "unknown channel",
            Self::PermissionDenied => "permission denied",
            Self::BadRequest => "bad request",
            Self::AlreadySubscribed => "already subscribed",
            Self::NotSubscribed => "not subscribed",
            Self::RateLimited => "rate limited",
            Self::NotConnected => "connect first",
            Self::LimitExceeded => "limit exceeded",
        }
    }
}

/// WebSocket close codes the server uses (4000-4999 are the application's).
/// Codes below 4100 invite the client to reconnect; 4100 and up do not.
pub mod close {
    /// The connection's outgoing queue overflowed (namespace policy
    /// `disconnect`). Reconnect and recover.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// Disconnected through the HTTP API. Reconnect if you like.
    pub const DISCONNECTED: u16 = 4002;
    /// Too many commands per second. Reconnect later.
    pub const RATE_LIMITED: u16 = 4003;
    /// No `connect` command within the handshake timeout.
    pub const CONNECT_TIMEOUT: u16 = 4004;
    /// The connection's token expired (its `exp`, plus the server's
    /// leeway, passed without a `refresh`). Reconnect with a fresh token.
    pub const TOKEN_EXPIRED: u16 = 4005;
    /// The token is invalid or expired. Do not reconnect with it.
    pub const UNAUTHORIZED: u16 = 4100;
    /// A frame that is not a valid command. Do not reconnect: fix the client.
    pub const BAD_REQUEST: u16 = 4101;
}

/// Serializes a reply with a result.
pub fn reply<T: Serialize>(id: u32, result: &T) -> String {
    #[derive(Serialize)]
    struct Reply<'a, T> {
        id: u32,
        result: &'a T,
    }
    serde_json::to_string(&Reply { id, result }).unwrap_or_default()
}

/// A refusal: a code from the table in docs/protocol.md, and a message that
/// says what was wrong with the request (never internal detail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What was wrong, for the client's author.
    pub message: Cow<'static, str>,
}

impl Error {
    /// `code` with a specific `message`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Self::new(code, code.message())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Serializes a reply with an error.
pub fn reply_error(id: u32, error: &Error) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        code: u32,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Reply<'a> {
        id: u32,
        error: Body<'a>,
    }
    serde_json::to_string(&Reply {
        id,
        error: Body {
            code: error.code.code(),
            message: &error.message,
        },
    })
    .unwrap_or_default()
}

/// Why a command could not be parsed, in words for the client's author:
/// serde's account (`unknown field `bogus`, expected one of ...`) without
/// its line and column, which say nothing in a one-line frame.
pub fn parse_error_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    // A close reason is at most 123 bytes; replies have room, but an
    // unbounded echo of the input is of no use to anyone.
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("bad request: {}", &text[..end])
}

/// Serializes a publication push.
pub fn push_publication(channel: &str, epoch: &str, publication: &Publication) -> String {
    #[derive(Serialize)]
    struct Push<'a> {
        push: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        channel: &'a str,
        epoch: &'a str,
        #[serde(rename = "pub")]
        publication: &'a Publication,
    }
    serde_json::to_string(&Push {
        push: Inner {
            channel,
            epoch,
            publication,
        },
    })
    .unwrap_or_default()
}

/// Serializes a batch of joins and leaves:
/// `{"push": {"channel": c, "presence": {"join": [...], "leave": [...]}}}`.
pub(crate) fn push_presence_batch(channel: &str, diff: &crate::hub::PresenceDiff) -> String {
    let join: Vec<&ClientInfo> = diff.joins.iter().map(|c| &**c).collect();
    let leave: Vec<&ClientInfo> = diff.leaves.iter().map(|c| &**c).collect();
    serde_json::json!({"push": {"channel": channel, "presence": {"join": join, "leave": leave}}})
        .to_string()
}

/// Serializes a gap push: publications of `channel` up to `offset` of
/// `epoch` were lost and will not come; what follows is after it.
pub fn push_gap(channel: &str, epoch: &str, offset: u64) -> String {
    serde_json::json!({"push": {"channel": channel, "gap": {"epoch": epoch, "offset": offset}}})
        .to_string()
}

/// Serializes a join or leave push.
pub fn push_presence(channel: &str, kind: &str, info: &ClientInfo) -> String {
    serde_json::json!({"push": {"channel": channel, kind: info}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let c: Command = serde_json::from_str(
            r#"{"id":3,"subscribe":{"channel":"chat:a","recover":true,"epoch":"e","offset":4}}"#,
        )
        .unwrap();
        assert_eq!(c.id, 3);
        assert!(matches!(
            c.method,
            Method::Subscribe(SubscribeParams {
                offset: Some(4),
                ..
            })
        ));
        let c: Command =
            serde_json::from_str(r#"{"id":1,"publish":{"channel":"x","data":{"a":[1,2]}}}"#)
                .unwrap();
        let Method::Publish(p) = c.method else {
            panic!()
        };
        assert_eq!(p.data.get(), r#"{"a":[1,2]}"#);
        assert!(serde_json::from_str::<Command>(r#"{"id":1,"nope":{}}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"id":1,"ping":{},"extra":1}"#).is_err());
        assert!(
            serde_json::from_str::<Command>(r#"{"id":1,"ping":{},"presence":{"channel":"a"}}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Command>(r#"{"id":1}"#).is_err());
    }

    #[test]
    fn pushes_serialize() {
        let p = Publication {
            offset: 7,
            data: RawValue::from_string("{\"x\":1}".into()).unwrap(),
            info: None,
            time: None,
        };
        assert_eq!(
            push_publication("q:1", "ep", &p),
            r#"{"push":{"channel":"q:1","epoch":"ep","pub":{"offset":7,"data":{"x":1}}}}"#
        );
        assert_eq!(
            reply_error(4, &ErrorCode::NotSubscribed.into()),
            r#"{"id":4,"error":{"code":106,"message":"not subscribed"}}"#
        );
    }
}
