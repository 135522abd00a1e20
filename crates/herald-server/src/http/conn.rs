//! One HTTP/1.1 connection, served by hyper with the [`Limits`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::Limits;
use super::body::TimeoutBody;
use super::stall::WriteDeadline;
use super::timer::HeadTimer;

/// hyper's smallest allowed read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// Serves `io` until the client is done, a limit is passed, or `stop`
/// turns true (then the request in progress is answered and the
/// connection closed). A WebSocket upgrade ends it here: the upgraded
/// socket lives on in its session task.
pub(super) async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timer = HeadTimer::new(limits.header_timeout, limits.idle_timeout);
    let service = Service {
        router,
        peer,
        body_timeout: limits.body_timeout,
        served: timer.served(),
    };
    let conn = http1::Builder::new()
        .timer(timer)
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_size)
        .max_buf_size(limits.max_header_size.max(MIN_BUF_SIZE))
        .serve_connection(
            TokioIo::new(WriteDeadline::new(io, limits.write_timeout)),
            service,
        )
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = super::stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets, malformed requests: the client's doing.
        tracing::debug!("http connection from {peer}: {e}");
    }
}

/// The router as hyper sees it: the peer's address for `ConnectInfo`, and
/// a deadline on the body.
#[derive(Clone)]
struct Service {
    router: Router,
    peer: SocketAddr,
    body_timeout: std::time::Duration,
    /// Tells the timer that later heads are keep-alive waits.
    served: Arc<AtomicBool>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <Router as tower_service::Service<axum::extract::Request>>::Future;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.served.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        let mut request =
            request.map(|body| axum::body::Body::new(TimeoutBody::new(body, deadline)));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        tower_service::Service::call(&mut self.router.clone(), request)
    }
}
