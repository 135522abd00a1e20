//! The opening handshake on the server: a silent client is dropped at
//! `handshake_timeout`; an invalid request gets its HTTP status, the
//! headers RFC 6455 asks for, and a one-line reason.

mod common;

use std::time::{Duration, Instant};

use common::{SAMPLE_KEY, within};
use herald::{Acceptor, Config, Error, Phase, Reject};
use herald_proto::handshake::HandshakeError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);

/// Accepts one connection with `handshake_timeout` 300 ms; the task yields
/// the accept error and how long accept took.
async fn server(
    hook: fn(&herald::Request) -> herald::Decision,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<(Error, Duration)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let start = Instant::now();
        let acceptor = Acceptor::new(Config::default().handshake_timeout(HANDSHAKE_TIMEOUT));
        match acceptor.accept_with(tcp, hook).await {
            Ok(_) => panic!("the handshake succeeded"),
            Err(e) => (e, start.elapsed()),
        }
    });
    (addr, task)
}

fn accept_all(_: &herald::Request) -> herald::Decision {
    Ok(herald::Upgrade::new())
}

/// Everything the server sends until it closes the connection.
async fn read_to_end(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    within(
        "the server closing the connection",
        tcp.read_to_end(&mut out),
    )
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

/// Sends `request` and checks the answer: `status_line`, `headers` among
/// the header lines, and a body of exactly one line.
async fn rejected(request: &str, status_line: &str, headers: &[&str]) -> Error {
    let (addr, server) = server(accept_all).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let response = read_to_end(&mut tcp).await;
    let (status, lines, body) = common::split_response(&response);
    assert_eq!(status, status_line, "{response}");
    for h in headers {
        assert!(lines.contains(h), "no `{h}` in {response:?}");
    }
    assert!(
        body.ends_with('\n') && !body[..body.len() - 1].contains(['\n', '\r']) && body.len() > 1,
        "reason is not one line: {body:?}"
    );
    let length = format!("Content-Length: {}", body.len());
    assert!(
        lines.contains(&length.as_str()),
        "no `{length}` in {response:?}"
    );
    let (error, _) = within("the server's accept", server).await.unwrap();
    error
}

fn request(method: &str, version: &str, key: bool) -> String {
    let key = if key {
        format!("Sec-WebSocket-Key: {SAMPLE_KEY}\r\n")
    } else {
        String::new()
    };
    format!(
        "{method} /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\n{key}Sec-WebSocket-Version: {version}\r\n\r\n"
    )
}

#[tokio::test]
async fn silent_client_is_dropped_at_handshake_timeout() {
    let (addr, server) = server(accept_all).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let response = read_to_end(&mut tcp).await;
    let dropped_after = start.elapsed();
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 408 "),
        "expected a 408 or nothing, got {response:?}"
    );
    let (error, elapsed) = within("the server's accept", server).await.unwrap();
    assert!(
        matches!(error, Error::Timeout(Phase::Handshake)),
        "{error:?}"
    );
    for t in [elapsed, dropped_after] {
        assert!(
            t >= HANDSHAKE_TIMEOUT * 9 / 10 && t < HANDSHAKE_TIMEOUT + Duration::from_secs(2),
            "dropped after {t:?}, handshake_timeout is {HANDSHAKE_TIMEOUT:?}"
        );
    }
}

/// A client that sends half a request and stalls is dropped the same way.
#[tokio::test]
async fn stalled_request_is_dropped_at_handshake_timeout() {
    let (addr, server) = server(accept_all).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let response = read_to_end(&mut tcp).await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 408 "),
        "{response:?}"
    );
    let (error, elapsed) = within("the server's accept", server).await.unwrap();
    assert!(
        matches!(error, Error::Timeout(Phase::Handshake)),
        "{error:?}"
    );
    assert!(
        elapsed < HANDSHAKE_TIMEOUT + Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn post_gets_405() {
    let error = rejected(
        &request("POST", "13", true),
        "HTTP/1.1 405 Method Not Allowed",
        &["Allow: GET"],
    )
    .await;
    assert!(
        matches!(error, Error::Handshake(HandshakeError::MethodNotGet)),
        "{error:?}"
    );
}

#[tokio::test]
async fn version_8_gets_426_with_version_13() {
    let error = rejected(
        &request("GET", "8", true),
        "HTTP/1.1 426 Upgrade Required",
        &["Sec-WebSocket-Version: 13", "Upgrade: websocket"],
    )
    .await;
    assert!(
        matches!(error, Error::Handshake(HandshakeError::UnsupportedVersion)),
        "{error:?}"
    );
}

#[tokio::test]
async fn missing_key_gets_400() {
    let error = rejected(
        &request("GET", "13", false),
        "HTTP/1.1 400 Bad Request",
        &[],
    )
    .await;
    assert!(
        matches!(error, Error::Handshake(HandshakeError::MissingKey)),
        "{error:?}"
    );
}

#[tokio::test]
async fn hook_rejection_gets_its_status_and_reason() {
    let (addr, server) = server(|req| {
        assert_eq!(req.path(), "/chat");
        Err(Reject::new(403, "origin not allowed"))
    })
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request("GET", "13", true).as_bytes())
        .await
        .unwrap();
    let response = read_to_end(&mut tcp).await;
    let (status, _, body) = common::split_response(&response);
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert_eq!(body, "origin not allowed\n");
    let (error, _) = within("the server's accept", server).await.unwrap();
    assert!(
        matches!(&error, Error::Rejected { status: 403, reason } if reason == "origin not allowed"),
        "{error:?}"
    );
}
