//! The harness of herald-server's integration tests: a real server on
//! 127.0.0.1:0, protocol clients that speak JSON commands over the `herald`
//! WebSocket client, a raw WebSocket peer over a bare `TcpStream` (for a
//! client that stops reading), and a raw HTTP/1.1 client for the API.
//!
//! Every wait is bounded by [`TIMEOUT`]: a hung server fails the test with
//! the name of what it was waiting for instead of hanging the suite.
//!
//! Each test file uses a subset, hence the `allow`.
#![allow(dead_code, unreachable_pub)]

pub mod cluster;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald::{CloseFrame, MaybeTlsStream, Message, WebSocket};
use herald_server::{Hub, NamespaceConfig, QueuePolicy, Server, ServerConfig, WEBSOCKET_PATH};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The bound on every single wait.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes over [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

// ----- configuration ---------------------------------------------------------

/// The defaults with test-friendly timers and no demo feeds.
pub fn config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.demos = false;
    c.drain = Duration::from_millis(100);
    c.handshake_timeout = Duration::from_secs(5);
    // Publications compared as whole JSON values carry no clock reading;
    // tests of `server_time` turn it back on.
    for ns in c.namespaces.values_mut() {
        ns.server_time = false;
    }
    c
}

/// A namespace: the defaults changed by `f`.
pub fn namespace(f: impl FnOnce(&mut NamespaceConfig)) -> NamespaceConfig {
    let mut ns = NamespaceConfig::default();
    f(&mut ns);
    ns
}

/// A namespace for slow-consumer tests: a small queue with `policy`.
pub fn small_queue(queue_size: usize, policy: QueuePolicy) -> NamespaceConfig {
    namespace(|ns| {
        ns.queue_size = queue_size;
        ns.on_full = policy;
        ns.allow_publish = true;
    })
}

// ----- the server ------------------------------------------------------------

