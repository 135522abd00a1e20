//! The transports: each moves command text from a client into its
//! session and pushes from the session's outbox to the client, and says
//! the session's end its own way. WebSocket today; SSE, HTTP streaming and
//! long polling come next, beside it.

pub(crate) mod websocket;
