//! A WebSocket route next to a plain HTTP route in one hyper server, on
//! one port: our client on the WebSocket, raw HTTP/1.1 on the rest.

use std::convert::Infallible;
use std::net::SocketAddr;

use herald::{Acceptor, Client, CloseCode, Config, DeflateConfig, Message, Reject, Upgrade};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// GET /health: 200 "ok". /ws: a WebSocket echo, with subprotocol `echo`
/// if offered, refusing `Origin: http://evil.example`. Anything else: 404.
async fn route(
    acceptor: Acceptor,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/health" => return Ok(Response::new(Full::from("ok"))),
        "/ws" => {}
        _ => {
            let mut response = Response::new(Full::from("not found"));
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            return Ok(response);
        }
    }
    let hook = |r: &herald::Request| {
        if r.origin() == Some("http://evil.example") {
            return Err(Reject::new(403, "origin not allowed"));
        }
        let mut upgrade = Upgrade::new().header("X-Route", "ws");
        if r.protocols().any(|p| p == "echo") {
            upgrade = upgrade.protocol("echo");
        }
        Ok(upgrade)
    };
    let (response, upgrading) = match acceptor.upgrade_with(&mut req, hook) {
        Ok(accepted) => accepted,
        Err(refusal) => return Ok(refusal),
    };
    tokio::spawn(async move {
        let mut ws = upgrading.await.expect("upgrade");
        while let Some(Ok(msg)) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Ok(response)
}

async fn server(config: Config) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new(config);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let service = service_fn(move |req| route(acceptor.clone(), req));
            tokio::spawn(
                http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades(),
            );
        }
    });
    (addr, task)
}

/// Sends `request` and reads one response: head, then the body by its
/// Content-Length. Returns the head (names lowercased by hyper) and body.
async fn exchange(tcp: &mut TcpStream, request: &str) -> (String, String) {
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert_ne!(tcp.read_buf(&mut buf).await.unwrap(), 0, "closed mid-head");
    };
    let head = String::from_utf8(buf[..head_len].to_vec()).unwrap();
    let body_len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.parse().unwrap());
    while buf.len() < head_len + body_len {
        assert_ne!(tcp.read_buf(&mut buf).await.unwrap(), 0, "closed mid-body");
    }
    assert_eq!(buf.len(), head_len + body_len, "nothing after the body");
    let body = String::from_utf8(buf[head_len..].to_vec()).unwrap();
    (head, body)
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\n\
    Host: localhost\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\
    \r\n";

#[tokio::test]
async fn websocket_and_http_routes_share_a_port() {
    let (addr, server) = server(Config::default()).await;

    let (mut ws, response) = Client::new(format!("ws://{addr}/ws"))
        .protocol("echo")
        .connect()
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.protocol(), Some("echo"));
    assert_eq!(response.header("X-Route"), Some(&b"ws"[..]));
    assert_eq!(ws.protocol(), Some("echo"));
    for msg in [
        Message::text("hello"),
        Message::binary(vec![0u8; 0]),
        Message::binary(vec![7u8; 1 << 20]),
    ] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
    }

    // The HTTP route answers while the WebSocket is open.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let (head, body) = exchange(&mut tcp, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "ok");

    let frame = ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    assert_eq!(frame.code, CloseCode::NORMAL);
    assert!(ws.recv().await.is_none());
    server.abort();
}

#[tokio::test]
async fn deflate_is_negotiated_through_hyper() {
    let config = Config::default().deflate(Some(DeflateConfig::default()));
    let (addr, server) = server(config.clone()).await;
    let (mut ws, response) = Client::new(format!("ws://{addr}/ws"))
        .config(config)
        .connect()
        .await
        .unwrap();
    assert!(response.deflate().is_some());
    assert!(ws.is_compressed());
    assert_eq!(ws.protocol(), None);
    let msg = Message::text("compress me ".repeat(1000));
    ws.send(msg.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    server.abort();
}

#[tokio::test]
async fn a_frame_right_behind_the_request_is_not_lost() {
    // hyper may read the client's first frame with the head; it must
    // reach the WebSocket.
    let (addr, server) = server(Config::default()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // RFC 6455 5.7: a masked "Hello".
    let hello = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    let mut request = UPGRADE.as_bytes().to_vec();
    request.extend_from_slice(hello);
    tcp.write_all(&request).await.unwrap();

    let mut buf = Vec::new();
    while !buf.ends_with(b"\x81\x05Hello") {
        assert_ne!(tcp.read_buf(&mut buf).await.unwrap(), 0);
    }
    let head = String::from_utf8(buf[..buf.len() - 7].to_vec()).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: Upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(head.contains("\r\nx-route: ws\r\n"), "{head}");
    // RFC 7230 3.3.2: no Content-Length in a 1xx.
    assert!(!head.contains("content-length"), "{head}");
    assert!(head.ends_with("\r\n\r\n"));
    server.abort();
}

#[tokio::test]
async fn a_bad_upgrade_is_refused_and_the_connection_still_serves() {
    let (addr, server) = server(Config::default()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();

    let no_key = UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let (head, body) = exchange(&mut tcp, &no_key).await;
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"));
    assert_eq!(body, "missing Sec-WebSocket-Key header\n");

    // Same connection: a refused upgrade is just a response.
    let (head, body) = exchange(&mut tcp, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "ok");
    server.abort();
}

#[tokio::test]
async fn refusals_name_their_reason() {
    let (addr, server) = server(Config::default()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();

    // A browser opening the WebSocket URL as a page learns it must upgrade.
    let page = "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (head, body) = exchange(&mut tcp, page).await;
    assert!(
        head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert_eq!(body, "missing Upgrade: websocket header\n");

    let old = UPGRADE.replace("Version: 13", "Version: 8");
    let (head, body) = exchange(&mut tcp, &old).await;
    assert!(
        head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nsec-websocket-version: 13\r\n"), "{head}");
    assert_eq!(body, "unsupported WebSocket version, use 13\n");

    let post = UPGRADE.replace("GET", "POST");
    let (head, _) = exchange(&mut tcp, &post).await;
    assert!(
        head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nallow: GET\r\n"), "{head}");

    let evil = UPGRADE.replace("Host:", "Origin: http://evil.example\r\nHost:");
    let (head, body) = exchange(&mut tcp, &evil).await;
    assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
    assert_eq!(body, "origin not allowed\n");

    // Our client reports the refusal with its status.
    let err = Client::new(format!("ws://{addr}/ws"))
        .origin("http://evil.example")
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    server.abort();
}
