//! The accept loop of one listener.

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Limits;
use super::conn::serve_connection;
use crate::hub::Hub;

/// Accepts on `listener` (with TLS if `tls` is set) and serves each
/// connection with `router`, until `stop` turns true; then returns once
/// every connection it started is closed. Running out of descriptors
/// does not end it (see [`herald::AcceptBackoff`]); an unusable listener
/// does, with that error, after its connections are done.
///
/// With `websocket` set (the public listener), a plain-TCP connection whose
/// first request is a WebSocket handshake for the endpoint skips hyper and
/// axum: `transport::websocket::direct` answers it, and the session holds
/// the bare socket (hyper's upgraded connection costs ~2 KiB more per
/// connection for the rest of its life).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: Limits,
    hub: Arc<Hub>,
    websocket: Option<crate::server::Server>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut backoff =
        herald::AcceptBackoff::new().on_error_hook(move |_| hub.metrics().accept_error());
    // Each connection task holds a receiver; when all are dropped, every
    // connection is done.
    let (done_tx, done_rx) = watch::channel(());
    let result = loop {
        let (tcp, peer) = tokio::select! {
            r = herald::accept_tcp(&listener, &mut backoff) => match r {
                Ok(accepted) => accepted,
                Err(e) => break Err(e),
            },
            () = super::stopped(&mut stop) => break Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let (router, stop, done) = (router.clone(), stop.clone(), done_rx.clone());
        match tls.clone() {
            None => {
                let websocket = websocket.clone();
                tokio::spawn(async move {
                    // By reference: a moved-out `server` would take a slot
                    // of its own in this task for its whole life.
                    let tcp = match &websocket {
                        Some(server) => {
                            let header_timeout = limits.header_timeout;
                            crate::transport::websocket::direct(server, tcp, header_timeout).await
                        }
                        None => Some(tcp),
                    };
                    if let Some(tcp) = tcp {
                        // Boxed: inline, hyper's connection state would size
                        // every WebSocket connection's task too.
                        Box::pin(serve_connection(tcp, peer, router, limits, stop)).await;
                    }
                    drop(done);
                });
            }
            Some(tls) => {
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(limits.header_timeout, tls.accept(tcp));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, limits, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake from {peer}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake from {peer}: timed out"),
                    }
                    drop(done);
                });
            }
        }
    };
    drop(listener);
    drop(done_rx);
    done_tx.closed().await;
    result
}
