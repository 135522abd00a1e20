//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not
//! an API): the command handler and the HTTP API's body handling, each on
//! a fresh hub with the default namespaces, no sockets.

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::hub::{Client, Hub};
use crate::metrics::Metrics;

/// A hub with one connected client.
#[derive(Debug)]
pub struct Harness {
    /// Runs the handlers' futures (the memory broker's are ready at once).
    rt: tokio::runtime::Runtime,
    hub: Arc<Hub>,
    endpoints: Arc<crate::endpoint::Endpoints>,
    client: Arc<Client>,
    expiry: crate::auth::Expiry,
}

/// What a command did.
#[derive(Debug)]
pub struct Handled {
    /// Every text frame queued for the client, in order.
    pub sent: Vec<String>,
    /// The close reason, if the command closes the connection.
    pub close: Option<String>,
}

/// The API endpoints that take a body.
#[derive(Debug, Clone, Copy)]
pub enum Api {
    /// `POST /api/publish`
    Publish,
    /// `POST /api/broadcast`
    Broadcast,
    /// `POST /api/disconnect`
    Disconnect,
}

impl Default for Harness {
    fn default() -> Self {
        let config = ServerConfig {
            demos: false,
            ..ServerConfig::default()
        };
        let hub = Arc::new(Hub::new(Arc::new(config), Arc::new(Metrics::default())));
        let client = hub.register("fuzz".into(), None, None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("a current-thread runtime: {e}"));
        Self {
            rt,
            hub,
            endpoints: Arc::default(),
            client,
            expiry: crate::auth::Expiry::default(),
        }
    }
}

impl Harness {
    /// Handles `text` as a command from the connected client.
    pub fn command(&mut self, text: &str) -> Handled {
        let close = self
            .rt
            .block_on(crate::session::handle(
                &self.hub,
                &self.endpoints,
                &self.client,
                &mut self.expiry,
                text,
            ))
            .err();
        Handled {
            sent: self.drain(),
            close,
        }
    }

    /// Handles `body` as the body of `api`, as if the request was let in;
    /// returns the status and the response body.
    pub fn api(&self, api: Api, body: &[u8]) -> (u16, String) {
        let result = match api {
            Api::Publish => self.rt.block_on(crate::http::api::publish(&self.hub, body)),
            Api::Broadcast => self
                .rt
                .block_on(crate::http::api::broadcast(&self.hub, body)),
            Api::Disconnect => self
                .rt
                .block_on(crate::http::api::disconnect(&self.hub, body)),
        };
        match result {
            Ok(json) => (200, json.0.to_string()),
            Err(e) => (e.status.as_u16(), e.body().to_string()),
        }
    }

    fn drain(&self) -> Vec<String> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut items = Vec::new();
        while let std::task::Poll::Ready(Ok(false)) =
            self.client
                .outbox
                .poll_take(&mut cx, usize::MAX, &mut items)
        {}
        items.iter().map(crate::delivery::Item::text).collect()
    }
}
