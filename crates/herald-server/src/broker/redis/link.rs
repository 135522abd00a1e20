//! The node's pub/sub connection to Redis: which channels it wants, when
//! Redis confirmed each, and the loop that keeps the connection up.
//!
//! The connection is re-made with backoff whenever it drops or a probe
//! (a message this node publishes to itself every heartbeat) does not come
//! back: a subscription can be stuck without the socket closing. After
//! each reconnect every wanted channel is subscribed again, and the
//! reader catches up on what was published meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::reader::Reader;

/// A change of interest, in the order the hub made them; `u64` is the
/// generation of the name's entry, so that a confirmation goes to the
/// subscribe it answers.
pub(super) enum Change {
    Subscribe(String, u64),
    Unsubscribe(String),
}

/// What this node asked of the pub/sub connection and how it stands.
pub(super) struct Link {
    /// Wanted pub/sub names: generation, and whether Redis confirmed the
    /// SUBSCRIBE on the current connection.
    wanted: std::sync::Mutex<HashMap<String, (u64, watch::Sender<bool>)>>,
    generation: AtomicU64,
    changes: mpsc::UnboundedSender<Change>,
    up: AtomicBool,
    probe: std::sync::Mutex<Probe>,
    /// Why the last heartbeat's commands failed, if they did.
    commands: std::sync::Mutex<Option<String>>,
    heartbeat: Duration,
    reconnects: AtomicU64,
}

/// The last probe sent through Redis to this node, and the last back.
#[derive(Default)]
struct Probe {
    sent: Option<(u64, Instant)>,
    seen: u64,
}

/// Names per SUBSCRIBE command when subscribing again after a reconnect.
const CHUNK: usize = 500;

impl Link {
    pub(super) fn new(heartbeat: Duration) -> (Arc<Self>, mpsc::UnboundedReceiver<Change>) {
        let (changes, rx) = mpsc::unbounded_channel();
        let link = Arc::new(Self {
            wanted: Default::default(),
            generation: AtomicU64::new(1),
            changes,
            up: AtomicBool::new(false),
            probe: Default::default(),
            commands: Default::default(),
            heartbeat,
            reconnects: AtomicU64::new(0),
        });
        (link, rx)
    }

    fn wanted(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, watch::Sender<bool>)>> {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn subscribe(&self, name: String) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        self.wanted()
            .insert(name.clone(), (generation, watch::channel(false).0));
        let _ = self.changes.send(Change::Subscribe(name, generation));
    }

    pub(super) fn unsubscribe(&self, name: String) {
        self.wanted().remove(&name);
        let _ = self.changes.send(Change::Unsubscribe(name));
    }

    pub(super) fn wants(&self, name: &str) -> bool {
        self.wanted().contains_key(name)
    }

    /// Where to wait for `name`'s SUBSCRIBE to be confirmed, if wanted.
    pub(super) fn confirmation(&self, name: &str) -> Option<watch::Receiver<bool>> {
        self.wanted().get(name).map(|(_, tx)| tx.subscribe())
    }

    fn confirm(&self, name: &str, generation: u64) {
        if let Some((g, tx)) = self.wanted().get(name)
            && *g == generation
        {
            tx.send_replace(true);
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for (_, tx) in self.wanted().values() {
                tx.send_replace(false);
            }
        }
    }

    /// A probe numbered `n` was published.
    pub(super) fn probe_sent(&self, n: u64) {
        let mut probe = self.probe.lock().unwrap_or_else(|p| p.into_inner());
        if probe.sent.is_none_or(|(m, _)| m <= probe.seen) {
            probe.sent = Some((n, Instant::now()));
        }
    }

    /// How the last heartbeat's commands went.
    pub(super) fn commands_done(&self, result: Result<(), String>) {
        *self.commands.lock().unwrap_or_else(|p| p.into_inner()) = result.err();
    }

    /// Probe `n` came back through the subscription.
    pub(super) fn probe_seen(&self, n: u64) {
        let mut probe = self.probe.lock().unwrap_or_else(|p| p.into_inner());
        probe.seen = probe.seen.max(n);
    }

