//! tokio-tungstenite echo server, as in the crate's own `echo-server`
//! example: split, then forward every data message back (`forward` feeds
//! while input is ready and flushes when it is not, so replies batch).
//! Default `WebSocketConfig` (no permessage-deflate: tungstenite has none).

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let addr = herald_bench_peers::listen_addr("127.0.0.1:9002");
    herald_bench_peers::run(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("tokio-tungstenite echo listening on ws://{addr}");
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream));
        }
    });
}

async fn connection(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}
