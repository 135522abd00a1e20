//! SSE without an SDK: `GET /connection/sse?channel=a&channel=b` works
//! with a plain `new EventSource(url)`.
//!
//! Each publication is an event whose `id` encodes the position (epoch,
//! offset) of every channel of the stream, so the browser's own reconnect
//! (`Last-Event-ID`) resumes from there: the session subscribes again,
//! recovering each channel from history. A gap that history cannot fill
//! (or that a slow-consumer policy made) is an `event: gap` of its own,
//! never a silent skip.
//!
//! The same path with `connect=` instead of `channel=` is the SDK's
//! bidirectional SSE stream (`stream.rs`).

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::check_origin;
use super::stream::{Framing, Render, refused, run, streaming};
use super::websocket::Slot;
use crate::delivery::Item;
use crate::http::api::ApiError;
use crate::protocol::{ErrorCode, SubscribeParams};
use crate::server::Server;
use crate::session::{ClientSession, Opening};

/// `GET /connection/sse`: the SDK's stream (`connect=`) or the SDK-less
/// one (`channel=`).
pub(crate) async fn get(State(server): State<Server>, req: Request) -> Response {
    let query = parse_query(req.uri().query().unwrap_or(""));
    let headers = req.headers();
    if let Some((_, connect)) = query.iter().find(|(k, _)| k == "connect") {
        return super::stream::open_sse(&server, headers, connect);
    }
    let headers = headers.clone();
    open(&server, &headers, &query)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Positions by channel: (epoch, offset).
type Positions = BTreeMap<String, (String, u64)>;

/// The event id for `positions`: opaque to the page.
fn encode(positions: &Positions) -> String {
    let json = serde_json::to_vec(positions).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

fn decode(id: &str) -> Option<Positions> {
    let json = URL_SAFE_NO_PAD.decode(id.trim()).ok()?;
    serde_json::from_slice(&json).ok()
}

async fn open(
    server: &Server,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let hub = &server.hub;
    let config = hub.config();
    check_origin(headers, config)?;
    let mut channels: Vec<String> = Vec::new();
    for (k, v) in query {
        match k.as_str() {
            "channel" if !channels.contains(v) => channels.push(v.clone()),
            "channel" | "token" => {}
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    format!(
                        "unknown parameter {k}: give channel= (one or more), token= or connect="
                    ),
                ));
            }
        }
    }
    if channels.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "no channel: /connection/sse?channel=NAME (repeat for more)",
        ));
    }
    if channels.len() > config.max_subscriptions {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::LimitExceeded,
            format!(
                "more than {} channels (max_subscriptions)",
                config.max_subscriptions
            ),
        ));
    }
    super::check_capacity(server)?;
    let token = query.iter().find(|(k, _)| k == "token").map(|(_, v)| v);
    // An id the server did not make (or mangled) is as good as none: the
    // stream starts from now, and says so in its first event.
    let last: Positions = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(decode)
        .unwrap_or_default();

    let connect = serde_json::json!({"id": 0, "connect": {"token": token}});
    let session = ClientSession::open(
        hub,
        &server.endpoints,
        &connect.to_string(),
        Opening::default(),
    )
    .map_err(refused)?;
    let client = session.client().clone();
    // The connect reply: not part of this stream.
    super::drain(&client);

    let mut events = Events {
        positions: Positions::new(),
    };
    let mut first = b"retry: 2000\n\n".to_vec();
    let mut recovered = Vec::new();
    // Where the stream starts: the page's last positions where it has
    // them (what was missed follows as events), else the channels' own.
    let mut start = Positions::new();
    for channel in &channels {
        let at = last.get(channel);
        let params = SubscribeParams {
            channel: channel.clone(),
            recover: at.is_some(),
            epoch: at.map(|(e, _)| e.clone()),
            offset: at.map(|(_, o)| *o),
        };
        hub.subscribe(&client, 0, &params).await.map_err(|code| {
            let status = if code == ErrorCode::Internal {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::FORBIDDEN
            };
            ApiError::new(status, code, format!("{channel}: {}", code.message()))
        })?;
        for item in &super::drain(&client) {
            if item.reply {
                events.subscribed(channel, at, &item.text(), &mut recovered);
                if let Some(at) = at.or_else(|| events.positions.get(channel)) {
                    start.insert(channel.clone(), at.clone());
                }
            } else {
                events.item(item, &mut recovered);
            }
        }
    }
    // The starting positions first, then what was missed.
    let shown: BTreeMap<&String, Position<'_>> = start
        .iter()
        .map(|(c, (epoch, offset))| {
            (
                c,
                Position {
                    epoch,
                    offset: *offset,
                },
            )
        })
        .collect();
    let data = serde_json::json!({ "channels": shown }).to_string();
    event(&mut first, Some(&encode(&start)), Some("position"), &data);
    first.extend_from_slice(&recovered);

    let (chunks, body) = mpsc::channel(4);
    let _ = chunks.try_send(first.into());
    let slot = Slot::take(&server.connections);
    tokio::spawn(run(
        None,
        session,
        None,
        chunks,
        events,
        config.http_keepalive,
        slot,
    ));
    Ok(streaming("text/event-stream", body))
}

