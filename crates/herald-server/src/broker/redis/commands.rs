//! The node's command connection to Redis (everything but pub/sub): one
//! multiplexed connection, made again on the next call after it failed.
//!
//! While Redis is out of reach each call tries to connect once, bounded by
//! the broker's `timeout`, and fails fast: a publish gets an error at once
//! rather than waiting behind a retry loop, and the first call after Redis
//! returns finds it.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::broker::BrokerError;

pub(super) struct Commands {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    /// The connection while it works.
    current: std::sync::Mutex<Option<MultiplexedConnection>>,
    /// Held across a connect, so that calls made meanwhile wait for that
    /// one attempt instead of making their own.
    connecting: tokio::sync::Mutex<()>,
}

impl Commands {
    pub(super) fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout),
            current: Default::default(),
            connecting: Default::default(),
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle to the connection, connecting first if there is none.
    pub(super) async fn get(&self) -> Result<MultiplexedConnection, BrokerError> {
        if let Some(conn) = &*self.current() {
            return Ok(conn.clone());
        }
        let _one = self.connecting.lock().await;
        if let Some(conn) = &*self.current() {
            return Ok(conn.clone());
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| BrokerError(e.to_string()))?;
        *self.current() = Some(conn.clone());
        Ok(conn)
    }

    /// `e` came from a call: if the connection is broken, the next call
    /// makes a new one. Returns `e` as the broker's error.
    pub(super) fn failed(&self, e: redis::RedisError) -> BrokerError {
        let broken = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error();
        if broken {
            *self.current() = None;
        }
        BrokerError(e.to_string())
    }
}
