//! A backend publishing at a steady rate, and crowds of WebSocket clients
//! (one task each) that account for every publication of their channels:
//! received once and in order, or covered by an explicit gap signal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::{MaybeTlsStream, Message, WebSocket};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::http::publish;

// ----- the publisher --------------------------------------------------------

/// What a [`Publisher`] got done.
#[derive(Debug, Default, Clone)]
pub struct Published {
    /// Offsets the API acknowledged, by channel, in the order acknowledged.
    pub offsets: HashMap<String, Vec<u64>>,
    /// Epochs the API answered with, by channel.
    pub epochs: HashMap<String, Vec<String>>,
    /// Publications the API refused or did not answer (not published, as
    /// far as the test is concerned).
    pub failed: usize,
    /// Of those, the ones that got no answer at all in time.
    pub unanswered: usize,
    /// The first few failures, for the report.
    pub failures: Vec<String>,
}

impl Published {
    pub fn ok(&self) -> usize {
        self.offsets.values().map(Vec::len).sum()
    }

    /// The highest acknowledged offset of each channel: what every
    /// subscriber must reach.
    pub fn targets(&self) -> HashMap<String, u64> {
        self.offsets
            .iter()
            .map(|(c, o)| (c.clone(), o.iter().copied().max().unwrap_or(0)))
            .collect()
    }
}

/// A backend publishing through one node's API at a steady rate, to each
/// channel in turn, until stopped or `max` publications.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    pub progress: Arc<Mutex<Published>>,
    task: JoinHandle<()>,
}

impl Publisher {
    pub fn start(api: SocketAddr, channels: Vec<String>, per_second: u32, max: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(Published::default()));
        let (stopping, record) = (stop.clone(), progress.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in 0..max {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let channel = &channels[i % channels.len()];
                let result = publish(api, channel, json!({"i": i})).await;
                let mut p = record.lock().unwrap();
                match result {
                    Ok((epoch, offset)) => {
                        p.offsets.entry(channel.clone()).or_default().push(offset);
                        let epochs = p.epochs.entry(channel.clone()).or_default();
                        if epochs.last() != Some(&epoch) {
                            epochs.push(epoch);
                        }
                    }
                    Err(e) => {
                        p.failed += 1;
                        if e.contains("no answer within") {
                            p.unanswered += 1;
                        }
                        if p.failures.len() < 5 {
                            p.failures.push(e);
                        }
                    }
                }
            }
        });
        Self {
            stop,
            progress,
            task,
        }
    }

    /// (acknowledged, failed) so far.
    pub fn counts(&self) -> (usize, usize) {
        let p = self.progress.lock().unwrap();
        (p.ok(), p.failed)
    }

    /// Stops (or waits for `max`) and returns what was published.
    pub async fn finish(self, stop: bool) -> Published {
        if stop {
            self.stop.store(true, Ordering::Relaxed);
        }
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the publisher to finish")
            .expect("the publisher panicked");
        self.progress.lock().unwrap().clone()
    }
}

// ----- followers: clients that account for every publication --------------

/// What one client saw of one channel.
#[derive(Debug, Default, Clone)]
pub struct ChannelTally {
    epoch: String,
    last: u64,
    seen: Vec<bool>,
    /// Publications received (counted once each).
    pub received: u64,
    /// Offsets skipped without a gap signal, or never reached.
    pub lost: u64,
    pub duplicated: u64,
    /// Offsets that came after a later one.
    pub out_of_order: u64,
    /// Explicit gap signals: `recovered: false`, or a `gap` push.
    pub gaps: u64,
    /// Epoch changes seen (each also a gap).
    pub epoch_changes: u64,
    /// The first anomalies, described.
    pub notes: Vec<String>,
}

impl ChannelTally {
    fn position(&mut self, epoch: &str, offset: u64) {
        self.epoch = epoch.to_owned();
        self.last = offset;
    }