#[derive(Serialize)]
struct Position<'a> {
    epoch: &'a str,
    offset: u64,
}

/// Appends one event.
fn event(out: &mut Vec<u8>, id: Option<&str>, name: Option<&str>, data: &str) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    super::one_line(data, out);
    out.extend_from_slice(b"\n\n");
}

/// The SDK-less stream's rendering: publications as events with ids,
/// gaps, and the channels' positions so far.
struct Events {
    positions: Positions,
}

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
    publication: Option<Pub<'a>>,
}

#[derive(Deserialize)]
struct Pub<'a> {
    offset: u64,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow, default)]
    info: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct Event<'a> {
    channel: &'a str,
    offset: u64,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a RawValue>,
}

impl Events {
    /// A publication of `channel` in `epoch`: a gap event first if it
    /// does not follow the last one, then the publication.
    fn publication(&mut self, channel: &str, epoch: &str, p: &Pub<'_>, out: &mut Vec<u8>) {
        let follows = self
            .positions
            .get(channel)
            .is_some_and(|(e, o)| e == epoch && p.offset == o + 1);
        if !follows {
            self.gap(channel, epoch, p.offset - 1, out);
        }
        self.positions
            .insert(channel.to_owned(), (epoch.to_owned(), p.offset));
        let data = serde_json::to_string(&Event {
            channel,
            offset: p.offset,
            data: p.data,
            info: p.info,
        })
        .unwrap_or_default();
        event(out, Some(&encode(&self.positions)), None, &data);
    }

    /// Publications of `channel` cannot be given up to `offset` in
    /// `epoch`: the stream continues from there.
    fn gap(&mut self, channel: &str, epoch: &str, offset: u64, out: &mut Vec<u8>) {
        self.positions
            .insert(channel.to_owned(), (epoch.to_owned(), offset));
        let data = serde_json::json!({"channel": channel, "epoch": epoch, "offset": offset});
        event(
            out,
            Some(&encode(&self.positions)),
            Some("gap"),
            &data.to_string(),
        );
    }

    /// The subscribe reply for `channel` (resuming from `at`, if given):
    /// its position, the recovered publications, or a gap.
    fn subscribed(
        &mut self,
        channel: &str,
        at: Option<&(String, u64)>,
        reply: &str,
        out: &mut Vec<u8>,
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
            #[serde(borrow, default)]
            publications: Vec<Pub<'a>>,
        }
        let Some(result) = serde_json::from_str::<Reply<'_>>(reply)
            .ok()
            .and_then(|r| r.result)
        else {
            return;
        };
        match at {
            Some((epoch, offset)) if *epoch == result.epoch => {
                self.positions
                    .insert(channel.to_owned(), (epoch.clone(), *offset));
                for p in &result.publications {
                    self.publication(channel, &result.epoch, p, out);
                }
                // History may end before the top (publications expired
                // by TTL after the last kept one).
                if self
                    .positions
                    .get(channel)
                    .is_some_and(|(_, o)| *o < result.offset)
                {
                    self.gap(channel, &result.epoch, result.offset, out);
                }
            }
            // A new epoch: what the old offsets named is gone.
            Some(_) => self.gap(channel, &result.epoch, result.offset, out),
            None => {
                self.positions
                    .insert(channel.to_owned(), (result.epoch, result.offset));
            }
        }
    }
}

impl Render for Events {
    fn item(&mut self, item: &Item, out: &mut Vec<u8>) {
        let text = item.text();
        // Presence pushes are not part of the SDK-less stream.
        if let Ok(Push { push }) = serde_json::from_str::<Push<'_>>(&text)
            && let (Some(epoch), Some(p)) = (push.epoch, push.publication)
        {
            self.publication(&push.channel, &epoch, &p, out);
        }
    }

    fn goodbye(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) {
        let data = serde_json::json!({"code": code, "reason": reason});
        event(out, None, Some("disconnect"), &data.to_string());
    }

    fn keepalive(&self) -> &'static [u8] {
        Framing::Sse.keepalive()
    }
}

/// `k=v&k=v` pairs, percent-decoded (`+` is a space).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("channel=chat%3Aa&channel=b+c&token=x%zz&empty"),
            [
                ("channel".into(), "chat:a".into()),
                ("channel".into(), "b c".into()),
                ("token".into(), "x%zz".into()),
                ("empty".into(), String::new()),
            ]
        );
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%41"), "aA");
    }

    #[test]
    fn ids_round_trip_and_refuse_garbage() {
        let mut p = Positions::new();
        p.insert("chat:a".into(), ("0a1b".into(), 7));
        assert_eq!(decode(&encode(&p)), Some(p));
        assert_eq!(decode("not base64 json"), None);
    }
}
