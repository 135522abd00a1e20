//! Server settings: defaults that run with no file, overridable by a TOML
//! file, then `HERALD_*` environment variables, then command-line flags
//! (applied by the CLI in that order). Every key, variable and flag is
//! listed in `docs/configuration.md`.

mod env;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::TokenAlgorithm;

/// Everything `herald serve` needs. `ServerConfig::default()` is the
/// embedded default: 127.0.0.1:8080, in-memory hub, demo namespaces, dev
/// mode (no token required).
///
/// `Serialize` gives the keys and defaults their one source of truth: the
/// `HERALD_*` variables and the documentation's completeness test are
/// derived from it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(with = "addr")]
    pub listen: SocketAddr,
    /// HMAC secret for connection tokens (JWT HS256, or HS384/HS512 by
    /// `token_algorithm`). When this or `token_public_key` is set,
    /// `connect` requires a valid token; when neither is (dev mode), tokens
    /// are optional and every channel is allowed. Use at least 32 random
    /// bytes (48 for HS384, 64 for HS512): a shorter secret draws a
    /// startup warning; an empty one is a startup error.
    pub token_secret: Option<String>,
    /// The signature algorithm of connection tokens: `"HS256"` (default),
    /// `"HS384"` or `"HS512"` with `token_secret`; `"RS256"` or `"ES256"`
    /// with `token_public_key`. A token whose header names another `alg` is
    /// refused: the token never chooses.
    pub token_algorithm: TokenAlgorithm,
    /// Path of the PEM file with the public key that verifies RS256 or
    /// ES256 tokens (`-----BEGIN PUBLIC KEY-----`; for RS256 also
    /// `RSA PUBLIC KEY`). Read once at startup. Default: none.
    pub token_public_key: Option<PathBuf>,
    /// Clock skew allowed when checking a token's `exp`, `nbf` and `iat`,
    /// in seconds (default 30). A connection is closed with 4005 once its
    /// token's `exp` plus this leeway has passed, unless it refreshed.
    #[serde(with = "secs")]
    pub token_leeway: Duration,
    /// Key for the HTTP API (`Authorization: apikey <key>`). When unset,
    /// the API accepts requests from loopback addresses only.
    pub api_key: Option<String>,
    /// Origins allowed besides the server's own (`https://app.example`).
    /// Browsers from other origins are refused with 403.
    pub allowed_origins: Vec<String>,
    /// Most concurrent WebSocket connections; more are refused with 503.
    pub max_connections: usize,
    /// Largest message a client may send, in bytes. Must leave room for a
    /// `publish` command around `max_publication_size` bytes of data (at
    /// least 1,024 more).
    pub max_message_size: usize,
    /// Largest publication `data`, in bytes of JSON, from any source: the
    /// HTTP API, a client's `publish`, an endpoint. Larger data is refused
    /// (error 109, HTTP 413).
    pub max_publication_size: usize,
    /// permessage-deflate (RFC 7692) for the clients that offer it, as
    /// browsers always do.
    pub deflate: DeflateMode,
    /// Deepest nesting of arrays and objects in publication `data`, from
    /// any source. Deeper data is refused (error 109, HTTP 400).
    pub max_publication_depth: usize,
    /// Largest HTTP API request body, in bytes; larger bodies get 413.
    pub api_max_body_size: usize,
    /// How long a channel's epoch and last offset are kept after its last
    /// subscriber left and its history emptied, so that a client coming
    /// back within this time recovers (or learns it missed nothing)
    /// instead of finding a new epoch.
    #[serde(with = "secs")]
    pub channel_meta_ttl: Duration,
    /// Most such idle channels kept; past it, the longest idle are
    /// forgotten first. Bounds the memory `channel_meta_ttl` costs.
    pub max_idle_channels: usize,
    /// Commands per second a connection may send (burst: twice that).
    pub max_commands_per_second: u32,
    /// Most channels one connection may subscribe to.
    pub max_subscriptions: usize,
    /// Longest `name` a client may give in `connect`, in bytes (it is
    /// repeated in every join push and presence answer). Default 256.
    pub max_name_size: usize,
    /// Time to complete the WebSocket handshake and send `connect`.
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    /// WebSocket keepalive ping interval (the client also sends
    /// application pings; see the protocol).
    #[serde(with = "secs")]
    pub ping_interval: Duration,
    /// A connection that stays silent this long after a keepalive ping is
    /// dead: closed (1011 sent, 1006 seen locally).
    #[serde(with = "secs")]
    pub pong_timeout: Duration,
    /// On shutdown, clients are told to reconnect spread over this window.
    #[serde(with = "secs")]
    pub drain: Duration,
    /// How often batched joins and leaves (channels past a namespace's
    /// `join_leave_batch_above`) are pushed.
    #[serde(with = "secs")]
    pub join_leave_interval: Duration,
    /// Run the simulated price feed on `quotes:*` and the game on `game:*`.
    pub demos: bool,
    /// A second address serving only `/api/*`, `/metrics` and `/health`,
    /// in plain HTTP (keep it on loopback or a private network); the main
    /// listener then serves no `/api` and no `/metrics`. Unset (default):
    /// everything on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// PEM certificate chain: `listen` serves https:// and wss://. Needs
    /// `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Time allowed for the first request's head (request line and
    /// headers) to arrive, counted from the connection's opening; also
    /// bounds the TLS handshake. A connection past it is closed. Default
    /// 10 s.
    #[serde(with = "secs")]
    pub http_header_timeout: Duration,
    /// Keep-alive: time allowed, after a response, for the next request's
    /// head to have arrived; an idle connection past it is closed.
    /// Default 30 s.
    #[serde(with = "secs")]
    pub http_idle_timeout: Duration,
    /// Time allowed for a request's whole body to arrive, counted from the
    /// end of its head; a body still incomplete is cut off and the
    /// connection closed. Default 30 s.
    #[serde(with = "secs")]
    pub http_body_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; a larger
    /// one is answered 431. Default 16 KiB.
    pub http_max_header_size: usize,
    /// Time a response write may wait for the peer to read; a connection
    /// whose peer stops reading is closed after it. Default 30 s.
    #[serde(with = "secs")]
    pub http_write_timeout: Duration,
    /// This node's name in `/api/info` and logs; unset: its listen
    /// address.
    pub node_name: Option<String>,
    /// Where channels live: in this process's memory (default), or in
    /// Redis, shared with every node pointed at it (`[broker]`).
    pub broker: BrokerConfig,
    /// Secret that signs the session tokens of the HTTP transports (a
    /// stream's `session`, a poller's `client`). Nodes that share it accept
    /// each other's tokens; unset (default): a random secret per process,
    /// so a token from another process is refused (403).
    pub transport_secret: Option<String>,
    /// An idle stream (HTTP streaming, SSE) gets a keepalive line this
    /// often, so that proxies do not cut it. Default 15 s.
    #[serde(with = "secs")]
    pub http_keepalive: Duration,
    /// Most commands in one `POST /connection/send` or one poll; also the
    /// commands a stream session may have waiting. Default 64.
    pub max_commands_per_post: usize,
    /// Longest a long poll is held when there is nothing to deliver; a
    /// poll's `wait` is cut to this. Default 25 s.
    #[serde(with = "secs")]
    pub poll_max_wait: Duration,
    /// A poller stays present (presence, join/leave) this long after its
    /// last poll ended, then leaves. Default 30 s.
    #[serde(with = "secs")]
    pub poll_presence_grace: Duration,
    /// Channel namespaces by name: the part of a channel name before `:`.
    /// The namespace `""` holds channels without a colon.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
}