    /// A publication at `offset`, from `source` (a push, a recovery).
    fn publication(&mut self, offset: u64, source: &str) {
        let at = offset as usize;
        if self.seen.len() <= at {
            self.seen.resize(at + 1, false);
        }
        let anomaly = if self.seen[at] {
            self.duplicated += 1;
            Some("duplicated")
        } else {
            self.seen[at] = true;
            self.received += 1;
            if offset <= self.last {
                self.out_of_order += 1;
                Some("out of order")
            } else if offset > self.last + 1 {
                self.lost += offset - self.last - 1;
                Some("after a silent gap")
            } else {
                None
            }
        };
        if let Some(what) = anomaly
            && self.notes.len() < 3
        {
            self.notes.push(format!(
                "offset {offset} {what} ({source}; last was {})",
                self.last
            ));
        }
        self.last = self.last.max(offset);
    }

    /// Everything up to `offset` of `epoch` is lost for this subscriber.
    fn gap(&mut self, epoch: &str, offset: u64) {
        self.gaps += 1;
        if epoch != self.epoch {
            self.epoch_changes += 1;
            self.epoch = epoch.to_owned();
            self.seen.clear();
            self.last = offset;
        } else {
            self.last = self.last.max(offset);
        }
    }

    /// A subscribe reply's result (with or without recovery).
    fn subscribed(&mut self, result: &Value) {
        let epoch = result["epoch"].as_str().unwrap_or_default();
        let offset = result["offset"].as_u64().unwrap_or(0);
        let publications = result["publications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match result.get("recovered").and_then(Value::as_bool) {
            // A first subscription: from here on.
            None => self.position(epoch, offset),
            Some(true) => {}
            // What is still kept follows; before it, the gap.
            Some(false) => {
                let first = publications.first().and_then(|p| p["offset"].as_u64());
                self.gap(epoch, first.map_or(offset, |f| f.saturating_sub(1)));
            }
        }
        let source = format!("in a subscribe reply {result}");
        for p in &publications {
            if let Some(offset) = p["offset"].as_u64() {
                self.publication(offset, &source);
            }
        }
    }
}

/// What one client saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub channels: HashMap<String, ChannelTally>,
    /// Times its connection ended under it.
    pub disconnects: usize,
    /// Close codes the server sent (1006 for a connection that ended
    /// without a Close).
    pub close_codes: Vec<u16>,
    pub reconnects: usize,
    /// Why it gave up, or an error reply it got.
    pub errors: Vec<String>,
}

/// A client to follow: where it connects first, where it reconnects (none:
/// it gives up when cut off), its channels.
#[derive(Debug, Clone)]
pub struct Follow {
    pub first: String,
    pub again: Option<String>,
    pub channels: Vec<String>,
    /// Spreads reconnects (a few ms per index).
    pub index: usize,
}

/// Shared by the followers of one test: how many are subscribed, when
/// they may stop (the publisher's final offsets), and a bound on opening
/// connections at once.
#[derive(Clone)]
pub struct Crowd {
    pub ready: Arc<AtomicUsize>,
    pub targets: watch::Receiver<Option<HashMap<String, u64>>>,
    pub opening: Arc<Semaphore>,
    pub deadline: tokio::time::Instant,
}

type Ws = WebSocket<MaybeTlsStream>;

