//! Issue 15, with real processes: a `redis-server`, three `herald serve`
//! nodes (`a`, `b`, `c`) sharing it as their broker, and a round-robin TCP
//! proxy in front of them with no sticky sessions (support/cluster.rs).
//! Each test starts its own fleet and kills it when done.
//!
//! - a publication made through one node reaches a client of another;
//! - every transport works through the proxy, each HTTP request landing
//!   on another node than the one before;
//! - 1,000 clients of a node killed with SIGKILL reconnect to the others
//!   and recover: nothing lost, duplicated or reordered, and every gap
//!   signalled;
//! - Redis restarted under a steady stream: nodes keep their clients and
//!   every acknowledged publication arrives (or a gap is signalled);
//! - presence, `/api/info` and `/api/disconnect` span the fleet, and a
//!   killed node drops out of presence and `/api/info` in bounded time.
//!
//! It lives here, not with herald-server's tests, for the `herald` binary
//! Cargo builds for this crate's tests (`CARGO_BIN_EXE_herald`); the
//! harness is herald-server's.

#[path = "../../herald-server/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cluster::follow::{Follow, Followers, Publisher, Summary};
use support::cluster::http::{Streamed, publish, request, urlencode};
use support::cluster::{Cluster, Options, poll_until, wait_until};
use support::{Conn, closed, offsets};

