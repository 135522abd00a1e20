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
    if depth(text) > config.max_publication_depth {
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "data is nested deeper than {} levels (max_publication_depth)",
                config.max_publication_depth
            ),
        ));
    }
    Ok(())
}

/// The deepest nesting of arrays and objects in `json`, which must be
/// valid JSON (a `RawValue` is). Iterative: no input can exhaust the stack.
pub(crate) fn depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for b in json.bytes() {
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
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
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
