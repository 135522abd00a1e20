//! The push server's command handler (`herald_server`'s session, minus the
//! socket) on arbitrary text from a connected client: JSON commands of
//! every method, deep nesting, huge numbers, unknown fields.
//!
//! Besides "never panics":
//! - everything queued for the client is one JSON object that our own
//!   parser reads back (a reply with the command's `id`, or a push), so a
//!   stored publication can always be rendered;
//! - a command either is answered or closes the connection with a reason,
//!   never neither (unless it subscribes: the hub answers that itself,
//!   and still queues a reply).
#![no_main]

use herald_server::fuzzing::Harness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut harness = Harness::default();
    // Each line is one command, so a seed can subscribe, publish, then
    // read history back.
    for line in text.lines() {
        let handled = harness.command(line);
        for sent in &handled.sent {
            let value: serde_json::Value =
                serde_json::from_str(sent).unwrap_or_else(|e| panic!("not JSON ({e}): {sent}"));
            assert!(value.is_object(), "{sent}");
            assert!(
                value.get("id").is_some() || value.get("push").is_some(),
                "neither reply nor push: {sent}"
            );
        }
        match &handled.close {
            Some(reason) => assert!(!reason.is_empty()),
            None => assert!(!handled.sent.is_empty(), "no answer to {line:?}"),
        }
    }
});
