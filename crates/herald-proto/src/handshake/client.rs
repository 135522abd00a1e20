//! The client's side: write the request, then check the server's answer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::deflate::{DeflateConfig, DeflateParams};

use super::headers::{self, HeaderList};
use super::{HandshakeError, HandshakeLimits, accept_key, parse_head};

/// Fields of the request the handshake writes itself; extra fields may not
/// repeat them.
const RESERVED_REQUEST_FIELDS: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Origin",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
];

/// A client's opening handshake, built up and then encoded into the
/// request bytes (RFC 6455 4.1).
///
/// Every setter checks its input, so an invalid header is reported where it
/// was added and [`ClientHandshake::encode`] cannot fail.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    host: String,
    target: String,
    origin: Option<String>,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    deflate: Option<DeflateConfig>,
}

impl ClientHandshake {
    /// A handshake for `target` (`/path?query`, the resource name of RFC
    /// 6455 3) on `host`.
    ///
    /// `host` is the URI's host, with `:port` unless the port is the
    /// default for the scheme (RFC 6455 4.1 item 4), and an IPv6 address in
    /// brackets. An internationalized name must already be in punycode, and
    /// a non-ASCII path already percent-encoded.
    pub fn new(host: impl Into<String>, target: impl Into<String>) -> Result<Self, HandshakeError> {
        let (host, target) = (host.into(), target.into());
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            return Err(HandshakeError::InvalidHost);
        }
        // RFC 6455 3: fragment identifiers "MUST NOT be used on these URIs".
        if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
            return Err(HandshakeError::InvalidRequestTarget);
        }
        Ok(Self {
            host,
            target,
            origin: None,
            protocols: Vec::new(),
            headers: Vec::new(),
            deflate: None,
        })
    }

    /// Offers a subprotocol; call again for more, most preferred first.
    ///
    /// RFC 6455 4.1 item 10: the elements "MUST be non-empty strings with
    /// characters in the range U+0021 to U+007E not including separator
    /// characters" (tokens) "and MUST all be unique strings".
    pub fn protocol(mut self, protocol: impl Into<String>) -> Result<Self, HandshakeError> {
        let protocol = protocol.into();
        if !headers::is_token(protocol.as_bytes()) || self.protocols.contains(&protocol) {
            return Err(HandshakeError::InvalidSubprotocol);
        }
        self.protocols.push(protocol);
        Ok(self)
    }

    /// Sends `Origin` (RFC 6455 4.1 item 8: browsers "MUST" send it; other
    /// clients may, and some servers require it).
    pub fn origin(mut self, origin: impl Into<String>) -> Result<Self, HandshakeError> {
        let origin = origin.into();
        if origin.is_empty() || !headers::is_field_value(origin.as_bytes()) {
            return Err(HandshakeError::InvalidHeader);
        }
        self.origin = Some(origin);
        Ok(self)
    }

    /// Adds a field (`Authorization`, `Cookie`, `User-Agent`...). The name
    /// must be a token, the value free of CR, LF and other control
    /// characters, and the field not one the handshake writes itself.
    pub fn header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, HandshakeError> {
        let (name, value) = (name.into(), value.into());
        if !headers::is_token(name.as_bytes())
            || !headers::is_field_value(value.as_bytes())
            || RESERVED_REQUEST_FIELDS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&name))
        {
            return Err(HandshakeError::InvalidHeader);
        }
        self.headers.push((name, value));
        Ok(self)
    }

    /// Offers permessage-deflate (RFC 7692) with these settings.
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }

    /// Encodes the request with `key` as the nonce, and returns it with the
    /// state that checks the answer.
    ///
    /// RFC 6455 4.1 item 7: the nonce "MUST be selected randomly for each
    /// connection": pass 16 fresh bytes from a cryptographic RNG (the core
    /// has none). Write the bytes, then feed what the server sends to
    /// [`ExpectResponse::parse_response`].
    pub fn encode(self, key: [u8; 16]) -> (Vec<u8>, ExpectResponse) {
        let key = BASE64.encode(key);
        let mut out = Vec::with_capacity(256);
        // RFC 6455 4.1 items 2 to 9, in the order of the RFC's example.
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        headers::write_field(&mut out, "Host", self.host.as_bytes());
        headers::write_field(&mut out, "Upgrade", b"websocket");
        headers::write_field(&mut out, "Connection", b"Upgrade");
        headers::write_field(&mut out, "Sec-WebSocket-Key", key.as_bytes());
        if let Some(origin) = &self.origin {
            headers::write_field(&mut out, "Origin", origin.as_bytes());
        }
        headers::write_field(&mut out, "Sec-WebSocket-Version", b"13");
        if !self.protocols.is_empty() {
            let list = self.protocols.join(", ");
            headers::write_field(&mut out, "Sec-WebSocket-Protocol", list.as_bytes());
        }
        if let Some(config) = &self.deflate {
            let offer = config.offer();
            debug_assert!(headers::is_field_value(offer.as_bytes()));
            headers::write_field(&mut out, "Sec-WebSocket-Extensions", offer.as_bytes());
        }
        for (name, value) in &self.headers {
            headers::write_field(&mut out, name, value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");

        let expect = ExpectResponse {
            accept: accept_key(key.as_bytes()),
            protocols: self.protocols,
            deflate: self.deflate,
        };
        (out, expect)
    }
}

/// A client waiting for the server's answer to its opening handshake.
#[derive(Debug, Clone)]
pub struct ExpectResponse {
    /// The `Sec-WebSocket-Accept` value our key calls for.
    accept: String,
    protocols: Vec<String>,
    deflate: Option<DeflateConfig>,
}

impl ExpectResponse {
    /// Parses and checks the server's answer at the start of `buf`.
    ///
    /// Returns `Ok(None)` while the head is incomplete and within `limits`:
    /// read more and call again with the whole buffer. Once complete,
    /// returns the response and the length of its head; bytes after it are
    /// the server's first frames, for the client
    /// [`Connection`](crate::Connection).
    ///
    /// On `Err`, RFC 6455 4.1: the client "MUST _Fail the WebSocket
    /// Connection_": close TCP. A status other than 101 is
    /// [`HandshakeError::UnexpectedStatus`] carrying it, so the caller can
    /// report "server answered 403".
    pub fn parse_response(
        &self,
        buf: &[u8],
        limits: &HandshakeLimits,
    ) -> Result<Option<(Response, usize)>, HandshakeError> {
        parse_head(buf, limits, |window, slots| {
            let mut resp = httparse::Response::new(slots);
            let httparse::Status::Complete(len) = resp.parse(window)? else {
                return Ok(httparse::Status::Partial);
            };
            let head = match (resp.code, resp.version) {
                (Some(status), Some(version)) => {
                    let headers = HeaderList::from_httparse(resp.headers);
                    self.validate(status, version >= 1, headers)
                        .map(|r| (r, len))
                }
                _ => Err(HandshakeError::MalformedHttp),
            };
            Ok(httparse::Status::Complete(head))
        })
    }

    /// RFC 6455 4.1, "the client MUST validate the server's response as
    /// follows", items 1 to 6.
    fn validate(
        &self,
        status: u16,
        is_http11: bool,
        headers: HeaderList,
    ) -> Result<Response, HandshakeError> {
        use HandshakeError as E;

        // Item 1: "If the status code received from the server is not 101,
        // the client handles the response per HTTP procedures"; here, the
        // caller does, with the status. Checked before the version so an
        // HTTP/1.0 error page still reports its status.
        if status != 101 {
            return Err(E::UnexpectedStatus(status));
        }
        if !is_http11 {
            return Err(E::NotHttp11);
        }
        // Item 2: "If the response lacks an |Upgrade| header field or the
        // |Upgrade| header field contains a value that is not an ASCII
        // case-insensitive match for the value "websocket", the client MUST
        // _Fail the WebSocket Connection_."
        if !headers.has_token("Upgrade", "websocket") {
            return Err(E::MissingUpgrade);
        }
        // Item 3: the same for a |Connection| without the token "Upgrade".
        if !headers.has_token("Connection", "Upgrade") {
            return Err(E::MissingConnectionUpgrade);
        }
        // Item 4: |Sec-WebSocket-Accept| must be base64(SHA-1(key + GUID));
        // 11.3.3: it "MUST NOT appear more than once in an HTTP response".
        let accept = single(&headers, "Sec-WebSocket-Accept")?;
        if accept != Some(self.accept.as_bytes()) {
            return Err(E::InvalidAccept);
        }
        // Item 6: a subprotocol "that was not present in the client's
        // handshake" fails the connection; 4.2.2 allows the server only one
        // value, and 11.3.4 only one field.
        let protocol = match single(&headers, "Sec-WebSocket-Protocol")? {
            None => None,
            Some(p) => Some(
                self.protocols
                    .iter()
                    .find(|offered| offered.as_bytes() == p)
                    .ok_or(E::UnrequestedSubprotocol)?
                    .clone(),
            ),
        };
        // Item 5: an extension "not present in the client's handshake"
        // fails the connection. With an offer, RFC 7692 5 decides.
        let deflate = match &self.deflate {
            Some(config) => {
                config.validate_response(headers.get_all("Sec-WebSocket-Extensions"))?
            }
            None if headers.list("Sec-WebSocket-Extensions").next().is_some() => {
                return Err(E::UnrequestedExtension);
            }
            None => None,
        };
        Ok(Response {
            status,
            headers,
            protocol,
            deflate,
        })
    }
}

/// A server's `101 Switching Protocols` that passed every check of
/// RFC 6455 4.1: the connection is a WebSocket now.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: HeaderList,
    protocol: Option<String>,
    deflate: Option<DeflateParams>,
}

