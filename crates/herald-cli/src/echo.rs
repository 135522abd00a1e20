//! `herald echo`: echoes every data message.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use herald::{Acceptor, Config, DeflateConfig, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Server threads; 1 runs everything on one thread. Each thread runs
    /// its own current-thread runtime and accepts on its own socket bound
    /// to the same address (SO_REUSEPORT), as `herald serve` does.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// With --threads N: one tokio multi-thread runtime of N workers and
    /// one listener instead (for comparison; DESIGN.md, "Threads").
    #[arg(long, conflicts_with = "event_loop")]
    multi_thread: bool,
    /// PEM certificate chain: serve wss:// instead of ws://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse permessage-deflate (accepted by default).
    #[arg(long)]
    no_deflate: bool,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Serve from one epoll loop per thread with callbacks
    /// (`herald::event_loop`) instead of a tokio task per connection:
    /// fewer instructions per message; ws:// only.
    #[arg(long, conflicts_with = "tls_cert")]
    event_loop: bool,
    /// Connections open at once (--event-loop); beyond it, 503.
    #[arg(long, default_value_t = 50_000, requires = "event_loop")]
    max_connections: usize,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let mut protocol = herald_proto_config();
    protocol.max_message_size = args.max_message_size;
    protocol.max_frame_size = args.max_message_size;
    let config = Config::default()
        .protocol(protocol)
        .deflate((!args.no_deflate).then(DeflateConfig::default));
    if args.event_loop {
        return run_event_loop(&args, config);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let acceptor = Arc::new(Acceptor::new(config));
    let threads = usize::from(args.threads);
    if args.multi_thread {
        return crate::runtime(threads)?.block_on(async move {
            let listener = crate::listen(args.listen)?;
            let addr = listener.local_addr()?;
            eprintln!("herald echo listening on {scheme}://{addr} (tokio multi-thread, {threads})");
            accept_loop(listener, acceptor, tls, true).await
        });
    }
    let mut listeners = herald_server::bind_threads(args.listen, threads)?;
    let first = listeners.remove(0);
    eprintln!(
        "herald echo listening on {scheme}://{} ({threads} thread{})",
        first.local_addr()?,
        if threads == 1 { "" } else { "s" }
    );
    for (i, listener) in listeners.into_iter().enumerate() {
        let (acceptor, tls) = (acceptor.clone(), tls.clone());
        std::thread::Builder::new()
            .name(format!("herald-echo-{}", i + 1))
            .spawn(move || {
                let result = crate::runtime(1).map_err(BoxError::from).and_then(|rt| {
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        accept_loop(listener, acceptor, tls, false).await
                    })
                });
                // A thread whose listener is gone would leave its share of
                // the connections unanswered: end the process instead.
                if let Err(e) = result {
                    eprintln!("herald: echo thread {}: {e}", i + 1);
                    std::process::exit(1);
                }
            })?;
    }
    crate::runtime(1)?.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(first)?;
        accept_loop(listener, acceptor, tls, true).await
    })
}

/// Accepts on `listener` and echoes on every connection, on the calling
/// runtime; with `ctrl_c`, returns on Ctrl-C (the process ends then).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: Arc<Acceptor>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ctrl_c: bool,
) -> Result<ExitCode, BoxError> {
    let interrupted = async {
        if ctrl_c {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(interrupted);
    {
        // Out of descriptors is not the end: keep echoing on the
        // connections there are, and accept again when some close.
        let mut backoff = herald::AcceptBackoff::new();
        loop {
            let (tcp, _) = tokio::select! {
                r = herald::accept_tcp(&listener, &mut backoff) => r?,
                () = &mut interrupted => return Ok(ExitCode::SUCCESS),
            };
            if !crate::NODELAY_INHERITED {
                let _ = tcp.set_nodelay(true);
            }
            let acceptor = acceptor.clone();
            // Two spawn sites, not one future with a TLS branch: a task is
            // as large as its largest state, and rustls' state would make
            // every plain connection pay for it.
            match tls.clone() {
                Some(tls) => {
                    tokio::spawn(EchoTask::Handshake(Box::pin(async move {
                        let stream = tls.accept(tcp).await?;
                        Ok(acceptor.accept(stream).await?)
                    })));
                }
                None => {
                    tokio::spawn(EchoTask::Handshake(Box::pin(async move {
                        Ok(acceptor.accept(tcp).await?)
                    })));
                }
            }
        }
    }
}

/// `--event-loop`: the same echo as callbacks on herald's epoll loops.
fn run_event_loop(args: &Args, config: Config) -> Result<ExitCode, BoxError> {
    use herald::event_loop::{Conn, Handler, Server};

    struct Echo;

    impl Handler for Echo {
        fn on_message(&mut self, conn: &mut Conn<'_>, message: herald::Message) {
            conn.send(message);
        }
    }

    // No signal thread (a second thread makes glibc's `recv` and `writev`
    // dearer): Ctrl-C and SIGTERM end the process by their default action.
    // Restore it, since a shell starts background jobs with SIGINT ignored
    // and that would be inherited.
    // SAFETY: setting a signal's disposition to its default is sound at any
    // time; no handler of ours is involved.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
    let server = Server::builder(config)
        .threads(usize::from(args.threads))
        .max_connections(args.max_connections)
        .bind(args.listen)?;
    eprintln!(
        "herald echo listening on ws://{} (event loop)",
        server.local_addr()
    );
    server.run(|| Echo)?;
    Ok(ExitCode::SUCCESS)
}

fn herald_proto_config() -> herald::ProtocolConfig {
    herald::ProtocolConfig::default()
}

type Handshake<S> = Pin<Box<dyn Future<Output = Result<WebSocket<S>, BoxError>> + Send>>;

/// One connection's task, written by hand rather than as an `async fn`: an
/// async state machine keeps room for its captured variables (the TCP
/// stream, the acceptor) in every state and rounds up around them, while
/// this enum is the socket itself once the handshake is done. The socket is
/// held by value: 384 bytes, so tokio's task cell (header, socket,
/// trailer, 128-byte aligned) is 512 bytes; boxing it instead would cost a
/// 256-byte cell plus a 384-byte box. What this saves is per idle
/// connection (`scripts/bench`, idle scenario).
#[expect(
    clippy::large_enum_variant,
    reason = "the socket held inline is the point; the handshake is boxed"
)]
pub(crate) enum EchoTask<S> {
    /// The opening handshake (and TLS), boxed: freed when done.
    Handshake(Handshake<S>),
    /// Echo loop. Replies are queued, not flushed: the socket writes all
    /// that is queued in one vectored write before it next reads, so the
    /// replies to everything one read brought in leave in one syscall.
    Echo(WebSocket<S>),
    Done,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for EchoTask<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Self::Handshake(handshake) => match ready!(handshake.as_mut().poll(cx)) {
                    Ok(ws) => *this = Self::Echo(ws),
                    Err(e) => {
                        tracing::debug!("handshake failed: {e}");
                        *this = Self::Done;
                    }
                },
                Self::Echo(ws) => {
                    // Ends on Pending inside `poll_recv` (tokio's budget
                    // makes a busy socket yield too), or when closed.
                    loop {
                        match ready!(ws.poll_recv(cx)) {
                            Some(Ok(msg)) => {
                                if ws.start_send_message(msg).is_err() {
                                    break;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::debug!("connection failed: {e}");
                                break;
                            }
                            None => break,
                        }
                    }
                    *this = Self::Done;
                }
                Self::Done => return Poll::Ready(()),
            }
        }
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, BoxError> {
    let config = herald::server_config_from_pem(cert, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