/// A server serving on an ephemeral port until [`TestServer::stop`].
pub struct TestServer {
    pub addr: SocketAddr,
    hub: Arc<Hub>,
    server: Server,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Binds first (so the port is known), then serves in a task.
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_server(Server::new(config)).await
    }

    /// [`TestServer::start`] with its broker connected first
    /// (`Server::connect`: Redis when `broker_url` is set).
    pub async fn connect(config: ServerConfig) -> Self {
        let server = Server::connect(config).await.expect("the broker");
        Self::start_server(server).await
    }

    /// Serves `server` on an ephemeral port.
    pub async fn start_server(server: Server) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let hub = server.hub().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            hub,
            server,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A server on `threads` threads (`Server::serve_threads`, as
    /// `herald serve --threads N` runs it): the calling runtime is thread
    /// 0, each other thread has a runtime of its own, and every thread
    /// accepts on its own `SO_REUSEPORT` listener bound to the same port.
    pub async fn start_threads(config: ServerConfig, threads: usize) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let listeners = herald_server::bind_threads(loopback, threads).expect("bind");
        let addr = listeners[0].local_addr().expect("local_addr");
        let server = Server::new(config);
        let hub = server.hub().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve_threads(listeners, None, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            hub,
            server,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// `ws://127.0.0.1:PORT/connection/websocket`.
    pub fn url(&self) -> String {
        format!("ws://{}{WEBSOCKET_PATH}", self.addr)
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The server (for what is not the hub's: endpoints).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Completes the shutdown future given to `serve`.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `serve` to return (after [`TestServer::trigger_shutdown`]).
    pub async fn join(&mut self) -> std::io::Result<()> {
        let task = self.task.take().expect("serve task already joined");
        within("serve() to return after shutdown", task)
            .await
            .expect("serve task panicked")
    }

    /// Shuts down and checks that `serve` returns `Ok`. Drop or close the
    /// test's clients first: a client that does not read cannot answer the
    /// server's Close, and the drain waits for it.
    pub async fn stop(mut self) {
        self.trigger_shutdown();
        self.join().await.expect("serve() returned an error");
    }

    /// A protocol client that has completed `connect` with `params`.
    pub async fn client(&self, params: Value) -> Conn {
        Conn::connect(&self.url(), params).await
    }

    /// A protocol client named `name`.
    pub async fn named(&self, name: &str) -> Conn {
        self.client(json!({ "name": name })).await
    }

    /// An HTTP/1.1 request to this server.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        http(self.addr, method, path, headers, body).await
    }

    /// `POST /api/publish` through HTTP; returns the result body.
    pub async fn api_publish(&self, channel: &str, data: Value) -> Value {
        let body = json!({ "channel": channel, "data": data }).to_string();
        let r = self.http("POST", "/api/publish", &[], Some(&body)).await;
        assert_eq!(r.status, 200, "publish to {channel}: {}", r.body);
        r.json()
    }

    /// The Prometheus exposition, through HTTP.
    pub async fn metrics(&self) -> String {
        let r = self.http("GET", "/metrics", &[], None).await;
        assert_eq!(r.status, 200);
        r.body
    }
}

/// The value of the sample `name` (with its labels, as written in the
/// exposition: `herald_queue_drops_total{policy="latest"}`), if present.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Polls `cond` every 10 ms until it holds, failing after [`TIMEOUT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

// ----- a protocol client -----------------------------------------------------

/// A client of the push protocol over the `herald` WebSocket client.
/// Pushes that arrive while it waits for a reply are kept, in order, in
/// [`Conn::pushes`].
pub struct Conn {
    pub ws: WebSocket<MaybeTlsStream>,
    /// The client id from the `connect` result.
    pub client: String,
    /// The whole `connect` result.
    pub connected: Value,
    pub pushes: VecDeque<Value>,
    next_id: u32,
}

/// Opens a WebSocket to `url` without sending anything.
pub async fn open(url: &str) -> WebSocket<MaybeTlsStream> {
    let (ws, _) = within("WebSocket handshake", herald::Client::new(url).connect())
        .await
        .expect("WebSocket handshake");
    ws
}

/// Sends `text` as one text frame.
pub async fn send_text(ws: &mut WebSocket<MaybeTlsStream>, text: impl Into<String>) {
    within("send", ws.send(Message::text(text.into())))
        .await
        .expect("send");
}

/// The next message as JSON; `None` once the connection has closed.
pub async fn recv_json(ws: &mut WebSocket<MaybeTlsStream>) -> Option<Value> {
    match within("a message from the server", ws.recv()).await {
        Some(Ok(Message::Text(t))) => {
            Some(serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}")))
        }
        Some(Ok(Message::Binary(b))) => panic!("the server sent a binary frame: {b:?}"),
        Some(Err(e)) => panic!("receive failed: {e}"),
        None => None,
    }
}

/// The next text message as it is (for JSON nested past serde_json's
/// recursion limit, which a `Value` cannot hold).
pub async fn recv_text(ws: &mut WebSocket<MaybeTlsStream>) -> String {
    match within("a message from the server", ws.recv()).await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads (discarding messages) until the server closes; returns its Close.
pub async fn closed(ws: &mut WebSocket<MaybeTlsStream>) -> CloseFrame {
    within("the server's Close", async {
        while let Some(r) = ws.recv().await {
            if r.is_err() {
                break;
            }
        }
    })
    .await;
    ws.close_frame()
        .cloned()
        .expect("closed without a close frame")
}

/// Reads (discarding messages, answering pings) until the server closes or
/// `limit` passes on tokio's clock; returns the server's Close, `None` if
/// the connection is still open. For tests on a paused clock, where a wait
/// longer than [`TIMEOUT`] is virtual and costs nothing.
pub async fn closed_within(
    ws: &mut WebSocket<MaybeTlsStream>,
    limit: Duration,
) -> Option<CloseFrame> {
    let read_to_end = async {
        while let Some(r) = ws.recv().await {
            if r.is_err() {
                break;
            }
        }
    };
    // `recv` is cancel safe: a timeout leaves the connection usable.
    tokio::time::timeout(limit, read_to_end).await.ok()?;
    Some(
        ws.close_frame()
            .cloned()
            .expect("closed without a close frame"),
    )
}

impl Conn {
    /// Opens a WebSocket and sends `{"id": 1, "connect": params}`.
    pub async fn connect(url: &str, params: Value) -> Self {
        let mut ws = open(url).await;
        send_text(&mut ws, json!({"id": 1, "connect": params}).to_string()).await;
        let reply = recv_json(&mut ws)
            .await
            .expect("closed instead of replying to connect");
        assert_eq!(
            reply["id"], 1,
            "first message is the connect reply: {reply}"
        );
        let connected = reply["result"].clone();
        let client = connected["client"]
            .as_str()
            .unwrap_or_else(|| panic!("connect failed: {reply}"))
            .to_owned();
        Self {
            ws,
            client,
            connected,
            pushes: VecDeque::new(),
            next_id: 2,
        }
    }

    /// Sends one command with a fresh id; returns the id.
    pub async fn send(&mut self, method: &str, params: Value) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id });
        command[method] = params;
        self.send_raw(&command.to_string()).await;
        id
    }

    /// Sends `text` as it is.
    pub async fn send_raw(&mut self, text: &str) {
        send_text(&mut self.ws, text).await;
    }

    /// The next message; panics if the connection closed.
    pub async fn recv(&mut self) -> Value {
        recv_json(&mut self.ws)
            .await
            .unwrap_or_else(|| panic!("connection closed: {:?}", self.ws.close_frame()))
    }

    /// Waits for the reply to `id`, keeping pushes that come first.
    pub async fn reply(&mut self, id: u32) -> Value {
        loop {
            let m = self.recv().await;
            if m.get("push").is_some() {
                self.pushes.push_back(m);
                continue;
            }
            assert_eq!(m["id"], id, "replies come in command order: {m}");
            return m;
        }
    }

    /// Sends a command and returns its whole reply.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params).await;
        self.reply(id).await
    }

    /// Sends a command that must succeed; returns its `result`.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        let reply = self.command(method, params.clone()).await;
        assert!(
            reply.get("error").is_none(),
            "{method} {params} failed: {reply}"
        );
        reply["result"].clone()
    }

    /// Sends a command that must fail; returns its error code, after
    /// checking the error's shape.
    pub async fn error(&mut self, method: &str, params: Value) -> u64 {
        let reply = self.command(method, params.clone()).await;
        let error = &reply["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {params} should fail with a code and message: {reply}"
        );
        assert!(reply.get("result").is_none(), "{reply}");
        error["code"].as_u64().expect("numeric error code")
    }

    /// Subscribes to `channel`; returns the result.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.ok("subscribe", json!({ "channel": channel })).await
    }

    /// The next push (kept ones first).
    pub async fn push(&mut self) -> Value {
        if let Some(p) = self.pushes.pop_front() {
            return p;
        }
        let m = self.recv().await;
        assert!(m.get("push").is_some(), "expected a push, got {m}");
        m
    }

    /// The next `n` publication pushes, as their `pub` objects; any other
    /// push in between fails the test.
    pub async fn publications(&mut self, channel: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let p = self.push().await;
            assert_eq!(p["push"]["channel"], channel, "{p}");
            let publication = p["push"]["pub"].clone();
            assert!(publication.is_object(), "expected a publication: {p}");
            out.push(publication);
        }
        out
    }

    /// Reads until the server closes; returns its Close frame.
    pub async fn closed(&mut self) -> CloseFrame {
        closed(&mut self.ws).await
    }
}