/// The nodes' indices in `Cluster::nodes`.
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn ids(clients: &Value) -> BTreeSet<String> {
    clients["clients"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["client"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_one_node_gets_what_a_backend_publishes_through_another() {
    let fleet = Cluster::start(Options::default()).await;
    let mut ann = Conn::connect(&fleet.nodes[A].ws_url(), json!({"name": "Ann"})).await;
    let subscribed = ann.subscribe("feed:one").await;
    assert_eq!(subscribed["offset"], 0, "{subscribed}");
    for n in 1..=3 {
        let body = json!({"channel": "feed:one", "data": {"n": n}});
        let r = fleet.nodes[C]
            .api("POST", "/api/publish", Some(&body))
            .await
            .expect("node c's API");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["offset"], n);
        assert_eq!(
            r.json()["epoch"],
            subscribed["epoch"],
            "one epoch on every node"
        );
    }
    let pubs = ann.publications("feed:one", 3).await;
    assert_eq!(offsets(&pubs), [1, 2, 3]);
    let data: Vec<&Value> = pubs.iter().map(|p| &p["data"]["n"]).collect();
    assert_eq!(data, [1, 2, 3]);
}

// ----- every transport through the proxy -----------------------------------

const TRANSPORT_CHANNEL: &str = "feed:transports";
/// Publications each transport must get, 1..=N.
const N: u64 = 20;

/// What a transport's client collected: the offsets of the publications,
/// in the order received.
type Collected = Result<Vec<u64>, String>;

/// Takes one message's publication offset; a gap is an error here
/// (nothing can be missing in this test).
fn take(m: &Value, into: &mut Vec<u64>) -> Result<(), String> {
    let push = &m["push"];
    if push.get("gap").is_some() {
        return Err(format!("a gap: {m}"));
    }
    if push["channel"] == TRANSPORT_CHANNEL
        && let Some(offset) = push["pub"]["offset"].as_u64()
    {
        into.push(offset);
    }
    Ok(())
}

async fn over_websocket(url: String, ready: tokio::sync::mpsc::Sender<&'static str>) -> Collected {
    let mut conn = Conn::connect(&url, json!({})).await;
    conn.subscribe(TRANSPORT_CHANNEL).await;
    ready.send("websocket").await.map_err(|e| e.to_string())?;
    drop(ready);
    let mut got = Vec::new();
    while (got.len() as u64) < N {
        let bound = Duration::from_secs(10);
        let m = tokio::time::timeout(bound, conn.ws.recv())
            .await
            .map_err(|_| format!("websocket: no message in {bound:?}"))?;
        match m {
            Some(Ok(herald::Message::Text(t))) => {
                let m = serde_json::from_str(&t).map_err(|e| format!("websocket: {e}: {t}"))?;
                take(&m, &mut got)?;
            }
            other => return Err(format!("websocket: {other:?}")),
        }
    }
    Ok(got)
}

/// HTTP streaming (`sse: false`) or SSE: the stream through the proxy,
/// then a subscribe and a ping as two `POST /connection/send`s through the
/// proxy too, which land on the two nodes that do not hold the stream:
/// each must be forwarded (202) and answered on the stream.
async fn over_stream(
    proxy: std::net::SocketAddr,
    sse: bool,
    ready: tokio::sync::mpsc::Sender<&'static str>,
) -> Collected {
    let name = if sse { "sse" } else { "http streaming" };
    let connect = json!({"id": 1, "connect": {}}).to_string();
    let mut s = if sse {
        let path = format!("/connection/sse?connect={}", urlencode(&connect));
        Streamed::open(proxy, "GET", &path, None).await?
    } else {
        Streamed::open(proxy, "POST", "/connection/stream", Some(&connect)).await?
    };
    if s.status != 200 {
        return Err(format!("{name}: {}", s.head));
    }
    let reply = next_message(&mut s, sse, name).await?;
    let session = reply["result"]["session"]
        .as_str()
        .ok_or_else(|| format!("{name}: no session in {reply}"))?
        .to_owned();
    // Two commands, two POSTs: through the proxy, on the two other nodes.
    let commands = [
        json!({"id": 2, "subscribe": {"channel": TRANSPORT_CHANNEL}}),
        json!({"id": 3, "ping": {}}),
    ];
    for command in commands {
        let id = command["id"].clone();
        let body = json!({"session": session, "commands": [command]});
        let sent = request(
            proxy,
            "POST",
            "/connection/send",
            &[],
            Some(&body.to_string()),
            Duration::from_secs(5),
        )
        .await?;
        if sent.status != 202 {
            return Err(format!(
                "{name}: POST /connection/send to another node answered {} {} \
                 (want 202: forwarded to the stream's node)",
                sent.status, sent.body
            ));
        }
        let reply = next_message(&mut s, sse, name).await?;
        if reply["id"] != id || reply.get("error").is_some() {
            return Err(format!("{name}: the reply to command {id}: {reply}"));
        }
    }
    ready.send(name).await.map_err(|e| e.to_string())?;
    drop(ready);
    let mut got = Vec::new();
    while (got.len() as u64) < N {
        take(&next_message(&mut s, sse, name).await?, &mut got)?;
    }
    Ok(got)
}

/// The next message of a stream, within 10 s.
async fn next_message(s: &mut Streamed, sse: bool, name: &str) -> Result<Value, String> {
    let bound = Duration::from_secs(10);
    let m = if sse {
        tokio::time::timeout(bound, s.event()).await
    } else {
        tokio::time::timeout(bound, s.line()).await
    };
    m.map_err(|_| format!("{name}: no message in {bound:?}"))?
        .ok_or_else(|| format!("{name}: the stream ended"))
}

/// Long polling (`wait` > 0) or polling, each poll a new request through
/// the proxy.
async fn over_polls(
    proxy: std::net::SocketAddr,
    wait: u64,
    ready: tokio::sync::mpsc::Sender<&'static str>,
) -> Collected {
    let name = if wait > 0 { "long polling" } else { "polling" };
    let poll = async |body: Value| -> Result<Value, String> {
        let limit = Duration::from_secs(wait + 5);
        let r = request(
            proxy,
            "POST",
            "/connection/poll",
            &[],
            Some(&body.to_string()),
            limit,
        )
        .await?;
        if r.status != 200 {
            return Err(format!("{name}: {} {}", r.status, r.body));
        }
        serde_json::from_str(&r.body).map_err(|e| format!("{name}: {e}: {}", r.body))
    };
    let first = poll(json!({"channels": {TRANSPORT_CHANNEL: {}}})).await?;
    let client = first["client"].clone();
    let mut position = first["channels"][TRANSPORT_CHANNEL].clone();
    ready.send(name).await.map_err(|e| e.to_string())?;
    drop(ready);
    let mut got = Vec::new();
    let start = Instant::now();
    for _ in 0..1000 {
        if got.len() as u64 >= N || start.elapsed() > Duration::from_secs(30) {
            break;
        }
        let answer = poll(json!({
            "client": client,
            "channels": {TRANSPORT_CHANNEL: position},
            "wait": wait,
        }))
        .await?;
        let before = got.len();
        for m in answer["messages"].as_array().into_iter().flatten() {
            take(m, &mut got)?;
        }
        // Each answer starts after the position sent, goes up one by one,
        // and its new position is its last publication's: anything else
        // makes duplicates.
        let next = answer["channels"][TRANSPORT_CHANNEL]["offset"].as_u64();
        let sent = position["offset"].as_u64();
        let new = &got[before..];
        if new.first().is_some_and(|f| sent.is_some_and(|p| *f <= p))
            || new.last().is_some_and(|l| next.is_some_and(|n| *l > n))
            || new.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(format!(
                "{name}: sent position {position}, got {answer} (offsets so far {got:?})"
            ));
        }
        position = answer["channels"][TRANSPORT_CHANNEL].clone();
        if wait == 0 {
            // Polling: the client's own interval.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_works_through_a_round_robin_proxy() {
    let fleet = Cluster::start(Options::default()).await;
    let proxy = fleet.proxy.addr;
    let mut clients = tokio::task::JoinSet::new();
    // One at a time, so that nothing else goes through the proxy while a
    // client sets up: a stream's commands then surely land on the other
    // two nodes.
    let mut subscribed = Vec::new();
    for name in [
        "websocket",
        "sse",
        "http streaming",
        "long polling",
        "polling",
    ] {
        let (ready, mut readied) = tokio::sync::mpsc::channel(1);
        let url = fleet.proxy_ws_url();
        clients.spawn(async move {
            let collected = match name {
                "websocket" => over_websocket(url, ready).await,
                "sse" => over_stream(proxy, true, ready).await,
                "http streaming" => over_stream(proxy, false, ready).await,
                "long polling" => over_polls(proxy, 5, ready).await,
                _ => over_polls(proxy, 0, ready).await,
            };
            (name, collected)
        });
        // Subscribed, or failed (its sender dropped).
        if let Ok(Some(name)) = tokio::time::timeout(Duration::from_secs(20), readied.recv()).await
        {
            subscribed.push(name);
        }
    }
    // The publications, through the proxy too: each on a new connection,
    // so on each node in turn.
    for i in 1..=N {
        let (_, offset) = publish(proxy, TRANSPORT_CHANNEL, json!({"i": i}))
            .await
            .expect("publish through the proxy");
        assert_eq!(offset, i);
    }
    let mut failures = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let (name, collected) = joined.expect("a transport's client panicked");
        match collected {
            Ok(got) if got == (1..=N).collect::<Vec<_>>() => {}
            Ok(got) => failures.push(format!("{name}: got offsets {got:?}, want 1..={N}")),
            Err(e) => failures.push(e),
        }
    }
    let counts = fleet.proxy.counts();
    assert!(
        failures.is_empty(),
        "subscribed: {subscribed:?}; connections per node {counts:?}\n{}\n{}",
        failures.join("\n"),
        fleet.logs()
    );
    assert!(
        counts.iter().all(|&n| n > 0),
        "the proxy used every node: {counts:?}"
    );
}

// ----- a node killed under load --------------------------------------------

/// The accounting both disruption tests print and check.
fn report(what: &str, s: &Summary) {
    println!(
        "{what}: {} clients, {} publications received; lost {}, duplicated {}, \
         out of order {}; gaps signalled {} (epoch changes {}); disconnects {} \
         (close codes {:?}), reconnects {}; clients with errors {}",
        s.clients,
        s.received,
        s.lost,
        s.duplicated,
        s.out_of_order,
        s.gaps,
        s.epoch_changes,
        s.disconnects,
        s.close_codes,
        s.reconnects,
        s.clients_with_errors,
    );
}

fn feed_channels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("feed:k{i}")).collect()
}

