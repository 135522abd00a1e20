//! The server's request parser, `handshake::parse_request`, on arbitrary
//! bytes, with the default limits and with small ones.
//!
//! Besides "never panics":
//! - `Ok(None)` only below `max_header_bytes` (a peer cannot make us buffer
//!   without end);
//! - a parsed head is self-delimiting: its own bytes parse to the same
//!   length, and a shorter prefix is incomplete;
//! - an accepted request gets a 101 that our own client accepts, with the
//!   selected subprotocol; every error has a complete HTTP answer.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald_proto::DeflateConfig;
use herald_proto::handshake::{Accept, ClientHandshake, HandshakeLimits, Request, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data, &HandshakeLimits::default());
    check(
        data,
        &HandshakeLimits::default()
            .max_header_bytes(256)
            .max_headers(4),
    );
});

fn check(data: &[u8], limits: &HandshakeLimits) {
    match parse_request(data, limits) {
        Ok(Some((request, n))) => {
            assert!(
                n <= data.len() && n <= limits.max_header_bytes,
                "head of {n}"
            );
            let again = parse_request(&data[..n], limits).expect("the same head");
            assert_eq!(again.map(|(_, m)| m), Some(n), "head not self-delimiting");
            assert!(
                matches!(parse_request(&data[..n - 1], limits), Ok(None)),
                "a prefix of a complete head is not incomplete"
            );
            answer(&request);
        }
        Ok(None) => assert!(data.len() < limits.max_header_bytes),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(e.response().starts_with(b"HTTP/1.1 "));
        }
    }
}

/// Reads every accessor, accepts, and checks the 101 with our client.
fn answer(request: &Request) {
    assert_eq!(request.method(), "GET");
    let _ = (
        request.target(),
        request.query(),
        request.host(),
        request.origin(),
    );
    assert!(!request.path().is_empty());
    for (name, _) in request.headers() {
        assert!(
            request.header(name).is_some(),
            "{name} listed but not found"
        );
    }
    let protocol = request.protocols().next().map(str::to_owned);
    let _ = request.extensions().count();
    let _ = request.reject(403, "no");

    // With deflate offered back: a bad extension header is the only error.
    let deflate = DeflateConfig::default();
    if let Err(e) = request.accept(Accept::new().deflate(&deflate)) {
        assert_eq!(e.status(), 400, "{e:?}");
    }

    let mut accept = Accept::new();
    if let Some(p) = &protocol {
        accept = accept.protocol(p.clone());
    }
    let accepted = match request.accept(accept) {
        Ok(a) => a,
        // Echoing a protocol that is not a token is refused, not sent.
        Err(e) => {
            assert!(protocol.is_some(), "plain accept failed: {e:?}");
            return;
        }
    };
    assert_eq!(accepted.protocol, protocol);

    // Our client, with the same key and subprotocol, must accept the answer.
    let key: [u8; 16] = BASE64
        .decode(request.key())
        .expect("a validated key")
        .try_into()
        .expect("16 bytes");
    let mut client = ClientHandshake::new("example.com", "/").expect("valid");
    if let Some(p) = &protocol {
        client = client
            .protocol(p.clone())
            .expect("a token, or accept failed");
    }
    let (_, expect) = client.encode(key);
    let (response, n) = expect
        .parse_response(&accepted.response, &HandshakeLimits::default())
        .expect("our client accepts our 101")
        .expect("a complete response");
    assert_eq!(n, accepted.response.len());
    assert_eq!(response.status(), 101);
    assert_eq!(response.protocol(), protocol.as_deref());
    assert_eq!(response.deflate(), None);
}
