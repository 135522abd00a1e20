//! The limits on published data, checked once where a publication enters
//! the hub, whoever sends it (HTTP API, client `publish`, endpoint).
//!
//! What is stored must render later without fail: a value nested deeper
//! than serde_json's recursion limit (128) parses as a `RawValue` (which
//! skips it without recursing) but fails any later conversion to a
//! `serde_json::Value`. So the depth is bounded here, well under that
//! limit, and the hub never converts a stored publication to a `Value`.

use serde_json::value::RawValue;

use crate::config::ServerConfig;
use crate::protocol::{Error, ErrorCode};

/// Checks `data` against `max_publication_size` and
/// `max_publication_depth`.
pub(crate) fn check_data(data: &RawValue, config: &ServerConfig) -> Result<(), Error> {
    let text = data.get();
    if text.len() > config.max_publication_size {
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "data is {} bytes; the limit is {} (max_publication_size)",
                text.len(),
                config.max_publication_size
            ),
        ));
    }
    let scan = scan(text);
    if scan.depth > config.max_publication_depth {
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "data is nested deeper than {} levels (max_publication_depth)",
                config.max_publication_depth
            ),
        ));
    }
    if let Some(number) = scan.out_of_range {
        // RFC 8259 6: interoperable numbers are IEEE 754 binary64; past its
        // range, JavaScript reads Infinity and serde_json refuses the
        // whole document.
        return Err(Error::new(
            ErrorCode::BadRequest,
            format!("bad request: number {number} is out of range (IEEE 754 binary64)"),
        ));
    }
    Ok(())
}

/// What [`scan`] found.
#[derive(Debug, PartialEq)]
pub(crate) struct Scan<'a> {
    /// The deepest nesting of arrays and objects.
    pub(crate) depth: usize,
    /// The first number too large for a binary64 (up to 40 bytes of it).
    pub(crate) out_of_range: Option<&'a str>,
}

/// Reads `json`, which must be valid JSON (a `RawValue` is), for its
/// nesting depth and numbers. Iterative: no input can exhaust the stack.
pub(crate) fn scan(json: &str) -> Scan<'_> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut out_of_range = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut number_start = None;
    for (i, b) in json.bytes().enumerate() {
        if let Some(start) = number_start {
            if matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                continue;
            }
            number_start = None;
            check_number(&json[start..i], &mut out_of_range);
        }
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => number_start = Some(i),
            _ => {}
        }
    }
    if let Some(start) = number_start {
        check_number(&json[start..], &mut out_of_range);
    }
    Scan {
        depth: deepest,
        out_of_range,
    }
}

fn check_number<'a>(number: &'a str, out_of_range: &mut Option<&'a str>) {
    // Only a large exponent or hundreds of digits overflow: the short
    // numbers that are nearly all of them skip the parse.
    if out_of_range.is_some() || number.len() < 20 && !number.contains(['e', 'E']) {
        return;
    }
    if !number.parse::<f64>().is_ok_and(f64::is_finite) {
        // A number is ASCII: any cut is a char boundary.
        *out_of_range = Some(&number[..number.len().min(40)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        let depth = |json: &str| scan(json).depth;
        assert_eq!(depth("1"), 0);
        assert_eq!(depth(r#""[[[""#), 0);
        assert_eq!(depth(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(depth(r#"["\"[", ["\\"], {}]"#), 2);
        assert_eq!(
            depth(&format!("{}{}", "[".repeat(500), "]".repeat(500))),
            500
        );
    }

    #[test]
    fn numbers_past_binary64_are_found_outside_strings() {
        fn bad(json: &str) -> Option<&str> {
            scan(json).out_of_range
        }
        assert_eq!(bad("1e308"), None);
        assert_eq!(bad("[1e309]"), Some("1e309"));
        assert_eq!(bad(r#"{"a":-2.5E600}"#), Some("-2.5E600"));
        assert_eq!(bad(r#""1e999""#), None);
        assert_eq!(bad("1e-999"), None, "underflow is zero, not an error");
        assert_eq!(bad(&"9".repeat(400)), Some(&*"9".repeat(40)));
        assert_eq!(bad(&"9".repeat(300)), None);
    }

    #[test]
    fn data_over_a_limit_is_refused_with_the_limit_named() {
        let config = ServerConfig {
            max_publication_size: 10,
            max_publication_depth: 2,
            ..ServerConfig::default()
        };
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        assert!(check_data(&raw("[[1]]"), &config).is_ok());
        let e = check_data(&raw("[[[1]]]"), &config).unwrap_err();
        assert!(e.message.contains("max_publication_depth"), "{e}");
        let e = check_data(&raw(r#""0123456789""#), &config).unwrap_err();
        assert!(e.message.contains("max_publication_size"), "{e}");
    }
}