/// The offsets of publications.
pub fn offsets(pubs: &[Value]) -> Vec<u64> {
    pubs.iter()
        .map(|p| p["offset"].as_u64().expect("offset"))
        .collect()
}

// ----- a raw WebSocket peer --------------------------------------------------

/// A frame as a raw peer sees it.
#[derive(Debug)]
pub enum RawFrame {
    Text(String),
    Close(u16, String),
    /// Ping, pong, binary, continuation: opcode and payload.
    Other(u8, Vec<u8>),
}

/// A WebSocket client written by hand over a `TcpStream`, so a test decides
/// exactly when (and whether) it reads: the slow consumer.
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects and completes the opening handshake. `recv_buffer` shrinks
    /// the socket's receive buffer (and so the TCP window), so a peer that
    /// stops reading backs the server up after little data.
    pub async fn connect(addr: SocketAddr, recv_buffer: Option<u32>) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(n) = recv_buffer {
            socket.set_recv_buffer_size(n).expect("SO_RCVBUF");
        }
        let mut stream = within("TCP connect", socket.connect(addr))
            .await
            .expect("connect");
        let request = format!(
            "GET {WEBSOCKET_PATH} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Self {
            stream,
            buf: Vec::new(),
        };
        let head = within("the 101 response", raw.read_head()).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols, got {head}"
        );
        // RFC 6455 1.3: the accept value for the sample nonce.
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "bad Sec-WebSocket-Accept: {head}"
        );
        raw
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the TCP connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Sends a masked frame (RFC 6455 5.3: clients MUST mask).
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        within("raw write", self.stream.write_all(&frame))
            .await
            .expect("write");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes()).await;
    }

    /// Reads one frame (the server's frames are unmasked and, as no
    /// extension was offered, uncompressed and unfragmented here).
    pub async fn read_frame(&mut self) -> RawFrame {
        within("a raw frame", async {
            loop {
                if let Some((frame, used)) = parse_frame(&self.buf) {
                    self.buf.drain(..used);
                    return frame;
                }
                self.fill().await;
            }
        })
        .await
    }

    /// The next text message as JSON, skipping control frames; panics on
    /// a Close.
    pub async fn read_json(&mut self) -> Value {
        loop {
            match self.read_frame().await {
                RawFrame::Text(t) => return serde_json::from_str(&t).expect("JSON"),
                RawFrame::Close(code, reason) => panic!("closed: {code} {reason}"),
                RawFrame::Other(..) => {}
            }
        }
    }

    /// Sends a command and waits for its reply (there are no pushes yet
    /// when this is used).
    pub async fn command(&mut self, id: u32, method: &str, params: Value) -> Value {
        let mut command = json!({ "id": id });
        command[method] = params;
        self.send_text(&command.to_string()).await;
        let reply = self.read_json().await;
        assert_eq!(reply["id"], id, "{reply}");
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        reply
    }
}

