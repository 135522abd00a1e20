//! Pins the auto traits of the public async types (as tokio does): a change
//! that makes a socket, a half or a future `!Send` fails to compile here.
//!

use herald::{Acceptor, Client, MaybeTlsStream, ReadHalf, WebSocket, WriteHalf};
use tokio::net::TcpStream;

fn send<T: Send>() {}
fn send_value<T: Send>(_: &T) {}

fn sync<T: Sync>() {}

macro_rules! assert_sync {
    ($($t:ty),* $(,)?) => {{
        $(sync::<$t>();)*
    }};
}

#[test]
fn sockets_are_send() {
    send::<WebSocket<TcpStream>>();
    send::<WebSocket<MaybeTlsStream>>();
    send::<MaybeTlsStream>();
    send::<herald::Error>();
    send::<herald::TrySendError>();
}

/// Like tokio's `TcpStream`: a `&WebSocket` held across an `.await` (an
/// `async fn` taking `&WebSocket`, say) keeps the future `Send`.
#[test]
fn sockets_are_sync() {
    assert_sync!(
        MaybeTlsStream,
        herald::Error,
        WebSocket<TcpStream>,
        WebSocket<MaybeTlsStream>
    );
}

/// Each half moves into its own task, and `&half` may be shared.
#[test]
fn halves_are_send_and_sync() {
    send::<ReadHalf<TcpStream>>();
    send::<WriteHalf<TcpStream>>();
    send::<ReadHalf<MaybeTlsStream>>();
    send::<WriteHalf<MaybeTlsStream>>();
    assert_sync!(
        ReadHalf<TcpStream>,
        WriteHalf<TcpStream>,
        ReadHalf<MaybeTlsStream>,
        WriteHalf<MaybeTlsStream>
    );
}

#[test]
fn builders_are_send_and_sync() {
    send::<Client>();
    send::<Acceptor>();
    send::<herald::AcceptBackoff>();
    assert_sync!(Client, Acceptor, herald::AcceptBackoff);
}

/// The futures can be `tokio::spawn`ed. Built, never polled.
#[allow(clippy::let_underscore_future)]
#[test]
fn futures_are_send() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    send_value(&Client::new("ws://127.0.0.1:1/").connect());
    send_value(&herald::connect("ws://127.0.0.1:1/"));

    let acceptor = Acceptor::default();
    let (a, _b) = tokio::io::duplex(64);
    send_value(&acceptor.accept(a));
    let (a, _b) = tokio::io::duplex(64);
    send_value(&acceptor.accept_with(a, |_| Ok(herald::Upgrade::new())));

    fn accept_future(listener: &tokio::net::TcpListener, backoff: &mut herald::AcceptBackoff) {
        send_value(&herald::accept_tcp(listener, backoff));
    }
    let _ = accept_future as fn(&_, &mut _);

    fn socket_futures(ws: &mut WebSocket<TcpStream>) {
        send_value(&ws.recv());
        send_value(&ws.send(herald::Message::text("x")));
        send_value(&ws.close(herald::CloseCode::NORMAL, ""));
    }
    fn half_futures(r: &mut ReadHalf<TcpStream>, w: &mut WriteHalf<TcpStream>) {
        send_value(&r.recv());
        send_value(&w.send(herald::Message::text("x")));
        send_value(&w.close(herald::CloseCode::NORMAL, ""));
    }
    let _ = (
        socket_futures as fn(&mut _),
        half_futures as fn(&mut _, &mut _),
    );
}
