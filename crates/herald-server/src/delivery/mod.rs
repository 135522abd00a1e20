//! Getting pushes and replies to a connection, whatever its transport: a
//! bounded outbox of typed items per connection, with the namespace's
//! slow-consumer policy for when it is full, and the typed reason a
//! connection ends ([`Disconnect`]), which each transport says its own way.

mod disconnect;
mod outbox;

pub(crate) use disconnect::Disconnect;

pub(crate) use outbox::{Item, Outbox, Pushed, prepared};
