//! Interop with Node `ws` (installed by scripts/install-peers):
//! a herald server with its client, a herald client with its server.
//!
//! Each test runs interop/node_client.mjs or interop/node_server.mjs and
//! compares the JSON lines it prints with what the conversation must show.

mod common;

use common::{Lang, herald_client, herald_server};

const PEER: Lang = Lang::Node;

#[tokio::test]
async fn herald_server_echoes_text_binary_empty_and_1mib() {
    herald_server::echo(PEER).await;
}

#[tokio::test]
async fn herald_server_negotiates_deflate() {
    herald_server::deflate(PEER).await;
}

#[tokio::test]
async fn herald_server_picks_subprotocol() {
    herald_server::subprotocol(PEER).await;
}

#[tokio::test]
async fn herald_server_sees_peer_close_4000() {
    herald_server::client_close(PEER).await;
}

#[tokio::test]
async fn herald_server_closes_with_1001() {
    herald_server::server_close(PEER).await;
}

#[tokio::test]
async fn herald_server_over_wss_self_signed() {
    herald_server::wss(PEER).await;
}

#[tokio::test]
async fn herald_client_echoes_text_binary_empty_and_1mib() {
    herald_client::echo(PEER).await;
}

#[tokio::test]
async fn herald_client_negotiates_deflate() {
    herald_client::deflate(PEER).await;
}

#[tokio::test]
async fn herald_client_gets_subprotocol() {
    herald_client::subprotocol(PEER).await;
}

#[tokio::test]
async fn herald_client_closes_with_4000() {
    herald_client::client_close(PEER).await;
}

#[tokio::test]
async fn herald_client_sees_peer_close_1001() {
    herald_client::server_close(PEER).await;
}

#[tokio::test]
async fn herald_client_over_wss_self_signed() {
    herald_client::wss(PEER).await;
}
