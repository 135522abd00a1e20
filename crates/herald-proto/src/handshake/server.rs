//! The server's side: read the client's request, then accept or reject it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::deflate::{DeflateConfig, DeflateParams};

use super::headers::{self, HeaderList};
use super::{HandshakeError, HandshakeLimits, accept_key, parse_head, reject_response};

/// Fields of the 101 response the handshake writes itself; the caller may
/// not add them again. A 1xx response has no body, and RFC 7230 3.3.2 says a
/// server "MUST NOT send a Content-Length header field in any response with
/// a status code of 1xx", so the framing fields are refused too.
const RESERVED_RESPONSE_FIELDS: &[&str] = &[
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Version",
    "Content-Length",
    "Transfer-Encoding",
];

/// Parses a client's opening handshake from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and within `limits`:
/// read more, append, and call again with the whole buffer. Returns the
/// request and the length of its head once the blank line is in; bytes
/// after that are the client's first frames, not consumed here. On `Err`,
/// send [`HandshakeError::response`] and close.
///
/// A head still incomplete at
/// [`max_header_bytes`](HandshakeLimits::max_header_bytes) fails with
/// [`HandshakeError::HeadersTooLarge`] without waiting for the blank line,
/// so a client trickling fields forever is cut off.
pub fn parse_request(
    buf: &[u8],
    limits: &HandshakeLimits,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    parse_head(buf, limits, |window, slots| {
        let mut req = httparse::Request::new(slots);
        let httparse::Status::Complete(len) = req.parse(window)? else {
            return Ok(httparse::Status::Partial);
        };
        let head = match (req.method, req.path, req.version) {
            (Some(method), Some(target), Some(version)) => {
                let headers = HeaderList::from_httparse(req.headers);
                Request::validate(method, target, version >= 1, headers).map(|r| (r, len))
            }
            _ => Err(HandshakeError::MalformedHttp),
        };
        Ok(httparse::Status::Complete(head))
    })
}

/// A client's opening handshake that passed every check of RFC 6455 4.2.1.
///
/// Look at it (path, `Origin`, offered subprotocols, cookies), then answer
/// with [`Request::accept`] or [`Request::reject`].
///
/// RFC 6455 10.2: a server reachable from browsers should check
/// [`Request::origin`]; this type only parses it.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    target: String,
    headers: HeaderList,
    host: String,
    key: String,
    origin: Option<String>,
}

impl Request {
    /// Validates a request another HTTP stack (hyper, axum) has parsed,
    /// with the same checks as [`parse_request`].
    ///
    /// `is_http11` is whether the request is HTTP/1.1 or later. Header
    /// names and values are checked like a parser would (tokens, no CR/LF),
    /// because a selected subprotocol is echoed into the response. HTTP/2
    /// WebSockets (RFC 8441, `CONNECT` with `:protocol`) are not handled:
    /// their method is not `GET`.
    pub fn from_parts<N, V>(
        method: &str,
        target: &str,
        is_http11: bool,
        headers: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Self, HandshakeError>
    where
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let headers = HeaderList::from_parts(headers).map_err(|_| HandshakeError::MalformedHttp)?;
        Self::validate(method, target, is_http11, headers)
    }

