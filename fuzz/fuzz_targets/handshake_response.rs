//! The client's response parser, `ExpectResponse::parse_response`, on
//! arbitrary bytes, for three clients: a plain one, one offering
//! subprotocols, and one also offering permessage-deflate. All use the key
//! of RFC 6455 1.3, so a valid answer carries
//! `Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
//!
//! Besides "never panics":
//! - `Ok(None)` only below `max_header_bytes`;
//! - a parsed head is self-delimiting;
//! - an accepted response is a 101 with an offered subprotocol (or none),
//!   and deflate parameters only if deflate was offered, all in range.
#![no_main]

use herald_proto::Role;
use herald_proto::deflate::{DeflateConfig, PerMessageDeflate};
use herald_proto::handshake::{ClientHandshake, ExpectResponse, HandshakeLimits};
use libfuzzer_sys::fuzz_target;

/// "the sample nonce", whose base64 is `dGhlIHNhbXBsZSBub25jZQ==`.
const KEY: [u8; 16] = *b"the sample nonce";
const PROTOCOLS: [&str; 2] = ["chat", "superchat"];

fuzz_target!(|data: &[u8]| {
    let limits = HandshakeLimits::default();
    let base = || ClientHandshake::new("server.example.com", "/chat").expect("valid");
    let offered = || {
        PROTOCOLS
            .iter()
            .try_fold(base(), |c, p| c.protocol(*p))
            .expect("valid")
    };
    let deflate = DeflateConfig::default();

    check(data, &limits, &base().encode(KEY).1, false, None);
    check(data, &limits, &offered().encode(KEY).1, true, None);
    check(
        data,
        &limits,
        &offered().deflate(deflate.clone()).encode(KEY).1,
        true,
        Some(&deflate),
    );
});

fn check(
    data: &[u8],
    limits: &HandshakeLimits,
    expect: &ExpectResponse,
    with_protocols: bool,
    deflate: Option<&DeflateConfig>,
) {
    match expect.parse_response(data, limits) {
        Ok(Some((response, n))) => {
            assert!(n <= data.len() && n <= limits.max_header_bytes);
            let again = expect
                .parse_response(&data[..n], limits)
                .expect("the same head");
            assert_eq!(again.map(|(_, m)| m), Some(n), "head not self-delimiting");
            assert_eq!(response.status(), 101);
            for (name, _) in response.headers() {
                assert!(response.header(name).is_some());
            }
            if let Some(p) = response.protocol() {
                assert!(with_protocols && PROTOCOLS.contains(&p), "unoffered {p}");
            }
            match (response.deflate(), deflate) {
                (None, _) => {}
                (Some(params), Some(config)) => {
                    for bits in [params.server_max_window_bits, params.client_max_window_bits] {
                        assert!((8..=15).contains(&bits), "window bits {bits}");
                    }
                    let _ = PerMessageDeflate::new(Role::Client, params, config);
                }
                (Some(params), None) => panic!("deflate {params:?} without an offer"),
            }
        }
        Ok(None) => assert!(data.len() < limits.max_header_bytes),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
