//! Pins the per-connection memory budget: what an idle connection costs is
//! mostly these structs (see `scripts/bench`, idle scenario). A field added
//! to either must fit in its padding or pay for itself elsewhere, or this
//! fails and says so.

use std::mem::size_of;

use herald::WebSocket;
use tokio::net::TcpStream;

/// The socket's own state, without the stream: with tokio's 32-byte
/// `TcpStream` (release builds; debug builds add to it) it fills mimalloc's
/// 384-byte size class exactly, and `herald echo`'s task cell (header,
/// socket, trailer, 128-byte aligned) stays at 512 bytes.
#[test]
fn a_websocket_fits_its_size_class() {
    let own = size_of::<WebSocket<TcpStream>>() - size_of::<TcpStream>();
    assert!(
        own <= 352,
        "WebSocket's own state grew to {own} bytes (budget 352)"
    );
}

#[test]
fn the_protocol_core_stays_at_256_bytes() {
    let core = size_of::<herald_proto::Connection>();
    assert!(core <= 256, "Connection grew to {core} bytes (budget 256)");
}