/// The `[broker]` table: where channels live when there are several nodes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// Redis URLs (`redis://HOST:PORT`); one string or a list. Empty
    /// (default): channels live in this process's memory. Several:
    /// channels are spread over them by consistent hashing (every node
    /// must list the same URLs); node control uses the first.
    #[serde(with = "one_or_many")]
    pub url: Vec<String>,
    /// A node's clients stay in presence this long after the node last
    /// refreshed them (it does every third of it): a node that dies leaves
    /// no one behind after it. Default 60 s.
    #[serde(with = "secs")]
    pub presence_ttl: Duration,
    /// How often a node says it is alive (the node list of `/api/info`
    /// drops a node after three missed) and probes its pub/sub connection
    /// (`/health` turns red when a probe is not back within one). Default
    /// 2 s.
    #[serde(with = "secs")]
    pub heartbeat: Duration,
    /// Longest wait between attempts to reconnect to Redis (the wait
    /// doubles from 100 ms). Default 5 s.
    #[serde(with = "secs")]
    pub reconnect_max_delay: Duration,
    /// Longest a Redis command may take before the call fails (a client
    /// gets error 100, the API a 503). Default 2 s.
    #[serde(with = "secs")]
    pub timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            url: Vec::new(),
            presence_ttl: Duration::from_secs(60),
            heartbeat: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Options of one channel namespace.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NamespaceConfig {
    /// Clients may publish (otherwise only the HTTP API and the server).
    pub allow_publish: bool,
    /// Presence is kept and clients may ask for it.
    pub presence: bool,
    /// Subscribers get join and leave pushes.
    pub join_leave: bool,
    /// Past this many subscribers in a channel, joins and leaves are no
    /// longer pushed one by one (each costs a push to every subscriber:
    /// n joins cost n^2/2) but batched into one `presence` push per
    /// channel every `join_leave_interval`.
    pub join_leave_batch_above: usize,
    /// Publications kept per channel for history and recovery.
    pub history_size: usize,
    /// How long a publication is kept, in seconds.
    #[serde(with = "secs")]
    pub history_ttl: Duration,
    /// Size of each subscriber's outgoing queue, in messages.
    pub queue_size: usize,
    /// What happens when a subscriber's queue is full.
    pub on_full: QueuePolicy,
    /// Publications carry `time`: when the server accepted them, in
    /// milliseconds since the Unix epoch (a chat shows it).
    pub server_time: bool,
}

