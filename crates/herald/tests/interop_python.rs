//! Interop with Python `websockets` (installed by scripts/install-peers):
//! a herald server (tokio, and the event loop with feature `event-loop`)
//! with its client, a herald client with its server.
//!
//! Each test runs interop/python_client.py or interop/python_server.py and
//! compares the JSON lines it prints with what the conversation must show.

mod common;

interop_matrix!(common::Lang::Python);

// The same client scenarios against the event-loop server.
#[cfg(feature = "event-loop")]
interop_event_loop_server!(common::Lang::Python);
