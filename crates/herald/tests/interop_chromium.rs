//! Interop with a browser: Debian's Chromium, driven by playwright-core
//! (interop/chromium.mjs), as the client of a herald server.
//!
//! The test serves a tiny page over plain HTTP so the socket has a real
//! `Origin`; the page runs a scenario of interop/scenarios.mjs with
//! `new WebSocket(url, protocols)` and reports what it saw as JSON lines.

mod common;

use common::{EchoServer, Peer, Tls, closed_line, expected_echo_lines, open_line};
use herald::{CloseCode, CloseFrame, Config, DeflateConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A one-page HTTP server: every request gets the same empty page.
struct PageServer {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = "<!doctype html><meta charset=utf-8><title>herald</title>";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tcp.write_all(response.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        Self { url, task }
    }

    /// The page's origin, as the browser sends it.
    fn origin(&self) -> &str {
        self.url.trim_end_matches('/')
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `scenario` in Chromium against `server`, checks the page printed
/// exactly `lines`, and returns the server's report.
async fn run(
    server: &mut EchoServer,
    scenario: &str,
    extra: &[&str],
    lines: Vec<String>,
) -> common::Report {
    let page = PageServer::start().await;
    let ws_url = server.url();
    let mut args = vec!["chromium.mjs", page.url.as_str(), ws_url.as_str(), scenario];
    args.extend_from_slice(extra);
    let mut browser = Peer::spawn("node", &args);
    for expected in lines {
        assert_eq!(browser.line().await, expected);
    }
    browser.success().await;
    let report = server.report().await;
    assert_eq!(report.error, None, "server side: {report:?}");
    assert_eq!(report.origin.as_deref(), Some(page.origin()));
    report
}

fn echo_lines(open: String, close: String) -> Vec<String> {
    let mut lines = vec![open];
    lines.extend(expected_echo_lines());
    lines.push(close);
    lines
}

#[tokio::test]
async fn echoes_text_arraybuffer_empty_and_1mib_with_subprotocol() {
    let mut server = EchoServer::start(Config::default(), None).await;
    let lines = echo_lines(open_line(Some("chat"), false), closed_line(1000, ""));
    let report = run(&mut server, "echo", &["--protocol", "chat"], lines).await;
    assert_eq!(report.protocol.as_deref(), Some("chat"));
    assert_eq!(report.close, Some(CloseFrame::new(CloseCode::NORMAL, "")));
    assert!(!report.compressed);
}

#[tokio::test]
async fn negotiates_deflate() {
    let config = Config::default().deflate(Some(DeflateConfig::default()));
    let mut server = EchoServer::start(config, None).await;
    let lines = echo_lines(open_line(Some("chat"), true), closed_line(1000, ""));
    let report = run(&mut server, "echo", &["--protocol", "chat"], lines).await;
    assert!(report.compressed, "server side not compressed: {report:?}");
}

#[tokio::test]
async fn browser_closes_with_4000() {
    let mut server = EchoServer::start(Config::default(), None).await;
    // Herald echoes the code, without the reason.
    let lines = vec![open_line(Some("chat"), false), closed_line(4000, "")];
    let report = run(&mut server, "client_close", &["--protocol", "chat"], lines).await;
    assert_eq!(report.close, Some(CloseFrame::new(CloseCode(4000), "done")));
}

#[tokio::test]
async fn browser_sees_server_close_1001() {
    let mut server = EchoServer::start(Config::default(), None).await;
    let lines = vec![
        open_line(Some("chat"), false),
        closed_line(1001, "going away"),
    ];
    let report = run(&mut server, "server_close", &["--protocol", "chat"], lines).await;
    assert_eq!(report.close.map(|f| f.code), Some(CloseCode::GOING_AWAY));
}

#[tokio::test]
async fn wss_with_self_signed_cert() {
    let tls = Tls::new();
    let mut server = EchoServer::start(Config::default(), Some(tls.server.clone())).await;
    let lines = echo_lines(open_line(Some("chat"), false), closed_line(1000, ""));
    // --ignore-certificate-errors for this case only.
    run(
        &mut server,
        "echo",
        &["--protocol", "chat", "--insecure"],
        lines,
    )
    .await;
}
