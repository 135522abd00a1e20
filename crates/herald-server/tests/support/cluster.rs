//! A fleet of real processes for tests/cluster.rs: a `redis-server`, three
//! `herald serve` nodes started from the built binary with a TOML file
//! each, and a round-robin TCP proxy in front of the nodes (no sticky
//! sessions). Everything listens on 127.0.0.1, on ports the kernel picks;
//! every child is killed and reaped when its owner is dropped.
//!
//! The clients here must survive what the tests do to the fleet (a node
//! killed, Redis restarted), so unlike the rest of `support` they return
//! errors instead of panicking, and every wait takes its own bound.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use herald::{MaybeTlsStream, Message, WebSocket};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

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

/// The `herald` binary of the sources under test.
///
/// Cargo sets `CARGO_BIN_EXE_herald` only for herald-cli's own tests, and
/// herald-server cannot depend on herald-cli (which depends on it). So the
/// first call runs `cargo build -p herald-cli --bin herald` in the target
/// directory this test was built in, and takes the executable's path from
/// Cargo's JSON messages: never a stale binary, whether the run was
/// `cargo nextest run -p herald-server` or the whole workspace. Up to date,
/// that is a second; a first build of herald-cli's feature set takes
/// minutes (this waits before any test clock starts).
pub fn herald_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's path");
        // <target>/<profile dir>/deps/cluster-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps");
        let target = profile_dir.parent().expect("<target>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        // The variables Cargo sets for this test (CARGO_MANIFEST_DIR,
        // CARGO_PKG_NAME, ...) are ones build scripts watch (ring's:
        // `rerun-if-env-changed`); passed on, they would make this build
        // differ from the one that built the test, and each rebuild the
        // other's dependencies, every run.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            let set_for_tests = k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || k.starts_with("CARGO_CFG_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&&*k);
            if set_for_tests {
                command.env_remove(&key);
            }
        }
        let out = command
            .args(["build", "-p", "herald-cli", "--bin", "herald"])
            .args([
                "--message-format",
                "json-render-diagnostics",
                "--profile",
                profile,
            ])
            .arg("--target-dir")
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build -p herald-cli");
        assert!(out.status.success(), "cargo build -p herald-cli failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "herald")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo named the herald executable")
    })
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
        tokio::task::spawn_blocking(herald_bin)
            .await
            .expect("build herald");
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

// ----- HTTP -----------------------------------------------------------------

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), the
/// response read to its end within `limit`. Errors are returned, not
/// panicked on: the node may be gone.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    limit: Duration,
) -> Result<HttpResponse, String> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            writeln!(req, "{name}: {value}\r").unwrap();
        }
        if let Some(body) = body {
            write!(
                req,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .unwrap();
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or_default());
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        parse_response(&raw)
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{method} {path}: no answer within {limit:?}")))
}

/// [`request`] to the API, with the key, a JSON body and a 5 s bound.
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<HttpResponse, String> {
    let auth = format!("apikey {API_KEY}");
    let body = body.map(Value::to_string);
    request(
        addr,
        method,
        path,
        &[("Authorization", &auth)],
        body.as_deref(),
        Duration::from_secs(5),
    )
    .await
}

/// `POST /api/publish`: the publication's (epoch, offset), or why not.
pub async fn publish(
    addr: SocketAddr,
    channel: &str,
    data: Value,
) -> Result<(String, u64), String> {
    let body = json!({"channel": channel, "data": data});
    let r = api(addr, "POST", "/api/publish", Some(&body)).await?;
    if r.status != 200 {
        return Err(format!("{}: {}", r.status, r.body));
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    match (v["epoch"].as_str(), v["offset"].as_u64()) {
        (Some(epoch), Some(offset)) => Ok((epoch.to_owned(), offset)),
        _ => Err(format!("no epoch and offset: {v}")),
    }
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end =
        find(raw, b"\r\n\r\n").ok_or_else(|| format!("no response head in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        let mut chunks = Chunks {
            raw: body,
            ..Chunks::default()
        };
        chunks.decode();
        body = chunks.body;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A chunked body, decoded as it arrives.
#[derive(Default)]
struct Chunks {
    raw: Vec<u8>,
    body: Vec<u8>,
    ended: bool,
}

impl Chunks {
    /// Moves every whole chunk of `raw` into `body`.
    fn decode(&mut self) {
        while let Some(eol) = find(&self.raw, b"\r\n") {
            let size_line = String::from_utf8_lossy(&self.raw[..eol]).into_owned();
            let Ok(size) =
                usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            else {
                self.ended = true;
                return;
            };
            if size == 0 {
                self.ended = true;
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }
}

/// A long response read as it arrives (HTTP streaming's NDJSON, SSE).
pub struct Streamed {
    tcp: TcpStream,
    pub status: u16,
    pub head: String,
    chunks: Chunks,
}

impl Streamed {
    /// Sends the request and reads the response head.
    pub async fn open(
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Self, String> {
        let open = async {
            let mut tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
            if let Some(body) = body {
                write!(
                    req,
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .unwrap();
            }
            req.push_str("\r\n");
            req.push_str(body.unwrap_or_default());
            tcp.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut raw = Vec::new();
            let end = loop {
                if let Some(end) = find(&raw, b"\r\n\r\n") {
                    break end;
                }
                let mut buf = [0u8; 4096];
                let n = tcp.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("closed before the response head".to_owned());
                }
                raw.extend_from_slice(&buf[..n]);
            };
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let chunks = Chunks {
                raw: raw[end + 4..].to_vec(),
                ..Chunks::default()
            };
            Ok(Self {
                tcp,
                status,
                head,
                chunks,
            })
        };
        tokio::time::timeout(Duration::from_secs(5), open)
            .await
            .unwrap_or_else(|_| Err(format!("{method} {path}: no response head in 5 s")))
    }

    /// The next piece of the body ending with `sep`; `None` once it ended.
    async fn next(&mut self, sep: &[u8]) -> Option<String> {
        loop {
            self.chunks.decode();
            if let Some(i) = find(&self.chunks.body, sep) {
                let piece: Vec<u8> = self.chunks.body.drain(..i + sep.len()).collect();
                return Some(String::from_utf8_lossy(&piece[..i]).into_owned());
            }
            if self.chunks.ended {
                return None;
            }
            let mut buf = [0u8; 8192];
            match self.tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.chunks.raw.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The next NDJSON message (keepalive lines skipped).
    pub async fn line(&mut self) -> Option<Value> {
        loop {
            let line = self.next(b"\n").await?;
            if !line.trim().is_empty() {
                return serde_json::from_str(&line).ok();
            }
        }
    }

    /// The next SSE event's data as JSON (comments skipped).
    pub async fn event(&mut self) -> Option<Value> {
        loop {
            let block = self.next(b"\n\n").await?;
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                return serde_json::from_str(data).ok();
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

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
