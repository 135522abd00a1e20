//! The HTTP transports against a real server: streams (NDJSON and SSE)
//! with POSTed commands, stateless long polling and polling, and SSE
//! without an SDK, each with its recovery and its refusals.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Chunks, TestServer, config, eventually, find, namespace, request_bytes, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A streamed response read as it arrives: the head, then the chunked
/// body decoded into lines (NDJSON) or events (SSE).
struct Streamed {
    tcp: TcpStream,
    status: u16,
    head: String,
    chunks: Chunks,
}

impl Streamed {
    async fn open(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Self {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let request = request_bytes(addr, method, path, headers, body);
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let head_end = within("the response head", async {
            loop {
                if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
                let mut buf = [0u8; 4096];
                let n = tcp.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed before the head");
                raw.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let status = head[9..12].parse().expect("status");
        let raw = raw[head_end + 4..].to_vec();
        Self {
            tcp,
            status,
            head,
            chunks: Chunks {
                raw,
                ..Chunks::default()
            },
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The next piece of the body ending with `sep`; `None` once the body
    /// ended.
    async fn next(&mut self, sep: &[u8]) -> Option<String> {
        within("the next message of the stream", async {
            loop {
                self.chunks.decode();
                if let Some(i) = find(&self.chunks.body, sep) {
                    let piece: Vec<u8> = self.chunks.body.drain(..i + sep.len()).collect();
                    return Some(String::from_utf8(piece[..i].to_vec()).expect("UTF-8"));
                }
                if self.chunks.ended {
                    return None;
                }
                let mut buf = [0u8; 8192];
                let n = self.tcp.read(&mut buf).await.expect("read");
                if n == 0 {
                    return None;
                }
                self.chunks.raw.extend_from_slice(&buf[..n]);
            }
        })
        .await
    }

    /// The next NDJSON message, skipping keepalive lines.
    async fn line(&mut self) -> Option<Value> {
        loop {
            let line = self.next(b"\n").await?;
            if !line.trim().is_empty() {
                return Some(serde_json::from_str(&line).expect("a JSON line"));
            }
        }
    }

    /// The next SSE event as (id, event name, data), skipping comments.
    async fn event(&mut self) -> Option<(Option<String>, Option<String>, String)> {
        loop {
            let block = self.next(b"\n\n").await?;
            let (mut id, mut name, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v.to_owned());
                }
            }
            if let Some(data) = data {
                return Some((id, name, data));
            }
        }
    }
}

fn transports_config() -> herald_server::ServerConfig {
    let mut c = config();
    c.namespaces.insert(
        "chat".into(),
        namespace(|ns| {
            ns.allow_publish = true;
            ns.presence = true;
            ns.join_leave = true;
            ns.history_size = 100;
        }),
    );
    c.namespaces.insert(
        "short".into(),
        namespace(|ns| {
            ns.history_size = 2;
        }),
    );
    c
}

async fn post(server: &TestServer, path: &str, body: Value) -> support::HttpResponse {
    server
        .http("POST", path, &[], Some(&body.to_string()))
        .await
}

#[tokio::test]
async fn a_stream_session_start_to_finish() {
    let server = TestServer::start(transports_config()).await;
    let connect = json!({"id": 1, "connect": {"name": "Ann"}}).to_string();
    let mut s = Streamed::open(
        server.addr,
        "POST",
        "/connection/stream",
        &[],
        Some(&connect),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.head);
    assert_eq!(s.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(s.header("cache-control"), Some("no-cache, no-transform"));
    assert_eq!(s.header("x-accel-buffering"), Some("no"));
    let reply = s.line().await.expect("the connect reply");
    assert_eq!(reply["id"], 1);
    let session = reply["result"]["session"]
        .as_str()
        .expect("a session token")
        .to_owned();
    let client = reply["result"]["client"].as_str().unwrap().to_owned();

    let commands = json!({"session": session, "commands": [
        {"id": 2, "subscribe": {"channel": "chat:s"}},
        {"id": 3, "publish": {"channel": "chat:s", "data": {"text": "hi\nthere"}}},
    ]});
    let sent = post(&server, "/connection/send", commands).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(s.line().await.unwrap()["id"], 2);
    let push = s.line().await.unwrap();
    assert_eq!(push["push"]["pub"]["data"]["text"], "hi\nthere");
    assert_eq!(push["push"]["pub"]["info"]["name"], "Ann");
    assert_eq!(s.line().await.unwrap()["id"], 3);

    // A backend's publication reaches the stream like any subscriber.
    server.api_publish("chat:s", json!(2)).await;
    assert_eq!(s.line().await.unwrap()["push"]["pub"]["offset"], 2);

    // Disconnected through the API: the last line says why, then the end.
    let r = post(
        &server,
        "/api/disconnect",
        json!({"client": client, "reason": "bye"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.line().await.unwrap(),
        json!({"disconnect": {"code": 4002, "reason": "bye"}})
    );
    assert_eq!(s.line().await, None, "the response ends");
    // The session is gone: its token now gets 404.
    let late = post(
        &server,
        "/connection/send",
        json!({"session": session, "commands": [{"id": 4, "ping": {}}]}),
    )
    .await;
    assert_eq!((late.status, late.error_code()), (404, 108));
    eventually("the stream's client to be gone", || {
        server.hub().connection_count() == 0
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn the_sse_stream_carries_the_same_messages() {
    let server = TestServer::start(transports_config()).await;
    let connect = json!({"id": 1, "connect": {}}).to_string();
    let path = format!("/connection/sse?connect={}", urlencode(&connect));
    let mut s = Streamed::open(server.addr, "GET", &path, &[], None).await;
    assert_eq!(s.status, 200, "{}", s.head);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    let (_, _, data) = s.event().await.unwrap();
    let reply: Value = serde_json::from_str(&data).unwrap();
    let session = reply["result"]["session"].as_str().unwrap().to_owned();
    let r = post(
        &server,
        "/connection/send",
        json!({"session": session, "commands": [{"id": 2, "subscribe": {"channel": "chat:e"}}]}),
    )
    .await;
    assert_eq!(r.status, 202);
    let (_, _, data) = s.event().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["id"], 2);
    server.api_publish("chat:e", json!({"n": 1})).await;
    let (_, _, data) = s.event().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["push"]["pub"]["data"]["n"],
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stream_is_kept_alive_while_idle() {
    let mut c = transports_config();
    c.http_keepalive = Duration::from_millis(200);
    let server = TestServer::start(c).await;
    let connect = json!({"id": 1, "connect": {}}).to_string();
    let mut s = Streamed::open(
        server.addr,
        "POST",
        "/connection/stream",
        &[],
        Some(&connect),
    )
    .await;
    s.line().await.unwrap();
    // An empty line: nothing for the client, bytes for the proxies.
    assert_eq!(s.next(b"\n").await.as_deref(), Some(""));
    server.stop().await;
}

#[tokio::test]
async fn a_token_from_a_server_sharing_nothing_is_refused_cleanly() {
    let a = TestServer::start(transports_config()).await;
    let b = TestServer::start(transports_config()).await;
    let connect = json!({"id": 1, "connect": {}}).to_string();
    let mut s = Streamed::open(a.addr, "POST", "/connection/stream", &[], Some(&connect)).await;
    let session = s.line().await.unwrap()["result"]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = post(
        &b,
        "/connection/send",
        json!({"session": session, "commands": [{"id": 2, "ping": {}}]}),
    )
    .await;
    assert_eq!((r.status, r.error_code()), (403, 101), "{}", r.body);
    // The same fleet secret, another node: 421, not 403.
    let mut fleet = transports_config();
    fleet.transport_secret = Some("one fleet".into());
    let c = TestServer::start(fleet.clone()).await;
    let d = TestServer::start(fleet).await;
    let mut s2 = Streamed::open(c.addr, "POST", "/connection/stream", &[], Some(&connect)).await;
    let session2 = s2.line().await.unwrap()["result"]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = post(
        &d,
        "/connection/send",
        json!({"session": session2, "commands": [{"id": 2, "ping": {}}]}),
    )
    .await;
    assert_eq!(r.status, 421, "{}", r.body);
    r.error_code();
    // Garbage and bad shapes get 4xx with a reason, and disturb nothing.
    for body in [
        json!({"session": "x.y.z", "commands": []}),
        json!({"commands": []}),
        json!([1]),
    ] {
        let r = post(&a, "/connection/send", body).await;
        assert!(matches!(r.status, 400 | 403), "{}: {}", r.status, r.body);
        r.error_code();
    }
    let r = post(
        &a,
        "/connection/send",
        json!({"session": session, "commands": [{"id": 3, "ping": {}}]}),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(s.line().await.unwrap()["id"], 3);
    for server in [a, b, c, d] {
        server.stop().await;
    }
}

#[tokio::test]
async fn a_refused_sse_connect_is_a_disconnect_event_eventsource_can_read() {
    let mut c = transports_config();
    c.token_secret = Some("a secret of at least thirty-two bytes!!".into());
    let server = TestServer::start(c).await;
    let connect = json!({"id": 1, "connect": {"token": "bad"}}).to_string();
    let path = format!("/connection/sse?connect={}", urlencode(&connect));
    let mut s = Streamed::open(server.addr, "GET", &path, &[], None).await;
    assert_eq!(s.status, 200, "{}", s.head);
    let (_, _, data) = s.event().await.expect("one event");
    let goodbye: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(goodbye["disconnect"]["code"], 4100, "{goodbye}");
    assert_eq!(s.event().await, None, "then the end");
    server.stop().await;
}

#[tokio::test]
async fn a_stream_refuses_a_bad_connect_with_an_http_error() {
    let mut c = transports_config();
    c.token_secret = Some("a secret of at least thirty-two bytes!!".into());
    let server = TestServer::start(c).await;
    let r = server
        .http(
            "POST",
            "/connection/stream",
            &[],
            Some(r#"{"id":1,"connect":{}}"#),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (401, 101), "{}", r.body);
    let r = server
        .http("POST", "/connection/stream", &[], Some("not json"))
        .await;
    assert_eq!((r.status, r.error_code()), (400, 104));
    let r = server
        .http(
            "POST",
            "/connection/stream",
            &[("Origin", "https://evil.example")],
            Some(r#"{"id":1,"connect":{}}"#),
        )
        .await;
    assert_eq!(r.status, 403);
    server.stop().await;
}

#[tokio::test]
async fn polling_answers_from_history_and_says_when_it_cannot() {
    let server = TestServer::start(transports_config()).await;
    // From now on: the position only.
    let r = post(
        &server,
        "/connection/poll",
        json!({"channels": {"chat:p": {}, "short:p": {}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.json();
    assert_eq!(first["messages"], json!([]));
    let chat = first["channels"]["chat:p"].clone();
    let short = first["channels"]["short:p"].clone();
    assert_eq!(chat["offset"], 0);
    for i in 1..=4 {
        server.api_publish("chat:p", json!(i)).await;
        server.api_publish("short:p", json!(i)).await;
    }
    // Polling: what was missed, in order, and the new positions; the
    // short history cannot fill its gap and says so.
    let r = post(&server, "/connection/poll", json!({
        "client": first["client"],
        "channels": {"chat:p": chat, "short:p": short},
        "commands": [{"id": 9, "publish": {"channel": "chat:p", "data": 5}}, {"id": 10, "subscribe": {"channel": "chat:q"}}],
    }))
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["replies"][0]["id"], 9);
    assert_eq!(answer["replies"][1]["error"]["code"], 104, "{answer}");
    let chat_offsets: Vec<u64> = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["push"]["channel"] == "chat:p")
        .map(|m| m["push"]["pub"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(
        chat_offsets,
        [1, 2, 3, 4, 5],
        "its own publication included: {answer}"
    );
    let short: Vec<&Value> = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["push"]["channel"] == "short:p")
        .collect();
    assert_eq!(short[0]["push"]["gap"]["offset"], 2, "{answer}");
    assert_eq!(short[1]["push"]["pub"]["offset"], 3);
    assert_eq!(answer["channels"]["chat:p"]["offset"], 5);
    assert_eq!(answer["channels"]["short:p"]["offset"], 4);
    // Another epoch: a gap, and the position moves to the current one.
    let r = post(
        &server,
        "/connection/poll",
        json!({"channels": {"chat:p": {"epoch": "nope", "offset": 1}}}),
    )
    .await;
    let answer = r.json();
    assert_eq!(
        answer["messages"][0]["push"]["gap"]["offset"], 5,
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_is_answered_by_the_next_publication() {
    let server = TestServer::start(transports_config()).await;
    let first = post(
        &server,
        "/connection/poll",
        json!({"channels": {"chat:l": {}}}),
    )
    .await
    .json();
    let addr = server.addr;
    let body = json!({"channels": {"chat:l": first["channels"]["chat:l"]}, "wait": 20}).to_string();
    let waiting = tokio::spawn(async move {
        support::http(addr, "POST", "/connection/poll", &[], Some(&body)).await
    });
    // The poll is held (its silent reader is subscribed) until then.
    eventually("the long poll to wait", || {
        server
            .hub()
            .channels()
            .iter()
            .any(|(c, n)| c == "chat:l" && *n == 1)
    })
    .await;
    server.api_publish("chat:l", json!("news")).await;
    let answer = within("the long poll", waiting).await.unwrap().json();
    assert_eq!(
        answer["messages"][0]["push"]["pub"]["data"], "news",
        "{answer}"
    );
    assert_eq!(answer["channels"]["chat:l"]["offset"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_poller_is_present_until_its_grace_passes() {
    let mut c = transports_config();
    c.poll_presence_grace = Duration::from_millis(300);
    let server = TestServer::start(c).await;
    let mut watcher = server.named("W").await;
    watcher.subscribe("chat:g").await;
    let r = post(
        &server,
        "/connection/poll",
        json!({"name": "Poller", "channels": {"chat:g": {}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let join = watcher.push().await;
    assert_eq!(join["push"]["join"]["name"], "Poller", "{join}");
    assert_eq!(join["push"]["join"]["client"], r.json()["id"], "{join}");
    let presence = server
        .http("GET", "/api/presence/chat:g", &[], None)
        .await
        .json();
    assert_eq!(
        presence["clients"].as_array().map(Vec::len),
        Some(2),
        "{presence}"
    );
    // A second poll with its identity renews the lease: no second join.
    let again = post(
        &server,
        "/connection/poll",
        json!({"client": r.json()["client"], "name": "Poller", "channels": {"chat:g": {}}}),
    )
    .await;
    assert_eq!(again.status, 200);
    // Then it stops polling: it leaves after the grace.
    let leave = watcher.push().await;
    assert_eq!(leave["push"]["leave"]["name"], "Poller", "{leave}");
    let presence = server
        .http("GET", "/api/presence/chat:g", &[], None)
        .await
        .json();
    assert_eq!(presence["clients"].as_array().map(Vec::len), Some(1));
    drop(watcher);
    server.stop().await;
}

#[tokio::test]
async fn polls_refuse_what_they_cannot_do() {
    let mut c = transports_config();
    c.max_commands_per_post = 2;
    let server = TestServer::start(c).await;
    for (body, status) in [
        (json!({"channels": {"nope:x": {}}}), 403),
        (
            json!({"channels": {"nope:x": {}}, "commands": [{"id": 1, "publish": {"channel": "chat:side", "data": 1}}]}),
            403,
        ),
        (json!({"channels": {}, "wait": -1}), 400),
        (
            json!({"channels": {}, "commands": [{"id":1,"ping":{}},{"id":2,"ping":{}},{"id":3,"ping":{}}]}),
            413,
        ),
        (json!({"channels": {}, "surprise": 1}), 400),
    ] {
        let r = post(&server, "/connection/poll", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        r.error_code();
    }
    // The refused poll's publish did not happen.
    let history = server
        .http("GET", "/api/history/chat:side", &[], None)
        .await
        .json();
    assert_eq!(history["offset"], 0, "{history}");
    let r = server
        .http(
            "POST",
            "/connection/poll",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            None,
        )
        .await;
    assert_eq!(r.status, 415);
    server.stop().await;
}

#[tokio::test]
async fn sse_without_an_sdk_resumes_from_its_last_event_id() {
    let server = TestServer::start(transports_config()).await;
    let mut s = Streamed::open(
        server.addr,
        "GET",
        "/connection/sse?channel=chat:a&channel=short:b",
        &[],
        None,
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.head);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    let (id, name, data) = s.event().await.unwrap();
    assert_eq!(name.as_deref(), Some("position"));
    assert!(id.is_some());
    let positions: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(positions["channels"]["chat:a"]["offset"], 0);
    server.api_publish("chat:a", json!({"n": 1})).await;
    let (last_id, name, data) = s.event().await.unwrap();
    assert_eq!(name, None);
    let event: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        event,
        json!({"channel": "chat:a", "offset": 1, "data": {"n": 1}})
    );
    drop(s);
    eventually("the SSE client to be gone", || {
        server.hub().connection_count() == 0
    })
    .await;

    // Missed while away: chat:a in full; short:b beyond its history.
    for i in 2..=3 {
        server.api_publish("chat:a", json!({"n": i})).await;
    }
    for i in 1..=3 {
        server.api_publish("short:b", json!({"n": i})).await;
    }
    let last = last_id.unwrap();
    let mut s = Streamed::open(
        server.addr,
        "GET",
        "/connection/sse?channel=chat:a&channel=short:b",
        &[("Last-Event-ID", &last)],
        None,
    )
    .await;
    let mut got = Vec::new();
    while got.len() < 6 {
        let (_, name, data) = s.event().await.unwrap();
        let v: Value = serde_json::from_str(&data).unwrap();
        got.push((
            name.unwrap_or_default(),
            v["channel"].clone(),
            v["offset"].clone(),
        ));
    }
    assert_eq!(
        got,
        [
            ("position".into(), Value::Null, Value::Null),
            (String::new(), json!("chat:a"), json!(2)),
            (String::new(), json!("chat:a"), json!(3)),
            ("gap".into(), json!("short:b"), json!(1)),
            (String::new(), json!("short:b"), json!(2)),
            (String::new(), json!("short:b"), json!(3)),
        ]
    );
    // A mangled id starts from now, never fails the stream.
    let mut s2 = Streamed::open(
        server.addr,
        "GET",
        "/connection/sse?channel=chat:a",
        &[("Last-Event-ID", "garbage")],
        None,
    )
    .await;
    assert_eq!(s2.status, 200);
    assert_eq!(s2.event().await.unwrap().1.as_deref(), Some("position"));
    let bad = server
        .http("GET", "/connection/sse?channel=nope:x", &[], None)
        .await;
    assert_eq!((bad.status, bad.error_code()), (403, 102));
    let bad = server.http("GET", "/connection/sse", &[], None).await;
    assert_eq!(bad.status, 400);
    server.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Records what an endpoint hears, with the session's client id.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(String, String)>>);

impl herald_server::Endpoint for Recorder {
    fn on_open(&self, _: &std::sync::Arc<herald_server::Hub>, s: &herald_server::Session, _: &str) {
        self.0
            .lock()
            .unwrap()
            .push(("open".into(), s.info().client.clone()));
    }
    fn on_message(
        &self,
        _: &std::sync::Arc<herald_server::Hub>,
        s: &herald_server::Session,
        _: &str,
        data: &serde_json::value::RawValue,
    ) {
        self.0
            .lock()
            .unwrap()
            .push((data.get().to_owned(), s.info().client.clone()));
    }
    fn on_close(
        &self,
        _: &std::sync::Arc<herald_server::Hub>,
        s: &herald_server::Session,
        _: &str,
    ) {
        self.0
            .lock()
            .unwrap()
            .push(("close".into(), s.info().client.clone()));
    }
}

#[tokio::test]
async fn a_poller_is_one_session_to_an_endpoint_across_its_polls() {
    let mut c = transports_config();
    c.poll_presence_grace = Duration::from_millis(300);
    c.namespaces.insert(
        "play".into(),
        namespace(|ns| {
            ns.allow_publish = true;
        }),
    );
    let server = TestServer::start(c).await;
    let heard = std::sync::Arc::new(Recorder::default());
    server.server().set_endpoint("play", heard.clone());
    let first = post(
        &server,
        "/connection/poll",
        json!({"channels": {"play:x": {}},
        "commands": [{"id": 1, "publish": {"channel": "play:x", "data": "up"}}]}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    let id = first["id"].as_str().unwrap().to_owned();
    let again = post(
        &server,
        "/connection/poll",
        json!({"client": first["client"], "channels": first["channels"],
        "commands": [{"id": 2, "publish": {"channel": "play:x", "data": "down"}}]}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    eventually("the poller's session to close after its grace", || {
        heard.0.lock().unwrap().iter().any(|(e, _)| e == "close")
    })
    .await;
    let heard = heard.0.lock().unwrap().clone();
    assert_eq!(
        heard,
        [
            ("open".to_owned(), id.clone()),
            ("\"up\"".to_owned(), id.clone()),
            ("\"down\"".to_owned(), id.clone()),
            ("close".to_owned(), id.clone()),
        ],
        "one session, opened before its first move, closed once"
    );
    eventually("the lease's client to be gone", || {
        server.hub().connection_count() == 0
    })
    .await;
    server.stop().await;
}
