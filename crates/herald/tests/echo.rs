//! Our client against our server over real TCP on 127.0.0.1.

use herald::{Acceptor, Client, CloseCode, Config, DeflateConfig, Message};
use tokio::net::TcpListener;

async fn echo_server(config: Config) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/echo", listener.local_addr().unwrap());
    let acceptor = Acceptor::new(config);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = acceptor.accept(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.recv().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn echo_text_binary_and_close() {
    let (url, server) = echo_server(Config::default()).await;
    let (mut ws, response) = Client::new(&url).connect().await.unwrap();
    assert_eq!(response.status(), 101);
    for msg in [
        Message::text("hello"),
        Message::binary(vec![0u8; 0]),
        Message::binary(vec![7u8; 1 << 20]),
        Message::text("κόσμε".repeat(1000)),
    ] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
    }
    let frame = ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    assert_eq!(frame.code, CloseCode::NORMAL);
    assert!(ws.recv().await.is_none());
    server.abort();
}

#[tokio::test]
async fn echo_with_deflate() {
    let config = Config::default().deflate(Some(DeflateConfig::default()));
    let (url, server) = echo_server(config.clone()).await;
    let (mut ws, response) = Client::new(&url).config(config).connect().await.unwrap();
    assert!(response.deflate().is_some());
    assert!(ws.is_compressed());
    for i in 0..20 {
        let msg = Message::text(format!("message {i} ").repeat(100));
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
    }
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    server.abort();
}
