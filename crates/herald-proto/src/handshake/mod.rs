//! The opening handshake (RFC 6455 section 4): the HTTP/1.1 Upgrade that
//! turns a TCP connection into a WebSocket.
//!
//! Sans-I/O like the rest of the crate: the caller reads bytes into a buffer
//! and hands them over, and writes the bytes it gets back. Nothing here
//! reads a clock or draws random numbers; the client's 16-byte key comes
//! from the caller.
//!
//! ```text
//!  client                                         server
//!  ClientHandshake::encode(key) ── GET + Upgrade ──> parse_request(buf)
//!       │                                               │ Request: path, origin, protocols
//!  ExpectResponse                                       │ (the application decides)
//!       │                         <── 101 or 4xx ──── Request::accept / reject
//!  parse_response(buf) -> Response                      Accepted { response, protocol, deflate }
//! ```
//!
//! Both parsers return `Ok(None)` while the head is incomplete and consume
//! nothing; once complete they return how many bytes the head took. Bytes
//! after it already belong to the WebSocket connection (a client may send
//! its first frames right behind the request) and must go to the
//! [`Connection`](crate::Connection).
//!
//! ```
//! use herald_proto::handshake::{parse_request, Accept, ClientHandshake, HandshakeLimits};
//!
//! # fn main() -> Result<(), herald_proto::handshake::HandshakeError> {
//! let limits = HandshakeLimits::default();
//!
//! // Client: the key must be 16 random bytes, fresh for each connection.
//! let (request, expect) = ClientHandshake::new("example.com", "/chat")?
//!     .protocol("chat")?
//!     .encode(*b"0123456789abcdef");
//!
//! // Server: parse, look, decide.
//! let (req, used) = parse_request(&request, &limits)?.expect("complete");
//! assert_eq!(used, request.len());
//! assert_eq!(req.path(), "/chat");
//! let accepted = req.accept(Accept::new().protocol("chat"))?;
//!
//! // Client: check the answer.
//! let (resp, _) = expect.parse_response(&accepted.response, &limits)?.expect("complete");
//! assert_eq!(resp.protocol(), Some("chat"));
//! # Ok(())
//! # }
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest as _, Sha1};

mod client;
mod error;
mod headers;
mod server;

pub use client::{ClientHandshake, ExpectResponse, Response};
pub use error::HandshakeError;
pub use server::{Accept, Accepted, Request, parse_request};

/// The GUID of RFC 6455 1.3, appended to the client's key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The value of `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)) (RFC 6455 4.2.2, step 5.4).
///
/// `key` is the header value as sent (its base64 text, not decoded),
/// without surrounding whitespace.
///
/// ```
/// // The example of RFC 6455 1.3.
/// assert_eq!(
///     herald_proto::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    BASE64.encode(sha1.finalize())
}

/// Bounds on a handshake head, so a peer cannot make us buffer without end.
///
/// The defaults suit a server facing the internet; browsers send heads of
/// well under 2 KiB, cookies included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Largest head (request or status line, fields and the blank line).
    /// Enforced before the blank line arrives, so a peer trickling endless
    /// fields is cut off. Default 8 KiB.
    pub max_header_bytes: usize,
    /// Most header fields. Default 64.
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 8 << 10,
            max_headers: 64,
        }
    }
}

impl HandshakeLimits {
    /// Sets [`HandshakeLimits::max_header_bytes`].
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n;
        self
    }

    /// Sets [`HandshakeLimits::max_headers`].
    pub fn max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }
}

