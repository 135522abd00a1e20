//! Graceful drain: on shutdown every client is told to reconnect, at
//! moments spread over the drain window.

use std::sync::Arc;

use crate::delivery::Disconnect;
use crate::hub::Hub;

/// Tells every client to go, spread over the drain window.
pub(crate) async fn drain(hub: &Arc<Hub>) {
    let clients = hub.start_drain();
    let window = hub.config().drain;
    let n = clients.len().max(1) as u32;
    for (i, client) in clients.iter().enumerate() {
        // Client i is told to come back after its share of the window, so
        // reconnections arrive spread out even if they all obey at once.
        let retry_ms = (window / n * i as u32).as_millis();
        crate::hub::kick(client, Disconnect::Shutdown { retry_ms });
        tokio::time::sleep(window / n).await;
    }
}
