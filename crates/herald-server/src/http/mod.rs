//! The HTTP side's transport: listeners, TLS, and one hyper HTTP/1.1
//! connection per socket, with every wait bounded. axum's `serve` has no
//! header, body or idle timeout, so a client that opens sockets and sends
//! nothing (or a byte now and then) would hold them, and their
//! descriptors, for ever.
//!
//! ```text
//!  listener.rs  accept (herald::accept_tcp: EMFILE waits, never exits)
//!      │          └─ TLS handshake, bounded by the header timeout
//!      v
//!  conn.rs      hyper http1: header timeout, idle keep-alive timeout
//!      │          (timer.rs), head size cap, upgrades, ConnectInfo
//!      v
//!  body.rs      request body: cut off past the body timeout
//!      v
//!  axum Router (server.rs)
//! ```
//!
//! On shutdown, listeners stop accepting, kept-alive connections close
//! after their current response, and [`serve`] returns when the last one
//! has; upgraded (WebSocket) connections are the session's business.

pub(crate) mod api;
mod body;
mod conn;
pub(crate) mod drain;
mod listener;
mod stall;
mod timer;

use std::time::Duration;

pub(crate) use body::BodyTimeout;
pub(crate) use listener::serve;

use crate::config::ServerConfig;

/// The bounds every HTTP connection is served with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bounds the TLS handshake and the first request's head.
    pub(crate) header_timeout: Duration,
    /// Bounds the wait for each later request's head, from the end of the
    /// previous response.
    pub(crate) idle_timeout: Duration,
    /// Bounds each request body, from the end of its head.
    pub(crate) body_timeout: Duration,
    /// Largest request head, in bytes.
    pub(crate) max_header_size: usize,
    /// Bounds each write's wait for the peer to read.
    pub(crate) write_timeout: Duration,
}

impl From<&ServerConfig> for Limits {
    fn from(config: &ServerConfig) -> Self {
        Self {
            header_timeout: config.http_header_timeout,
            idle_timeout: config.http_idle_timeout,
            body_timeout: config.http_body_timeout,
            max_header_size: config.http_max_header_size,
            write_timeout: config.http_write_timeout,
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Loads `tls_cert` and `tls_key` into an acceptor that offers HTTP/1.1
/// in ALPN.
pub(crate) fn tls_acceptor(
    config: &ServerConfig,
) -> std::io::Result<Option<tokio_rustls::TlsAcceptor>> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "tls_cert and tls_key are set together or not at all",
            ));
        }
    };
    let mut tls = herald::server_config_from_pem(cert, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
        tls,
    ))))
}