/// A complete HTTP response refusing the handshake:
///
/// ```text
/// HTTP/1.1 <status> <phrase>
/// Content-Type: text/plain; charset=utf-8
/// Content-Length: <n>
/// Connection: close
/// <extra headers>
///
/// <reason>
/// ```
///
/// The server then closes the connection. `reason` becomes a one-line body:
/// control characters (CR and LF included) are replaced by spaces. Extra
/// header values are sanitized the same way, and extra fields whose name is
/// not a token are left out, so nothing here can split the response.
/// A `status` outside 100..=999 is sent as 500.
pub fn reject_response(status: u16, reason: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let mut body: Vec<u8> = reason.bytes().map(sanitize_byte).collect();
    body.push(b'\n');

    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", status_phrase(status)).as_bytes());
    headers::write_field(&mut out, "Content-Type", b"text/plain; charset=utf-8");
    headers::write_field(
        &mut out,
        "Content-Length",
        body.len().to_string().as_bytes(),
    );
    headers::write_field(&mut out, "Connection", b"close");
    for (name, value) in extra_headers {
        if !headers::is_token(name.as_bytes()) {
            continue;
        }
        let value: Vec<u8> = value.bytes().map(sanitize_byte).collect();
        headers::write_field(&mut out, name, &value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

/// Replaces control characters, so text lands on one line. Bytes >= 0x80
/// are kept: they are parts of UTF-8 sequences and never a CR or LF.
fn sanitize_byte(b: u8) -> u8 {
    if b.is_ascii_control() { b' ' } else { b }
}

/// The canonical reason phrase of `status` (RFC 7231 6.1, RFC 6585), or an
/// empty one, which RFC 7230 3.1.2 allows.
fn status_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Header slots kept on the stack for the default limit, so parsing a
/// handshake allocates nothing: every transient allocation per connection
/// fragments the heap that long-lived connections then live in.
const STACK_HEADERS: usize = 64;

/// What a head parser hands back: httparse's status, carrying on
/// completion the validated head (or why it is invalid) and its length.
type HeadStatus<T> = httparse::Result<Result<(T, usize), HandshakeError>>;

/// Parses an HTTP head under `limits`, the one place their policy lives:
/// `parse` gets at most `max_header_bytes` of `buf` (a head that fits
/// completes within it; more would be refused anyway) and at most
/// `max_headers` slots, and validates the head on completion. A head still
/// incomplete at the byte limit is refused without waiting for the blank
/// line, so a peer trickling fields forever is cut off.
fn parse_head<'b, T>(
    buf: &'b [u8],
    limits: &HandshakeLimits,
    parse: impl FnOnce(&'b [u8], &mut [httparse::Header<'b>]) -> HeadStatus<T>,
) -> Result<Option<(T, usize)>, HandshakeError> {
    let window = &buf[..buf.len().min(limits.max_header_bytes)];
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [httparse::Header<'b>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut heap
    };
    match parse(window, slots) {
        Ok(httparse::Status::Complete(head)) => head.map(Some),
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            Err(HandshakeError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::TooManyHeaders),
        Err(_) => Err(HandshakeError::MalformedHttp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_section_1_3() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn reject_response_is_a_complete_http_response() {
        let r = reject_response(403, "origin not allowed", &[("X-Why", "policy")]);
        assert_eq!(
            r,
            b"HTTP/1.1 403 Forbidden\r\n\
              Content-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 19\r\n\
              Connection: close\r\n\
              X-Why: policy\r\n\
              \r\n\
              origin not allowed\n"
        );
    }

    #[test]
    fn reject_response_cannot_be_split() {
        let r = reject_response(
            400,
            "bad\r\nSet-Cookie: a=b",
            &[
                ("X-A", "1\r\nSet-Cookie: c=d"),
                ("Bad Name", "x"),
                ("X:Y", "x"),
            ],
        );
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "bad  Set-Cookie: a=b\n");
        assert_eq!(
            head.lines().collect::<Vec<_>>(),
            [
                "HTTP/1.1 400 Bad Request",
                "Content-Type: text/plain; charset=utf-8",
                "Content-Length: 21",
                "Connection: close",
                "X-A: 1  Set-Cookie: c=d",
            ]
        );
    }

    #[test]
    fn reject_response_counts_utf8_bytes_and_fixes_odd_statuses() {
        let r = reject_response(599, "déjà", &[]);
        assert!(r.starts_with(b"HTTP/1.1 599 \r\n"));
        assert!(r.windows(18).any(|w| w == b"Content-Length: 7\r"));
        let r = reject_response(42, "x", &[]);
        assert!(r.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
    }

    #[test]
    fn every_error_has_a_status_and_a_one_line_reason() {
        use HandshakeError::*;
        let cases = [
            (MethodNotGet, 405),
            (NotHttp11, 400),
            (InvalidRequestTarget, 400),
            (MissingHost, 400),
            (MissingUpgrade, 426),
            (MissingConnectionUpgrade, 400),
            (MissingKey, 400),
            (InvalidKey, 400),
            (UnsupportedVersion, 426),
            (DuplicateHeader("Host"), 400),
            (HeadersTooLarge, 431),
            (TooManyHeaders, 431),
            (MalformedHttp, 400),
            (UnexpectedStatus(403), 400),
            (InvalidAccept, 400),
            (UnrequestedSubprotocol, 400),
            (UnrequestedExtension, 400),
            (SubprotocolNotOffered, 500),
            (InvalidSubprotocol, 500),
            (InvalidHeader, 500),
            (InvalidHost, 500),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e:?}");
            assert!(!e.reason().is_empty() && !e.reason().contains(['\r', '\n']));
            assert!(!e.to_string().is_empty());
            let response = e.response();
            let line = format!("HTTP/1.1 {status} ");
            assert!(response.starts_with(line.as_bytes()), "{e:?}");
            assert!(response.ends_with(format!("\r\n\r\n{}\n", e.reason()).as_bytes()));
        }
        assert_eq!(
            UnexpectedStatus(403).to_string(),
            "server answered 403 instead of 101"
        );
        assert_eq!(DuplicateHeader("Host").to_string(), "duplicate Host header");
    }

    #[test]
    fn version_mismatch_names_the_version_we_speak() {
        let r = HandshakeError::UnsupportedVersion.response();
        assert_eq!(
            r,
            &b"HTTP/1.1 426 Upgrade Required\r\n\
               Content-Type: text/plain; charset=utf-8\r\n\
               Content-Length: 38\r\n\
               Connection: close\r\n\
               Upgrade: websocket\r\n\
               Sec-WebSocket-Version: 13\r\n\
               \r\n\
               unsupported WebSocket version, use 13\n"[..]
        );
    }

    #[test]
    fn wrong_method_names_the_allowed_one() {
        let r = HandshakeError::MethodNotGet.response();
        assert!(r.starts_with(b"HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(r.windows(12).any(|w| w == b"\r\nAllow: GET"));
    }

    #[test]
    fn limits_default_and_setters() {
        let l = HandshakeLimits::default();
        assert_eq!((l.max_header_bytes, l.max_headers), (8192, 64));
        let l = l.max_header_bytes(100).max_headers(3);
        assert_eq!((l.max_header_bytes, l.max_headers), (100, 3));
    }
}