/// Client `i`'s channels: two of `channels`, in turn.
fn two_of(channels: &[String], i: usize) -> Vec<String> {
    vec![
        channels[i % channels.len()].clone(),
        channels[(i + 1) % channels.len()].clone(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_node_recover_everything_on_the_others() {
    const CLIENTS: usize = 1000;
    let mut fleet = Cluster::start(Options::default()).await;
    let channels = feed_channels(4);
    let specs = (0..CLIENTS)
        .map(|i| Follow {
            first: fleet.nodes[A].ws_url(),
            again: Some(fleet.proxy_ws_url()),
            channels: two_of(&channels, i),
            index: i,
        })
        .collect();
    let followers = Followers::start(specs, Duration::from_secs(60));
    let subscribed = wait_until(Duration::from_secs(40), || followers.ready() == CLIENTS).await;
    assert!(
        subscribed.is_ok(),
        "{} of {CLIENTS} clients subscribed on node a",
        followers.ready()
    );

    // A steady stream through node c's API: 100 publications a second
    // over 4 channels; node a dies a third of the way through.
    let publisher = Publisher::start(fleet.nodes[C].addr, channels.clone(), 100, 300);
    let started = wait_until(Duration::from_secs(20), || publisher.counts().0 >= 100).await;
    assert!(
        started.is_ok(),
        "published {:?} (ok, failed) in 20 s",
        publisher.counts()
    );
    fleet.nodes[A].kill();
    let picks_at_kill = fleet.proxy.counts()[A];

    let published = publisher.finish(false).await;
    assert_eq!(
        published.failed, 0,
        "node c and Redis are up: every publication is acknowledged: {:?}",
        published.failures
    );
    let tallies = followers.finish(published.targets()).await;
    let s = Summary::of(&tallies);
    report("node a killed", &s);
    println!(
        "connections through the proxy per node: {:?}",
        fleet.proxy.counts()
    );
    assert_eq!(
        fleet.proxy.counts()[A],
        picks_at_kill,
        "the proxy skips the dead node"
    );
    assert!(
        (s.lost, s.duplicated, s.out_of_order) == (0, 0, 0) && s.clients_with_errors == 0,
        "every client gets every publication once, in order, or a gap signal; \
         first errors: {:?}; first anomalies: {:#?}\n{}",
        s.errors,
        s.anomalies,
        fleet.logs()
    );
    assert_eq!(s.disconnects, CLIENTS, "each client was cut off once");
    assert_eq!(s.reconnects, CLIENTS, "and reconnected once");
    assert!(s.received > 0);
}

// ----- Redis restarted under load ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_every_connection_and_every_acknowledged_publication() {
    const CLIENTS: usize = 300;
    let mut fleet = Cluster::start(Options {
        persistent_redis: true,
        ..Options::default()
    })
    .await;
    let channels = feed_channels(4);
    // A hundred clients on each node, directly; the proxy only if a node
    // drops them (which counts against it).
    let specs = (0..CLIENTS)
        .map(|i| Follow {
            first: fleet.nodes[i % 3].ws_url(),
            again: Some(fleet.proxy_ws_url()),
            channels: two_of(&channels, i),
            index: i,
        })
        .collect();
    let followers = Followers::start(specs, Duration::from_secs(80));
    let subscribed = wait_until(Duration::from_secs(30), || followers.ready() == CLIENTS).await;
    assert!(
        subscribed.is_ok(),
        "{} of {CLIENTS} subscribed",
        followers.ready()
    );

    let publisher = Publisher::start(fleet.nodes[C].addr, channels.clone(), 50, 100_000);
    let started = wait_until(Duration::from_secs(20), || publisher.counts().0 >= 50).await;
    assert!(
        started.is_ok(),
        "published {:?} (ok, failed)",
        publisher.counts()
    );

    // Problems are collected, so that one run reports all of them.
    let mut problems = Vec::new();
    fleet.redis.shutdown().await;
    let down = Instant::now();
    problems.extend(fleet.health_becomes(503, Duration::from_secs(10)).await);
    // The publisher keeps going: its publications fail while Redis is
    // down, for about a second of them (50 a second).
    let failed_before = publisher.counts().1;
    if wait_until(Duration::from_secs(15), || {
        publisher.counts().1 >= failed_before + 50
    })
    .await
    .is_err()
    {
        problems.push(format!(
            "the API did not refuse 50 publications in 15 s with Redis down: {:?} (ok, failed)",
            publisher.counts()
        ));
    }
    fleet.redis.restart().await;
    println!("Redis was down for {:?}", down.elapsed());
    let up = Instant::now();
    let ok_at_restart = publisher.counts().0;
    problems.extend(fleet.health_becomes(200, Duration::from_secs(20)).await);
    // Acknowledged before every node was healthy again: some nodes may
    // have missed these live, and filled them in from history.
    let ok_while_healing = publisher.counts().0 - ok_at_restart;
    if wait_until(Duration::from_secs(20), || {
        publisher.counts().0 >= ok_at_restart + ok_while_healing + 50
    })
    .await
    .is_err()
    {
        problems.push(format!(
            "publishing did not resume within 20 s of Redis coming back: {:?}",
            publisher.counts()
        ));
    }
    println!(
        "the fleet was healthy again {:?} after the restart; {ok_while_healing} \
         publications acknowledged meanwhile",
        up.elapsed()
    );
    let published = publisher.finish(true).await;
    // The append-only file kept each channel's epoch: offsets go on.
    for (channel, epochs) in &published.epochs {
        if epochs.len() > 1 {
            problems.push(format!(
                "{channel}: the epoch changed across the restart: {epochs:?}"
            ));
        }
    }
    // `[broker] timeout` (2 s by default) bounds a call to Redis: the API
    // answers an error within it rather than hang while Redis is away.
    if published.unanswered > 0 {
        problems.push(format!(
            "{} publications got no answer within 5 s while Redis was down \
             (`[broker] timeout` is 2 s)",
            published.unanswered
        ));
    }
    println!(
        "publications acknowledged {}, failed {} (first: {:#?}); epochs {:?}",
        published.ok(),
        published.failed,
        published.failures,
        published.epochs
    );
    let tallies = followers.finish(published.targets()).await;
    let s = Summary::of(&tallies);
    report("Redis restarted", &s);
    for node in &mut fleet.nodes {
        if node.exited() {
            problems.push(format!("node {} exited", node.name));
        }
    }
    if (s.lost, s.duplicated, s.out_of_order) != (0, 0, 0) || s.clients_with_errors > 0 {
        problems.push(format!(
            "clients: lost {}, duplicated {}, out of order {}; first errors {:?}; first anomalies {:#?}",
            s.lost, s.duplicated, s.out_of_order, s.errors, s.anomalies
        ));
    }
    if s.disconnects > 0 {
        problems.push(format!(
            "{} connections were cut (close codes {:?}); nodes keep their clients",
            s.disconnects, s.close_codes
        ));
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        fleet.logs()
    );
}

// ----- presence, /api/info and /api/disconnect across the fleet ------------

/// `GET /api/presence/{channel}` on a node: the client ids listed.
async fn presence(fleet: &Cluster, node: usize, channel: &str) -> Result<BTreeSet<String>, String> {
    let r = fleet.nodes[node]
        .api("GET", &format!("/api/presence/{channel}"), None)
        .await?;
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.body));
    }
    Ok(ids(&r.json()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_forgets_the_clients_of_a_killed_node_within_its_ttl() {
    const TTL: u64 = 2;
    let mut fleet = Cluster::start(Options {
        broker: vec![("presence_ttl", "2")],
        ..Options::default()
    })
    .await;
    let channel = "room:p";
    let mut on_a = Vec::new();
    for name in ["a1", "a2", "a3"] {
        let mut c = Conn::connect(&fleet.nodes[A].ws_url(), json!({"name": name})).await;
        c.subscribe(channel).await;
        on_a.push(c);
    }
    let mut on_b = Conn::connect(&fleet.nodes[B].ws_url(), json!({"name": "b1"})).await;
    on_b.subscribe(channel).await;
    let a_ids: BTreeSet<String> = on_a.iter().map(|c| c.client.clone()).collect();
    assert!(
        !a_ids.contains(&on_b.client),
        "client ids are unique across the fleet: node a's {a_ids:?}, node b's {:?}",
        on_b.client
    );
    let everyone: BTreeSet<String> = a_ids.iter().cloned().chain([on_b.client.clone()]).collect();
    let listed = poll_until(
        Duration::from_secs(10),
        || presence(&fleet, B, channel),
        |ids| ids.as_ref() == Ok(&everyone),
    )
    .await;
    if let Err((_, last)) = listed {
        panic!("node b lists {last:?}, want {everyone:?}");
    }

    fleet.nodes[A].kill();
    let killed = Instant::now();
    let only_b: BTreeSet<String> = [on_b.client.clone()].into();
    let gone = poll_until(
        Duration::from_secs(15),
        || presence(&fleet, B, channel),
        |ids| ids.as_ref() == Ok(&only_b),
    )
    .await;
    let (gone, _) = gone.unwrap_or_else(|(waited, last)| {
        panic!("{waited:?} after node a died, node b still lists {last:?}, want {only_b:?}")
    });
    println!("node a's clients left presence {gone:?} after it died (presence_ttl {TTL} s)");
    assert!(
        gone <= Duration::from_secs(TTL + 3),
        "gone after {gone:?}: presence_ttl is {TTL} s"
    );
    // A live client outlasts the ttl: its node keeps it present.
    tokio::time::sleep_until((killed + Duration::from_secs(2 * TTL + 1)).into()).await;
    assert_eq!(
        presence(&fleet, B, channel).await,
        Ok(only_b),
        "the live client stays"
    );
    assert_eq!(presence(&fleet, C, channel).await.map(|s| s.len()), Ok(1));
    on_b.ok("ping", json!({})).await;
}

/// `GET /api/info` on a node: its own name and the fleet's names.
async fn info(fleet: &Cluster, node: usize) -> Result<(String, BTreeSet<String>), String> {
    let r = fleet.nodes[node].api("GET", "/api/info", None).await?;
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.body));
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    let own = v["node"]["name"]
        .as_str()
        .ok_or(format!("no node.name: {v}"))?;
    let names = v["nodes"]
        .as_array()
        .ok_or(format!("no nodes: {v}"))?
        .iter()
        .map(|n| {
            n["name"]
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("a node without a name: {v}"))
        })
        .collect::<Result<_, _>>()?;
    let node_ids: BTreeSet<&str> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str())
        .collect();
    if node_ids.len() != v["nodes"].as_array().map_or(0, Vec::len) {
        return Err(format!("nodes without distinct ids: {v}"));
    }
    Ok((own.to_owned(), names))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_info_lists_the_fleet_and_drops_a_killed_node() {
    let mut fleet = Cluster::start(Options {
        node_names: true,
        broker: vec![("heartbeat", "1"), ("presence_ttl", "2")],
        ..Options::default()
    })
    .await;
    let all: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let listed = poll_until(
            Duration::from_secs(10),
            || info(&fleet, i),
            |answer| matches!(answer, Ok((own, names)) if own == name && *names == all),
        )
        .await;
        if let Err((_, last)) = listed {
            panic!("node {name}'s /api/info: {last:?}");
        }
    }
    fleet.nodes[A].kill();
    let rest: BTreeSet<String> = ["b", "c"].map(String::from).into();
    for i in [B, C] {
        let dropped = poll_until(
            Duration::from_secs(15),
            || info(&fleet, i),
            |answer| matches!(answer, Ok((_, names)) if *names == rest),
        )
        .await;
        match dropped {
            Ok((after, _)) => println!(
                "node {} dropped a from /api/info after {after:?}",
                fleet.nodes[i].name
            ),
            Err((waited, last)) => panic!(
                "{waited:?} after node a died, node {}'s /api/info: {last:?}",
                fleet.nodes[i].name
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_of_one_node_disconnects_a_client_of_another() {
    let fleet = Cluster::start(Options::default()).await;
    // A client on b first, so that a per-node counter would give both
    // nodes' first clients the same id.
    let mut bob = Conn::connect(&fleet.nodes[B].ws_url(), json!({"name": "Bob"})).await;
    let mut ann = Conn::connect(&fleet.nodes[A].ws_url(), json!({"name": "Ann"})).await;
    assert_ne!(
        ann.client, bob.client,
        "client ids are unique across the fleet"
    );
    let body = json!({"client": ann.client, "reason": "moved"});
    let r = fleet.nodes[B]
        .api("POST", "/api/disconnect", Some(&body))
        .await
        .expect("node b's API");
    assert_eq!(r.status, 200, "{}", r.body);
    let close = closed(&mut ann.ws).await;
    assert_eq!((close.code.0, close.reason.as_str()), (4002, "moved"));
    // Bob, on the node that was asked, is untouched.
    bob.ok("ping", json!({})).await;
    let r = fleet.nodes[B]
        .api(
            "POST",
            "/api/disconnect",
            Some(&json!({"client": "no-such-client"})),
        )
        .await
        .expect("node b's API");
    assert_eq!(r.status, 404, "unknown in the whole fleet: {}", r.body);
}