    /// How long the oldest probe not back yet has been on its way.
    fn probe_late(&self) -> Option<Duration> {
        let probe = self.probe.lock().unwrap_or_else(|p| p.into_inner());
        match probe.sent {
            Some((n, at)) if n > probe.seen => Some(at.elapsed()),
            _ => None,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub(super) fn health(&self) -> Result<(), String> {
        if !self.up.load(Ordering::SeqCst) {
            return Err("the pub/sub connection to Redis is down; reconnecting".into());
        }
        if let Some(e) = &*self.commands.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(format!("commands to Redis fail: {e}"));
        }
        match self.probe_late() {
            Some(late) if late > self.heartbeat => Err(format!(
                "a pub/sub probe sent {} ms ago has not come back",
                late.as_millis()
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn stats(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![
            (
                "herald_broker_up",
                "Whether the pub/sub connection to the broker is up and its probes come back (1) or not (0).",
                u64::from(self.health().is_ok()),
            ),
            (
                "herald_broker_reconnects_total",
                "Times the pub/sub connection to the broker was made again after it dropped or stalled.",
                self.reconnects.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// Keeps the pub/sub connection of `link` up, for ever: subscribes to
/// `own` (this node's control channel) and every wanted name, hands
/// messages to `reader`, applies changes of interest in order.
pub(super) async fn run(
    link: Arc<Link>,
    client: redis::Client,
    reader: Arc<Reader>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    own: Vec<String>,
    max_delay: Duration,
) {
    let first_delay = Duration::from_millis(100);
    let mut delay = first_delay;
    let mut connected_once = false;
    loop {
        let connected = tokio::time::timeout(link.heartbeat * 2, client.get_async_pubsub()).await;
        let Ok(Ok(pubsub)) = connected else {
            link.set_up(false);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(max_delay.max(first_delay));
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        // The wanted map is what counts; changes queued until now are in it.
        while changes.try_recv().is_ok() {}
        let names: Vec<(String, u64)> = link
            .wanted()
            .iter()
            .map(|(name, (g, _))| (name.clone(), *g))
            .collect();
        let mut ok = sink.subscribe(&own).await.is_ok();
        for chunk in names.chunks(CHUNK) {
            if !ok {
                break;
            }
            let list: Vec<&str> = chunk.iter().map(|(n, _)| n.as_str()).collect();
            ok = sink.subscribe(&list).await.is_ok();
        }
        if !ok {
            link.set_up(false);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(max_delay.max(first_delay));
            continue;
        }
        if connected_once {
            link.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("redis broker: pub/sub connection made again");
        }
        connected_once = true;
        delay = first_delay;
        link.up.store(true, Ordering::SeqCst);
        for (name, generation) in &names {
            link.confirm(name, *generation);
        }
        // A probe sent before the connection was made may never come back.
        *link.probe.lock().unwrap_or_else(|p| p.into_inner()) = Probe::default();
        // What was published while this node was not subscribed.
        reader.catch_up().await;

        let mut check = tokio::time::interval(link.heartbeat);
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(m) => reader.message(m.get_channel_name(), m.get_payload_bytes()).await,
                    None => break,
                },
                change = changes.recv() => match change {
                    Some(Change::Subscribe(name, generation)) => {
                        if sink.subscribe(&name).await.is_err() {
                            break;
                        }
                        link.confirm(&name, generation);
                    }
                    Some(Change::Unsubscribe(name)) => {
                        if !link.wants(&name) && sink.unsubscribe(&name).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
                _ = check.tick() => {
                    // Stuck: the socket is open but nothing comes through.
                    if link.probe_late().is_some_and(|late| late > link.heartbeat * 3) {
                        tracing::warn!("redis broker: pub/sub probes do not come back; reconnecting");
                        break;
                    }
                }
            }
        }
        tracing::warn!("redis broker: pub/sub connection lost; reconnecting");
        link.set_up(false);
    }
}
