//! Interop with Node `ws` (installed by scripts/install-peers):
//! a herald server (tokio, and the event loop with feature `event-loop`)
//! with its client, a herald client with its server.
//!
//! Each test runs interop/node_client.mjs or interop/node_server.mjs and
//! compares the JSON lines it prints with what the conversation must show.

mod common;

interop_matrix!(common::Lang::Node);

// The same client scenarios against the event-loop server.
#[cfg(feature = "event-loop")]
interop_event_loop_server!(common::Lang::Node);
