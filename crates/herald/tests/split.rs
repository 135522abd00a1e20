//! Split halves used from two tasks: one reads while the other writes.

mod common;

use std::time::Duration;

use common::{EchoServer, within};
use herald::{Client, CloseCode, Config, Message};

const MESSAGES: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_task_sends_1000_reader_task_gets_every_echo_in_order() {
    let mut server = EchoServer::start(Config::default(), None).await;
    let (ws, _) = within("connect", Client::new(server.url()).connect())
        .await
        .unwrap();
    let (mut read, mut write) = ws.split();

    let (all_in_tx, all_in) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let msg = read
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed before echo {i}"))
                .unwrap();
            let expected = if i % 2 == 0 {
                Message::text(format!("message {i}"))
            } else {
                Message::binary(vec![i as u8; i])
            };
            assert_eq!(msg, expected, "echo {i} out of order or changed");
        }
        let _ = all_in_tx.send(());
        // After our Close, the peer's reply and then the end.
        assert!(read.recv().await.is_none(), "more after the last echo");
        read
    });
    let writer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let msg = if i % 2 == 0 {
                Message::text(format!("message {i}"))
            } else {
                Message::binary(vec![i as u8; i])
            };
            write.send(msg).await.unwrap();
        }
        write
    });
    let mut write = within("the writer task", writer).await.unwrap();
    // Close once every echo is in: a server that reads our Close stops
    // echoing.
    within("all echoes", all_in)
        .await
        .expect("the reader task failed");
    within("close", write.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    let read = within("the reader task", reader).await.unwrap();
    assert_eq!(read.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
    let report = server.report().await;
    assert_eq!(report.error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_send_while_the_read_half_is_parked_is_written() {
    let mut server = EchoServer::start(Config::default(), None).await;
    let (ws, _) = within("connect", Client::new(server.url()).connect())
        .await
        .unwrap();
    let (mut read, write) = ws.split();

    let (parked_tx, parked_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let _ = parked_tx.send(());
        let mut got = Vec::new();
        while let Some(msg) = read.recv().await {
            got.push(msg.unwrap());
            if got.len() == 11 {
                break;
            }
        }
        (read, got)
    });
    parked_rx.await.unwrap();
    // Let the reader park in recv with nothing to read.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!reader.is_finished());

    // No task polls the write half: only the parked reader can write these.
    write.try_send(Message::text("first")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..10 {
        write.try_send(Message::text(format!("burst {i}"))).unwrap();
    }
    let (mut read, got) = within("echoes of try_send, written by the parked reader", reader)
        .await
        .unwrap();
    let mut expected = vec![Message::text("first")];
    expected.extend((0..10).map(|i| Message::text(format!("burst {i}"))));
    assert_eq!(got, expected);

    let mut write = write;
    within("close", write.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    assert!(within("end", read.recv()).await.is_none());
    assert_eq!(server.report().await.error, None);
}
