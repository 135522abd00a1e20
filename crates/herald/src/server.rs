//! Accepting WebSocket connections on any byte stream.

use std::time::Instant;

use bytes::BytesMut;
use herald_proto::Connection;
use herald_proto::handshake::{self, Accept, HandshakeError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Phase};
use crate::{Config, WebSocket};

/// What a server hook decided about a handshake request.
pub type Decision = Result<Upgrade, Reject>;

/// Accept the upgrade, optionally with a subprotocol and extra headers.
#[derive(Debug, Clone, Default)]
pub struct Upgrade {
    protocol: Option<String>,
    headers: Vec<(String, String)>,
}

impl Upgrade {
    /// Accept with no subprotocol.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects a subprotocol; it must be one the client offered.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds a header to the 101 response (a cookie, say).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Refuse the upgrade with an HTTP status and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The HTTP status, e.g. 403.
    pub status: u16,
    /// One line, shown to the client as the response body.
    pub reason: String,
}

impl Reject {
    /// A rejection with `status` and `reason`.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// Accepts connections with one configuration.
#[derive(Debug, Clone, Default)]
pub struct Acceptor {
    config: Config,
    /// One copy of the protocol settings, shared by every connection.
    protocol: std::sync::Arc<herald_proto::Config>,
}

impl Acceptor {
    /// An acceptor with `config`.
    pub fn new(config: Config) -> Self {
        let protocol = std::sync::Arc::new(config.protocol.clone());
        Self { config, protocol }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs the server handshake on `io`, accepting any valid request with
    /// no subprotocol.
    pub async fn accept<S>(&self, io: S) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept_with(io, |_| Ok(Upgrade::new())).await
    }

    /// Runs the server handshake on `io`; `hook` sees the validated request
    /// (path, query, headers, `Origin`, offered subprotocols) and accepts or
    /// rejects it.
    ///
    /// An invalid request is answered with its HTTP error and one-line
    /// reason; a client that does not finish its request within
    /// [`Config::handshake_timeout`] is dropped.
    pub async fn accept_with<S, F>(&self, mut io: S, hook: F) -> Result<WebSocket<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(&Request) -> Decision,
    {
        let limits = &self.config.handshake_limits;
        let read = async {
            let mut buf = BytesMut::new();
            loop {
                match handshake::parse_request(&buf, limits) {
                    Ok(Some((request, len))) => {
                        let _ = buf.split_to(len);
                        return Ok((request, buf));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
                buf.reserve(1024);
                match io.read_buf(&mut buf).await {
                    Ok(0) => return Err(HandshakeError::MalformedHttp),
                    Ok(_) => {}
                    Err(_) => return Err(HandshakeError::MalformedHttp),
                }
            }
        };
        let (request, rest) = match tokio::time::timeout(self.config.handshake_timeout, read).await
        {
            Err(_) => {
                let _ = respond(
                    &mut io,
                    &handshake::reject_response(408, "handshake timeout", &[]),
                )
                .await;
                return Err(Error::Timeout(Phase::Handshake));
            }
            Ok(Err(e)) => {
                let _ = respond(&mut io, &e.response()).await;
                return Err(Error::Handshake(e));
            }
            Ok(Ok(r)) => r,
        };
        let upgrade = match hook(&request) {
            Ok(u) => u,
            Err(reject) => {
                let _ = respond(&mut io, &request.reject(reject.status, &reject.reason)).await;
                return Err(Error::Rejected {
                    status: reject.status,
                    reason: reject.reason,
                });
            }
        };
        let accepted = match self.answer(&request, upgrade) {
            Ok(a) => a,
            Err(e) => {
                // The hook picked something invalid: our bug, not the
                // client's, so answer 500 rather than blame the request.
                let _ = respond(&mut io, &request.reject(500, "internal error")).await;
                return Err(Error::Handshake(e));
            }
        };
        io.write_all(&accepted.response).await?;
        io.flush().await?;
        Ok(self.socket(io, rest, accepted.protocol, accepted.deflate))
    }

    /// The 101 response for `request` as the hook's `upgrade` asks, with
    /// this acceptor's permessage-deflate settings. Shared with the hyper
    /// path (`upgrade.rs`), which cannot see `Upgrade`'s fields.
    pub(crate) fn answer(
        &self,
        request: &Request,
        upgrade: Upgrade,
    ) -> Result<handshake::Accepted, HandshakeError> {
        let mut accept = Accept::new();
        if let Some(p) = upgrade.protocol {
            accept = accept.protocol(p);
        }
        for (name, value) in upgrade.headers {
            accept = accept.header(name, value);
        }
        if let Some(deflate) = &self.config.deflate {
            accept = accept.deflate(deflate);
        }
        request.accept(accept)
    }

    /// Wraps a stream whose handshake was done elsewhere (an HTTP server's
    /// upgrade, say).
    pub(crate) fn socket<S>(
        &self,
        io: S,
        rest: BytesMut,
        protocol: Option<String>,
        deflate: Option<herald_proto::DeflateParams>,
    ) -> WebSocket<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let core = self.core(deflate, tokio::time::Instant::now().into_std());
        WebSocket::from_parts(io, core, rest, protocol, &self.config)
    }

    /// The server core for a handshake that agreed `deflate`, completed at
    /// `now`. Shared with the event loop (`event_loop`).
    pub(crate) fn core(
        &self,
        deflate: Option<herald_proto::DeflateParams>,
        now: Instant,
    ) -> Connection {
        let core = Connection::server(self.protocol.clone(), now);
        match (deflate, &self.config.deflate) {
            (Some(params), Some(config)) => core.with_deflate(params, config),
            _ => core,
        }
    }
}

async fn respond<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await?;
    io.shutdown().await
}

/// Accepts a connection on `io` with the default configuration.
pub async fn accept<S>(io: S) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Acceptor::default().accept(io).await
}