impl Response {
    /// The status code: 101.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of the header field `name` (ASCII case-insensitive),
    /// trimmed.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// Every header field, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter()
    }

    /// The subprotocol the server selected, one of those offered.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The permessage-deflate parameters, if the server accepted our offer;
    /// give them with the same [`DeflateConfig`] to the client connection.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }
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

#[cfg(test)]
mod tests {
    use super::super::{Accept, parse_request};
    use super::*;

    /// The nonce of RFC 6455 1.3, "the sample nonce".
    const RFC_NONCE: [u8; 16] = *b"the sample nonce";

    fn limits() -> HandshakeLimits {
        HandshakeLimits::default()
    }

    /// The client of RFC 6455 1.3.
    fn rfc_client() -> (Vec<u8>, ExpectResponse) {
        ClientHandshake::new("server.example.com", "/chat")
            .unwrap()
            .origin("http://example.com")
            .unwrap()
            .protocol("chat")
            .unwrap()
            .protocol("superchat")
            .unwrap()
            .encode(RFC_NONCE)
    }

    const RFC_RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\
        \r\n";

    /// RFC_RESPONSE with `from` replaced by `to`.
    fn edit(from: &str, to: &str) -> Vec<u8> {
        let text = std::str::from_utf8(RFC_RESPONSE).unwrap();
        assert!(text.contains(from), "{from:?}");
        text.replacen(from, to, 1).into_bytes()
    }

