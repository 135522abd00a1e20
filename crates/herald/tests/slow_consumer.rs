//! A client that never reads: the server's queue stays bounded.
//!
//! `send` waits once the kernel's buffers are full, `try_send` says
//! `Full`, and `buffered_amount` stays near `write_high_water` plus one
//! message. When the client starts reading, everything queued arrives in
//! order and `send` goes on.

mod common;

use std::time::Duration;

use common::{OP_BINARY, OP_CLOSE, OP_TEXT, masked_frame, raw_client, read_frame, within};
use herald::{Acceptor, CloseCode, Config, Message, TrySendError};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const HIGH_WATER: usize = 64 << 10;
const MESSAGE: usize = 64 << 10;
/// Largest frame header: 2 + 8 length bytes (a server does not mask).
const HEAD: usize = 10;
/// More than any loopback socket buffers (a few MiB each way).
const MAX_MESSAGES: usize = 2_000;
/// How long a `send` must stay pending to count as blocked.
const BLOCKED: Duration = Duration::from_secs(1);

#[tokio::test]
async fn send_blocks_and_try_send_is_full_while_the_peer_does_not_read() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let config = Config::default().write_high_water(HIGH_WATER);
        Acceptor::new(config).accept(tcp).await.unwrap()
    });
    // The client completes the handshake and then reads nothing.
    let tcp = raw_client(addr).await;
    let mut ws = within("accept", accept).await.unwrap();

    let message = Message::binary(vec![0xa5u8; MESSAGE]);
    let mut sent = 0;
    loop {
        assert!(
            sent < MAX_MESSAGES,
            "{sent} messages of 64 KiB went out to a peer that reads nothing"
        );
        match tokio::time::timeout(BLOCKED, ws.send(message.clone())).await {
            Ok(r) => r.unwrap(),
            // Still pending: the kernel's buffers are full. The message is
            // queued (send is not cancel safe once queued) and goes out later.
            Err(_) => break,
        }
        sent += 1;
        let queued = ws.buffered_amount();
        assert!(
            queued <= HIGH_WATER + MESSAGE + HEAD,
            "{queued} bytes queued after a completed send"
        );
    }
    sent += 1;
    assert!(sent > 1, "the first send already blocked");

    // try_send: at most one more fits under the high-water mark, then Full.
    let mut full = false;
    for _ in 0..3 {
        match ws.try_send(message.clone()) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(m)) => {
                assert_eq!(m, message, "Full gives the message back");
                full = true;
                break;
            }
            Err(e) => panic!("try_send: {e}"),
        }
    }
    assert!(
        full,
        "try_send never reported Full; {} bytes queued",
        ws.buffered_amount()
    );
    for _ in 0..10 {
        assert!(matches!(
            ws.try_send(message.clone()),
            Err(TrySendError::Full(_))
        ));
    }
    let queued = ws.buffered_amount();
    assert!(
        (HIGH_WATER..=HIGH_WATER + MESSAGE + 2 * HEAD).contains(&queued),
        "buffered_amount {queued}, expected between {HIGH_WATER} and one message more"
    );
    // Another send is still pending: it waits for room before queuing, so
    // dropping it here sends nothing.
    let again = tokio::time::timeout(BLOCKED, ws.send(message.clone())).await;
    assert!(
        again.is_err(),
        "send completed while the peer reads nothing"
    );
    assert_eq!(
        ws.buffered_amount(),
        queued,
        "a send waiting for room queued its message"
    );

    // Now the client reads: every message arrives, in order, then "end".
    let reader = tokio::spawn(async move {
        let mut tcp = BufReader::with_capacity(256 << 10, tcp);
        let mut messages = 0;
        loop {
            let frame = read_frame(&mut tcp).await.expect("EOF before \"end\"");
            match frame.opcode {
                OP_BINARY => {
                    assert!(
                        frame.fin
                            && frame.payload.len() == MESSAGE
                            && frame.payload.iter().all(|&b| b == 0xa5)
                    );
                    messages += 1;
                }
                OP_TEXT => {
                    assert_eq!(frame.payload, b"end");
                    break;
                }
                op => panic!("unexpected opcode {op}"),
            }
        }
        tcp.get_mut()
            .write_all(&masked_frame(OP_CLOSE, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        (messages, tcp)
    });
    within("send after the peer reads", ws.send(Message::text("end")))
        .await
        .unwrap();
    let (received, _tcp) = within("the reader", reader).await.unwrap();
    assert_eq!(received, sent, "every queued message arrives once");
    let frame = within("close", ws.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    assert_eq!(frame.code, CloseCode::NORMAL);
}