/// How `herald serve` answers clients that offer permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeflateMode {
    /// Never agreed: every frame goes uncompressed.
    Off,
    /// Agreed without context takeover either way (RFC 7692 7.1.1.1 and
    /// 7.1.2.1 let the server ask for both): each publication is
    /// compressed once per window size and the frame shared by every
    /// subscriber, and no connection keeps zlib state between messages.
    Shared,
    /// Agreed with context takeover: better ratios on repetitive streams,
    /// but each connection keeps its own zlib windows (hundreds of KB) and
    /// compresses every publication itself.
    PerConnection,
}

/// What to do when a slow subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Close the connection with 4001 "slow consumer"; it reconnects and
    /// recovers from history.
    Disconnect,
    /// Drop the oldest queued message.
    DropOldest,
    /// Keep only the newest message per channel (ticker-like data where
    /// only the latest value matters); if the new message's channel has
    /// nothing queued, drop the oldest.
    Latest,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            allow_publish: false,
            presence: false,
            join_leave: false,
            join_leave_batch_above: 100,
            history_size: 0,
            history_ttl: Duration::from_secs(300),
            queue_size: 1024,
            on_full: QueuePolicy::Disconnect,
            server_time: false,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        let mut namespaces = BTreeMap::new();
        namespaces.insert(String::new(), NamespaceConfig::default());
        namespaces.insert(
            "chat".into(),
            NamespaceConfig {
                allow_publish: true,
                presence: true,
                join_leave: true,
                history_size: 100,
                server_time: true,
                ..Default::default()
            },
        );
        namespaces.insert(
            "quotes".into(),
            NamespaceConfig {
                history_size: 10,
                history_ttl: Duration::from_secs(60),
                queue_size: 64,
                on_full: QueuePolicy::Latest,
                ..Default::default()
            },
        );
        namespaces.insert(
            "game".into(),
            NamespaceConfig {
                allow_publish: true,
                presence: true,
                join_leave: true,
                // The latest state: what a poller that comes back needs.
                history_size: 1,
                queue_size: 256,
                on_full: QueuePolicy::DropOldest,
                ..Default::default()
            },
        );
        // The QR login demo's private channels (crate::demo_qr): pushed to
        // by the server only, kept long enough to survive a blip.
        namespaces.insert(
            "qr".into(),
            NamespaceConfig {
                history_size: 8,
                history_ttl: Duration::from_secs(300),
                ..Default::default()
            },
        );
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            token_secret: None,
            token_algorithm: TokenAlgorithm::HS256,
            token_public_key: None,
            token_leeway: crate::auth::DEFAULT_LEEWAY,
            api_key: None,
            allowed_origins: Vec::new(),
            max_connections: 100_000,
            max_message_size: 72 << 10,
            max_publication_size: 64 << 10,
            max_publication_depth: 64,
            deflate: DeflateMode::Shared,
            api_max_body_size: 1 << 20,
            channel_meta_ttl: Duration::from_secs(24 * 3600),
            max_idle_channels: 100_000,
            max_commands_per_second: 100,
            max_subscriptions: 128,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(20),
            drain: Duration::from_secs(5),
            join_leave_interval: Duration::from_secs(1),
            transport_secret: None,
            node_name: None,
            broker: BrokerConfig::default(),
            http_write_timeout: Duration::from_secs(30),
            max_name_size: 256,
            http_keepalive: Duration::from_secs(15),
            max_commands_per_post: 64,
            poll_max_wait: Duration::from_secs(25),
            poll_presence_grace: Duration::from_secs(30),
            demos: true,
            admin_listen: None,
            tls_cert: None,
            tls_key: None,
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(30),
            http_body_timeout: Duration::from_secs(30),
            http_max_header_size: 16 << 10,
            namespaces,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file over the defaults; namespaces named in the file
    /// replace the default ones of the same name.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut config = Self::default();
        let defaults = std::mem::take(&mut config.namespaces);
        config = Self {
            namespaces: defaults
                .into_iter()
                .chain(file.namespaces.clone())
                .collect(),
            ..file
        };
        Ok(config)
    }

    /// Applies `HERALD_*` environment variables (from `vars`, usually
    /// `std::env::vars()`). Every key of the file whose value is not a table
    /// has one: `HERALD_` and the key in upper case (`HERALD_LISTEN`,
    /// `HERALD_PING_INTERVAL`), read as that key's value in the file would
    /// be; a list is comma-separated (`HERALD_ALLOWED_ORIGINS=https://a,https://b`).
    /// Namespaces are set in the file only.
    ///
    /// A `HERALD_*` variable that names no setting is an error, so that a
    /// misspelled `HERALD_TOKEN_SECERT` stops the server instead of starting
    /// it without authentication; the exceptions are the variables the
    /// herald tools read for themselves ([`ServerConfig::OTHER_VARIABLES`]).
    /// Errors name the variable and the expected format.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), String> {
        env::apply(self, vars)
    }

    /// The zero-config dev mode: no token key (`token_secret`,
    /// `token_public_key`), so tokens are optional, and, without an
    /// `api_key`, the HTTP API trusts loopback.
    pub fn is_dev_mode(&self) -> bool {
        self.token_secret.is_none() && self.token_public_key.is_none()
    }

    /// Checks settings that depend on each other; the error names them.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_message_size < self.max_publication_size.saturating_add(1024) {
            return Err(format!(
                "max_message_size ({}) must be at least max_publication_size ({}) + 1024, \
                 so that a client can publish what the API can",
                self.max_message_size, self.max_publication_size
            ));
        }
        Ok(())
    }

    /// `HERALD_*` variables that are not settings of the server, so
    /// [`ServerConfig::apply_env`] passes over them: `HERALD_LOG` (the
    /// `herald` binary's log level), `HERALD_BROKER_URL` (`herald serve`
    /// reads it into `[broker] url`, comma-separated) and the repository's test tooling
    /// (`HERALD_FUZZ_SECONDS` of `scripts/test`,
    /// `HERALD_MANY_CONNECTIONS_URL` of herald's `many_connections` test),
    /// which a developer's shell may export while running `herald serve`.
    pub const OTHER_VARIABLES: &[&str] = &[
        "HERALD_LOG",
        "HERALD_FUZZ_SECONDS",
        "HERALD_MANY_CONNECTIONS_URL",
        "HERALD_BROKER_URL",
    ];

    /// What an operator should hear about at startup: settings that work
    /// but are unsafe (an HMAC token secret shorter than 32 bytes).
    /// `Server::new` logs each; `herald serve` prints them in its banner.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = crate::auth::warnings(self);
        if !self.broker.url.is_empty() {
            if self.transport_secret.is_none() {
                warnings.push(
                    "[broker] url is set but transport_secret is not: each node signs the HTTP \
                     transports' session tokens with a secret of its own, so a stream's commands \
                     that reach another node are refused (403); set the same transport_secret on \
                     every node"
                        .into(),
                );
            }
            if self.demos {
                warnings.push(
                    "the demo feeds (quotes, game) run on every node sharing the broker: with \
                     several nodes, keep demos on one (demos = false or --no-demos on the others)"
                        .into(),
                );
            }
        }
        warnings
    }

    /// The namespace of `channel`, if the name is valid and the namespace
    /// exists. Channel names: 1-255 bytes of `[A-Za-z0-9_.:@/-]`.
    pub fn namespace_of(&self, channel: &str) -> Option<(&str, &NamespaceConfig)> {
        if channel.is_empty()
            || channel.len() > 255
            || !channel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:@/-".contains(&b))
        {
            return None;
        }
        let ns = channel.split_once(':').map_or("", |(ns, _)| ns);
        self.namespaces
            .get_key_value(ns)
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// One string or a list of strings.
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        })
    }
}