    fn check(expect: &ExpectResponse, buf: &[u8]) -> Result<Response, HandshakeError> {
        let (response, used) = expect.parse_response(buf, &limits())?.expect("complete");
        assert_eq!(used, buf.len());
        Ok(response)
    }

    // --- RFC 6455 4.1: the request ---

    #[test]
    fn encodes_the_rfc_example_request() {
        let (request, _) = rfc_client();
        assert_eq!(
            request,
            b"GET /chat HTTP/1.1\r\n\
              Host: server.example.com\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Origin: http://example.com\r\n\
              Sec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: chat, superchat\r\n\
              \r\n"
        );
    }

    #[test]
    fn extra_fields_follow_the_handshake_fields() {
        let (request, _) = ClientHandshake::new("[::1]:9001", "/ws?token=a%20b")
            .unwrap()
            .header("Authorization", "Bearer abc")
            .unwrap()
            .header("User-Agent", "herald/0.1")
            .unwrap()
            .encode([0; 16]);
        assert_eq!(
            request,
            b"GET /ws?token=a%20b HTTP/1.1\r\n\
              Host: [::1]:9001\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\
              Sec-WebSocket-Version: 13\r\n\
              Authorization: Bearer abc\r\n\
              User-Agent: herald/0.1\r\n\
              \r\n"
        );
    }

