//! Raw TCP echo: writes back whatever it reads, no WebSocket at all. It
//! does strictly less work per message than any WebSocket echo server on
//! the same runtime, so the rate `herald bench echo` reaches against it
//! (it answers pre-masked frames with the same bytes, which the generator
//! accepts as an echo) is the generator's ceiling: see bench/README.md.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() {
    let addr = herald_bench_peers::listen_addr("127.0.0.1:9009");
    herald_bench_peers::run(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("raw TCP echo listening on {addr}");
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
}
