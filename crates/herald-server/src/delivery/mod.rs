//! Getting pushes and replies to a connection, whatever its transport: a
//! bounded outbox of typed items per connection, with the namespace's
//! slow-consumer policy for when it is full.

mod outbox;

pub(crate) use outbox::{Item, Outbox, Pushed, prepared};