    #[test]
    fn builder_refuses_what_would_break_the_request() {
        let new = || ClientHandshake::new("example.com", "/").unwrap();
        for (name, value) in [
            ("X-A", "1\r\nX-B: 2"),
            ("X-A", "1\n"),
            ("X A", "1"),
            ("X-A:", "1"),
            ("", "1"),
            ("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA=="),
            ("Host", "evil.example"),
            ("Upgrade", "h2c"),
        ] {
            let e = new().header(name, value).unwrap_err();
            assert!(
                matches!(e, HandshakeError::InvalidHeader),
                "{name:?}: {value:?}"
            );
        }
        assert!(matches!(
            new().origin("http://a\r\nX: y").unwrap_err(),
            HandshakeError::InvalidHeader
        ));
        for p in ["", "a b", "a,b", "ch\rat", "ch\u{e9}t"] {
            let e = new().protocol(p).unwrap_err();
            assert!(matches!(e, HandshakeError::InvalidSubprotocol), "{p:?}");
        }
        let e = new()
            .protocol("chat")
            .unwrap()
            .protocol("chat")
            .unwrap_err();
        assert!(matches!(e, HandshakeError::InvalidSubprotocol));
        for host in ["", "a b", "a\r\nX: y", "a/b"] {
            let e = ClientHandshake::new(host, "/").unwrap_err();
            assert!(matches!(e, HandshakeError::InvalidHost), "{host:?}");
        }
        for target in ["", "chat", "/a b", "/a\r\n", "/a#frag", "/caf\u{e9}"] {
            let e = ClientHandshake::new("example.com", target).unwrap_err();
            assert!(
                matches!(e, HandshakeError::InvalidRequestTarget),
                "{target:?}"
            );
        }
    }

    // --- RFC 6455 4.1: the response ---

    #[test]
    fn accepts_the_rfc_example_response() {
        let (_, expect) = rfc_client();
        let response = check(&expect, RFC_RESPONSE).unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(response.deflate(), None);
        assert_eq!(response.header("upgrade"), Some(&b"websocket"[..]));
        assert_eq!(response.headers().count(), 4);
    }

    #[test]
    fn accepts_a_python_websockets_server_response() {
        // What Python `websockets` 17.4 (`serve(.., subprotocols=["chat"])`)
        // answered to this very request (captured).
        let (request, expect) = ClientHandshake::new("127.0.0.1:9312", "/echo?x=1")
            .unwrap()
            .protocol("superchat")
            .unwrap()
            .protocol("chat")
            .unwrap()
            .encode(*b"interop-test-key");
        assert!(request.starts_with(b"GET /echo?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9312\r\n"));
        let buf = b"HTTP/1.1 101 Switching Protocols\r\n\
            Date: Sat, 21 Nov 2026 09:38:37 GMT\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Accept: knrxRwEKZ2Vl7KbOc3NDG2hzTWw=\r\n\
            Sec-WebSocket-Protocol: chat\r\n\
            Server: Python/3.11 websockets/17.4\r\n\
            \r\n";
        let response = check(&expect, buf).unwrap();
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(
            response.header("server"),
            Some(&b"Python/3.11 websockets/17.4"[..])
        );
    }

    #[test]
    fn every_strict_prefix_is_incomplete_and_trailing_frames_are_kept() {
        let (_, expect) = rfc_client();
        for n in 0..RFC_RESPONSE.len() {
            assert!(matches!(
                expect.parse_response(&RFC_RESPONSE[..n], &limits()),
                Ok(None)
            ));
        }
        // The server may send a frame right behind its 101: "Hello".
        let mut buf = RFC_RESPONSE.to_vec();
        buf.extend_from_slice(b"\x81\x05Hello");
        let (_, used) = expect.parse_response(&buf, &limits()).unwrap().unwrap();
        assert_eq!(&buf[used..], b"\x81\x05Hello");
    }

