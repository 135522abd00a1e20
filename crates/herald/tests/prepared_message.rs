//! One message, prepared once, sent to many clients over real sockets: the
//! server accepts permessage-deflate with `DeflateConfig::no_context_takeover`
//! and queues the same `PreparedMessage` on every connection. herald
//! clients (with and without deflate), Python `websockets` and Node `ws`
//! (run by scripts/install-peers) each decode it and send it back, and the
//! server compares.

mod common;

use common::{Peer, TIMEOUT, closed_line, open_line, within};
use herald::{
    Acceptor, Client, CloseCode, Config, DeflateConfig, Message, PreparedMessage, WebSocket,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Compressible JSON, as a push server publishes, with non-ASCII text.
fn publication(len: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            r#"{{"channel":"news","offset":{i},"data":{{"title":"Grüße {i}"}}}},"#
        ));
        i += 1;
    }
    s
}

fn messages() -> Vec<Message> {
    vec![
        Message::text(publication(4 << 10)),
        // Under the compression threshold: plain for everyone.
        Message::text("hi"),
        Message::binary(
            (0..64usize << 10)
                .map(|i| (i % 7) as u8)
                .collect::<Vec<u8>>(),
        ),
        Message::text(publication(256 << 10)),
    ]
}

/// A herald client that sends back whatever it receives until the server
/// closes; returns whether deflate was agreed, and how the connection
/// closed.
async fn herald_reflector(url: String, deflate: bool) -> (bool, u16) {
    let mut client = Client::new(url);
    if deflate {
        // What browsers offer: context takeover allowed both ways.
        client = client.deflate(DeflateConfig::default());
    }
    let (mut ws, _) = within("herald client connect", client.connect())
        .await
        .unwrap();
    if deflate {
        let params = ws.deflate_params().expect("deflate agreed");
        // The server added both, unasked (RFC 7692 7.1.1.1, 7.1.1.2).
        assert!(params.server_no_context_takeover && params.client_no_context_takeover);
    }
    while let Some(m) = within("herald client recv", ws.recv()).await {
        within("herald client send", ws.send(m.unwrap()))
            .await
            .unwrap();
    }
    let code = ws.close_frame().map(|f| f.code.0).unwrap_or(0);
    (ws.is_compressed(), code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_prepared_message_reaches_every_kind_of_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let acceptor =
        Acceptor::new(Config::default().deflate(Some(DeflateConfig::no_context_takeover())));

    let mut herald_clients = JoinSet::new();
    for deflate in [true, true, true, false] {
        herald_clients.spawn(herald_reflector(url.clone(), deflate));
    }
    let mut python = Peer::spawn("python3", &["python_client.py", &url, "reflect"]);
    let mut node = Peer::spawn("node", &["node_client.mjs", &url, "reflect"]);

    let mut sockets: Vec<WebSocket<TcpStream>> = Vec::new();
    for _ in 0..6 {
        let (tcp, _) = within("accept", listener.accept()).await.unwrap();
        sockets.push(within("handshake", acceptor.accept(tcp)).await.unwrap());
    }
    assert_eq!(python.line().await, open_line(None, true));
    assert_eq!(node.line().await, open_line(None, true));
    let compressed = sockets.iter().filter(|ws| ws.is_compressed()).count();
    assert_eq!(compressed, 5, "every client but one offered deflate");
    for ws in &sockets {
        if let Some(params) = ws.deflate_params() {
            assert!(params.server_no_context_takeover && params.client_no_context_takeover);
            assert_eq!(params.server_max_window_bits, 15);
        }
    }

    for msg in messages() {
        let prepared = PreparedMessage::new(msg.clone());
        for ws in &mut sockets {
            let before = ws.buffered_amount();
            ws.start_send_prepared(&prepared).unwrap();
            let queued = ws.buffered_amount() - before;
            if ws.is_compressed() && msg.len() > 1000 {
                // The compressed frame went out, not the message.
                assert!(queued < msg.len() / 2, "{queued} bytes queued");
            } else {
                assert!(queued > msg.len(), "{queued} bytes queued");
            }
        }
        // Each client sends it back; recv also writes what was queued.
        for ws in &mut sockets {
            let back = within("the message sent back", ws.recv())
                .await
                .expect("open")
                .unwrap();
            assert!(back == msg, "{} bytes back, {} sent", back.len(), msg.len());
            // Nothing kept from the client's compressed message or ours.
            assert!(!ws.holds_deflate_state());
        }
    }

    for ws in &mut sockets {
        let reply = within("close", ws.close(CloseCode::NORMAL, "bye"))
            .await
            .unwrap();
        assert_eq!(reply.code, CloseCode::NORMAL);
    }
    assert_eq!(python.line().await, closed_line(1000, "bye"));
    assert_eq!(node.line().await, closed_line(1000, "bye"));
    python.success().await;
    node.success().await;
    let mut agreed = Vec::new();
    while let Some(r) = tokio::time::timeout(TIMEOUT, herald_clients.join_next())
        .await
        .expect("herald clients finish")
    {
        let (compressed, code) = r.unwrap();
        assert_eq!(code, 1000);
        agreed.push(compressed);
    }
    agreed.sort();
    assert_eq!(agreed, [false, true, true, true]);
}
