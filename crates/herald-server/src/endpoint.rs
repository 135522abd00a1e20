//! Server-side logic on the hub, in the spirit of JSR 356's
//! `@ServerEndpoint`: an [`Endpoint`] owns a channel namespace and is told
//! when a client joins it ([`Endpoint::on_open`]), publishes into it
//! ([`Endpoint::on_message`], instead of the publication going straight to
//! subscribers) and leaves it ([`Endpoint::on_close`]). It acts through the
//! [`Hub`]: publish, presence, the set of live sessions, the connection
//! count.
//!
//! ```
//! use std::sync::Arc;
//! use herald_server::{Endpoint, Hub, Session};
//! use serde_json::value::RawValue;
//!
//! /// Echoes every client publication to the whole channel, upper-cased.
//! struct Shout;
//!
//! impl Endpoint for Shout {
//!     fn on_message(&self, hub: &Arc<Hub>, session: &Session, channel: &str, data: &RawValue) {
//!         let loud = data.get().to_uppercase();
//!         if let Ok(value) = RawValue::from_string(loud) {
//!             let _ = hub.publish_detached(channel, value, Some(session.info()));
//!         }
//!     }
//! }
//! ```

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::delivery::Item;
use crate::hub::{Client, Hub};
use crate::protocol::ClientInfo;

/// A client connection, as endpoints see it.
#[derive(Debug, Clone)]
pub struct Session {
    client: Arc<Client>,
}

impl Session {
    pub(crate) fn new(client: Arc<Client>) -> Self {
        Self { client }
    }

    /// Who this is: client id, user id, name.
    pub fn info(&self) -> &ClientInfo {
        &self.client.info
    }

    /// Sends a push to this session only:
    /// `{"push": {"channel": channel, "message": data}}`.
    pub fn send(&self, channel: &str, data: &serde_json::Value) {
        let text = serde_json::json!({"push": {"channel": channel, "message": data}}).to_string();
        self.client.outbox.push(
            Item {
                key: None,
                message: crate::delivery::prepared(text),
                reply: true,
                published: None,
            },
            usize::MAX,
            crate::config::QueuePolicy::DropOldest,
        );
    }

    /// Closes this session with `code` (4000-4999) and `reason`.
    pub fn close(&self, code: u16, reason: &str) {
        crate::hub::kick(
            &self.client,
            crate::session::Disconnect::Endpoint {
                code,
                reason: reason.to_owned(),
            },
        );
    }
}

/// Logic attached to a namespace. Every method has a default that does
/// nothing, so an endpoint implements only what it needs. Methods run on
/// the connection's task: keep them short, and hand long work to a task
/// of your own.
pub trait Endpoint: Send + Sync + 'static {
    /// `session` subscribed to its first channel of `namespace`.
    fn on_open(&self, hub: &Arc<Hub>, session: &Session, namespace: &str) {
        let _ = (hub, session, namespace);
    }

    /// `session` published `data` into `channel`. Nothing is broadcast
    /// unless the endpoint publishes through `hub`.
    fn on_message(&self, hub: &Arc<Hub>, session: &Session, channel: &str, data: &RawValue) {
        let _ = (hub, session, channel, data);
    }

    /// `session` left `namespace`: unsubscribed from its last channel
    /// there, or disconnected.
    fn on_close(&self, hub: &Arc<Hub>, session: &Session, namespace: &str) {
        let _ = (hub, session, namespace);
    }
}
