//! A fleet of real processes for tests/cluster.rs: a `redis-server`, three
//! `herald serve` nodes started from the built binary with a TOML file
//! each, and a round-robin TCP proxy in front of the nodes (no sticky
//! sessions). Everything listens on 127.0.0.1, on ports the kernel picks;
//! every child is killed and reaped when its owner is dropped.
//!
//! The clients here must survive what the tests do to the fleet (a node
//! killed, Redis restarted), so unlike the rest of `support` they return
//! errors instead of panicking, and every wait takes its own bound:
//! [`http`] for requests and streamed responses, [`follow`] for a
//! publisher and for crowds of clients that account for every publication.

pub mod follow;
pub mod http;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use self::http::{api, request};
use super::HttpResponse;

/// The HTTP API key of every node (`Authorization: apikey ...`).
pub const API_KEY: &str = "cluster-test-api-key";

/// The fleet's `transport_secret`: a stream's session token made by one
/// node is accepted by the others.
const TRANSPORT_SECRET: &str = "cluster-test-transport-secret, shared by the fleet";
/// Polls `cond` every 20 ms until it holds; `Err` with the time waited if
/// `limit` passes first.
pub async fn wait_until(
    limit: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] with an async condition (an HTTP request per try).
pub async fn wait_for<F, Fut>(limit: Duration, mut cond: F) -> Result<Duration, Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if tokio::time::timeout(left, cond()).await == Ok(true) {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks `probe` every 50 ms until its answer satisfies `want`, for at most
/// `limit`: the time it took and the answer, or the time waited and the
/// last answer (`None`: not one answer in time).
pub async fn poll_until<T, F, Fut>(
    limit: Duration,
    mut probe: F,
    want: impl Fn(&T) -> bool,
) -> Result<(Duration, T), (Duration, Option<T>)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let start = Instant::now();
    let mut last = None;
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if let Ok(answer) = tokio::time::timeout(left, probe()).await {
            if want(&answer) {
                return Ok((start.elapsed(), answer));
            }
            last = Some(answer);
        }
        if start.elapsed() >= limit {
            return Err((start.elapsed(), last));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- the herald binary ----------------------------------------------------

/// The `herald` binary Cargo built for the test that runs this (the
/// cluster suite is one of herald-cli's tests, where Cargo sets
/// `CARGO_BIN_EXE_herald`).
pub fn herald_bin() -> &'static Path {
    match option_env!("CARGO_BIN_EXE_herald") {
        Some(path) => Path::new(path),
        None => panic!("the cluster suite runs as a test of herald-cli (crates/herald-cli/tests)"),
    }
}

// ----- redis-server ---------------------------------------------------------

/// A redis-server on a free port of 127.0.0.1, which can be shut down and
/// started again on the same port (and, persistent, the same data).
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// The AOF directory, if persistent.
    dir: Option<PathBuf>,
}