    /// RFC 6455 4.2.1, in an order that gives the most useful answer: a
    /// plain HTTP client learns it needs an Upgrade (426) before being told
    /// about keys, and an old-draft client learns the version we speak.
    fn validate(
        method: &str,
        target: &str,
        is_http11: bool,
        headers: HeaderList,
    ) -> Result<Self, HandshakeError> {
        use HandshakeError as E;

        // 4.2.1 item 1: "An HTTP/1.1 or higher GET request, including a
        // "Request-URI"".
        if method != "GET" {
            return Err(E::MethodNotGet);
        }
        if !is_http11 {
            return Err(E::NotHttp11);
        }
        check_target(target)?;

        // Item 3: "An |Upgrade| header field containing the value
        // "websocket", treated as an ASCII case-insensitive value."
        if !headers.has_token("Upgrade", "websocket") {
            return Err(E::MissingUpgrade);
        }
        // Item 4: "A |Connection| header field that includes the token
        // "Upgrade", treated as an ASCII case-insensitive value."
        if !headers.has_token("Connection", "Upgrade") {
            return Err(E::MissingConnectionUpgrade);
        }
        // Item 6: "A |Sec-WebSocket-Version| header field, with a value of
        // 13." 4.4: otherwise answer 426 with the versions we speak.
        let version = single(&headers, "Sec-WebSocket-Version")?;
        if version != Some(b"13") {
            return Err(E::UnsupportedVersion);
        }
        // Item 2: "A |Host| header field containing the server's authority."
        // RFC 7230 5.4: 400 for none, for several, or for an invalid one.
        let host = single(&headers, "Host")?
            .filter(|h| !h.is_empty())
            .ok_or(E::MissingHost)?;
        let host = std::str::from_utf8(host).map_err(|_| E::MalformedHttp)?;
        // Item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded
        // (see Section 4 of [RFC4648]) value that, when decoded, is 16 bytes
        // in length." 11.3.1: it "MUST
        // NOT appear more than once". Canonical base64 of 16 bytes is 24
        // characters; the length check also bounds the decoding work.
        let key = single(&headers, "Sec-WebSocket-Key")?.ok_or(E::MissingKey)?;
        if key.len() != 24 || !BASE64.decode(key).is_ok_and(|k| k.len() == 16) {
            return Err(E::InvalidKey);
        }
        // Base64 text is ASCII.
        let key = std::str::from_utf8(key).map_err(|_| E::InvalidKey)?;
        // Item 7 makes Origin optional. Several Origins are refused: a check
        // on one of them would say nothing about the other.
        let origin = single(&headers, "Origin")?
            .map(|o| std::str::from_utf8(o).map_err(|_| E::MalformedHttp))
            .transpose()?;

        Ok(Self {
            method: method.to_owned(),
            target: target.to_owned(),
            host: host.to_owned(),
            key: key.to_owned(),
            origin: origin.map(str::to_owned),
            headers,
        })
    }

    /// The request method; always `GET` once validated.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: usually `/path?query`, possibly an
    /// absolute URI (RFC 6455 4.2.1 allows both).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path of the target, without the query (and without scheme and
    /// authority if the target was an absolute URI). `/` if empty.
    pub fn path(&self) -> &str {
        let rest = &self.target[authority_end(&self.target).unwrap_or(0)..];
        let path = rest.split_once('?').map_or(rest, |(p, _)| p);
        if path.is_empty() { "/" } else { path }
    }