/// A socket address whose parse error says what one looks like (serde's
/// own says only "invalid socket address syntax").
mod addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid address `{text}`: expected host:port, like 127.0.0.1:8080 or [::1]:8080"
            ))
        })
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_broker_warns_of_what_several_nodes_need() {
        let mut c = ServerConfig::default();
        assert!(c.warnings().is_empty());
        c.broker.url = vec!["redis://127.0.0.1:6379".into()];
        let w = c.warnings();
        assert!(w.iter().any(|w| w.contains("transport_secret")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("demo feeds")), "{w:?}");
        c.transport_secret = Some("shared".into());
        c.demos = false;
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn file_overrides_defaults() {
        let c = ServerConfig::from_toml(
            r#"
            listen = "127.0.0.1:9999"
            allowed_origins = ["https://app.example"]
            [namespaces.news]
            history_size = 5
            on_full = "drop_oldest"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.namespaces["news"].history_size, 5);
        assert!(c.namespaces.contains_key("chat"), "defaults kept");
        assert!(ServerConfig::from_toml("nonsense = 1").is_err());
    }

    #[test]
    fn listeners_tls_and_http_limits_from_toml() {
        let d = ServerConfig::default();
        assert_eq!(d.admin_listen, None);
        assert_eq!(d.http_header_timeout, Duration::from_secs(10));
        let c = ServerConfig::from_toml(
            r#"
            admin_listen = "127.0.0.1:9090"
            tls_cert = "/etc/herald/cert.pem"
            tls_key = "/etc/herald/key.pem"
            http_header_timeout = 2.5
            http_idle_timeout = 60
            http_body_timeout = 20
            http_max_header_size = 8192
            "#,
        )
        .unwrap();
        assert_eq!(c.admin_listen, Some(([127, 0, 0, 1], 9090).into()));
        assert_eq!(c.tls_cert.as_deref(), Some("/etc/herald/cert.pem".as_ref()));
        assert_eq!(c.tls_key.as_deref(), Some("/etc/herald/key.pem".as_ref()));
        assert_eq!(c.http_header_timeout, Duration::from_millis(2500));
        assert_eq!(c.http_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.http_body_timeout, Duration::from_secs(20));
        assert_eq!(c.http_max_header_size, 8192);
    }

    #[test]
    fn channel_names() {
        let c = ServerConfig::default();
        assert_eq!(c.namespace_of("chat:lobby").unwrap().0, "chat");
        assert_eq!(c.namespace_of("plain").unwrap().0, "");
        assert!(c.namespace_of("nope:x").is_none());
        assert!(c.namespace_of("chat:a b").is_none());
        assert!(c.namespace_of("").is_none());
    }

    #[test]
    fn env_vars() {
        let mut c = ServerConfig::default();
        c.apply_env([
            ("HERALD_LISTEN".to_string(), "127.0.0.1:1234".to_string()),
            ("HERALD_ALLOWED_ORIGINS".into(), "http://a, http://b".into()),
            ("PATH".into(), "/bin".into()),
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.allowed_origins, ["http://a", "http://b"]);
        assert!(
            c.apply_env([("HERALD_MAX_CONNECTIONS".into(), "x".into())])
                .is_err()
        );
    }
}