impl Redis {
    /// `persistent`: `--appendonly yes --appendfsync always` in a fresh
    /// directory, so a restart keeps every acknowledged write.
    pub async fn start(persistent: bool) -> Self {
        let port = free_port();
        let dir = persistent.then(|| temp_dir("redis"));
        let mut redis = Self {
            child: None,
            port,
            dir,
        };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"]);
        command.args(["--save", ""]);
        match &self.dir {
            Some(dir) => {
                command.args(["--appendonly", "yes", "--appendfsync", "always", "--dir"]);
                command.arg(dir);
            }
            None => {
                command.args(["--appendonly", "no"]);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-peers installs it)");
        self.child = Some(child);
        let port = self.port;
        let ready = wait_for(Duration::from_secs(10), || async move {
            redis_command(port, "PING")
                .await
                .is_ok_and(|r| r.starts_with("+PONG"))
        })
        .await;
        assert!(
            ready.is_ok(),
            "redis-server on port {port} did not answer PING"
        );
    }

    /// `SHUTDOWN` (which writes the AOF out first), then waits for the
    /// process to exit.
    pub async fn shutdown(&mut self) {
        let _ = redis_command(self.port, "SHUTDOWN").await;
        let mut child = self.child.take().expect("redis-server running");
        let exited = wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        })
        .await;
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server did not exit after SHUTDOWN");
        }
    }

    /// Starts redis-server again on the same port and directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server still running");
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One inline command on a fresh connection; its first reply line.
async fn redis_command(port: u16, command: &str) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(format!("{command}\r\n").as_bytes()).await?;
    let mut buf = vec![0u8; 256];
    let n = tcp.read(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn temp_dir(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "herald-cluster-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

// ----- herald serve nodes ---------------------------------------------------

/// What the fleet's configuration adds to the defaults of [`node_config`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run redis-server with an append-only file (for a restart).
    pub persistent_redis: bool,
    /// Give each node `node_name = "a"` (`"b"`, `"c"`).
    pub node_names: bool,
    /// Keys of the `[broker]` table besides the URL (which is passed as
    /// `--broker`), as TOML: `("presence_ttl", "2")`.
    pub broker: Vec<(&'static str, &'static str)>,
}

/// The TOML file of node `name`: the fleet's shared secret and API key, no
/// demos, and namespaces whose history outlasts every test:
///
/// - `feed`: publications from the API only, history 10,000 for 10 min,
///   a queue of 4,096 per subscriber;
/// - `chat`: clients may publish, history 1,000;
/// - `room`: presence, history 100.
pub fn node_config(name: &str, options: &Options) -> String {
    let mut t = String::new();
    t.push_str("listen = \"127.0.0.1:0\"\ndemos = false\ndrain = 0.2\n");
    writeln!(t, "api_key = \"{API_KEY}\"").unwrap();
    writeln!(t, "transport_secret = \"{TRANSPORT_SECRET}\"").unwrap();
    if options.node_names {
        writeln!(t, "node_name = \"{name}\"").unwrap();
    }
    if !options.broker.is_empty() {
        t.push_str("\n[broker]\n");
        for (key, value) in &options.broker {
            writeln!(t, "{key} = {value}").unwrap();
        }
    }
    t.push_str(
        "\n[namespaces.feed]\nhistory_size = 10000\nhistory_ttl = 600\nqueue_size = 4096\n\
         \n[namespaces.chat]\nallow_publish = true\nhistory_size = 1000\nhistory_ttl = 600\n\
         \n[namespaces.room]\npresence = true\nhistory_size = 100\nhistory_ttl = 600\n",
    );
    t
}

/// `herald serve` as a child process, killed (SIGKILL) and reaped when
/// dropped.
pub struct Node {
    pub name: String,
    /// Where it listens (from its banner).
    pub addr: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts `herald serve --config <file> --broker <url> --threads 1`
    /// and waits for its banner. Blocking. `Err`: its output.
    fn start(name: &str, config: &Path, broker: &str) -> Result<Self, String> {
        let mut command = Command::new(herald_bin());
        command
            .args(["serve", "--threads", "1", "--broker", broker, "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The defaults and the file only, whatever the test run's
        // environment says.
        for (key, _) in std::env::vars_os() {
            if key.as_encoded_bytes().starts_with(b"HERALD_") {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().expect("start herald serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = log.clone();
        // Keeps reading for the node's life, so it never blocks on a full
        // pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                lines.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("herald serve: http://").nth(1) {
                        let addr = rest.split('/').next().unwrap_or_default();
                        break addr.parse().expect("the banner's address");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "herald serve (node {name}) printed no banner; its output:\n{}",
                        log.lock().unwrap().join("\n")
                    ));
                }
            }
        };
        Ok(Self {
            name: name.to_owned(),
            addr,
            child: Some(child),
            log,
        })
    }

    /// `ws://ADDR/connection/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, herald_server::WEBSOCKET_PATH)
    }

    /// SIGKILL: no drain, no goodbye to Redis or to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL herald serve");
            child.wait().expect("reap herald serve");
        }
    }

    /// Whether it has exited by itself (a crash).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Its stderr so far: the first and last lines of it.
    pub fn log(&self) -> String {
        let lines = self.log.lock().unwrap();
        if lines.len() <= 30 {
            return lines.join("\n");
        }
        format!(
            "{}\n... {} lines ...\n{}",
            lines[..10].join("\n"),
            lines.len() - 30,
            lines[lines.len() - 20..].join("\n")
        )
    }

    /// An API request (with the key) on a fresh connection.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<HttpResponse, String> {
        api(self.addr, method, path, body).await
    }

    /// `GET /health`'s status, or `None` if there was no answer in 2 s.
    pub async fn health(&self) -> Option<u16> {
        request(
            self.addr,
            "GET",
            "/health",
            &[],
            None,
            Duration::from_secs(2),
        )
        .await
        .ok()
        .map(|r| r.status)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The proxy, the nodes and Redis, dropped in that order (the fields'):
/// every child killed and reaped.
pub struct Cluster {
    pub proxy: Proxy,
    pub nodes: Vec<Node>,
    pub redis: Redis,
    dir: PathBuf,
}

impl Cluster {
    /// Redis, three nodes `a`, `b`, `c` (healthy: `/health` answers 200),
    /// and the proxy in front of them.
    pub async fn start(options: Options) -> Self {
        let redis = Redis::start(options.persistent_redis).await;
        let dir = temp_dir("nodes");
        let mut nodes = Vec::new();
        for name in ["a", "b", "c"] {
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, node_config(name, &options)).expect("write the node's config");
            let broker = redis.url();
            let name = name.to_owned();
            let node = tokio::task::spawn_blocking(move || Node::start(&name, &config, &broker))
                .await
                .expect("start a node");
            nodes.push(node.unwrap_or_else(|e| panic!("{e}")));
        }
        for node in &nodes {
            let healthy = wait_for(Duration::from_secs(20), || async {
                node.health().await == Some(200)
            })
            .await;
            assert!(
                healthy.is_ok(),
                "node {} is not healthy; its output:\n{}",
                node.name,
                node.log()
            );
        }
        let proxy = Proxy::start(nodes.iter().map(|n| n.addr).collect()).await;
        Self {
            proxy,
            nodes,
            redis,
            dir,
        }
    }

    /// `ws://PROXY/connection/websocket`.
    pub fn proxy_ws_url(&self) -> String {
        format!("ws://{}{}", self.proxy.addr, herald_server::WEBSOCKET_PATH)
    }

    /// Waits, for all live nodes at once, until `/health` answers
    /// `status`; what did not, described.
    pub async fn health_becomes(&self, status: u16, limit: Duration) -> Vec<String> {
        let waits = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|node| async move {
                let reached =
                    wait_for(limit, || async { node.health().await == Some(status) }).await;
                let waited = reached.err()?;
                let now = node.health().await;
                Some(format!(
                    "node {}: /health answers {} after {waited:?}, not {status}",
                    node.name,
                    now.map_or("nothing".to_owned(), |s| s.to_string())
                ))
            });
        futures_util::future::join_all(waits)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Every node's output, for a failure message.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for node in &self.nodes {
            writeln!(all, "--- node {} ---\n{}", node.name, node.log()).unwrap();
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- the round-robin proxy ------------------------------------------------

/// A TCP proxy: each accepted connection goes to the next node in turn
/// (skipping one that refuses), bytes copied both ways until either side
/// closes. No stickiness: two requests in a row land on two nodes.
pub struct Proxy {
    pub addr: SocketAddr,
    /// Connections relayed to each node, by index.
    pub picks: Arc<Vec<AtomicUsize>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(nodes: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let picks: Arc<Vec<AtomicUsize>> =
            Arc::new(nodes.iter().map(|_| AtomicUsize::new(0)).collect());
        let nodes: Arc<[SocketAddr]> = nodes.into();
        let next = Arc::new(AtomicUsize::new(0));
        let counts = picks.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: every relay ends with the proxy.
            let mut relays = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((inbound, _)) => {
                            relays.spawn(relay(inbound, nodes.clone(), next.clone(), counts.clone()));
                        }
                        // Out of descriptors, say: let some relays end.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = relays.join_next(), if !relays.is_empty() => {}
                }
            }
        });
        Self { addr, picks, task }
    }

    /// How many connections each node got.
    pub fn counts(&self) -> Vec<usize> {
        self.picks
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut inbound: TcpStream,
    nodes: Arc<[SocketAddr]>,
    next: Arc<AtomicUsize>,
    picks: Arc<Vec<AtomicUsize>>,
) {
    for _ in 0..nodes.len() {
        let i = next.fetch_add(1, Ordering::Relaxed) % nodes.len();
        let connect = TcpStream::connect(nodes[i]);
        if let Ok(Ok(mut outbound)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            picks[i].fetch_add(1, Ordering::Relaxed);
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            return;
        }
    }
    // Every node refused: dropping `inbound` closes it.
}
