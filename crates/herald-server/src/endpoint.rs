//! Server-side logic on the hub, in the spirit of JSR 356's
//! `@ServerEndpoint`: an [`Endpoint`] owns a channel namespace and is told
//! when a client joins it ([`Endpoint::on_open`]), publishes into it
//! ([`Endpoint::on_message`], instead of the publication going straight to
//! subscribers) and leaves it ([`Endpoint::on_close`]). It acts through the
//! [`Hub`]: publish, presence, the connection count; [`Session::all`]
//! lists the sessions of a namespace.
//!
//! Endpoints sit above the hub: the hub knows nothing of them. The
//! session calls them (it owns the registry, [`Endpoints`], which
//! `Server::set_endpoint` fills).
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

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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

    /// Sessions on this node subscribed to any channel of `namespace`.
    pub fn all(hub: &Hub, namespace: &str) -> Vec<Session> {
        hub.clients_in(namespace)
            .into_iter()
            .map(Session::new)
            .collect()
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
            crate::delivery::Disconnect::Endpoint {
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

impl std::fmt::Debug for dyn Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Endpoint")
    }
}

/// The endpoints attached to namespaces.
#[derive(Debug, Default)]
pub(crate) struct Endpoints {
    by_namespace: RwLock<HashMap<String, Arc<dyn Endpoint>>>,
}

impl Endpoints {
    /// Attaches `endpoint` to `namespace`.
    pub(crate) fn set(&self, namespace: &str, endpoint: Arc<dyn Endpoint>) {
        self.by_namespace
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(namespace.to_owned(), endpoint);
    }

    /// The endpoint of `namespace`.
    pub(crate) fn get(&self, namespace: &str) -> Option<Arc<dyn Endpoint>> {
        let endpoints = self.by_namespace.read().unwrap_or_else(|p| p.into_inner());
        endpoints.get(namespace).cloned()
    }

    /// The endpoint owning `channel`'s namespace, with the namespace name.
    pub(crate) fn for_channel(
        &self,
        hub: &Hub,
        channel: &str,
    ) -> Option<(String, Arc<dyn Endpoint>)> {
        let (ns, _) = hub.config().namespace_of(channel)?;
        let endpoints = self.by_namespace.read().unwrap_or_else(|p| p.into_inner());
        endpoints.get(ns).map(|e| (ns.to_owned(), e.clone()))
    }

    /// The endpoints of the namespaces of `channels`, once each.
    pub(crate) fn for_channels(
        &self,
        hub: &Hub,
        channels: &[Arc<str>],
    ) -> Vec<(String, Arc<dyn Endpoint>)> {
        let mut joined: Vec<(String, Arc<dyn Endpoint>)> = Vec::new();
        for name in channels {
            if let Some((ns, e)) = self.for_channel(hub, name)
                && !joined.iter().any(|(n, _)| *n == ns)
            {
                joined.push((ns, e));
            }
        }
        joined
    }
}
