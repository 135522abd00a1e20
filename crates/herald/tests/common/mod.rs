//! Helpers shared by the integration tests: a herald echo server (tokio,
//! or the event loop with feature `event-loop`), an event-loop server on a
//! thread of its own, TLS certificates made at test time, the message
//! matrix every peer runs, and child processes (real peers) that die with
//! the test.
//!
//! Each test file uses a subset, hence the `allow`.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use herald::rustls;
use herald::{Acceptor, CloseCode, CloseFrame, Config, Message, Upgrade};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The bound on every single wait in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test with `what` if it takes over [`TIMEOUT`].
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

// ----- the message matrix ----------------------------------------------------

/// 32 bytes: ASCII plus two-byte UTF-8 characters.
const TEXT_UNIT: &str = "κόσμε0123456789abcdefghijkl";

/// The messages every peer echoes, by case name: the same cases, in the same
/// order, as `runCases` in interop/scenarios.mjs and `cases()` in
/// interop/python_client.py.
pub fn matrix() -> Vec<(&'static str, Message)> {
    assert_eq!(TEXT_UNIT.len(), 32);
    vec![
        ("text", Message::text("hello, herald ☃")),
        ("binary", Message::binary((0..=255u8).collect::<Vec<u8>>())),
        ("empty", Message::binary(Vec::<u8>::new())),
        (
            "binary_1mib",
            Message::binary(
                (0..1usize << 20)
                    .map(|i| (i % 251) as u8)
                    .collect::<Vec<u8>>(),
            ),
        ),
        ("text_1mib", Message::text(TEXT_UNIT.repeat((1 << 20) / 32))),
    ]
}

/// The lines a peer client prints for the echo matrix, all `"same":true`.
pub fn expected_echo_lines() -> Vec<String> {
    matrix()
        .iter()
        .map(|(case, m)| {
            format!(
                r#"{{"event":"echo","case":"{case}","bytes":{},"same":true}}"#,
                m.len()
            )
        })
        .collect()
}