/// An HTTP/1.1 request: `headers`, and a JSON `body` if any.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or_default());
    req
}

/// Where `needle` starts in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A chunked body, decoded as it arrives.
#[derive(Default)]
pub struct Chunks {
    /// Bytes read, not decoded yet.
    pub raw: Vec<u8>,
    /// The body decoded so far.
    pub body: Vec<u8>,
    /// The last chunk (or a malformed size line) was seen.
    pub ended: bool,
}

impl Chunks {
    /// Moves every whole chunk of `raw` into `body`.
    pub fn decode(&mut self) {
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

fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let opcode = buf[0] & 0x0f;
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < header + len {
        return None;
    }
    let payload = &buf[header..header + len];
    let frame = match opcode {
        0x1 => RawFrame::Text(String::from_utf8(payload.to_vec()).expect("UTF-8 text")),
        0x8 => {
            let code = if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            };
            let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
            RawFrame::Close(code, reason)
        }
        op => RawFrame::Other(op, payload.to_vec()),
    };
    Some((frame, header + len))
}

// ----- raw HTTP/1.1 ----------------------------------------------------------

/// A response read by [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Checks the API's error shape `{"error": {"code", "message"}}` and
    /// returns the code.
    pub fn error_code(&self) -> u64 {
        let body = self.json();
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without a message: {body}"
        );
        body["error"]["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("error without a code: {body}"))
    }
}

/// One HTTP/1.1 request on a fresh connection. The body's end is found from
/// Content-Length or chunked encoding (a refused upgrade leaves the
/// connection open), else at EOF.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    within(&format!("{method} {path}"), async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
        let upgrade = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("upgrade"));
        if !upgrade {
            request.push_str("Connection: close\r\n");
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body.unwrap_or_default());
        stream.write_all(request.as_bytes()).await.expect("write");
        read_response(&mut stream).await
    })
    .await
}

async fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8 << 10];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("ASCII head");
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().expect("Content-Length");
        while rest.len() < len {
            assert!(read_more(stream, &mut rest).await, "body cut short");
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let Some(line_end) = find(&rest[at..], b"\r\n") else {
                assert!(read_more(stream, &mut rest).await, "chunked body cut short");
                continue;
            };
            let size_text = String::from_utf8_lossy(&rest[at..at + line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .expect("chunk size");
            let start = at + line_end + 2;
            while rest.len() < start + size + 2 {
                assert!(read_more(stream, &mut rest).await, "chunk cut short");
            }
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[start..start + size]);
            at = start + size + 2;
        }
        body
    } else if status == 101 || status == 204 || status == 304 {
        Vec::new()
    } else {
        while read_more(stream, &mut rest).await {}
        rest
    };
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

/// Reads what is there into `buf`; false at EOF.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8 << 10];
    let n = stream.read(&mut chunk).await.expect("read");
    buf.extend_from_slice(&chunk[..n]);
    n > 0
}

/// The headers of a WebSocket upgrade request, plus `extra`.
pub fn upgrade_headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    h.extend_from_slice(extra);
    h
}

/// Sends `request` (a whole HTTP/1.1 request, as written) and reads the
/// response: for requests the [`http`] helper would write correctly.
pub async fn http_raw(addr: SocketAddr, request: &str) -> HttpResponse {
    within("a raw HTTP request", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        read_response(&mut stream).await
    })
    .await
}

/// Runs each named `async fn` as two tests, `<name>::threads_1` on a
/// current-thread runtime and `<name>::threads_2` on two worker threads:
/// `herald serve --threads 1` and `--threads 2`, which interleave the
/// hub's callers differently.
#[macro_export]
macro_rules! on_1_and_2_threads {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "current_thread")]
            async fn threads_1() {
                super::$case().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn threads_2() {
                super::$case().await
            }
        }
    )*};
}

// ----- TLS -------------------------------------------------------------------

/// A test CA and a leaf certificate for 127.0.0.1 and localhost signed by
/// it, written as PEM files into a fresh temporary directory.
pub struct TestCa {
    pub dir: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// The CA's certificate, to trust.
    pub ca_der: herald::rustls::pki_types::CertificateDer<'static>,
    /// The leaf's certificate.
    pub leaf_der: herald::rustls::pki_types::CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "herald test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");
        let dir = std::env::temp_dir().join(format!(
            "herald-server-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, leaf.pem()).expect("write cert");
        std::fs::write(&key, leaf_key.serialize_pem()).expect("write key");
        Self {
            dir,
            cert,
            key,
            ca_der: ca_cert.der().clone(),
            leaf_der: leaf.der().clone(),
        }
    }

    /// A client configuration that trusts this CA only.
    pub fn client_config(&self) -> Arc<herald::rustls::ClientConfig> {
        let mut roots = herald::rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add CA");
        Arc::new(herald::client_config(roots))
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
