//! `herald echo`: echoes every data message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use herald::{Acceptor, Config, DeflateConfig, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Worker threads; 1 runs everything on one thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
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
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    let mut protocol = herald_proto_config();
    protocol.max_message_size = args.max_message_size;
    protocol.max_frame_size = args.max_message_size;
    let config = Config::default()
        .protocol(protocol)
        .deflate((!args.no_deflate).then(DeflateConfig::default));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    crate::runtime(args.threads)?.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        eprintln!(
            "herald echo listening on {scheme}://{}",
            listener.local_addr()?
        );
        let acceptor = Arc::new(Acceptor::new(config));
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => r?,
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            // Two spawn sites, not one future with a TLS branch: a task is
            // as large as its largest state, and rustls' state would make
            // every plain connection pay for it.
            match tls.clone() {
                Some(tls) => {
                    tokio::spawn(async move {
                        if let Ok(stream) = tls.accept(tcp).await {
                            serve(&acceptor, stream).await;
                        }
                    });
                }
                None => {
                    tokio::spawn(async move { serve(&acceptor, tcp).await });
                }
            }
        }
    })
}

fn herald_proto_config() -> herald::ProtocolConfig {
    herald::ProtocolConfig::default()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(acceptor: &Acceptor, io: S) {
    // The handshake's state is boxed so it is freed once done, and the
    // task that stays for the connection's life holds only the socket.
    let ws = match Box::pin(acceptor.accept(io)).await {
        Ok(ws) => Box::new(ws),
        Err(e) => {
            tracing::debug!("handshake failed: {e}");
            return;
        }
    };
    // Not inside the match above: a match's scrutinee lives to its end, so
    // awaiting in an arm would keep the unboxed socket in the task too.
    echo(ws).await;
}

/// Echo loop. Replies are queued, not flushed: the socket writes all that
/// is queued in one vectored write before it next reads, so the replies to
/// everything one read brought in leave in one syscall.
///
/// The socket is boxed: a task future is laid out for all its states at
/// once, and a socket held by value appears in more than one of them.
pub(crate) async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: Box<WebSocket<S>>) {
    while let Some(r) = ws.recv().await {
        match r {
            Ok(msg) => {
                if ws.start_send_message(msg).is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!("connection failed: {e}");
                break;
            }
        }
    }
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor, BoxError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