/// A peer's first line after the handshake, as the peer scripts print it.
pub fn open_line(protocol: Option<&str>, deflate: bool) -> String {
    let protocol = protocol.map_or("null".to_owned(), |p| format!("\"{p}\""));
    let extensions = if deflate {
        r#"["permessage-deflate"]"#
    } else {
        "[]"
    };
    format!(r#"{{"event":"open","protocol":{protocol},"extensions":{extensions}}}"#)
}

/// A peer's line once the connection has closed.
pub fn closed_line(code: u16, reason: &str) -> String {
    format!(r#"{{"event":"closed","code":{code},"reason":"{reason}"}}"#)
}

/// Sends every message of the matrix over `ws` and checks each echo.
pub async fn echo_matrix<S>(ws: &mut herald::WebSocket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for (case, msg) in matrix() {
        within(&format!("send {case}"), ws.send(msg.clone()))
            .await
            .unwrap();
        let got = within(&format!("echo of {case}"), ws.recv())
            .await
            .unwrap_or_else(|| panic!("connection closed before the echo of {case}"))
            .unwrap_or_else(|e| panic!("error instead of the echo of {case}: {e}"));
        assert!(
            got == msg,
            "echo of {case} differs: {} bytes back, {} sent",
            got.len(),
            msg.len()
        );
    }
}

// ----- a herald echo server ----------------------------------------------------

/// What the server saw of one connection, sent when it ends.
#[derive(Debug, Clone)]
pub struct Report {
    pub protocol: Option<String>,
    pub origin: Option<String>,
    /// Whether permessage-deflate is on; always `false` from the event
    /// loop, whose `Conn` does not say (see
    /// [`ServerKind::reports_compression`]).
    pub compressed: bool,
    /// `close_frame()` once the connection ended.
    pub close: Option<CloseFrame>,
    /// An error from `recv`, if the connection ended with one.
    pub error: Option<String>,
}

/// Which of herald's servers runs an [`EchoServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `Acceptor` and a tokio task per connection.
    Tokio,
    /// `herald::event_loop`: callbacks on an epoll loop of its own thread.
    #[cfg(feature = "event-loop")]
    EventLoop,
}

impl ServerKind {
    /// Whether [`Report::compressed`] says if deflate was negotiated.
    pub fn reports_compression(self) -> bool {
        self == Self::Tokio
    }
}

/// A herald echo server on 127.0.0.1 with its own accept loop; dropping it
/// stops the loop and every connection.
///
/// The hook picks the subprotocol "chat" when the client offers it. The text
/// message "close me" makes the server close with 1001 "going away".
pub struct EchoServer {
    pub addr: SocketAddr,
    pub reports: mpsc::UnboundedReceiver<Report>,
    tls: bool,
    backend: Backend,
}

enum Backend {
    Tokio(tokio::task::JoinHandle<()>),
    #[cfg(feature = "event-loop")]
    EventLoop(LoopServer),
}

impl EchoServer {
    pub async fn start(config: Config, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, reports) = mpsc::unbounded_channel();
        let acceptor = Acceptor::new(config);
        let is_tls = tls.is_some();
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every
            // connection task.
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, tx, tls) = (acceptor.clone(), tx.clone(), tls.clone());
                conns.spawn(async move {
                    match tls {
                        None => serve(&acceptor, tcp, tx).await,
                        Some(tls) => match tls.accept(tcp).await {
                            Ok(tls) => serve(&acceptor, tls, tx).await,
                            Err(e) => {
                                let _ = tx.send(Report::failed(format!("TLS accept: {e}")));
                            }
                        },
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            reports,
            tls: is_tls,
            backend: Backend::Tokio(task),
        }
    }

    /// A plain (ws://) echo server of `kind`.
    pub async fn start_kind(kind: ServerKind, config: Config) -> Self {
        match kind {
            ServerKind::Tokio => Self::start(config, None).await,
            #[cfg(feature = "event-loop")]
            ServerKind::EventLoop => Self::start_event_loop(config),
        }
    }

    /// The same echo server on `herald::event_loop`, one loop. Its reports
    /// have `compressed: false`, and an `error` only for a connection lost
    /// without a close handshake (1006).
    #[cfg(feature = "event-loop")]
    pub fn start_event_loop(config: Config) -> Self {
        let (tx, reports) = mpsc::unbounded_channel();
        let server = LoopServer::start(herald::event_loop::Server::builder(config), move || {
            event_loop_echo::Echo::new(tx.clone())
        });
        Self {
            addr: server.addr,
            reports,
            tls: false,
            backend: Backend::EventLoop(server),
        }
    }

    /// Stops the server: aborts the accept task, or stops the event loop
    /// and checks that `run` returned `Ok` in time.
    pub async fn shutdown(mut self) {
        match &mut self.backend {
            Backend::Tokio(task) => task.abort(),
            #[cfg(feature = "event-loop")]
            Backend::EventLoop(server) => server.stop().await.expect("event loop run"),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/", self.addr)
    }

    /// The report of the next connection to end.
    pub async fn report(&mut self) -> Report {
        within("the server's report of a connection", self.reports.recv())
            .await
            .expect("server stopped")
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        match &self.backend {
            Backend::Tokio(task) => task.abort(),
            // Stops when its `LoopServer` drops.
            #[cfg(feature = "event-loop")]
            Backend::EventLoop(_) => {}
        }
    }
}

impl Report {
    fn failed(error: String) -> Self {
        Self {
            protocol: None,
            origin: None,
            compressed: false,
            close: None,
            error: Some(error),
        }
    }
}

async fn serve<S>(acceptor: &Acceptor, io: S, tx: mpsc::UnboundedSender<Report>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut origin = None;
    let accepted = acceptor
        .accept_with(io, |req| {
            origin = req.origin().map(str::to_owned);
            let mut upgrade = Upgrade::new();
            if req.protocols().any(|p| p == "chat") {
                upgrade = upgrade.protocol("chat");
            }
            Ok(upgrade)
        })
        .await;
    let mut ws = match accepted {
        Ok(ws) => ws,
        Err(e) => {
            let _ = tx.send(Report::failed(format!("accept: {e}")));
            return;
        }
    };
    let mut error = None;
    while let Some(r) = ws.recv().await {
        match r {
            Ok(Message::Text(t)) if t.as_str() == "close me" => {
                if let Err(e) = ws.close(CloseCode::GOING_AWAY, "going away").await {
                    error = Some(format!("close: {e}"));
                }
                break;
            }
            Ok(msg) => {
                if let Err(e) = ws.send(msg).await {
                    error = Some(format!("send: {e}"));
                    break;
                }
            }
            Err(e) => {
                error = Some(format!("recv: {e}"));
                break;
            }
        }
    }
    let _ = tx.send(Report {
        protocol: ws.protocol().map(str::to_owned),
        origin,
        compressed: ws.is_compressed(),
        close: ws.close_frame().cloned(),
        error,
    });
}

// ----- a herald event-loop server ---------------------------------------------

/// A `herald::event_loop::Server` on 127.0.0.1, run on a thread of its own
/// (`run` blocks). [`LoopServer::stop`] stops it through its `StopHandle`
/// and joins the thread; dropping it does the same, blocking.
#[cfg(feature = "event-loop")]
pub struct LoopServer {
    pub addr: SocketAddr,
    stop: herald::event_loop::StopHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

#[cfg(feature = "event-loop")]
impl LoopServer {
    /// Binds `builder` to 127.0.0.1, port 0, and runs it with handlers
    /// from `new_handler`.
    pub fn start<H, F>(builder: herald::event_loop::Builder, new_handler: F) -> Self
    where
        H: herald::event_loop::Handler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let server = builder
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind the event loop");
        let addr = server.local_addr();
        let stop = server.stop_handle();
        let thread = std::thread::Builder::new()
            .name("event-loop".to_owned())
            .spawn(move || server.run(new_handler))
            .unwrap();
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Stops the server and waits (at most [`TIMEOUT`], without blocking
    /// the runtime, so clients in tasks can answer the Close) for `run` to
    /// return; gives what it returned.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.stop.stop();
        let thread = self.thread.take().expect("stopped twice");
        within("the event loop's run to return", async {
            while !thread.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

#[cfg(feature = "event-loop")]
impl Drop for LoopServer {
    /// A test that failed before `stop` still stops its server, so that no
    /// loop outlives it; blocking, bounded by [`TIMEOUT`].
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.stop();
        let start = std::time::Instant::now();
        while !thread.is_finished() && start.elapsed() < TIMEOUT {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            eprintln!("the event loop did not stop within {TIMEOUT:?}");
        }
    }
}

/// [`EchoServer`]'s behaviour as event-loop callbacks.
#[cfg(feature = "event-loop")]
mod event_loop_echo {
    use std::collections::HashMap;

    use herald::event_loop::{Conn, ConnId, Handler};
    use herald::{CloseCode, CloseFrame, Decision, Message, Request, Upgrade};
    use tokio::sync::mpsc;

    use super::Report;

    pub(super) struct Echo {
        reports: mpsc::UnboundedSender<Report>,
        /// The `Origin` of the request being answered: `on_open` follows
        /// its `on_request` directly, on the same loop.
        origin: Option<String>,
        /// (protocol, origin) of each open connection.
        open: HashMap<ConnId, (Option<String>, Option<String>)>,
    }

    impl Echo {
        pub(super) fn new(reports: mpsc::UnboundedSender<Report>) -> Self {
            Self {
                reports,
                origin: None,
                open: HashMap::new(),
            }
        }
    }

    impl Handler for Echo {
        fn on_request(&mut self, request: &Request) -> Decision {
            self.origin = request.origin().map(str::to_owned);
            let mut upgrade = Upgrade::new();
            if request.protocols().any(|p| p == "chat") {
                upgrade = upgrade.protocol("chat");
            }
            Ok(upgrade)
        }

        fn on_open(&mut self, conn: &mut Conn<'_>) {
            let protocol = conn.protocol().map(str::to_owned);
            self.open.insert(conn.id(), (protocol, self.origin.take()));
        }

        fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
            match message {
                Message::Text(t) if t.as_str() == "close me" => {
                    conn.close(CloseCode::GOING_AWAY, "going away");
                }
                message => {
                    conn.send(message);
                }
            }
        }

        fn on_close(&mut self, id: ConnId, frame: CloseFrame) {
            let (protocol, origin) = self.open.remove(&id).unwrap_or_default();
            let error = (frame.code == CloseCode::ABNORMAL)
                .then(|| format!("connection lost: {}", frame.reason));
            let _ = self.reports.send(Report {
                protocol,
                origin,
                compressed: false,
                close: Some(frame),
                error,
            });
        }
    }
}

// ----- TLS -------------------------------------------------------------------

/// A self-signed certificate for `localhost` and `127.0.0.1`, written to a
/// temporary directory as PEM for the peers, with rustls configurations for
/// herald. The directory goes with the value.
pub struct Tls {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    dir: PathBuf,
}

impl Tls {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "herald-test-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cert_pem = dir.join("cert.pem");
        let key_pem = dir.join("key.pem");
        std::fs::write(&cert_pem, certified.cert.pem()).unwrap();
        std::fs::write(&key_pem, certified.signing_key.serialize_pem()).unwrap();

        let cert = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = herald::client_config(roots);
        Self {
            cert_pem,
            key_pem,
            server: Arc::new(server),
            client: Arc::new(client),
            dir,
        }
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- peers: child processes ----------------------------------------------------

/// The repository's interop/ directory (peer scripts, node_modules).
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// A peer running as a child process, killed when dropped. Its stdout is
/// read line by line (JSON lines); its stderr goes to the test's stderr.
/// Its stdin stays open while we live: the peer scripts exit when it
/// closes, so even a test killed without unwinding leaves none behind.
pub struct Peer {
    name: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    _stdin: tokio::process::ChildStdin,
}

impl Peer {
    /// Runs `program args...` in interop/.
    pub fn spawn(program: &str, args: &[&str]) -> Self {
        let dir = interop_dir();
        let mut child = Command::new(program)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {program} {args:?} in {}: {e} (run scripts/install-peers)",
                    dir.display()
                )
            });
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdin = child.stdin.take().unwrap();
        Self {
            name: format!("{program} {}", args.join(" ")),
            child,
            stdout,
            _stdin: stdin,
        }
    }

    /// The next line the peer prints; fails the test if it prints none in
    /// time or exits first.
    pub async fn line(&mut self) -> String {
        let what = format!("a line from `{}`", self.name);
        match within(&what, self.stdout.next_line()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("`{}` exited before printing {what}", self.name),
            Err(e) => panic!("reading from `{}`: {e}", self.name),
        }
    }

    /// The peer's first line, `{"event":"listening","port":N}`, as a port.
    pub async fn port(&mut self) -> u16 {
        let line = self.line().await;
        let port = line
            .strip_prefix(r#"{"event":"listening","port":"#)
            .and_then(|rest| rest.strip_suffix('}'))
            .and_then(|p| p.parse().ok());
        port.unwrap_or_else(|| panic!("`{}` printed {line:?}, not its port", self.name))
    }

    /// Waits for the peer to exit with status 0, with no more output.
    pub async fn success(mut self) {
        let rest = within("the peer's exit", async {
            let mut rest = Vec::new();
            while let Ok(Some(line)) = self.stdout.next_line().await {
                rest.push(line);
            }
            rest
        })
        .await;
        assert!(
            rest.is_empty(),
            "`{}` printed more than expected: {rest:?}",
            self.name
        );
        let status = within("the peer's exit", self.child.wait()).await.unwrap();
        assert!(status.success(), "`{}` exited with {status}", self.name);
    }
}

// ----- the interop suite, run against each real peer ---------------------------

/// A real peer: its client and server scripts in interop/.
#[derive(Debug, Clone, Copy)]
pub enum Lang {
    /// Python `websockets` (python_client.py, python_server.py).
    Python,
    /// Node `ws` (node_client.mjs, node_server.mjs).
    Node,
}

impl Lang {
    /// Runs the peer's client against `url`.
    pub fn client(self, url: &str, scenario: &str, extra: &[&str]) -> Peer {
        let (program, script) = match self {
            Self::Python => ("python3", "python_client.py"),
            Self::Node => ("node", "node_client.mjs"),
        };
        let mut args = vec![script, url, scenario];
        args.extend_from_slice(extra);
        Peer::spawn(program, &args)
    }

    /// Starts the peer's echo server; returns it with its port.
    pub async fn server(self, extra: &[&str]) -> (Peer, u16) {
        let (program, script) = match self {
            Self::Python => ("python3", "python_server.py"),
            Self::Node => ("node", "node_server.mjs"),
        };
        let mut args = vec![script];
        args.extend_from_slice(extra);
        let mut peer = Peer::spawn(program, &args);
        let port = peer.port().await;
        (peer, port)
    }
}

/// Tests of a herald server with a peer's client, against the server of
/// each [`ServerKind`] (wss only on tokio: the event loop has no TLS).
pub mod herald_server {
    use super::*;

    /// The peer's client runs `scenario` and prints exactly `lines`; the
    /// server's report of the connection is returned, and the server is
    /// stopped.
    async fn run(
        lang: Lang,
        mut server: EchoServer,
        scenario: &str,
        extra: &[&str],
        lines: Vec<String>,
    ) -> Report {
        let mut peer = lang.client(&server.url(), scenario, extra);
        for expected in lines {
            assert_eq!(peer.line().await, expected);
        }
        peer.success().await;
        let report = server.report().await;
        assert_eq!(report.error, None, "server side: {report:?}");
        server.shutdown().await;
        report
    }

    fn echo_lines(open: String, close: String) -> Vec<String> {
        let mut lines = vec![open];
        lines.extend(expected_echo_lines());
        lines.push(close);
        lines
    }

    pub async fn echo(lang: Lang, kind: ServerKind) {
        let server = EchoServer::start_kind(kind, Config::default()).await;
        let lines = echo_lines(open_line(None, false), closed_line(1000, ""));
        let report = run(lang, server, "echo", &[], lines).await;
        assert_eq!(report.close, Some(CloseFrame::new(CloseCode::NORMAL, "")));
        assert!(!report.compressed);
    }

    /// The peer's open line shows the extension negotiated; a server that
    /// can tell says it compresses too.
    pub async fn deflate(lang: Lang, kind: ServerKind) {
        let config = Config::default().deflate(Some(herald::DeflateConfig::default()));
        let server = EchoServer::start_kind(kind, config).await;
        let lines = echo_lines(open_line(None, true), closed_line(1000, ""));
        let report = run(lang, server, "echo", &[], lines).await;
        assert!(
            report.compressed || !kind.reports_compression(),
            "server side not compressed: {report:?}"
        );
    }

    pub async fn subprotocol(lang: Lang, kind: ServerKind) {
        let server = EchoServer::start_kind(kind, Config::default()).await;
        let extra = ["--protocol", "chat", "--protocol", "superchat"];
        let lines = vec![open_line(Some("chat"), false), closed_line(4000, "")];
        let report = run(lang, server, "client_close", &extra, lines).await;
        assert_eq!(report.protocol.as_deref(), Some("chat"));
    }

    /// The client closes with 4000 "done"; herald echoes the code (with no
    /// reason) and reports the client's frame.
    pub async fn client_close(lang: Lang, kind: ServerKind) {
        let server = EchoServer::start_kind(kind, Config::default()).await;
        let lines = vec![open_line(None, false), closed_line(4000, "")];
        let report = run(lang, server, "client_close", &[], lines).await;
        assert_eq!(report.close, Some(CloseFrame::new(CloseCode(4000), "done")));
        assert_eq!(report.protocol, None);
    }

    /// The server closes with 1001 "going away"; the client sees both.
    pub async fn server_close(lang: Lang, kind: ServerKind) {
        let server = EchoServer::start_kind(kind, Config::default()).await;
        let lines = vec![open_line(None, false), closed_line(1001, "going away")];
        let report = run(lang, server, "server_close", &[], lines).await;
        // The peer's reply echoes our code.
        assert_eq!(report.close.map(|f| f.code), Some(CloseCode::GOING_AWAY));
    }

    pub async fn wss(lang: Lang) {
        let tls = Tls::new();
        let server = EchoServer::start(Config::default(), Some(tls.server.clone())).await;
        assert!(server.url().starts_with("wss://127.0.0.1:"));
        let cafile = tls.cert_pem.to_str().unwrap();
        let lines = echo_lines(open_line(None, false), closed_line(1000, ""));
        run(lang, server, "echo", &["--cafile", cafile], lines).await;
    }
}

/// Tests of a herald client with a peer's echo server (deflate on, "chat"
/// selected when offered, "close me" makes it close with 1001).
pub mod herald_client {
    use herald::Client;

    use super::*;

    async fn connect(
        client: Client,
    ) -> (herald::WebSocket<herald::MaybeTlsStream>, herald::Response) {
        let (ws, response) = within("connect", client.connect()).await.unwrap();
        assert_eq!(response.status(), 101);
        (ws, response)
    }

    async fn close(
        ws: &mut herald::WebSocket<herald::MaybeTlsStream>,
        code: CloseCode,
        reason: &str,
    ) {
        let frame = within("close handshake", ws.close(code, reason))
            .await
            .unwrap();
        assert_eq!(frame.code, code, "the peer's reply to our Close");
    }

    pub async fn echo(lang: Lang) {
        let (mut peer, port) = lang.server(&[]).await;
        let (mut ws, response) = connect(Client::new(format!("ws://127.0.0.1:{port}/"))).await;
        assert!(response.deflate().is_none() && !ws.is_compressed());
        assert_eq!(ws.protocol(), None);
        assert_eq!(peer.line().await, open_line(None, false));
        echo_matrix(&mut ws).await;
        close(&mut ws, CloseCode::NORMAL, "").await;
        assert_eq!(peer.line().await, closed_line(1000, ""));
    }

    pub async fn deflate(lang: Lang) {
        let (mut peer, port) = lang.server(&[]).await;
        let client = Client::new(format!("ws://127.0.0.1:{port}/"))
            .deflate(herald::DeflateConfig::default());
        let (mut ws, response) = connect(client).await;
        assert!(
            response.deflate().is_some(),
            "the server declined permessage-deflate"
        );
        assert!(ws.is_compressed());
        assert_eq!(peer.line().await, open_line(None, true));
        echo_matrix(&mut ws).await;
        close(&mut ws, CloseCode::NORMAL, "").await;
        assert_eq!(peer.line().await, closed_line(1000, ""));
    }

    pub async fn subprotocol(lang: Lang) {
        let (mut peer, port) = lang.server(&[]).await;
        let client = Client::new(format!("ws://127.0.0.1:{port}/"))
            .protocol("chat")
            .protocol("superchat");
        let (mut ws, response) = connect(client).await;
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(ws.protocol(), Some("chat"));
        assert_eq!(peer.line().await, open_line(Some("chat"), false));
        close(&mut ws, CloseCode::NORMAL, "").await;
        assert_eq!(peer.line().await, closed_line(1000, ""));
    }

    pub async fn client_close(lang: Lang) {
        let (mut peer, port) = lang.server(&[]).await;
        let (mut ws, _) = connect(Client::new(format!("ws://127.0.0.1:{port}/"))).await;
        assert_eq!(peer.line().await, open_line(None, false));
        close(&mut ws, CloseCode(4000), "done").await;
        assert_eq!(peer.line().await, closed_line(4000, "done"));
        assert!(within("end of stream", ws.recv()).await.is_none());
    }

    pub async fn server_close(lang: Lang) {
        let (mut peer, port) = lang.server(&[]).await;
        let (mut ws, _) = connect(Client::new(format!("ws://127.0.0.1:{port}/"))).await;
        assert_eq!(peer.line().await, open_line(None, false));
        within("send", ws.send(Message::text("close me")))
            .await
            .unwrap();
        match within("the server's Close", ws.recv()).await {
            None => {}
            Some(other) => panic!("expected the end of the stream, got {other:?}"),
        }
        assert_eq!(
            ws.close_frame(),
            Some(&CloseFrame::new(CloseCode::GOING_AWAY, "going away"))
        );
        // Herald echoed the code, without the reason.
        assert_eq!(peer.line().await, closed_line(1001, ""));
    }

    pub async fn wss(lang: Lang) {
        let tls = Tls::new();
        let (cert, key) = (
            tls.cert_pem.to_str().unwrap(),
            tls.key_pem.to_str().unwrap(),
        );
        let (mut peer, port) = lang.server(&["--cert", cert, "--key", key]).await;
        let client = Client::new(format!("wss://127.0.0.1:{port}/")).tls_config(tls.client.clone());
        let (mut ws, _) = connect(client).await;
        assert_eq!(peer.line().await, open_line(None, false));
        echo_matrix(&mut ws).await;
        close(&mut ws, CloseCode::NORMAL, "").await;
        assert_eq!(peer.line().await, closed_line(1000, ""));
    }
}

// ----- a scripted raw peer: bytes by hand ----------------------------------------

/// The RFC 6455 1.3 sample key and its accept value.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid client handshake request for `/`.
pub fn handshake_request() -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Splits an HTTP response into its status line, header lines and body.
pub fn split_response(response: &str) -> (&str, Vec<&str>, &str) {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {response:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    (status, lines.collect(), body)
}

/// Connects to `addr` and completes the opening handshake by hand.
pub async fn raw_client(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = within("connect", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    tcp.write_all(handshake_request().as_bytes()).await.unwrap();
    // Byte by byte, so nothing past the head is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = within("the 101 response", tcp.read_u8())
            .await
            .expect("EOF in the 101 response");
        head.push(b);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "not a 101: {head}");
    assert!(head.contains(SAMPLE_ACCEPT), "wrong accept: {head}");
    tcp
}

/// One frame as read off the wire (from a server: unmasked).
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Reads one unmasked frame; `None` on a clean EOF before its first byte.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<RawFrame> {
    use tokio::io::AsyncReadExt;
    let b0 = match r.read_u8().await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("reading a frame: {e}"),
    };
    let b1 = r.read_u8().await.unwrap();
    assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
    let len = match b1 & 0x7f {
        126 => r.read_u16().await.unwrap() as u64,
        127 => r.read_u64().await.unwrap(),
        n => n as u64,
    };
    let mut payload = vec![0; len as usize];
    r.read_exact(&mut payload).await.unwrap();
    Some(RawFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload,
    })
}

/// A masked client frame with FIN set.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

// ----- keepalive -------------------------------------------------------------

/// The keepalive tests' server timers: short, so a test sees several.
pub const PING_INTERVAL: Duration = Duration::from_millis(200);
pub const PONG_TIMEOUT: Duration = Duration::from_millis(300);

/// A server config with [`PING_INTERVAL`] and [`PONG_TIMEOUT`].
pub fn keepalive_config() -> Config {
    let protocol = herald::ProtocolConfig::default()
        .ping_interval(Some(PING_INTERVAL))
        .pong_timeout(PONG_TIMEOUT);
    Config::default().protocol(protocol)
}

/// The interop matrix against one peer: every test of `herald_server` and
/// `herald_client`, declared once for all peers.
#[macro_export]
macro_rules! interop_matrix {
    ($peer:expr) => {
        #[tokio::test]
        async fn herald_server_echoes_text_binary_empty_and_1mib() {
            let kind = $crate::common::ServerKind::Tokio;
            $crate::common::herald_server::echo($peer, kind).await;
        }
        #[tokio::test]
        async fn herald_server_negotiates_deflate() {
            let kind = $crate::common::ServerKind::Tokio;
            $crate::common::herald_server::deflate($peer, kind).await;
        }
        #[tokio::test]
        async fn herald_server_picks_subprotocol() {
            let kind = $crate::common::ServerKind::Tokio;
            $crate::common::herald_server::subprotocol($peer, kind).await;
        }
        #[tokio::test]
        async fn herald_server_sees_peer_close_4000() {
            let kind = $crate::common::ServerKind::Tokio;
            $crate::common::herald_server::client_close($peer, kind).await;
        }
        #[tokio::test]
        async fn herald_server_closes_with_1001() {
            let kind = $crate::common::ServerKind::Tokio;
            $crate::common::herald_server::server_close($peer, kind).await;
        }
        #[tokio::test]
        async fn herald_server_over_wss_self_signed() {
            $crate::common::herald_server::wss($peer).await;
        }
        #[tokio::test]
        async fn herald_client_echoes_text_binary_empty_and_1mib() {
            $crate::common::herald_client::echo($peer).await;
        }
        #[tokio::test]
        async fn herald_client_negotiates_deflate() {
            $crate::common::herald_client::deflate($peer).await;
        }
        #[tokio::test]
        async fn herald_client_gets_subprotocol() {
            $crate::common::herald_client::subprotocol($peer).await;
        }
        #[tokio::test]
        async fn herald_client_closes_with_4000() {
            $crate::common::herald_client::client_close($peer).await;
        }
        #[tokio::test]
        async fn herald_client_sees_peer_close_1001() {
            $crate::common::herald_client::server_close($peer).await;
        }
        #[tokio::test]
        async fn herald_client_over_wss_self_signed() {
            $crate::common::herald_client::wss($peer).await;
        }
    };
}

/// The peer's client scenarios against herald's event-loop server
/// (feature `event-loop`; invoke under `#[cfg(feature = "event-loop")]`).
#[macro_export]
macro_rules! interop_event_loop_server {
    ($peer:expr) => {
        #[tokio::test]
        async fn event_loop_server_echoes_text_binary_empty_and_1mib() {
            let kind = $crate::common::ServerKind::EventLoop;
            $crate::common::herald_server::echo($peer, kind).await;
        }
        #[tokio::test]
        async fn event_loop_server_negotiates_deflate() {
            let kind = $crate::common::ServerKind::EventLoop;
            $crate::common::herald_server::deflate($peer, kind).await;
        }
        #[tokio::test]
        async fn event_loop_server_picks_subprotocol() {
            let kind = $crate::common::ServerKind::EventLoop;
            $crate::common::herald_server::subprotocol($peer, kind).await;
        }
        #[tokio::test]
        async fn event_loop_server_sees_peer_close_4000() {
            let kind = $crate::common::ServerKind::EventLoop;
            $crate::common::herald_server::client_close($peer, kind).await;
        }
        #[tokio::test]
        async fn event_loop_server_closes_with_1001() {
            let kind = $crate::common::ServerKind::EventLoop;
            $crate::common::herald_server::server_close($peer, kind).await;
        }
    };
}