    #[test]
    fn response_fields_are_case_insensitive() {
        let (_, expect) = rfc_client();
        let buf = b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n\
            upgrade: WebSocket\r\n\
            connection: keep-alive, upgrade\r\n\
            sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            \r\n";
        let response = check(&expect, buf).unwrap();
        assert_eq!(response.protocol(), None);
    }

    #[test]
    fn wrong_accept_fails() {
        let (_, expect) = rfc_client();
        for buf in [
            edit(
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOO=",
            ),
            edit("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "dGhlIHNhbXBsZSBub25jZQ=="),
            edit("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", ""),
        ] {
            assert!(matches!(
                check(&expect, &buf),
                Err(HandshakeError::InvalidAccept)
            ));
        }
        let buf = edit(
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Accept: x",
        );
        assert!(matches!(
            check(&expect, &buf),
            Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Accept"))
        ));
        // Another key's answer.
        let (_, other) = ClientHandshake::new("server.example.com", "/chat")
            .unwrap()
            .protocol("chat")
            .unwrap()
            .encode([7; 16]);
        assert!(matches!(
            check(&other, RFC_RESPONSE),
            Err(HandshakeError::InvalidAccept)
        ));
    }

    #[test]
    fn other_statuses_are_reported_with_their_code() {
        let (_, expect) = rfc_client();
        let forbidden = b"HTTP/1.1 403 Forbidden\r\n\
            Content-Type: text/plain\r\n\
            Content-Length: 9\r\n\
            \r\n\
            forbidden";
        let e = expect.parse_response(forbidden, &limits()).unwrap_err();
        assert!(matches!(e, HandshakeError::UnexpectedStatus(403)));
        assert_eq!(e.to_string(), "server answered 403 instead of 101");
        let ok = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            check(&expect, ok),
            Err(HandshakeError::UnexpectedStatus(200))
        ));
    }

    #[test]
    fn missing_upgrade_or_connection_fails() {
        let (_, expect) = rfc_client();
        let buf = edit("Upgrade: websocket\r\n", "");
        assert!(matches!(
            check(&expect, &buf),
            Err(HandshakeError::MissingUpgrade)
        ));
        let buf = edit("Upgrade: websocket", "Upgrade: h2c");
        assert!(matches!(
            check(&expect, &buf),
            Err(HandshakeError::MissingUpgrade)
        ));
        let buf = edit("Connection: Upgrade", "Connection: close");
        assert!(matches!(
            check(&expect, &buf),
            Err(HandshakeError::MissingConnectionUpgrade)
        ));
        let buf = edit("HTTP/1.1", "HTTP/1.0");
        assert!(matches!(
            check(&expect, &buf),
            Err(HandshakeError::NotHttp11)
        ));
    }

    #[test]
    fn unrequested_subprotocol_fails() {
        let (_, expect) = rfc_client();
        for answer in ["mqtt", "Chat", "chat, superchat", ""] {
            let buf = edit(
                "Sec-WebSocket-Protocol: chat",
                &format!("Sec-WebSocket-Protocol: {answer}"),
            );
            assert!(
                matches!(
                    check(&expect, &buf),
                    Err(HandshakeError::UnrequestedSubprotocol)
                ),
                "{answer:?}"
            );
        }
        let buf = edit(
            "Sec-WebSocket-Protocol: chat",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: superchat",
        );
        assert!(matches!(
            check(&expect, &buf),
            Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Protocol"))
        ));
        // We offered none at all.
        let (_, expect) = ClientHandshake::new("server.example.com", "/chat")
            .unwrap()
            .encode(RFC_NONCE);
        assert!(matches!(
            check(&expect, RFC_RESPONSE),
            Err(HandshakeError::UnrequestedSubprotocol)
        ));
    }

    #[test]
    fn extension_when_none_offered_fails() {
        let (_, expect) = rfc_client();
        let buf = edit(
            "Sec-WebSocket-Protocol: chat",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate",
        );
        assert!(matches!(
            check(&expect, &buf),
            Err(HandshakeError::UnrequestedExtension)
        ));
    }

    #[test]
    fn a_deflate_answer_not_matching_the_offer_fails() {
        let (_, expect) = ClientHandshake::new("server.example.com", "/chat")
            .unwrap()
            .protocol("chat")
            .unwrap()
            .deflate(DeflateConfig::default())
            .encode(RFC_NONCE);
        for answer in [
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=99",
            "permessage-deflate; bogus",
            "permessage-deflate, permessage-deflate",
        ] {
            let buf = edit(
                "Sec-WebSocket-Protocol: chat",
                &format!("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: {answer}"),
            );
            assert!(
                matches!(
                    check(&expect, &buf),
                    Err(HandshakeError::InvalidExtension(_))
                ),
                "{answer:?}"
            );
        }
        // No extension in the answer: declined, go on uncompressed.
        assert_eq!(check(&expect, RFC_RESPONSE).unwrap().deflate(), None);
    }

    #[test]
    fn oversized_responses_are_cut_off() {
        let (_, expect) = rfc_client();
        let limits = HandshakeLimits::default().max_header_bytes(256);
        let mut buf = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
        buf.resize(255, b'a');
        assert!(matches!(expect.parse_response(&buf, &limits), Ok(None)));
        buf.push(b'a');
        assert!(matches!(
            expect.parse_response(&buf, &limits),
            Err(HandshakeError::HeadersTooLarge)
        ));
        let limits = HandshakeLimits::default().max_headers(3);
        assert!(matches!(
            expect.parse_response(RFC_RESPONSE, &limits),
            Err(HandshakeError::TooManyHeaders)
        ));
        assert!(matches!(
            expect.parse_response(b"HTTP/1.1 abc\r\n\r\n", &limits),
            Err(HandshakeError::MalformedHttp)
        ));
    }

    // --- both ends ---

    #[test]
    fn round_trip_client_server_client() {
        let (request, expect) = ClientHandshake::new("localhost:8080", "/feed?since=42")
            .unwrap()
            .protocol("v2.herald")
            .unwrap()
            .protocol("v1.herald")
            .unwrap()
            .origin("https://app.example")
            .unwrap()
            .header("Cookie", "sid=abc")
            .unwrap()
            .encode(*b"0123456789abcdef");

        let (req, used) = parse_request(&request, &limits()).unwrap().unwrap();
        assert_eq!(used, request.len());
        assert_eq!(req.host(), "localhost:8080");
        assert_eq!(req.path(), "/feed");
        assert_eq!(req.query(), Some("since=42"));
        assert_eq!(req.origin(), Some("https://app.example"));
        assert_eq!(req.header("Cookie"), Some(&b"sid=abc"[..]));
        assert_eq!(req.key(), "MDEyMzQ1Njc4OWFiY2RlZg==");
        let protocols: Vec<&str> = req.protocols().collect();
        assert_eq!(protocols, ["v2.herald", "v1.herald"]);

        let accepted = req.accept(Accept::new().protocol("v1.herald")).unwrap();
        let response = check(&expect, &accepted.response).unwrap();
        assert_eq!(response.protocol(), Some("v1.herald"));
        assert_eq!(response.deflate(), None);
    }

    #[test]
    fn round_trip_with_permessage_deflate() {
        let config = DeflateConfig::default();
        let (request, expect) = ClientHandshake::new("localhost", "/")
            .unwrap()
            .deflate(config.clone())
            .encode([1; 16]);
        let text = std::str::from_utf8(&request).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Extensions: permessage-deflate"));

        let (req, _) = parse_request(&request, &limits()).unwrap().unwrap();
        let accepted = req.accept(Accept::new().deflate(&config)).unwrap();
        let server_params = accepted.deflate.expect("deflate negotiated");
        let response = check(&expect, &accepted.response).unwrap();
        assert_eq!(response.deflate(), Some(server_params));

        // The server declines: the client goes on without compression.
        let declined = req.accept(Accept::new()).unwrap();
        let response = check(&expect, &declined.response).unwrap();
        assert_eq!(response.deflate(), None);
    }
}
