//! `FrameHeader::parse` on arbitrary bytes.
//!
//! Checks, besides "never panics":
//! - a parsed header is 2..=14 bytes and lies inside the input;
//! - every shorter prefix of it is `Ok(None)` (incomplete input consumes
//!   nothing and is not an error);
//! - `encode` of the header parses back to the same header, and, when the
//!   input used the minimal length encoding (RFC 6455 5.2: "the minimal
//!   number of bytes MUST be used"), reproduces the input bytes exactly.
#![no_main]

use herald_proto::FrameHeader;
use herald_proto::frame::MAX_HEAD_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = FrameHeader::parse(data) else {
        return;
    };
    let Some((header, n)) = parsed else {
        // Incomplete: no header needs more than MAX_HEAD_LEN bytes.
        assert!(
            data.len() < MAX_HEAD_LEN,
            "Ok(None) on {} bytes",
            data.len()
        );
        return;
    };
    assert!((2..=MAX_HEAD_LEN).contains(&n), "header length {n}");
    assert!(n <= data.len());

    // The header is self-delimiting: the same result from exactly its bytes,
    // and "need more" from any prefix of them.
    assert_eq!(FrameHeader::parse(&data[..n]), Ok(Some((header, n))));
    for k in 0..n {
        assert_eq!(
            FrameHeader::parse(&data[..k]),
            Ok(None),
            "prefix {k} of {n}"
        );
    }

    let head = header.encode();
    let encoded = head.as_bytes();
    assert_eq!(
        FrameHeader::parse(encoded),
        Ok(Some((header, encoded.len()))),
        "encode does not round-trip"
    );
    let minimal = match data[1] & 0x7F {
        126 => header.payload_len > 125,
        127 => header.payload_len > 0xFFFF,
        _ => true,
    };
    if minimal {
        assert_eq!(encoded, &data[..n], "minimal encoding differs");
    } else {
        assert!(encoded.len() < n, "a non-minimal input encodes no shorter");
    }
});