    /// The query of the target, after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first value of the header field `name` (ASCII case-insensitive),
    /// trimmed.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// Every header field, in the order received, names as the client
    /// spelled them.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter()
    }

    /// The `Host` field: the authority the client wants.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `Origin` field, sent by browsers (RFC 6455 4.1: "MUST include"
    /// it when the client is a browser).
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The `Sec-WebSocket-Key` field, as sent (base64 text).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols the client offered, in its order of preference:
    /// every `Sec-WebSocket-Protocol` field, split on commas, trimmed.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.headers
            .list("Sec-WebSocket-Protocol")
            .filter_map(|p| std::str::from_utf8(p).ok())
    }

    /// The raw values of every `Sec-WebSocket-Extensions` field (the
    /// extension offers, RFC 6455 9.1).
    pub fn extensions(&self) -> impl Iterator<Item = &[u8]> {
        self.headers.get_all("Sec-WebSocket-Extensions")
    }

    /// Accepts the handshake: builds the 101 response, with the selected
    /// subprotocol and, if `accept` carries a [`DeflateConfig`] and the
    /// client offered something acceptable, permessage-deflate.
    ///
    /// Write [`Accepted::response`], then run a server
    /// [`Connection`](crate::Connection) with the negotiated parameters.
    ///
    /// Errors: [`HandshakeError::InvalidExtension`] when the client's
    /// `Sec-WebSocket-Extensions` does not parse (answer with its
    /// [`response`](HandshakeError::response), a 400); an offer that parses
    /// but cannot be accepted is declined, not an error. The caller's
    /// mistakes: [`HandshakeError::SubprotocolNotOffered`],
    /// [`HandshakeError::InvalidHeader`].
    pub fn accept(&self, accept: Accept<'_>) -> Result<Accepted, HandshakeError> {
        // RFC 6455 4.2.2 /subprotocol/: "The value chosen MUST be derived
        // from the client's handshake, specifically by selecting one of the
        // values from the |Sec-WebSocket-Protocol| field".
        if let Some(p) = &accept.protocol {
            if !self.protocols().any(|offered| offered == p) {
                return Err(HandshakeError::SubprotocolNotOffered);
            }
            // The client's bytes are echoed back: only a token may be.
            if !headers::is_token(p.as_bytes()) {
                return Err(HandshakeError::InvalidSubprotocol);
            }
        }
        for (name, value) in &accept.headers {
            if !headers::is_token(name.as_bytes())
                || !headers::is_field_value(value.as_bytes())
                || RESERVED_RESPONSE_FIELDS
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(name))
            {
                return Err(HandshakeError::InvalidHeader);
            }
        }
        let deflate = match accept.deflate {
            Some(config) => config.accept(self.extensions())?,
            None => None,
        };

        // RFC 6455 4.2.2 step 5: the status line, Upgrade, Connection and
        // Sec-WebSocket-Accept, then the optional fields.
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        headers::write_field(&mut out, "Upgrade", b"websocket");
        headers::write_field(&mut out, "Connection", b"Upgrade");
        headers::write_field(
            &mut out,
            "Sec-WebSocket-Accept",
            accept_key(self.key.as_bytes()).as_bytes(),
        );
        if let Some(p) = &accept.protocol {
            headers::write_field(&mut out, "Sec-WebSocket-Protocol", p.as_bytes());
        }
        if let Some((_, value)) = &deflate {
            debug_assert!(headers::is_field_value(value.as_bytes()));
            headers::write_field(&mut out, "Sec-WebSocket-Extensions", value.as_bytes());
        }
        for (name, value) in &accept.headers {
            headers::write_field(&mut out, name, value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");

        Ok(Accepted {
            response: out,
            protocol: accept.protocol,
            deflate: deflate.map(|(params, _)| params),
        })
    }

    /// Refuses the handshake with `status` and a one-line `reason` (for
    /// example 403 for an `Origin` not allowed, RFC 6455 4.2.2 item 4).
    /// Send the bytes and close. See [`reject_response`].
    pub fn reject(&self, status: u16, reason: &str) -> Vec<u8> {
        reject_response(status, reason, &[])
    }
}

/// The server's choices for the 101 response, given to [`Request::accept`].
///
/// The default accepts with no subprotocol, no compression and no extra
/// fields.
#[derive(Debug, Clone, Default)]
pub struct Accept<'a> {
    protocol: Option<String>,
    deflate: Option<&'a DeflateConfig>,
    headers: Vec<(String, String)>,
}

impl<'a> Accept<'a> {
    /// Accept with no subprotocol, no compression and no extra fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects a subprotocol; it must be one of [`Request::protocols`].
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Negotiates permessage-deflate with these settings if the client
    /// offered it.
    pub fn deflate(mut self, config: &'a DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }

    /// Adds a field to the response (a `Set-Cookie`, say). It must not be
    /// one the handshake writes itself.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The outcome of [`Request::accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The complete `101 Switching Protocols` response, to write before any
    /// frame.
    pub response: Vec<u8>,
    /// The selected subprotocol.
    pub protocol: Option<String>,
    /// The negotiated permessage-deflate parameters, if compression is on.
    pub deflate: Option<DeflateParams>,
}

/// The value of a field that may appear once, or a duplicate error naming it.
fn single<'h>(
    headers: &'h HeaderList,
    name: &'static str,
) -> Result<Option<&'h [u8]>, HandshakeError> {
    headers
        .get_single(name)
        .map_err(|_| HandshakeError::DuplicateHeader(name))
}