/// Opens a WebSocket and completes `connect` within 5 s.
async fn open_session(url: &str) -> Result<Ws, String> {
    let session = async {
        let (mut ws, _) = herald::Client::new(url)
            .connect()
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let connect = json!({"id": 1, "connect": {}}).to_string();
        ws.send(Message::text(connect))
            .await
            .map_err(|e| format!("send: {e}"))?;
        match ws.recv().await {
            Some(Ok(Message::Text(t))) => {
                let reply: Value = serde_json::from_str(&t).map_err(|e| format!("{e}: {t}"))?;
                if reply["result"]["client"].is_string() {
                    Ok(ws)
                } else {
                    Err(format!("connect refused: {reply}"))
                }
            }
            other => Err(format!("no connect reply: {other:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .unwrap_or_else(|_| Err("connect: no reply in 5 s".to_owned()))
}

/// Subscribes to every channel, recovering from each one's last position
/// if it has one. Returns the pending subscribe ids.
async fn subscribe_all(
    ws: &mut Ws,
    tally: &Tally,
    channels: &[String],
    recover: bool,
) -> Result<HashMap<u64, String>, String> {
    let mut pending = HashMap::new();
    for (i, channel) in channels.iter().enumerate() {
        let id = 2 + i as u64;
        let mut params = json!({"channel": channel});
        if recover {
            let t = &tally.channels[channel];
            params["recover"] = json!(true);
            params["epoch"] = json!(t.epoch);
            params["offset"] = json!(t.last);
        }
        let command = json!({"id": id, "subscribe": params}).to_string();
        ws.send(Message::text(command))
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        pending.insert(id, channel.clone());
    }
    Ok(pending)
}

/// One client: connects, subscribes, then accounts for every message
/// until it has reached the publisher's final offsets on every channel
/// (or the crowd's deadline). Cut off, it reconnects to `again` and
/// resubscribes with `recover: true` from its last position.
pub async fn follow(spec: Follow, crowd: Crowd) -> Tally {
    let mut tally = Tally::default();
    for c in &spec.channels {
        tally.channels.insert(c.clone(), ChannelTally::default());
    }
    let mut targets = crowd.targets.clone();
    let first = {
        let _permit = crowd.opening.acquire().await.expect("the semaphore");
        match open_session(&spec.first).await {
            Ok(mut ws) => match subscribe_all(&mut ws, &tally, &spec.channels, false).await {
                Ok(pending) => Some((ws, pending)),
                Err(e) => {
                    tally.errors.push(e);
                    None
                }
            },
            Err(e) => {
                tally.errors.push(format!("first connection: {e}"));
                None
            }
        }
    };
    let Some((mut ws, mut pending)) = first else {
        crowd.ready.fetch_add(1, Ordering::Relaxed);
        return tally;
    };
    let mut ready = false;
    'run: loop {
        if !ready && pending.is_empty() {
            ready = true;
            crowd.ready.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(t) = &*targets.borrow() {
            let done = spec
                .channels
                .iter()
                .all(|c| tally.channels[c].last >= t.get(c).copied().unwrap_or(0));
            if done && pending.is_empty() {
                break;
            }
        }
        let message = tokio::select! {
            m = ws.recv() => m,
            _ = targets.changed() => continue,
            _ = tokio::time::sleep_until(crowd.deadline) => {
                tally.errors.push("deadline passed".to_owned());
                break;
            }
        };
        match message {
            Some(Ok(Message::Text(t))) => {
                let Ok(m) = serde_json::from_str::<Value>(&t) else {
                    tally.errors.push(format!("not JSON: {t}"));
                    continue;
                };
                handle(&mut tally, &mut pending, &m);
            }
            Some(Ok(Message::Binary(_))) => tally.errors.push("a binary frame".to_owned()),
            // Cut off: the close code, then back through `again`.
            Some(Err(_)) | None => {
                tally.disconnects += 1;
                tally
                    .close_codes
                    .push(ws.close_frame().map_or(1006, |f| f.code.0));
                let Some(again) = &spec.again else {
                    tally.errors.push("disconnected".to_owned());
                    break;
                };
                let spread = Duration::from_millis((spec.index % 50) as u64 * 4);
                tokio::time::sleep(spread).await;
                for attempt in 0..100u64 {
                    if tokio::time::Instant::now() >= crowd.deadline {
                        tally
                            .errors
                            .push("could not reconnect before the deadline".to_owned());
                        break 'run;
                    }
                    let reopened = match open_session(again).await {
                        Ok(mut w) => subscribe_all(&mut w, &tally, &spec.channels, true)
                            .await
                            .map(|p| (w, p)),
                        Err(e) => Err(e),
                    };
                    match reopened {
                        Ok((w, p)) => {
                            ws = w;
                            pending = p;
                            tally.reconnects += 1;
                            continue 'run;
                        }
                        Err(e) if attempt == 99 => {
                            tally.errors.push(format!("reconnect: {e}"));
                            break 'run;
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50 + attempt * 20)).await
                        }
                    }
                }
            }
        }
    }
    // Whatever was never reached is lost.
    if let Some(t) = &*targets.borrow() {
        for c in &spec.channels {
            let ct = tally.channels.get_mut(c).expect("a channel of the spec");
            let target = t.get(c).copied().unwrap_or(0);
            ct.lost += target.saturating_sub(ct.last);
        }
    }
    tally
}

fn handle(tally: &mut Tally, pending: &mut HashMap<u64, String>, m: &Value) {
    if let Some(id) = m.get("id").and_then(Value::as_u64) {
        let Some(channel) = pending.remove(&id) else {
            tally.errors.push(format!("an unexpected reply: {m}"));
            return;
        };
        if m.get("error").is_some() {
            tally.errors.push(format!("subscribe {channel}: {m}"));
            return;
        }
        if let Some(t) = tally.channels.get_mut(&channel) {
            t.subscribed(&m["result"]);
        }
        return;
    }
    let push = &m["push"];
    let Some(t) = push["channel"]
        .as_str()
        .and_then(|c| tally.channels.get_mut(c))
    else {
        return;
    };
    let channel = push["channel"].as_str().unwrap_or_default();
    if let Some(offset) = push["pub"]["offset"].as_u64() {
        let source = match pending.values().any(|c| c == channel) {
            false => "a push",
            true => "a push before its subscribe reply",
        };
        t.publication(offset, source);
    } else if let Some(gap) = push.get("gap") {
        t.gap(
            gap["epoch"].as_str().unwrap_or_default(),
            gap["offset"].as_u64().unwrap_or(0),
        );
    }
}

/// The sum over a crowd's tallies.
#[derive(Debug, Default)]
pub struct Summary {
    pub clients: usize,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub gaps: u64,
    pub epoch_changes: u64,
    pub disconnects: usize,
    pub reconnects: usize,
    /// How many connections ended with each close code (1006: no Close).
    pub close_codes: HashMap<u16, usize>,
    pub clients_with_errors: usize,
    /// The first few errors.
    pub errors: Vec<String>,
    /// The first few anomalies (loss, duplicate, disorder), described.
    pub anomalies: Vec<String>,
}

impl Summary {
    pub fn of(tallies: &[Tally]) -> Self {
        let mut s = Self {
            clients: tallies.len(),
            ..Self::default()
        };
        for t in tallies {
            for c in t.channels.values() {
                s.received += c.received;
                s.lost += c.lost;
                s.duplicated += c.duplicated;
                s.out_of_order += c.out_of_order;
                s.gaps += c.gaps;
                s.epoch_changes += c.epoch_changes;
            }
            s.disconnects += t.disconnects;
            s.reconnects += t.reconnects;
            for code in &t.close_codes {
                *s.close_codes.entry(*code).or_default() += 1;
            }
            if !t.errors.is_empty() {
                s.clients_with_errors += 1;
                if s.errors.len() < 5 {
                    s.errors.push(t.errors.join("; "));
                }
            }
            for (name, c) in &t.channels {
                if s.anomalies.len() < 5 && !c.notes.is_empty() {
                    s.anomalies.push(format!("{name}: {}", c.notes.join("; ")));
                }
            }
        }
        s
    }
}

/// Followers started together, and the means to stop them.
pub struct Followers {
    pub ready: Arc<AtomicUsize>,
    targets: watch::Sender<Option<HashMap<String, u64>>>,
    tasks: JoinSet<Tally>,
    pub count: usize,
}

impl Followers {
    /// Starts one task per spec, at most 64 opening connections at once;
    /// none runs past `deadline`.
    pub fn start(specs: Vec<Follow>, deadline: Duration) -> Self {
        let (targets, rx) = watch::channel(None);
        let crowd = Crowd {
            ready: Arc::new(AtomicUsize::new(0)),
            targets: rx,
            opening: Arc::new(Semaphore::new(64)),
            deadline: tokio::time::Instant::now() + deadline,
        };
        let count = specs.len();
        let mut tasks = JoinSet::new();
        for spec in specs {
            tasks.spawn(follow(spec, crowd.clone()));
        }
        Self {
            ready: crowd.ready,
            targets,
            tasks,
            count,
        }
    }

    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::Relaxed)
    }

    /// Tells every follower the final offsets and collects their tallies.
    pub async fn finish(mut self, targets: HashMap<String, u64>) -> Vec<Tally> {
        self.targets.send_replace(Some(targets));
        let mut tallies = Vec::with_capacity(self.count);
        while let Some(t) = self.tasks.join_next().await {
            tallies.push(t.expect("a follower panicked"));
        }
        tallies
    }
}
