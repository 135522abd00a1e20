//! Connecting to a WebSocket server: `ws://` and `wss://`.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use herald_proto::handshake::{ClientHandshake, Response};
use herald_proto::{Connection, DeflateConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Phase};
use crate::stream::MaybeTlsStream;
use crate::{Config, WebSocket};

/// Connects to `url` (`ws://` or `wss://`) with the default settings.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
    Client::new(url).connect().await
}

/// A client handshake in the making: URL, subprotocols, headers, TLS.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    config: Config,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    origin: Option<String>,
    connect_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            config: Config::default(),
            protocols: Vec::new(),
            headers: Vec::new(),
            origin: None,
            connect_timeout: Duration::from_secs(10),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Sets the configuration; [`Config::deflate`] is what is offered.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Offers permessage-deflate.
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.config.deflate = Some(deflate);
        self
    }

    /// Offers a subprotocol; call again to offer several, in preference order.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a request header (a cookie or an authorization token, say).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Time allowed for TCP connect plus TLS handshake. Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The rustls configuration for `wss://`, e.g. trusting a private CA.
    /// Default: the roots selected by the crate features.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connects: TCP, TLS for `wss://`, then the opening handshake.
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
        let target = Target::parse(&self.url)?;
        let connect = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
            tcp.set_nodelay(true)?;
            if !target.tls {
                return Ok(MaybeTlsStream::Plain(tcp));
            }
            #[cfg(feature = "tls")]
            {
                let config = match &self.tls {
                    Some(c) => c.clone(),
                    None => crate::stream::default_client_config()?,
                };
                crate::stream::tls_connect(config, &target.host, tcp).await
            }
            #[cfg(not(feature = "tls"))]
            Err(Error::InvalidUrl("wss:// needs the `tls` feature"))
        };
        let io = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| Error::Timeout(Phase::Connect))??;
        let authority = target.authority.clone();
        let path = target.path.clone();
        self.handshake(io, &authority, &path).await
    }

    /// Runs the opening handshake over an already connected stream.
    pub async fn handshake<S>(
        self,
        mut io: S,
        host: &str,
        path: &str,
    ) -> Result<(WebSocket<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut request = ClientHandshake::new(host, path)?;
        for p in &self.protocols {
            request = request.protocol(p.clone())?;
        }
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone())?;
        }
        if let Some(origin) = &self.origin {
            request = request.origin(origin.clone())?;
        }
        if let Some(deflate) = &self.config.deflate {
            request = request.deflate(deflate.clone());
        }
        // RFC 6455 4.1: the key is "a randomly selected 16-byte value".
        let (bytes, expect) = request.encode(rand::random());
        let limits = self.config.handshake_limits;
        let exchange = async {
            io.write_all(&bytes).await?;
            io.flush().await?;
            let mut buf = BytesMut::new();
            loop {
                if let Some((response, len)) = expect.parse_response(&buf, &limits)? {
                    let _ = buf.split_to(len);
                    return Ok::<_, Error>((response, buf));
                }
                buf.reserve(1024);
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
        };
        let (response, rest) = tokio::time::timeout(self.config.handshake_timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(Phase::Handshake))??;
        let now: Instant = tokio::time::Instant::now().into_std();
        let mut core = Connection::client(
            self.config.protocol.clone(),
            // RFC 6455 5.3: masking keys from a strong entropy source;
            // rand's thread RNG is a CSPRNG seeded by the OS.
            Box::new(rand::random::<[u8; 4]>),
            now,
        );
        if let (Some(params), Some(config)) = (response.deflate(), &self.config.deflate) {
            core = core.with_deflate(params, config);
        }
        let protocol = response.protocol().map(str::to_owned);
        let ws = WebSocket::from_parts(io, core, rest, protocol, &self.config);
        Ok((ws, response))
    }
}

/// The parts of a `ws://` / `wss://` URL that matter for connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// `Host` header value: host, plus the port when not the default.
    authority: String,
    /// Path and query.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, Error> {
        let uri: http::Uri = url.parse().map_err(|_| Error::InvalidUrl("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(Error::InvalidUrl("scheme must be ws or wss")),
        };
        let authority = uri.authority().ok_or(Error::InvalidUrl("no host"))?;
        // RFC 6455 3: URIs with a fragment are invalid (there is none in an
        // http::Uri: it rejects '#').
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(Error::InvalidUrl("no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_owned();
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            authority: authority.as_str().to_owned(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("ws://127.0.0.1:9001/chat?room=1").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "127.0.0.1", 9001));
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:9001", "/chat?room=1")
        );
        let t = Target::parse("wss://[::1]/").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (true, "::1", 443));
        let t = Target::parse("ws://localhost").unwrap();
        assert_eq!(t.path, "/");
        assert!(Target::parse("http://x/").is_err());
        assert!(Target::parse("ws:///x").is_err());
    }
}
