//! fastwebsockets echo server, as in the crate's own `echo_server`
//! example: hyper's HTTP/1 upgrade, a `FragmentCollector` (reassembles
//! fragments, validates UTF-8 of text), auto pong and close, the task
//! `unconstrained`. No permessage-deflate (fastwebsockets has none).

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

fn main() {
    let addr = herald_bench_peers::listen_addr("127.0.0.1:9003");
    herald_bench_peers::run(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("fastwebsockets echo listening on ws://{addr}");
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades()
                    .await;
            });
        }
    });
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}
