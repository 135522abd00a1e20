//! `tls_cert` / `tls_key`: the server speaks https:// and wss://, checked
//! by clients that verify a test CA; a TLS handshake that never finishes
//! is cut off like a slow HTTP head.

mod support;

use std::time::Duration;

use herald::rustls;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn tls_server(ca: &TestCa) -> TestServer {
    let mut config = config();
    config.tls_cert = Some(ca.cert.clone());
    config.tls_key = Some(ca.key.clone());
    config.http_header_timeout = Duration::from_secs(1);
    TestServer::start(config).await
}

#[tokio::test]
async fn https_and_wss_with_a_certificate_the_client_verifies() {
    let ca = TestCa::new("tls-ok");
    let server = tls_server(&ca).await;

    // https:// GET /health.
    let connector = tokio_rustls::TlsConnector::from(ca.client_config());
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = within("TLS handshake", connector.connect(name, tcp))
        .await
        .expect("the server's certificate verifies against the test CA");
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    within("the https response", tls.read_to_string(&mut response))
        .await
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");

    // wss:// with the push protocol.
    let url = format!(
        "wss://127.0.0.1:{}{}",
        server.addr.port(),
        herald_server::WEBSOCKET_PATH
    );
    let (mut ws, _) = within(
        "wss handshake",
        herald::Client::new(url)
            .tls_config(ca.client_config())
            .connect(),
    )
    .await
    .expect("wss connect");
    send_text(
        &mut ws,
        json!({"id": 1, "connect": {"name": "tls"}}).to_string(),
    )
    .await;
    assert!(recv_json(&mut ws).await.expect("reply")["result"]["client"].is_string());
    send_text(
        &mut ws,
        json!({"id": 2, "subscribe": {"channel": "chat:tls"}}).to_string(),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await.expect("reply")["id"], 2);
    let data = serde_json::value::RawValue::from_string("\"over tls\"".into()).expect("raw");
    server
        .hub()
        .publish("chat:tls", data, None)
        .await
        .expect("publish");
    let push = loop {
        let m = recv_json(&mut ws).await.expect("a push");
        if m["push"]["pub"].is_object() {
            break m;
        }
    };
    assert_eq!(push["push"]["pub"]["data"], "over tls");
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let ca = TestCa::new("tls-untrusted");
    let server = tls_server(&ca).await;
    let other = TestCa::new("tls-other");
    let url = format!(
        "wss://127.0.0.1:{}{}",
        server.addr.port(),
        herald_server::WEBSOCKET_PATH
    );
    let r = within(
        "wss handshake",
        herald::Client::new(url)
            .tls_config(other.client_config())
            .connect(),
    )
    .await;
    assert!(r.is_err(), "a certificate from another CA must not verify");
    server.stop().await;
}

/// Plain text on the TLS port, nothing, or half a ClientHello: closed by
/// the header timeout.
#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_cut_off() {
    let ca = TestCa::new("tls-slow");
    let server = tls_server(&ca).await;
    // A TLS record header announcing a 512-byte handshake message, and
    // only the start of it.
    let partial_hello: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
    for sent in [&[][..], partial_hello] {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(sent).await.expect("write");
        let start = Instant::now();
        let mut buf = [0u8; 64];
        within("the server to close a stalled TLS handshake", async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
    server.stop().await;
}