/// RFC 6455 3: the resource name is `/` path [`?` query]; 4.2.1 also allows
/// an absolute http(s) URI (and we allow the ws(s) one it describes). No
/// whitespace or control characters.
fn check_target(target: &str) -> Result<(), HandshakeError> {
    let printable = !target.bytes().any(|b| b.is_ascii_control() || b == b' ');
    if printable && (target.starts_with('/') || authority_end(target).is_some()) {
        Ok(())
    } else {
        Err(HandshakeError::InvalidRequestTarget)
    }
}

/// For an absolute URI target, where its path begins (the end of
/// `scheme://authority`).
fn authority_end(target: &str) -> Option<usize> {
    let (scheme, rest) = target.split_once("://")?;
    if !["http", "https", "ws", "wss"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return None;
    }
    let start = scheme.len() + 3;
    Some(start + rest.find(['/', '?']).unwrap_or(rest.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HandshakeLimits {
        HandshakeLimits::default()
    }

    fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
        parse_request(buf, &limits())
    }

    /// Parses a complete request that must pass.
    fn parse_ok(buf: &[u8]) -> Request {
        let (req, used) = parse(buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        req
    }

    /// Parses a complete request that must fail.
    fn parse_err(buf: &[u8]) -> HandshakeError {
        match parse(buf) {
            Err(e) => e,
            Ok(r) => panic!("accepted: {r:?}"),
        }
    }

    // RFC 6455 1.3, the client's handshake.
    const RFC_1_3: &[u8] = b"GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\
        \r\n";

    // RFC 6455 1.3, the server's answer, with `chat` selected.
    const RFC_1_3_RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\
        \r\n";

    // Chromium's field order and values (cookie and user agent made up).
    const CHROMIUM: &[u8] = b"GET /ws?room=42&token=abc HTTP/1.1\r\n\
        Host: localhost:8080\r\n\
        Connection: Upgrade\r\n\
        Pragma: no-cache\r\n\
        Cache-Control: no-cache\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
        Upgrade: websocket\r\n\
        Origin: http://localhost:8080\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Accept-Encoding: gzip, deflate, br, zstd\r\n\
        Accept-Language: en-US,en;q=0.9\r\n\
        Cookie: session=s%3Aabc.def\r\n\
        Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        \r\n";

    // What Python `websockets` 17.4 sent to `ws://127.0.0.1:9311/py?q=2`
    // with `subprotocols=["superchat", "chat"]` (captured).
    const PYTHON_WEBSOCKETS: &[u8] = b"GET /py?q=2 HTTP/1.1\r\n\
        Host: 127.0.0.1:9311\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: QYKbwvRvVOsYKoRvehP1YQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Sec-WebSocket-Protocol: superchat, chat\r\n\
        User-Agent: Python/3.11 websockets/17.4\r\n\
        \r\n";

    /// RFC_1_3 with `from` replaced by `to` (once, must be present).
    fn edit(from: &str, to: &str) -> Vec<u8> {
        let text = std::str::from_utf8(RFC_1_3).unwrap();
        assert!(text.contains(from), "{from:?}");
        text.replacen(from, to, 1).into_bytes()
    }

    // --- RFC 6455 4.2.1: valid requests ---

    #[test]
    fn rfc_example_request_is_read_field_by_field() {
        let req = parse_ok(RFC_1_3);
        assert_eq!(req.method(), "GET");
        assert_eq!(req.target(), "/chat");
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), None);
        assert_eq!(req.host(), "server.example.com");
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["chat", "superchat"]);
        assert_eq!(req.extensions().count(), 0);
        assert_eq!(req.header("sec-websocket-version"), Some(&b"13"[..]));
        assert_eq!(req.headers().count(), 7);
        assert_eq!(
            req.headers().next(),
            Some(("Host", &b"server.example.com"[..]))
        );
    }

    #[test]
    fn rfc_example_is_answered_as_in_the_rfc() {
        let accepted = parse_ok(RFC_1_3)
            .accept(Accept::new().protocol("chat"))
            .unwrap();
        assert_eq!(accepted.response, RFC_1_3_RESPONSE);
        assert_eq!(accepted.protocol.as_deref(), Some("chat"));
        assert_eq!(accepted.deflate, None);
    }

    #[test]
    fn chromium_request_passes() {
        let req = parse_ok(CHROMIUM);
        assert_eq!(req.path(), "/ws");
        assert_eq!(req.query(), Some("room=42&token=abc"));
        assert_eq!(req.host(), "localhost:8080");
        assert_eq!(req.header("cookie"), Some(&b"session=s%3Aabc.def"[..]));
        assert_eq!(
            req.extensions().collect::<Vec<_>>(),
            [&b"permessage-deflate; client_max_window_bits"[..]]
        );
        assert_eq!(req.protocols().count(), 0);
        // Without a DeflateConfig the offer is ignored: no extension.
        let accepted = req.accept(Accept::new()).unwrap();
        assert_eq!(
            accepted.response,
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n\
              \r\n"
        );
    }

    #[test]
    fn python_websockets_request_passes() {
        let req = parse_ok(PYTHON_WEBSOCKETS);
        assert_eq!(req.path(), "/py");
        assert_eq!(req.query(), Some("q=2"));
        assert_eq!(req.origin(), None);
        assert_eq!(req.key(), "QYKbwvRvVOsYKoRvehP1YQ==");
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["superchat", "chat"]);
        let accepted = req.accept(Accept::new().protocol("chat")).unwrap();
        assert!(accepted.response.starts_with(
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: "
        ));
    }

    #[test]
    fn connection_may_list_several_tokens() {
        // Firefox sends this.
        parse_ok(&edit(
            "Connection: Upgrade",
            "Connection: keep-alive, Upgrade",
        ));
        // The same list split over two fields (RFC 7230 3.2.2).
        parse_ok(&edit(
            "Connection: Upgrade",
            "Connection: keep-alive\r\nConnection: Upgrade",
        ));
    }

    #[test]
    fn names_and_tokens_are_case_insensitive() {
        let lower = std::str::from_utf8(RFC_1_3)
            .unwrap()
            .lines()
            .map(|line| match line.split_once(": ") {
                Some((name, value)) => format!("{}: {value}", name.to_ascii_lowercase()),
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n";
        let req = parse_ok(lower.as_bytes());
        assert_eq!(req.host(), "server.example.com");
        assert_eq!(req.headers().next().unwrap().0, "host");

        parse_ok(&edit("Upgrade: websocket", "Upgrade: WebSocket"));
        parse_ok(&edit("Connection: Upgrade", "Connection: upgrade"));
        parse_ok(&edit("Upgrade: websocket", "UPGRADE: WEBSOCKET"));
    }

    #[test]
    fn absolute_uri_target_is_accepted() {
        let req = parse_ok(&edit(
            "GET /chat ",
            "GET wss://server.example.com/chat?x=1 ",
        ));
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), Some("x=1"));
        let req = parse_ok(&edit("GET /chat ", "GET http://server.example.com "));
        assert_eq!(req.path(), "/");
    }

    // --- rejections, each with its status ---

    #[test]
    fn post_is_405() {
        let e = parse_err(&edit("GET", "POST"));
        assert!(matches!(e, HandshakeError::MethodNotGet));
        assert_eq!(e.status(), 405);
    }

    #[test]
    fn http_1_0_is_400() {
        let e = parse_err(&edit("HTTP/1.1", "HTTP/1.0"));
        assert!(matches!(e, HandshakeError::NotHttp11));
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn missing_host_is_400() {
        let e = parse_err(&edit("Host: server.example.com\r\n", ""));
        assert!(matches!(e, HandshakeError::MissingHost));
        assert_eq!(e.status(), 400);
        let e = parse_err(&edit("Host: server.example.com", "Host:"));
        assert!(matches!(e, HandshakeError::MissingHost));
    }

    #[test]
    fn two_hosts_are_400() {
        let e = parse_err(&edit("Host: server.example.com", "Host: a\r\nHost: b"));
        assert!(matches!(e, HandshakeError::DuplicateHeader("Host")));
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn missing_key_is_400() {
        let e = parse_err(&edit("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""));
        assert!(matches!(e, HandshakeError::MissingKey));
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn keys_not_16_bytes_of_base64_are_400() {
        for bad in [
            "dGhlIHNhbXBsZSBub25jZQ",       // padding missing
            "dGhlIHNhbXBsZSBub25j",         // 15 bytes
            "dGhlIHNhbXBsZSBub25jZSE=",     // 17 bytes
            "dGhlIHNhbXBsZSBub25jZQ==dGhl", // trailing garbage
            "dGhlIHNhbXBsZSBub25jZ!==",     // not base64
            "dGhlIHNhbXBsZSBub25jZR==",     // non-canonical trailing bits
            "",
        ] {
            let e = parse_err(&edit("dGhlIHNhbXBsZSBub25jZQ==", bad));
            assert!(matches!(e, HandshakeError::InvalidKey), "{bad:?}: {e:?}");
            assert_eq!(e.status(), 400);
        }
        let e = parse_err(&edit(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==",
        ));
        assert!(matches!(
            e,
            HandshakeError::DuplicateHeader("Sec-WebSocket-Key")
        ));
    }

    #[test]
    fn version_8_is_426_naming_version_13() {
        let e = parse_err(&edit(
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 8",
        ));
        assert!(matches!(e, HandshakeError::UnsupportedVersion));
        assert_eq!(e.status(), 426);
        let response = e.response();
        assert!(response.starts_with(b"HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(
            response
                .windows(29)
                .any(|w| w == b"\r\nSec-WebSocket-Version: 13\r\n")
        );
        // No version at all (hixie-76 clients) gets the same answer.
        let e = parse_err(&edit("Sec-WebSocket-Version: 13\r\n", ""));
        assert!(matches!(e, HandshakeError::UnsupportedVersion));
    }

    #[test]
    fn missing_upgrade_is_426() {
        let e = parse_err(&edit("Upgrade: websocket\r\n", ""));
        assert!(matches!(e, HandshakeError::MissingUpgrade));
        assert_eq!(e.status(), 426);
        assert!(
            e.response()
                .windows(20)
                .any(|w| w == b"\r\nUpgrade: websocket")
        );
        let e = parse_err(&edit("Upgrade: websocket", "Upgrade: h2c"));
        assert!(matches!(e, HandshakeError::MissingUpgrade));
    }

    #[test]
    fn missing_connection_upgrade_is_400() {
        let e = parse_err(&edit("Connection: Upgrade", "Connection: keep-alive"));
        assert!(matches!(e, HandshakeError::MissingConnectionUpgrade));
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn a_plain_browser_get_learns_it_must_upgrade() {
        let e = parse_err(b"GET /chat HTTP/1.1\r\nHost: example.com\r\nAccept: text/html\r\n\r\n");
        assert_eq!(e.status(), 426);
    }

    #[test]
    fn odd_targets_are_400() {
        for target in ["*", "chat", "ftp://example.com/chat"] {
            let e = parse_err(&edit("/chat", target));
            assert!(
                matches!(e, HandshakeError::InvalidRequestTarget),
                "{target}"
            );
        }
    }

    #[test]
    fn two_origins_are_refused() {
        let e = parse_err(&edit(
            "Origin: http://example.com",
            "Origin: http://example.com\r\nOrigin: http://evil.example",
        ));
        assert!(matches!(e, HandshakeError::DuplicateHeader("Origin")));
    }

    #[test]
    fn garbage_is_400() {
        let e = parse_err(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
        assert!(matches!(e, HandshakeError::MalformedHttp));
        let e = parse_err(b"GET /chat HTTP/1.1\r\nHost server\r\n\r\n");
        assert!(matches!(e, HandshakeError::MalformedHttp));
        // Obsolete line folding is refused, not unfolded.
        let e = parse_err(&edit("Upgrade: websocket", "Upgrade:\r\n websocket"));
        assert!(matches!(e, HandshakeError::MalformedHttp));
    }

    // --- incremental input and limits ---

    #[test]
    fn every_strict_prefix_is_incomplete() {
        for request in [RFC_1_3, CHROMIUM, PYTHON_WEBSOCKETS] {
            for n in 0..request.len() {
                assert!(
                    matches!(parse(&request[..n]), Ok(None)),
                    "prefix of {n} bytes"
                );
            }
            parse_ok(request);
        }
    }

    #[test]
    fn bytes_after_the_head_are_left_to_the_caller() {
        // A client may send a frame right behind its request.
        let mut buf = RFC_1_3.to_vec();
        buf.extend_from_slice(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
        let (_, used) = parse(&buf).unwrap().unwrap();
        assert_eq!(used, RFC_1_3.len());
        assert_eq!(
            &buf[used..],
            b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        );
    }

    #[test]
    fn endless_headers_are_431_before_the_blank_line() {
        let limits = HandshakeLimits::default()
            .max_header_bytes(1024)
            .max_headers(1000);
        let mut buf = b"GET /chat HTTP/1.1\r\nHost: a\r\n".to_vec();
        while buf.len() < 1024 {
            assert!(matches!(parse_request(&buf, &limits), Ok(None)));
            buf.extend_from_slice(b"X: y\r\n");
        }
        let e = parse_request(&buf, &limits).unwrap_err();
        assert!(matches!(e, HandshakeError::HeadersTooLarge));
        assert_eq!(e.status(), 431);
        assert!(
            e.response()
                .starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        );

        // One long field: same.
        let mut buf = b"GET /chat HTTP/1.1\r\nCookie: ".to_vec();
        buf.resize(1024, b'a');
        let e = parse_request(&buf, &limits).unwrap_err();
        assert!(matches!(e, HandshakeError::HeadersTooLarge));
    }

    #[test]
    fn a_head_of_exactly_the_limit_passes() {
        let limits = HandshakeLimits::default().max_header_bytes(RFC_1_3.len());
        assert!(parse_request(RFC_1_3, &limits).unwrap().is_some());
        let limits = limits.max_header_bytes(RFC_1_3.len() - 1);
        assert!(matches!(
            parse_request(RFC_1_3, &limits),
            Err(HandshakeError::HeadersTooLarge)
        ));
    }

    #[test]
    fn too_many_fields_are_431() {
        let limits = HandshakeLimits::default().max_headers(7);
        assert!(parse_request(RFC_1_3, &limits).unwrap().is_some());
        let limits = HandshakeLimits::default().max_headers(6);
        let e = parse_request(RFC_1_3, &limits).unwrap_err();
        assert!(matches!(e, HandshakeError::TooManyHeaders));
        assert_eq!(e.status(), 431);
        // Cut off before the blank line too.
        let e = parse_request(&RFC_1_3[..RFC_1_3.len() - 2], &limits).unwrap_err();
        assert!(matches!(e, HandshakeError::TooManyHeaders));
    }

    // --- from_parts: the hyper/axum path ---

    #[test]
    fn from_parts_runs_the_same_checks() {
        let fields = [
            ("host", "server.example.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat"),
        ];
        let req = Request::from_parts("GET", "/chat?a=b", true, fields).unwrap();
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), Some("a=b"));
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["chat"]);
        let accepted = req.accept(Accept::new().protocol("chat")).unwrap();
        assert_eq!(accepted.response, RFC_1_3_RESPONSE);

        let e = Request::from_parts("POST", "/chat", true, fields).unwrap_err();
        assert!(matches!(e, HandshakeError::MethodNotGet));
        let e = Request::from_parts("GET", "/chat", false, fields).unwrap_err();
        assert!(matches!(e, HandshakeError::NotHttp11));
        let e = Request::from_parts("GET", "/chat", true, fields[1..].iter().copied()).unwrap_err();
        assert!(matches!(e, HandshakeError::MissingHost));
        let e = Request::from_parts("GET", "/c hat", true, fields).unwrap_err();
        assert!(matches!(e, HandshakeError::InvalidRequestTarget));
    }

    #[test]
    fn from_parts_refuses_what_a_parser_would() {
        let smuggled = [
            ("host", "server.example.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat\r\nSet-Cookie: a=b"),
        ];
        let e = Request::from_parts("GET", "/", true, smuggled).unwrap_err();
        assert!(matches!(e, HandshakeError::MalformedHttp));
    }

    // --- RFC 6455 4.2.2: subprotocol selection ---

    #[test]
    fn offered_subprotocols_span_several_fields() {
        let req = parse_ok(&edit(
            "Sec-WebSocket-Protocol: chat, superchat",
            "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: v2.herald,,  v1.herald ",
        ));
        assert_eq!(
            req.protocols().collect::<Vec<_>>(),
            ["chat", "superchat", "v2.herald", "v1.herald"]
        );
        let accepted = req.accept(Accept::new().protocol("v1.herald")).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("v1.herald"));
        assert!(
            accepted
                .response
                .windows(37)
                .any(|w| w == b"\r\nSec-WebSocket-Protocol: v1.herald\r\n")
        );
    }

    #[test]
    fn selecting_a_subprotocol_not_offered_is_a_caller_error() {
        let req = parse_ok(RFC_1_3);
        for p in ["mqtt", "Chat", "chat, superchat", ""] {
            let e = req.accept(Accept::new().protocol(p)).unwrap_err();
            assert!(matches!(e, HandshakeError::SubprotocolNotOffered), "{p:?}");
            assert_eq!(e.status(), 500);
        }
        let req = parse_ok(CHROMIUM);
        let e = req.accept(Accept::new().protocol("chat")).unwrap_err();
        assert!(matches!(e, HandshakeError::SubprotocolNotOffered));
    }

    #[test]
    fn extra_response_fields_are_written_and_checked() {
        let req = parse_ok(RFC_1_3);
        let accepted = req
            .accept(Accept::new().header("Set-Cookie", "sid=1; HttpOnly"))
            .unwrap();
        assert!(
            accepted
                .response
                .ends_with(b"\r\nSet-Cookie: sid=1; HttpOnly\r\n\r\n")
        );
        for (name, value) in [
            ("X-A", "1\r\nX-B: 2"),
            ("X A", "1"),
            ("sec-websocket-accept", "forged"),
            ("Content-Length", "0"),
            ("Connection", "close"),
        ] {
            let e = req.accept(Accept::new().header(name, value)).unwrap_err();
            assert!(matches!(e, HandshakeError::InvalidHeader), "{name}");
        }
    }

    #[test]
    fn reject_builds_a_closing_response() {
        let req = parse_ok(RFC_1_3);
        let r = req.reject(403, "origin not allowed");
        assert!(r.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
        assert!(r.ends_with(b"\r\n\r\norigin not allowed\n"));
    }

    // --- RFC 7692 through the handshake ---

    #[test]
    fn deflate_offer_is_accepted_when_configured() {
        let config = DeflateConfig::default();
        let req = parse_ok(CHROMIUM);
        let accepted = req.accept(Accept::new().deflate(&config)).unwrap();
        assert!(accepted.deflate.is_some());
        let text = String::from_utf8(accepted.response).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Extensions: permessage-deflate"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn unknown_extensions_are_declined() {
        let config = DeflateConfig::default();
        let req = parse_ok(&edit(
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame",
        ));
        let accepted = req.accept(Accept::new().deflate(&config)).unwrap();
        assert_eq!(accepted.deflate, None);
        assert!(!accepted.response.windows(10).any(|w| w == b"Extensions"));
    }

    #[test]
    fn an_unacceptable_deflate_offer_is_declined() {
        // RFC 7692 7: a server "MUST decline" an offer with an invalid
        // parameter value; declining is not failing the handshake.
        let config = DeflateConfig::default();
        let req = parse_ok(&edit(
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99",
        ));
        let accepted = req.accept(Accept::new().deflate(&config)).unwrap();
        assert_eq!(accepted.deflate, None);
        assert!(!accepted.response.windows(10).any(|w| w == b"Extensions"));
    }

    #[test]
    fn an_unparseable_extension_header_is_400() {
        let config = DeflateConfig::default();
        let req = parse_ok(&edit(
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"",
        ));
        let e = req.accept(Accept::new().deflate(&config)).unwrap_err();
        assert!(matches!(e, HandshakeError::InvalidExtension(_)), "{e:?}");
        assert_eq!(e.status(), 400);
        assert!(e.response().starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }
}
