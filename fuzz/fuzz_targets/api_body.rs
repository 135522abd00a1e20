//! The HTTP API's bodies (`POST /api/publish`, `/api/broadcast`,
//! `/api/disconnect`) on arbitrary bytes, once the request is let in.
//!
//! The first byte picks the endpoint, the rest is the body. Besides
//! "never panics": the answer is 200 with a JSON object, or a 4xx with
//! the documented `{"error": {"code", "message"}}` body; never a 5xx.
#![no_main]

use herald_server::fuzzing::{Api, Harness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let api = match which % 3 {
        0 => Api::Publish,
        1 => Api::Broadcast,
        _ => Api::Disconnect,
    };
    let harness = Harness::default();
    let (status, answer) = harness.api(api, body);
    let value: serde_json::Value =
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"));
    if status == 200 {
        assert!(value.is_object(), "{answer}");
    } else {
        assert!((400..500).contains(&status), "{status}: {answer}");
        assert!(value["error"]["code"].is_u64(), "{answer}");
        assert!(value["error"]["message"].is_string(), "{answer}");
    }
});
