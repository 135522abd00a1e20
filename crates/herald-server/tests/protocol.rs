//! The client protocol of docs/protocol.md, command by command: every
//! result's shape, every error code a client can cause, every close code,
//! the pushes, and the ordering promise (a subscribe reply before the
//! subscription's first publication).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herald::{CloseCode, Message};
use herald_server::{Endpoint, Hub, Session};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::*;

fn raw(v: Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("JSON")
}

fn is_epoch(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|e| e.len() == 8 && e.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ----- transport -------------------------------------------------------------

/// Checks a refused upgrade: one of the documented statuses, and a
/// one-line reason as the body.
fn assert_refused(r: &HttpResponse, what: &str) {
    assert!([400, 405, 426].contains(&r.status), "{what}: {r:?}");
    let reason = r.body.trim_end();
    assert!(
        !reason.is_empty() && !reason.contains('\n'),
        "{what}: a one-line reason, got {r:?}"
    );
}

#[tokio::test]
async fn requests_that_are_not_websocket_upgrades_are_refused_with_a_reason() {
    let server = TestServer::start(config()).await;
    let path = herald_server::WEBSOCKET_PATH;
    let no_key: Vec<(&str, &str)> = upgrade_headers(&[])
        .into_iter()
        .filter(|(n, _)| *n != "Sec-WebSocket-Key")
        .collect();
    let old_version: Vec<(&str, &str)> = upgrade_headers(&[])
        .into_iter()
        .map(|(n, v)| {
            if n == "Sec-WebSocket-Version" {
                (n, "8")
            } else {
                (n, v)
            }
        })
        .collect();
    for (what, headers) in [
        ("a plain GET", vec![]),
        ("no Sec-WebSocket-Key", no_key),
        ("version 8", old_version),
    ] {
        assert_refused(&server.http("GET", path, &headers, None).await, what);
    }
    server.stop().await;
}

#[tokio::test]
async fn an_upgrade_with_the_wrong_method_is_refused_with_a_reason() {
    let server = TestServer::start(config()).await;
    let path = herald_server::WEBSOCKET_PATH;
    let r = server.http("POST", path, &upgrade_headers(&[]), None).await;
    assert_refused(&r, "POST");
    server.stop().await;
}

#[tokio::test]
async fn permessage_deflate_is_accepted_when_offered() {
    let server = TestServer::start(config()).await;
    let (mut ws, _) = within(
        "handshake",
        herald::Client::new(server.url())
            .deflate(herald::DeflateConfig::default())
            .connect(),
    )
    .await
    .expect("handshake");
    assert!(ws.is_compressed(), "deflate negotiated");
    send_text(&mut ws, r#"{"id": 1, "connect": {}}"#).await;
    send_text(&mut ws, r#"{"id": 2, "subscribe": {"channel": "chat:z"}}"#).await;
    send_text(
        &mut ws,
        &json!({"id": 3, "publish": {"channel": "chat:z", "data": "z".repeat(10_000)}}).to_string(),
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(recv_json(&mut ws).await.expect("open"));
    }
    assert_eq!(seen[0]["id"], 1);
    assert_eq!(seen[1]["id"], 2);
    assert!(
        seen[2..]
            .iter()
            .any(|m| m["push"]["pub"]["data"] == "z".repeat(10_000)),
        "{seen:?}"
    );
    drop(ws);
    server.stop().await;
}

// ----- results ---------------------------------------------------------------

#[tokio::test]
async fn connect_result_has_client_version_and_ping_interval() {
    let server = TestServer::start(config()).await;
    let a = server.named("Alice").await;
    let b = server.client(json!({})).await;
    assert_eq!(
        a.connected,
        json!({"client": a.client, "version": env!("CARGO_PKG_VERSION"), "ping": 25})
    );
    assert!(a.client.parse::<u64>().is_ok(), "client id: {}", a.client);
    assert_ne!(a.client, b.client, "client ids are unique");
    drop((a, b));
    server.stop().await;
}

#[tokio::test]
async fn a_session_start_to_finish() {
    let server = TestServer::start(config()).await;
    let mut alice = server.named("Alice").await;

    let sub = alice.subscribe("chat:lobby").await;
    assert!(is_epoch(&sub["epoch"]), "{sub}");
    let epoch = sub["epoch"].clone();
    assert_eq!(sub, json!({"epoch": epoch, "offset": 0}));

    let published = alice
        .ok(
            "publish",
            json!({"channel": "chat:lobby", "data": {"text": "hi"}}),
        )
        .await;
    assert_eq!(published, json!({"epoch": epoch, "offset": 1}));
    let info = json!({"client": alice.client, "user": "", "name": "Alice"});
    assert_eq!(
        alice.push().await,
        json!({"push": {"channel": "chat:lobby", "epoch": epoch,
               "pub": {"offset": 1, "data": {"text": "hi"}, "info": info}}})
    );

    assert_eq!(
        alice.ok("presence", json!({"channel": "chat:lobby"})).await,
        json!({"clients": [info]})
    );
    assert_eq!(
        alice.ok("history", json!({"channel": "chat:lobby"})).await,
        json!({"epoch": epoch, "offset": 1, "publications": [
            {"offset": 1, "data": {"text": "hi"}, "info": info}
        ]})
    );
    assert_eq!(alice.ok("ping", json!({})).await, json!({}));
    assert_eq!(
        alice
            .ok("unsubscribe", json!({"channel": "chat:lobby"}))
            .await,
        json!({})
    );

    // Unsubscribed: the next publication is not pushed, so the next message
    // is the ping's reply.
    alice
        .ok("publish", json!({"channel": "chat:lobby", "data": 2}))
        .await;
    let id = alice.send("ping", json!({})).await;
    assert_eq!(alice.recv().await, json!({"id": id, "result": {}}));
    assert!(alice.pushes.is_empty(), "{:?}", alice.pushes);
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn publication_data_is_any_json_value_and_api_publications_have_no_info() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    let epoch = c.subscribe("chat:values").await["epoch"].clone();
    let values = [
        json!(null),
        json!(true),
        json!(-1.5),
        json!("text with \"quotes\" and ☃"),
        json!([1, {"a": []}]),
    ];
    for v in &values {
        c.ok("publish", json!({"channel": "chat:values", "data": v}))
            .await;
    }
    let got = c.publications("chat:values", values.len()).await;
    for (p, v) in got.iter().zip(&values) {
        assert_eq!(&p["data"], v);
    }

    server
        .api_publish("chat:values", json!({"from": "api"}))
        .await;
    assert_eq!(
        c.push().await,
        json!({"push": {"channel": "chat:values", "epoch": epoch,
               "pub": {"offset": 6, "data": {"from": "api"}}}}),
        "no info on API publications"
    );
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn history_returns_the_newest_limit_oldest_first() {
    let server = TestServer::start(config()).await;
    for i in 1..=5 {
        server
            .hub()
            .publish("chat:h", raw(json!(i)), None)
            .await
            .expect("publish");
    }
    let mut c = server.named("H").await;
    let two = c
        .ok("history", json!({"channel": "chat:h", "limit": 2}))
        .await;
    assert_eq!(two["offset"], 5);
    assert!(is_epoch(&two["epoch"]));
    assert_eq!(
        two["publications"],
        json!([{"offset": 4, "data": 4}, {"offset": 5, "data": 5}])
    );
    let all = c.ok("history", json!({"channel": "chat:h"})).await;
    assert_eq!(
        offsets(all["publications"].as_array().unwrap()),
        [1, 2, 3, 4, 5]
    );
    let none = c.ok("history", json!({"channel": "chat:never-used"})).await;
    assert_eq!(none["offset"], 0);
    assert_eq!(none["publications"], json!([]));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn join_and_leave_pushes_go_to_the_other_subscribers() {
    let server = TestServer::start(config()).await;
    let mut alice = server.named("Alice").await;
    let mut bob = server.named("Bob").await;
    alice.subscribe("chat:room").await;
    bob.subscribe("chat:room").await;
    let bob_info = json!({"client": bob.client, "user": "", "name": "Bob"});
    assert_eq!(
        alice.push().await,
        json!({"push": {"channel": "chat:room", "join": bob_info}})
    );
    // Bob is not told about his own join: his next message is a reply.
    let id = bob.send("ping", json!({})).await;
    assert_eq!(bob.recv().await, json!({"id": id, "result": {}}));

    let clients = alice.ok("presence", json!({"channel": "chat:room"})).await["clients"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(clients, 2);

    bob.ok("unsubscribe", json!({"channel": "chat:room"})).await;
    assert_eq!(
        alice.push().await,
        json!({"push": {"channel": "chat:room", "leave": bob_info}})
    );

    // A dropped connection leaves too.
    bob.subscribe("chat:room").await;
    assert_eq!(alice.push().await["push"]["join"], bob_info);
    drop(bob);
    assert_eq!(
        alice.push().await,
        json!({"push": {"channel": "chat:room", "leave": bob_info}})
    );
    assert_eq!(
        alice.ok("presence", json!({"channel": "chat:room"})).await["clients"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    drop(alice);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn namespaces_without_join_leave_send_none() {
    let server = TestServer::start(config()).await;
    let mut a = server.named("A").await;
    let mut b = server.named("B").await;
    a.subscribe("plain").await;
    b.subscribe("plain").await;
    drop(b);
    // Give a leave push, if one were sent, time to arrive first (paused
    // clock: the sleep ends once every task waits).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = a.send("ping", json!({})).await;
    assert_eq!(a.recv().await, json!({"id": id, "result": {}}));
    drop(a);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_reply_arrives_before_the_first_publication() {
    let mut config = config();
    config.namespaces.insert(
        "busy".into(),
        namespace(|ns| {
            ns.history_size = 0;
            ns.queue_size = 1 << 20;
        }),
    );
    let server = TestServer::start(config).await;
    let hub = server.hub().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..10 {
                    i += 1;
                    hub.publish("busy:feed", raw(json!(i)), None)
                        .await
                        .expect("publish");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut c = server.named("C").await;
    for round in 0..20 {
        let id = c.send("subscribe", json!({"channel": "busy:feed"})).await;
        // Nothing of the channel may come before the reply.
        let reply = c.reply(id).await;
        assert!(
            c.pushes.is_empty(),
            "round {round}: push before reply: {:?}",
            c.pushes
        );
        let top = reply["result"]["offset"].as_u64().expect("offset");
        let pubs = c.publications("busy:feed", 5).await;
        assert_eq!(
            offsets(&pubs),
            (top + 1..=top + 5).collect::<Vec<_>>(),
            "round {round}: live publications follow the reply's offset"
        );
        let id = c.send("unsubscribe", json!({"channel": "busy:feed"})).await;
        c.reply(id).await;
        // Publications queued before the unsubscribe reply are fine.
        c.pushes.clear();
    }
    stop.store(true, Ordering::Relaxed);
    within("publisher", publisher).await.expect("publisher");
    drop(c);
    server.stop().await;
}

// ----- error codes -----------------------------------------------------------

#[tokio::test]
async fn error_102_unknown_namespace_or_invalid_channel_name() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    let too_long = format!("chat:{}", "a".repeat(251));
    let longest = format!("chat:{}", "a".repeat(250));
    assert_eq!(longest.len(), 255);
    for channel in ["nope:x", "chat:a b", "", "chat:ü", &too_long] {
        assert_eq!(
            c.error("subscribe", json!({ "channel": channel })).await,
            102,
            "subscribe {channel:?}"
        );
        assert_eq!(
            c.error("publish", json!({"channel": channel, "data": 1}))
                .await,
            102,
            "publish {channel:?}"
        );
        assert_eq!(
            c.error("presence", json!({ "channel": channel })).await,
            102,
            "presence {channel:?}"
        );
        assert_eq!(
            c.error("history", json!({ "channel": channel })).await,
            102,
            "history {channel:?}"
        );
        assert_eq!(
            c.error("unsubscribe", json!({ "channel": channel })).await,
            102,
            "unsubscribe {channel:?}"
        );
    }
    c.subscribe(&longest).await;
    // Every allowed character.
    c.subscribe("chat:AZaz09_.:@/-").await;
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn error_103_where_the_namespace_does_not_allow_it() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    // quotes:* is server-publish only and keeps no presence.
    c.subscribe("quotes:ACME").await;
    assert_eq!(
        c.error("publish", json!({"channel": "quotes:ACME", "data": 1}))
            .await,
        103
    );
    assert_eq!(
        c.error("presence", json!({"channel": "quotes:ACME"})).await,
        103
    );
    assert_eq!(
        c.error("publish", json!({"channel": "plain", "data": 1}))
            .await,
        103,
        "the default namespace is server-publish only"
    );
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn error_104_for_a_bad_command_whose_id_can_be_read() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    // Each error says what was wrong, as the HTTP API does.
    let bad = [
        (
            r#"{"id": 7, "subscribe": {"chanel": "chat:a"}}"#,
            "unknown field `chanel`",
        ),
        (r#"{"id": 8, "nope": {}}"#, "unknown field `nope`"),
        (
            r#"{"id": 9, "ping": {}, "presence": {"channel": "chat:a"}}"#,
            "more than one method",
        ),
        (r#"{"id": 10}"#, "no method: one of connect, subscribe"),
        (
            r#"{"id": 11, "publish": {"channel": "chat:a"}}"#,
            "missing field `data`",
        ),
        (
            r#"{"id": 12, "subscribe": {"channel": 5}}"#,
            "invalid type: integer `5`",
        ),
        (
            r#"{"id": 13, "history": {"channel": "chat:a", "limit": -1}}"#,
            "invalid value: integer `-1`",
        ),
        (
            r#"{"id": 14, "ping": {}, "extra": true}"#,
            "unknown field `extra`",
        ),
        (
            r#"{"id": 15, "ping": {"bogus": 1}}"#,
            "unknown field `bogus`",
        ),
    ];
    for (text, why) in bad {
        c.send_raw(text).await;
        let id: Value = serde_json::from_str::<Value>(text).unwrap()["id"].clone();
        let reply = c.recv().await;
        assert_eq!(reply["id"], id, "{text}: {reply}");
        assert_eq!(reply["error"]["code"], 104, "{text}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("bad request: ") && message.contains(why),
            "{text}: the error should say {why:?}: {reply}"
        );
    }
    // A second connect.
    let reply = c.command("connect", json!({"name": "again"})).await;
    assert_eq!(reply["error"]["code"], 104, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already connected")),
        "{reply}"
    );
    // Still usable.
    assert_eq!(c.ok("ping", json!({})).await, json!({}));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn error_105_already_subscribed_and_106_not_subscribed() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    c.subscribe("chat:x").await;
    assert_eq!(
        c.error("subscribe", json!({"channel": "chat:x"})).await,
        105
    );
    assert_eq!(
        c.error(
            "subscribe",
            json!({"channel": "chat:x", "recover": true, "epoch": "00000000", "offset": 0})
        )
        .await,
        105
    );
    c.ok("unsubscribe", json!({"channel": "chat:x"})).await;
    assert_eq!(
        c.error("unsubscribe", json!({"channel": "chat:x"})).await,
        106
    );
    assert_eq!(
        c.error("unsubscribe", json!({"channel": "chat:never"}))
            .await,
        106
    );
    drop(c);
    server.stop().await;
}

/// On tokio's paused clock, which the rate limiter reads: no time passes
/// between the commands, so exactly the burst is allowed.
#[tokio::test(start_paused = true)]
async fn error_107_when_commands_come_faster_than_the_rate() {
    let mut config = config();
    config.max_commands_per_second = 5;
    let server = TestServer::start(config).await;
    let mut c = server.named("C").await;
    // Burst: twice the rate is allowed at once; more is refused.
    let ids: Vec<u32> = {
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.push(c.send("ping", json!({})).await);
        }
        ids
    };
    let mut refused = 0;
    for id in ids {
        let reply = c.recv().await;
        assert_eq!(reply["id"], id, "{reply}");
        if reply.get("error").is_some() {
            assert_eq!(
                reply["error"],
                json!({"code": 107, "message": "rate limited"})
            );
            refused += 1;
        }
    }
    assert_eq!(
        refused, 2,
        "12 commands at 5/s (burst 10): {refused} refused"
    );
    // After slowing down, commands pass again and the connection is open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.ok("ping", json!({})).await, json!({}));
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn error_109_too_many_subscriptions() {
    let mut config = config();
    config.max_subscriptions = 2;
    let server = TestServer::start(config).await;
    let mut c = server.named("C").await;
    c.subscribe("chat:1").await;
    c.subscribe("chat:2").await;
    assert_eq!(
        c.error("subscribe", json!({"channel": "chat:3"})).await,
        109
    );
    c.ok("unsubscribe", json!({"channel": "chat:1"})).await;
    c.subscribe("chat:3").await;
    drop(c);
    server.stop().await;
}

// ----- close codes -----------------------------------------------------------

/// Checks a close frame's code, and its reason where the protocol defines
/// one (API disconnects, shutdown).
fn assert_close(frame: herald::CloseFrame, code: u16, reason: Option<&str>) {
    assert_eq!(frame.code.0, code, "close code ({frame:?})");
    if let Some(reason) = reason {
        assert_eq!(frame.reason, reason, "close reason");
    }
}

#[tokio::test]
async fn close_4101_when_the_first_frame_is_not_connect() {
    let server = TestServer::start(config()).await;
    // A valid command, but not connect.
    let mut ws = open(&server.url()).await;
    send_text(&mut ws, r#"{"id": 1, "ping": {}}"#).await;
    assert_close(closed(&mut ws).await, 4101, None);
    // Not a command at all.
    let mut ws = open(&server.url()).await;
    send_text(&mut ws, "hello").await;
    assert_close(closed(&mut ws).await, 4101, None);
    server.stop().await;
}

#[tokio::test]
async fn close_4101_for_a_frame_that_is_not_a_command() {
    let server = TestServer::start(config()).await;
    for garbage in [
        "hello",
        "[1, 2]",
        r#"{"ping": {}}"#,
        r#"{"id": "x", "ping": {}}"#,
        "",
    ] {
        let mut c = server.named("C").await;
        c.send_raw(garbage).await;
        assert_close(c.closed().await, 4101, None);
    }
    server.stop().await;
}

#[tokio::test]
async fn close_4004_without_connect_in_time() {
    let mut config = config();
    config.handshake_timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let start = Instant::now();
    let mut ws = open(&server.url()).await;
    assert_close(closed(&mut ws).await, 4004, None);
    assert!(start.elapsed() >= Duration::from_millis(250));
    server.stop().await;
}

#[tokio::test]
async fn close_4100_for_an_invalid_token() {
    let mut config = config();
    config.token_secret = Some("s3cret".into());
    let server = TestServer::start(config).await;
    let mut ws = open(&server.url()).await;
    send_text(&mut ws, r#"{"id": 1, "connect": {"token": "a.b.c"}}"#).await;
    assert_close(closed(&mut ws).await, 4100, None);
    server.stop().await;
}

#[tokio::test]
async fn close_1003_for_a_binary_frame() {
    let server = TestServer::start(config()).await;
    // After connect.
    let mut c = server.named("C").await;
    within("send", c.ws.send(Message::binary(vec![1u8, 2, 3])))
        .await
        .expect("send");
    assert_eq!(c.closed().await.code, CloseCode::UNSUPPORTED_DATA);
    // As the first frame.
    let mut ws = open(&server.url()).await;
    within(
        "send",
        ws.send(Message::binary(br#"{"id":1,"connect":{}}"#.to_vec())),
    )
    .await
    .expect("send");
    assert_eq!(closed(&mut ws).await.code, CloseCode::UNSUPPORTED_DATA);
    server.stop().await;
}

#[tokio::test]
async fn close_1009_for_a_message_over_the_size_limit() {
    let mut config = config();
    config.max_message_size = 1024;
    let server = TestServer::start(config).await;
    let mut c = server.named("C").await;
    // Just under the limit is fine.
    let data = "x".repeat(900);
    c.ok("publish", json!({"channel": "chat:big", "data": data}))
        .await;
    let big = json!({"id": 9, "publish": {"channel": "chat:big", "data": "x".repeat(2048)}});
    c.send_raw(&big.to_string()).await;
    assert_eq!(c.closed().await.code, CloseCode::MESSAGE_TOO_BIG);
    server.stop().await;
}

#[tokio::test]
async fn close_4003_when_rate_limiting_is_ignored() {
    let mut config = config();
    config.max_commands_per_second = 5;
    let server = TestServer::start(config).await;
    let mut c = server.named("C").await;
    // Keep sending without reading; the server closes at some point, after
    // which sends fail.
    for i in 0..100u32 {
        let text = json!({"id": 100 + i, "ping": {}}).to_string();
        if c.ws.send(Message::text(text)).await.is_err() {
            break;
        }
    }
    let mut rate_limited = 0;
    let frame = within("the 4003 close", async {
        loop {
            match c.ws.recv().await {
                Some(Ok(Message::Text(t))) => {
                    let m: Value = serde_json::from_str(&t).unwrap();
                    if m["error"]["code"] == 107 {
                        rate_limited += 1;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break c.ws.close_frame().cloned(),
            }
        }
    })
    .await
    .expect("a close frame");
    assert_close(frame, 4003, None);
    assert!(rate_limited > 0, "error 107 comes before the close");
    server.stop().await;
}

#[tokio::test]
async fn close_4002_through_the_http_api() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    let body = json!({"client": c.client, "reason": "maintenance"}).to_string();
    let r = server
        .http("POST", "/api/disconnect", &[], Some(&body))
        .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert_close(c.closed().await, 4002, Some("maintenance"));
    server.stop().await;
}

#[tokio::test]
async fn close_1001_on_shutdown_with_a_retry_hint() {
    let mut server = TestServer::start(config()).await;
    let mut c = server.named("C").await;
    server.trigger_shutdown();
    assert_close(c.closed().await, 1001, Some("shutdown; retry in 0 ms"));
    server.join().await.expect("serve");
}

// ----- server logic ----------------------------------------------------------

/// Greets each subscriber, and republishes client publications upper-cased.
struct Shout;

impl Endpoint for Shout {
    fn on_open(&self, _hub: &Arc<Hub>, session: &Session, namespace: &str) {
        session.send(
            &format!("{namespace}:welcome"),
            &json!({"hello": session.info().client}),
        );
    }

    fn on_message(&self, hub: &Arc<Hub>, session: &Session, channel: &str, data: &RawValue) {
        let loud = RawValue::from_string(data.get().to_uppercase()).expect("JSON");
        hub.publish_detached(channel, loud, Some(session.info()))
            .expect("the memory broker answers at once")
            .expect("publish");
    }
}

#[tokio::test]
async fn publish_into_an_endpoint_namespace_goes_to_its_logic() {
    let mut config = config();
    config.namespaces.insert(
        "shout".into(),
        namespace(|ns| {
            ns.allow_publish = true;
            ns.history_size = 10;
        }),
    );
    let server = TestServer::start(config).await;
    server.server().set_endpoint("shout", Arc::new(Shout));
    let mut c = server.named("C").await;
    c.subscribe("shout:room").await;
    assert_eq!(
        c.push().await,
        json!({"push": {"channel": "shout:welcome", "message": {"hello": c.client}}})
    );
    assert_eq!(
        c.ok("publish", json!({"channel": "shout:room", "data": "hi"}))
            .await,
        json!({}),
        "the logic decides what is published"
    );
    let pubs = c.publications("shout:room", 1).await;
    assert_eq!(pubs[0]["data"], "HI");
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn publications_carry_the_server_time_where_the_namespace_asks() {
    let mut c = config();
    c.namespaces.get_mut("chat").unwrap().server_time = true;
    let server = TestServer::start(c).await;
    let mut a = server.named("A").await;
    a.subscribe("chat:t").await;
    let before = herald_server::unix_now() * 1000;
    server.api_publish("chat:t", json!("hi")).await;
    let push = a.push().await;
    let time = push["push"]["pub"]["time"].as_u64().expect("a time");
    let after = herald_server::unix_now() * 1000 + 1000;
    assert!(
        (before..=after).contains(&time),
        "{time} not in {before}..={after}"
    );
    // A namespace without it: no field.
    a.subscribe("quotes:t").await;
    server.api_publish("quotes:t", json!(1)).await;
    let push = a.push().await;
    assert!(push["push"]["pub"].get("time").is_none(), "{push}");
    drop(a);
    server.stop().await;
}
