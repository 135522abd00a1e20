//! What this node answers to other nodes sharing its broker, and what
//! it asks of them: the HTTP API's disconnect and the transports' POSTs
//! reach the node that holds the connection (no sticky sessions), and
//! `/api/info` lists the live nodes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::broker::{Control, Reply, Request};
use crate::http::api::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::protocol::ErrorCode;
use crate::server::Server;
use crate::transport::Sessions;

/// Answers other nodes' requests with this node's hub and sessions.
pub(crate) struct Answering {
    pub(crate) hub: Weak<Hub>,
    pub(crate) sessions: Weak<Sessions>,
}

fn reply(result: Result<serde_json::Value, ApiError>) -> Reply {
    match result {
        Ok(body) => Reply {
            status: StatusCode::OK.as_u16(),
            body: body.to_string(),
        },
        Err(e) => Reply {
            status: e.status.as_u16(),
            body: e.body().to_string(),
        },
    }
}

impl Control for Answering {
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Reply> + Send>> {
        let (hub, sessions) = (self.hub.upgrade(), self.sessions.upgrade());
        Box::pin(async move {
            let (Some(hub), Some(sessions)) = (hub, sessions) else {
                return reply(Err(gone()));
            };
            reply(match request {
                Request::Disconnect { client, reason } => {
                    if hub.disconnect(&client, &reason) {
                        Ok(json!({}))
                    } else {
                        Err(no_such_client())
                    }
                }
                Request::Send { sid, commands } => {
                    crate::transport::stream::hand_over(&sessions, sid, commands)
                        .map(|()| json!({}))
                }
            })
        })
    }
}

fn gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal,
        "the node is shutting down",
    )
}

pub(crate) fn no_such_client() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BadRequest,
        "no such client",
    )
}

/// Sends `request` to node `node`; its answer as this node's, or why it
/// could not be had.
pub(crate) async fn ask(
    hub: &Hub,
    node: &str,
    request: Request,
    absent: impl FnOnce() -> ApiError,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    match hub.broker().ask(node, request).await {
        Ok(Some(answer)) => {
            let status =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::from_str(&answer.body).unwrap_or_else(|_| json!({}));
            Ok((status, body))
        }
        Ok(None) => Err(absent()),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            e.to_string(),
        )),
    }
}

/// `GET /api/info`: this node, and every live node sharing its broker.
pub(crate) async fn info(State(server): State<Server>) -> ApiResult {
    let hub = &server.hub;
    let name = hub
        .config()
        .node_name
        .clone()
        .unwrap_or_else(|| hub.config().listen.to_string());
    let this = json!({"id": &**hub.node(), "name": name});
    let nodes = if hub.broker().shared() {
        let nodes = hub.broker().nodes().await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal,
                e.to_string(),
            )
        })?;
        serde_json::to_value(nodes).unwrap_or_default()
    } else {
        json!([{"id": &**hub.node(), "name": name, "connections": hub.connection_count()}])
    };
    Ok(axum::Json(json!({"node": this, "nodes": nodes})))
}

/// Attaches this server's answers to its broker (a shared one; the
/// memory broker has no other nodes to hear from).
pub(crate) fn answer_for(server: &Server) {
    server.hub.broker().set_control(Arc::new(Answering {
        hub: Arc::downgrade(&server.hub),
        sessions: Arc::downgrade(&server.sessions),
    }));
}
