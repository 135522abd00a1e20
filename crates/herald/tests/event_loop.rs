//! `herald::event_loop` over real sockets on 127.0.0.1: the server runs on
//! a thread of its own (`Server::run` blocks), herald's tokio `Client` or
//! hand-written bytes on a `TcpStream` talk to it, and the handlers send
//! what they saw out of the loop over a channel.
//!
//! Every server is stopped through its `StopHandle` and its thread joined
//! (`LoopServer::stop`, or its `Drop` when a test fails first); every wait
//! is bounded by `common::TIMEOUT`.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    LoopServer, OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, PING_INTERVAL, RawFrame, SAMPLE_KEY,
    keepalive_config, masked_frame, raw_client, read_frame, split_response, within,
};
use herald::event_loop::{Builder, Conn, ConnId, Handler, SendStatus, Server};
use herald::{
    Client, CloseCode, CloseFrame, Config, Decision, DeflateConfig, Error, MaybeTlsStream, Message,
    MessageKind, Reject, Request, Response, WebSocket,
};
use herald_proto::handshake::HandshakeError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

// ----- what handlers saw -------------------------------------------------------

/// One callback's news, sent out of the loop in the order it happened.
#[derive(Debug)]
enum Seen {
    Open(ConnId, ThreadId),
    /// A message, and what echoing it returned.
    Message(ConnId, MessageSummary, SendStatus),
    /// A send's status worth a look (after a close, in on_open).
    Status(ConnId, SendStatus),
    Drain,
    /// A piece of a message, in streaming mode: text?, payload, fin.
    Fragment(bool, Bytes, bool),
    Closed(ConnId, CloseFrame),
    /// `Producer` hit the high-water mark after `sent` messages, with
    /// `queued` bytes queued.
    Backpressure {
        sent: u32,
        queued: usize,
    },
    /// `Producer` queued its last message.
    AllSent,
    /// `Echo` is about to block its loop for `BLOCK`.
    Blocking,
    /// Something a handler found wrong.
    Wrong(String),
}

/// A message without its payload, so that a failed assertion does not
/// print a megabyte.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MessageSummary {
    text: bool,
    len: usize,
    /// The payload, if short.
    short: Option<Vec<u8>>,
}

impl From<&Message> for MessageSummary {
    fn from(m: &Message) -> Self {
        let (text, bytes): (bool, &[u8]) = match m {
            Message::Text(t) => (true, t.as_str().as_bytes()),
            Message::Binary(b) => (false, b),
        };
        Self {
            text,
            len: bytes.len(),
            short: (bytes.len() <= 64).then(|| bytes.to_vec()),
        }
    }
}

/// The test's end of the handlers' channel.
struct Events(mpsc::UnboundedReceiver<Seen>);

impl Events {
    fn channel() -> (mpsc::UnboundedSender<Seen>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self(rx))
    }

    async fn next(&mut self, what: &str) -> Seen {
        within(what, self.0.recv())
            .await
            .unwrap_or_else(|| panic!("the loop ended before {what}"))
    }

    /// Skips events until `pick` takes one.
    async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(Seen) -> Option<T>) -> T {
        within(what, async {
            loop {
                let seen = self
                    .0
                    .recv()
                    .await
                    .unwrap_or_else(|| panic!("the loop ended before {what}"));
                if let Seen::Wrong(why) = &seen {
                    panic!("a handler found: {why}");
                }
                if let Some(t) = pick(seen) {
                    return t;
                }
            }
        })
        .await
    }

    async fn open(&mut self) -> ConnId {
        self.until("on_open", |s| match s {
            Seen::Open(id, _) => Some(id),
            _ => None,
        })
        .await
    }

    /// The id in the first event, for handlers that report no `Open`.
    async fn open_or_status(&mut self) -> ConnId {
        match self.next("an event of a new connection").await {
            Seen::Open(id, _) | Seen::Status(id, _) => id,
            other => panic!("{other:?}"),
        }
    }

    async fn closed(&mut self) -> (ConnId, CloseFrame) {
        self.until("on_close", |s| match s {
            Seen::Closed(id, frame) => Some((id, frame)),
            _ => None,
        })
        .await
    }

    /// Whatever has arrived so far, without waiting.
    fn pending(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Ok(seen) = self.0.try_recv() {
            out.push(seen);
        }
        out
    }
}

// ----- handlers ----------------------------------------------------------------

/// How long "block the loop" blocks it.
const BLOCK: Duration = Duration::from_millis(200);

/// Echoes every message. The text "close me" makes it close with 1001
/// "going away" and then try one more send, whose status it reports; the
/// text "block the loop" makes it sleep for [`BLOCK`] first, so that
/// events pile up meanwhile.
struct Echo {
    seen: mpsc::UnboundedSender<Seen>,
}

impl Handler for Echo {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let thread = std::thread::current().id();
        let _ = self.seen.send(Seen::Open(conn.id(), thread));
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        let id = conn.id();
        if message == Message::text("close me") {
            conn.close(CloseCode::GOING_AWAY, "going away");
            let open = conn.is_open();
            let status = conn.send(Message::text("after close"));
            let _ = self.seen.send(Seen::Status(id, status));
            if open {
                let _ = self.seen.send(Seen::Wrong("is_open after close".into()));
            }
            return;
        }
        if message == Message::text("compressed?") {
            let answer = Message::text(conn.is_compressed().to_string());
            let status = conn.send(answer);
            let _ = self.seen.send(Seen::Status(id, status));
            return;
        }
        if message == Message::text("block the loop") {
            let _ = self.seen.send(Seen::Blocking);
            std::thread::sleep(BLOCK);
        }
        let summary = MessageSummary::from(&message);
        let status = conn.send(message);
        let _ = self.seen.send(Seen::Message(id, summary, status));
    }

    fn on_close(&mut self, id: ConnId, frame: CloseFrame) {
        let _ = self.seen.send(Seen::Closed(id, frame));
    }
}

/// An [`Echo`] server built from `builder`.
fn echo_server(builder: Builder) -> (LoopServer, Events) {
    let (tx, events) = Events::channel();
    let server = LoopServer::start(builder, move || Echo { seen: tx.clone() });
    (server, events)
}

// ----- clients -------------------------------------------------------------------

type Ws = WebSocket<MaybeTlsStream>;

async fn connect_with(client: Client) -> (Ws, Response) {
    let (ws, response) = within("connect", client.connect()).await.unwrap();
    assert_eq!(response.status(), 101);
    (ws, response)
}

async fn connect(server: &LoopServer) -> Ws {
    connect_with(Client::new(server.url())).await.0
}

/// Sends `msg` and checks that the same message comes back.
async fn echo(ws: &mut Ws, msg: Message) {
    let len = msg.len();
    within("send", ws.send(msg.clone())).await.unwrap();
    let got = within("the echo", ws.recv())
        .await
        .unwrap_or_else(|| panic!("closed before the echo of {len} bytes"))
        .unwrap();
    assert!(
        got == msg,
        "echo differs: {:?} back for {:?} sent",
        MessageSummary::from(&got),
        MessageSummary::from(&msg)
    );
}

/// Asks the handler what `Conn::is_compressed` says (the `compressed?`
/// message), and checks its answer.
async fn assert_compressed(ws: &mut Ws, seen: &mut Events, expected: bool) {
    within("send", ws.send(Message::text("compressed?")))
        .await
        .unwrap();
    let answer = within("the answer", ws.recv()).await.unwrap().unwrap();
    assert_eq!(answer, Message::text(expected.to_string()));
    let status = seen
        .until("its send status", |s| match s {
            Seen::Status(_, status) => Some(status),
            _ => None,
        })
        .await;
    assert_eq!(status, SendStatus::Sent);
}

/// Closes with `code` and checks the server's reply.
async fn close(ws: &mut Ws, code: CloseCode) {
    let frame = within("close handshake", ws.close(code, "")).await.unwrap();
    assert_eq!(frame.code, code, "the server's reply to our Close");
}

/// 32 bytes of UTF-8, two-byte characters first.
const TEXT_UNIT: &str = "κόσμε0123456789abcdefghijkl";

/// Text of exactly `n` bytes (`n % 32` on a character boundary: 0 or >= 10).
fn text_of(n: usize) -> Message {
    let s = TEXT_UNIT.repeat(n / 32) + &TEXT_UNIT[..n % 32];
    assert_eq!(s.len(), n);
    Message::text(s)
}

fn binary_of(n: usize) -> Message {
    Message::binary((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Text and binary messages of 0 B, 20 B, 1 KiB, 70 KiB and 1 MiB.
fn sized_messages() -> Vec<Message> {
    [0, 20, 1 << 10, 70 << 10, 1 << 20]
        .into_iter()
        .flat_map(|n| [text_of(n), binary_of(n)])
        .collect()
}

// ----- raw clients ---------------------------------------------------------------

/// Everything the server sends until it closes the connection. A reset
/// after the bytes is tolerated (the bytes were read); one before any is not.
async fn read_to_end(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let result = within("the server closing the connection", async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    if let Err(e) = result {
        assert!(!out.is_empty(), "reading the response: {e}");
    }
    String::from_utf8(out).unwrap()
}

/// Splits an HTTP response into status line, header lines and body, and
/// checks that the body is one line with the right `Content-Length`.
fn parse_refusal(response: &str) -> (&str, Vec<&str>, &str) {
    let (status, headers, body) = split_response(response);
    assert!(
        body.len() > 1 && body.ends_with('\n') && !body[..body.len() - 1].contains(['\n', '\r']),
        "the reason is not one line: {body:?}"
    );
    let length = format!("Content-Length: {}", body.len());
    assert!(
        headers.contains(&length.as_str()),
        "no `{length}` in {response:?}"
    );
    (status, headers, body)
}

/// Connects, sends `request`, and reads the answer to the end.
async fn refused(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    tcp.write_all(request).await.unwrap();
    read_to_end(&mut tcp).await
}

fn request(method: &str, upgrade: bool) -> String {
    let upgrade = if upgrade {
        "Upgrade: websocket\r\n"
    } else {
        ""
    };
    format!(
        "{method} /chat HTTP/1.1\r\nHost: 127.0.0.1\r\n{upgrade}Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The code and reason of a Close frame read off the wire.
fn close_of(frame: &RawFrame) -> (u16, String) {
    assert_eq!(frame.opcode, OP_CLOSE, "not a Close: {frame:?}");
    assert!(frame.payload.len() >= 2, "Close without a code: {frame:?}");
    let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
    let reason = String::from_utf8(frame.payload[2..].to_vec()).unwrap();
    (code, reason)
}

async fn next_frame(tcp: &mut TcpStream, what: &str) -> RawFrame {
    within(what, read_frame(tcp))
        .await
        .unwrap_or_else(|| panic!("EOF instead of {what}"))
}

/// Checks that the server closed the connection: a clean EOF, no more
/// frames, no reset.
async fn assert_eof(tcp: &mut TcpStream) {
    let next = within("the server's EOF", read_frame(tcp)).await;
    assert!(next.is_none(), "a frame instead of EOF: {next:?}");
}

/// Sends a Close with `code` and `reason` on a raw connection, checks that
/// the server echoes the code and then ends the stream, and returns what
/// `on_close` reported.
async fn close_from_client(
    tcp: &mut TcpStream,
    seen: &mut Events,
    code: u16,
    reason: &str,
) -> (ConnId, CloseFrame) {
    tcp.write_all(&masked_frame(OP_CLOSE, &close_payload(code, reason)))
        .await
        .unwrap();
    let (echoed, _) = close_of(&next_frame(tcp, "the Close reply").await);
    assert_eq!(echoed, code);
    assert_eof(tcp).await;
    seen.closed().await
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

// ----- 1. echo -------------------------------------------------------------------

#[tokio::test]
async fn echoes_text_and_binary_from_0_bytes_to_1_mib() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));
    let mut ws = connect(&server).await;
    let id = seen.open().await;
    assert_compressed(&mut ws, &mut seen, false).await;
    for msg in sized_messages() {
        echo(&mut ws, msg.clone()).await;
        let got = seen
            .until("on_message", |s| match s {
                Seen::Message(from, m, status) => Some((from, m, status)),
                _ => None,
            })
            .await;
        // The queue is empty before each echo (we read the last one): an
        // echo over the default high-water mark (64 KiB) says so, and
        // the loop must then resume reading us after on_drain.
        let status = if msg.len() + HEAD > 64 << 10 {
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        };
        assert_eq!(got, (id, MessageSummary::from(&msg), status));
    }
    close(&mut ws, CloseCode::NORMAL).await;
    assert_eq!(seen.closed().await.0, id);
    server.stop().await.unwrap();
}

/// A message sent in frames (a two-byte character split between two of
/// them, a Ping in the middle) reaches `on_message` once, whole.
#[tokio::test]
async fn fragmented_message_arrives_whole() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));
    let mut ws = connect(&server).await;
    let id = seen.open().await;

    let whole = "hello, κόσμε";
    let bytes = whole.as_bytes();
    // "κ" is bytes 7..9: the first frame ends inside it.
    let pieces = [&bytes[..8], &bytes[8..12], &bytes[12..]];
    for (i, piece) in pieces.iter().enumerate() {
        let fin = i == pieces.len() - 1;
        let payload = Bytes::copy_from_slice(piece);
        within("send_frame", ws.send_frame(MessageKind::Text, payload, fin))
            .await
            .unwrap();
        if i == 0 {
            within("ping", ws.ping(Bytes::from_static(b"mid")))
                .await
                .unwrap();
        }
    }
    let echoed = within("the echo", ws.recv()).await.unwrap().unwrap();
    assert_eq!(echoed, Message::text(whole));

    // 3 x 30 KiB of binary, beyond one read of the loop.
    let piece = vec![0x5au8; 30 << 10];
    for i in 0..3 {
        let payload = Bytes::from(piece.clone());
        within(
            "send_frame",
            ws.send_frame(MessageKind::Binary, payload, i == 2),
        )
        .await
        .unwrap();
    }
    let echoed = within("the echo", ws.recv()).await.unwrap().unwrap();
    let binary = Message::binary(piece.repeat(3));
    assert!(echoed == binary, "binary differs");
    close(&mut ws, CloseCode::NORMAL).await;

    // One on_message per message, not per frame, then on_close.
    for expected in [Message::text(whole), binary] {
        match seen.next("on_message").await {
            Seen::Message(from, m, _) => {
                assert_eq!((from, m), (id, MessageSummary::from(&expected)));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(seen.next("on_close").await, Seen::Closed(from, _) if from == id));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn deflate_is_negotiated_and_echoes() {
    let config = Config::default().deflate(Some(DeflateConfig::default()));
    let (mut server, mut seen) = echo_server(Server::builder(config));
    let client = Client::new(server.url()).deflate(DeflateConfig::default());
    let (mut ws, response) = connect_with(client).await;
    assert!(response.deflate().is_some(), "permessage-deflate declined");
    assert!(ws.is_compressed());
    seen.open().await;
    assert_compressed(&mut ws, &mut seen, true).await;
    for msg in sized_messages() {
        echo(&mut ws, msg).await;
    }
    // Compressed in frames: the compressor's state spans them.
    for i in 0..3 {
        let payload = Bytes::from(format!("piece {i} ").repeat(500));
        within(
            "send_frame",
            ws.send_frame(MessageKind::Text, payload, i == 2),
        )
        .await
        .unwrap();
    }
    let expected: String = (0..3).map(|i| format!("piece {i} ").repeat(500)).collect();
    let echoed = within("the echo", ws.recv()).await.unwrap().unwrap();
    assert!(echoed == Message::text(expected), "fragmented echo differs");
    close(&mut ws, CloseCode::NORMAL).await;
    seen.closed().await;
    server.stop().await.unwrap();
}

/// On the wire: the server's echo of a compressible message is a frame
/// with RSV1 set, shorter than the message.
#[tokio::test]
async fn deflate_compresses_on_the_wire() {
    let config = Config::default().deflate(Some(DeflateConfig::default()));
    let (mut server, _seen) = echo_server(Server::builder(config));
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let request = request("GET", true).replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(within("the 101", tcp.read_u8()).await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
    // Uncompressed from us (RSV1 clear) is allowed.
    let text = "a".repeat(1000);
    tcp.write_all(&masked_frame(OP_TEXT, text.as_bytes()))
        .await
        .unwrap();
    let b0 = within("the echo", tcp.read_u8()).await.unwrap();
    let b1 = tcp.read_u8().await.unwrap();
    assert_eq!(b0 & 0x0f, OP_TEXT);
    assert_ne!(b0 & 0x40, 0, "RSV1 not set: not compressed");
    let len = usize::from(b1 & 0x7f);
    assert!(len < 126 && len < text.len(), "{len} bytes for 1000 a's");
    drop(tcp);
    server.stop().await.unwrap();
}

/// Frames the client sends right behind its request, in the same write,
/// are not lost with the handshake's buffer.
#[tokio::test]
async fn frames_right_behind_the_request_are_answered() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let mut bytes = request("GET", true).into_bytes();
    bytes.extend(masked_frame(OP_TEXT, b"early"));
    bytes.extend(masked_frame(OP_BINARY, &[7; 3000]));
    tcp.write_all(&bytes).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(within("the 101", tcp.read_u8()).await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    assert_eq!(raw_text(&mut tcp).await, "early");
    let frame = next_frame(&mut tcp, "the binary echo").await;
    assert_eq!((frame.opcode, frame.payload), (OP_BINARY, vec![7; 3000]));
    seen.open().await;
    drop(tcp);
    seen.closed().await;
    server.stop().await.unwrap();
}

/// A 3 KiB request arriving 100 bytes at a time is put together.
#[tokio::test]
async fn request_arriving_in_pieces_is_answered() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let filler: String = (0..20)
        .map(|i| format!("X-Filler-{i}: {}\r\n", "f".repeat(140)))
        .collect();
    let request = request("GET", true).replace("\r\n\r\n", &format!("\r\n{filler}\r\n"));
    assert!(request.len() > 3000);
    for piece in request.as_bytes().chunks(100) {
        tcp.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(within("the 101", tcp.read_u8()).await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    tcp.write_all(&masked_frame(OP_TEXT, b"pieced"))
        .await
        .unwrap();
    assert_eq!(raw_text(&mut tcp).await, "pieced");
    seen.open().await;
    drop(tcp);
    seen.closed().await;
    server.stop().await.unwrap();
}

/// A head over `max_header_bytes` gets 431; the server reads what the
/// client goes on sending rather than resetting the connection, so the
/// client reads the whole answer.
#[tokio::test]
async fn oversized_head_gets_431() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));
    let filler: String = (0..40)
        .map(|i| format!("X-Filler-{i}: {}\r\n", "f".repeat(500)))
        .collect();
    let request = request("GET", true).replace("\r\n\r\n", &format!("\r\n{filler}\r\n"));
    assert!(request.len() > 16 << 10);
    let response = refused(server.addr, request.as_bytes()).await;
    let (status, ..) = parse_refusal(&response);
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    server.stop().await.unwrap();
    let rest = seen.pending();
    assert!(rest.is_empty(), "{rest:?}");
}

/// Reports the pieces of messages, in streaming mode.
struct Streamer {
    seen: mpsc::UnboundedSender<Seen>,
}

impl Handler for Streamer {
    fn on_message(&mut self, _: &mut Conn<'_>, _: Message) {
        let _ = self
            .seen
            .send(Seen::Wrong("on_message in streaming mode".into()));
    }

    fn on_fragment(&mut self, conn: &mut Conn<'_>, fragment: herald::Fragment) {
        let text = fragment.kind == MessageKind::Text;
        let fin = fragment.fin;
        let _ = self
            .seen
            .send(Seen::Fragment(text, fragment.payload.clone(), fin));
        if fin {
            conn.send(Message::text("got it"));
        }
    }
}

#[tokio::test]
async fn streaming_mode_delivers_pieces_to_on_fragment() {
    let protocol =
        herald_proto::Config::default().message_mode(herald_proto::MessageMode::Streaming);
    let builder = Server::builder(Config::default().protocol(protocol));
    let (tx, mut seen) = Events::channel();
    let mut server = LoopServer::start(builder, move || Streamer { seen: tx.clone() });
    let mut ws = connect(&server).await;

    for (kind, whole) in [
        (MessageKind::Text, b"hello, streaming world".to_vec()),
        (
            MessageKind::Binary,
            binary_of(200 << 10).as_bytes().to_vec(),
        ),
    ] {
        let pieces: Vec<&[u8]> = whole.chunks(whole.len().div_ceil(3)).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let payload = Bytes::copy_from_slice(piece);
            within(
                "send_frame",
                ws.send_frame(kind, payload, i == pieces.len() - 1),
            )
            .await
            .unwrap();
        }
        assert_eq!(recv_text(&mut ws).await, "got it");
        let mut got = Vec::new();
        loop {
            match seen.next("a fragment").await {
                Seen::Fragment(text, payload, fin) => {
                    assert_eq!(text, kind == MessageKind::Text);
                    got.extend_from_slice(&payload);
                    if fin {
                        break;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(got == whole, "the pieces do not make the message");
    }
    close(&mut ws, CloseCode::NORMAL).await;
    server.stop().await.unwrap();
    let rest = seen.pending();
    assert!(rest.is_empty(), "{rest:?}");
}

// ----- 2. many connections ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_echo_at_once_and_each_closes_once() {
    const CONNECTIONS: usize = 200;
    const MESSAGES: usize = 5;
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));
    let url = server.url();

    // All open at once...
    let mut set = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let client = Client::new(url.clone());
        set.spawn(async move { connect_with(client).await.0 });
    }
    let clients = within("200 handshakes", set.join_all()).await;
    let mut opened = HashSet::new();
    for _ in 0..CONNECTIONS {
        assert!(opened.insert(seen.open().await), "an id given twice");
    }

    // ...each echoing at the same time as the others...
    let mut set = JoinSet::new();
    for (i, mut ws) in clients.into_iter().enumerate() {
        set.spawn(async move {
            for j in 0..MESSAGES {
                let msg = if j % 2 == 0 {
                    Message::text(format!("connection {i} message {j}"))
                } else {
                    Message::binary(vec![i as u8; 100 + j * 1000])
                };
                echo(&mut ws, msg).await;
            }
            ws
        });
    }
    let clients = within("the echoes", set.join_all()).await;

    // ...then all closed.
    let mut set = JoinSet::new();
    for mut ws in clients {
        set.spawn(async move { close(&mut ws, CloseCode::NORMAL).await });
    }
    within("the closes", set.join_all()).await;
    let mut closed = HashSet::new();
    for _ in 0..CONNECTIONS {
        let (id, frame) = seen.closed().await;
        assert_eq!(frame.code, CloseCode::NORMAL);
        assert!(closed.insert(id), "on_close twice for {id:?}");
    }
    assert_eq!(closed, opened);

    server.stop().await.unwrap();
    // The loop is gone, and its handler: no more opens or closes.
    let rest: Vec<_> = seen
        .pending()
        .into_iter()
        .filter(|s| !matches!(s, Seen::Message(.., SendStatus::Sent)))
        .collect();
    assert!(rest.is_empty(), "after every close: {rest:?}");
}

// ----- 3. handshake refusals ---------------------------------------------------

#[tokio::test]
async fn non_upgrade_requests_get_4xx_with_a_reason() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));

    let response = refused(server.addr, request("POST", true).as_bytes()).await;
    let (status, headers, _) = parse_refusal(&response);
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains(&"Allow: GET"), "{response}");

    let response = refused(server.addr, request("GET", false).as_bytes()).await;
    let (status, headers, _) = parse_refusal(&response);
    assert_eq!(status, "HTTP/1.1 426 Upgrade Required", "{response}");
    assert!(headers.contains(&"Upgrade: websocket"), "{response}");

    let response = refused(server.addr, b"not http at all\r\n\r\n").await;
    let (status, ..) = parse_refusal(&response);
    assert!(status.starts_with("HTTP/1.1 4"), "{response}");

    server.stop().await.unwrap();
    let opened: Vec<_> = seen.pending();
    assert!(
        opened.is_empty(),
        "callbacks for refused requests: {opened:?}"
    );
}

/// Refuses every request with 403 "nope", after checking its path.
struct Refuse {
    seen: mpsc::UnboundedSender<Seen>,
}

impl Handler for Refuse {
    fn on_request(&mut self, request: &Request) -> Decision {
        if request.path() != "/chat" {
            let _ = self
                .seen
                .send(Seen::Wrong(format!("path {}", request.path())));
        }
        Err(Reject::new(403, "nope"))
    }

    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = self
            .seen
            .send(Seen::Open(conn.id(), std::thread::current().id()));
    }

    fn on_message(&mut self, _: &mut Conn<'_>, _: Message) {
        let _ = self.seen.send(Seen::Wrong("a message".into()));
    }
}

#[tokio::test]
async fn on_request_rejection_gets_its_status_and_reason() {
    let (tx, mut seen) = Events::channel();
    let mut server = LoopServer::start(Server::builder(Config::default()), move || Refuse {
        seen: tx.clone(),
    });
    let response = refused(server.addr, request("GET", true).as_bytes()).await;
    let (status, _, body) = parse_refusal(&response);
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert_eq!(body, "nope\n");
    // A herald client gets the status as its error.
    let url = format!("{}chat", server.url());
    let result = within("connect", Client::new(url).connect()).await;
    assert!(
        matches!(
            result,
            Err(Error::Handshake(HandshakeError::UnexpectedStatus(403)))
        ),
        "{result:?}"
    );
    server.stop().await.unwrap();
    let rest = seen.pending();
    assert!(rest.is_empty(), "{rest:?}");
}

/// Picks a subprotocol the client did not offer.
struct BadPick;

impl Handler for BadPick {
    fn on_request(&mut self, _: &Request) -> Decision {
        Ok(herald::Upgrade::new().protocol("superchat"))
    }

    fn on_message(&mut self, _: &mut Conn<'_>, _: Message) {}
}

/// A handler's invalid answer is the server's fault: 500, not a broken
/// handshake.
#[tokio::test]
async fn invalid_upgrade_from_on_request_gets_500() {
    let mut server = LoopServer::start(Server::builder(Config::default()), || BadPick);
    let client = Client::new(server.url()).protocol("chat");
    let result = within("connect", client.connect()).await;
    assert!(
        matches!(
            result,
            Err(Error::Handshake(HandshakeError::UnexpectedStatus(500)))
        ),
        "{result:?}"
    );
    let response = refused(server.addr, request("GET", true).as_bytes()).await;
    let (status, _, body) = parse_refusal(&response);
    assert_eq!(status, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(body, "internal error\n");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn silent_and_stalled_clients_get_408_at_handshake_timeout() {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
    let config = Config::default().handshake_timeout(HANDSHAKE_TIMEOUT);
    let (mut server, mut seen) = echo_server(Server::builder(config));
    let start = Instant::now();
    let mut silent = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let mut stalled = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    for tcp in [&mut silent, &mut stalled] {
        let response = read_to_end(tcp).await;
        let (status, _, body) = parse_refusal(&response);
        assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{response}");
        assert_eq!(body, "handshake timeout\n");
    }
    // Not before the timeout (a lower bound only: the upper one is TIMEOUT).
    let waited = start.elapsed();
    assert!(waited >= HANDSHAKE_TIMEOUT, "408 after {waited:?}");
    // Closed on our side too, or stop would wait for them (close_timeout).
    drop((silent, stalled));
    server.stop().await.unwrap();
    let rest = seen.pending();
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn max_connections_1_gives_the_second_503_and_keeps_the_first() {
    let builder = Server::builder(Config::default()).max_connections(1);
    let (mut server, mut seen) = echo_server(builder);
    let mut first = connect(&server).await;
    seen.open().await;

    let response = refused(server.addr, request("GET", true).as_bytes()).await;
    let (status, _, body) = parse_refusal(&response);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{response}");
    assert_eq!(body, "too many connections\n");
    let result = within("connect", Client::new(server.url()).connect()).await;
    assert!(
        matches!(
            result,
            Err(Error::Handshake(HandshakeError::UnexpectedStatus(503)))
        ),
        "{result:?}"
    );

    echo(&mut first, Message::text("still here")).await;
    echo(&mut first, binary_of(100 << 10)).await;
    close(&mut first, CloseCode::NORMAL).await;
    drop(first);
    seen.closed().await;

    // The place is free once the server has let go of the first socket,
    // which follows our close by a moment: retry, bounded.
    let mut attempts = 0;
    let mut again = loop {
        attempts += 1;
        match within("connect", Client::new(server.url()).connect()).await {
            Ok((ws, _)) => break ws,
            Err(Error::Handshake(HandshakeError::UnexpectedStatus(503))) if attempts < 100 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("attempt {attempts}: {e}"),
        }
    };
    echo(&mut again, Message::text("my turn")).await;
    close(&mut again, CloseCode::NORMAL).await;
    server.stop().await.unwrap();
}

/// A connection whose request has not arrived is still the kernel's
/// (`TCP_DEFER_ACCEPT`): it takes no place. The kernel hands it over
/// anyway after about a second, so an attempt that took longer than half
/// of that proves nothing and is retried.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn with_defer_accept_a_silent_connection_takes_no_place() {
    for attempt in 1..=5 {
        let builder = Server::builder(Config::default()).max_connections(1);
        let (mut server, mut seen) = echo_server(builder);
        let silent = within("connect", TcpStream::connect(server.addr))
            .await
            .unwrap();
        let start = Instant::now();
        match within("connect", Client::new(server.url()).connect()).await {
            Ok((mut ws, _)) => {
                seen.open().await;
                echo(&mut ws, Message::text("in")).await;
                close(&mut ws, CloseCode::NORMAL).await;
                drop(silent);
                server.stop().await.unwrap();
                return;
            }
            Err(e) if start.elapsed() > Duration::from_millis(500) => {
                eprintln!("attempt {attempt} too slow to tell ({e})");
                drop(silent);
                server.stop().await.unwrap();
            }
            Err(e) => panic!("a silent connection took the only place: {e}"),
        }
    }
    panic!("every attempt too slow to tell");
}

/// Once both Close frames are through, the server lets go of the socket at
/// once: it does not wait for the peer's end of stream, so a peer that
/// keeps its socket open does not keep a place (`max_connections`) either.
#[tokio::test]
async fn after_a_clean_close_the_place_is_free_before_the_peer_closes() {
    let builder = Server::builder(Config::default()).max_connections(1);
    let (mut server, mut seen) = echo_server(builder);

    // The client closes.
    let mut tcp = raw_client(server.addr).await;
    let id = seen.open().await;
    let reported = close_from_client(&mut tcp, &mut seen, 1000, "").await;
    assert_eq!(reported, (id, CloseFrame::new(CloseCode::NORMAL, "")));

    // The server closes; `tcp` stays open throughout.
    let mut second = raw_client(server.addr).await;
    let id = seen.open().await;
    second
        .write_all(&masked_frame(OP_TEXT, b"close me"))
        .await
        .unwrap();
    let frame = next_frame(&mut second, "the server's Close").await;
    assert_eq!(close_of(&frame).0, 1001);
    second
        .write_all(&masked_frame(OP_CLOSE, &close_payload(1001, "")))
        .await
        .unwrap();
    assert_eof(&mut second).await;
    assert_eq!(seen.closed().await.0, id);

    let mut third = connect(&server).await;
    echo(&mut third, Message::text("my turn")).await;
    close(&mut third, CloseCode::NORMAL).await;
    drop((tcp, second));
    server.stop().await.unwrap();
}

// ----- 4. protocol errors ------------------------------------------------------

/// After a valid handshake, sends `bytes` and returns the Close the client
/// read (code, reason) and the frame `on_close` reported. The server must
/// then close the TCP connection. Echoes of `echoes` messages may come
/// first.
async fn protocol_error(config: Config, bytes: &[u8], echoes: &[&[u8]]) -> (u16, CloseFrame) {
    let (mut server, mut seen) = echo_server(Server::builder(config));
    let mut tcp = raw_client(server.addr).await;
    tcp.write_all(bytes).await.unwrap();
    for expected in echoes {
        let frame = next_frame(&mut tcp, "an echo").await;
        assert_eq!(&frame.payload[..], *expected);
    }
    let frame = next_frame(&mut tcp, "the server's Close").await;
    let (code, reason) = close_of(&frame);
    assert!(!reason.is_empty(), "no reason with {code}");
    // The connection failed: no Close from us is awaited.
    assert_eof(&mut tcp).await;
    let (_, reported) = seen.closed().await;
    drop(tcp);
    server.stop().await.unwrap();
    (code, reported)
}

#[tokio::test]
async fn unmasked_client_frame_gets_1002() {
    let (code, reported) = protocol_error(Config::default(), b"\x81\x02hi", &[]).await;
    assert_eq!(code, 1002);
    assert_eq!(reported.code, CloseCode::PROTOCOL_ERROR);
}

/// The valid message before the bad one in the same write is answered
/// first.
#[tokio::test]
async fn invalid_utf8_text_gets_1007() {
    let mut bytes = masked_frame(OP_TEXT, b"fine");
    bytes.extend(masked_frame(OP_TEXT, b"bad \xff\xfe here"));
    let (code, reported) = protocol_error(Config::default(), &bytes, &[b"fine"]).await;
    assert_eq!(code, 1007);
    assert_eq!(reported.code, CloseCode::INVALID_PAYLOAD);
}

#[tokio::test]
async fn message_over_max_message_size_gets_1009() {
    let protocol = herald_proto::Config::default().max_message_size(1000);
    let config = Config::default().protocol(protocol);
    let (code, reported) =
        protocol_error(config.clone(), &masked_frame(OP_BINARY, &[1; 1001]), &[]).await;
    assert_eq!(code, 1009);
    assert_eq!(reported.code, CloseCode::MESSAGE_TOO_BIG);

    // In two frames, each under the limit.
    let mut bytes = masked_frame(OP_BINARY, &[2; 600]);
    bytes[0] &= 0x7f; // not FIN
    let mut rest = masked_frame(0x0, &[3; 600]); // continuation, FIN
    bytes.append(&mut rest);
    let (code, reported) = protocol_error(config, &bytes, &[]).await;
    assert_eq!(code, 1009);
    assert_eq!(reported.code, CloseCode::MESSAGE_TOO_BIG);
}

// ----- 5. close handshake ------------------------------------------------------

#[tokio::test]
async fn client_close_1000_is_echoed_reported_and_followed_by_eof() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));

    let mut tcp = raw_client(server.addr).await;
    let id = seen.open().await;
    let reported = close_from_client(&mut tcp, &mut seen, 1000, "bye").await;
    assert_eq!(reported, (id, CloseFrame::new(CloseCode::NORMAL, "bye")));
    drop(tcp);

    // The same with herald's client.
    let mut ws = connect(&server).await;
    let id = seen.open().await;
    let frame = within("close", ws.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap();
    assert_eq!(frame.code, CloseCode::NORMAL);
    assert!(within("end of stream", ws.recv()).await.is_none());
    assert_eq!(
        seen.closed().await,
        (id, CloseFrame::new(CloseCode::NORMAL, "bye"))
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn server_close_from_on_message_sends_1001_then_eof() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));

    let mut tcp = raw_client(server.addr).await;
    let id = seen.open().await;
    tcp.write_all(&masked_frame(OP_TEXT, b"close me"))
        .await
        .unwrap();
    let frame = next_frame(&mut tcp, "the server's Close").await;
    assert_eq!(close_of(&frame), (1001, "going away".to_owned()));
    // A send after close is refused.
    let status = seen
        .until("the send after close", |s| match s {
            Seen::Status(from, status) => Some((from, status)),
            _ => None,
        })
        .await;
    assert_eq!(status, (id, SendStatus::Closed));
    tcp.write_all(&masked_frame(OP_CLOSE, &close_payload(1001, "")))
        .await
        .unwrap();
    assert_eof(&mut tcp).await;
    let (closed, frame) = seen.closed().await;
    assert_eq!((closed, frame.code), (id, CloseCode::GOING_AWAY));
    drop(tcp);

    // herald's client sees the same.
    let mut ws = connect(&server).await;
    within("send", ws.send(Message::text("close me")))
        .await
        .unwrap();
    let end = within("the server's Close", ws.recv()).await;
    assert!(end.is_none(), "not the end: {end:?}");
    assert_eq!(
        ws.close_frame(),
        Some(&CloseFrame::new(CloseCode::GOING_AWAY, "going away"))
    );
    assert_eq!(seen.closed().await.1.code, CloseCode::GOING_AWAY);
    server.stop().await.unwrap();
}

/// A client that never answers the server's Close is dropped after
/// `close_timeout`, and reported as 1006.
#[tokio::test]
async fn peer_that_never_answers_close_is_dropped_after_close_timeout() {
    const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);
    let protocol = herald_proto::Config::default().close_timeout(CLOSE_TIMEOUT);
    let (mut server, mut seen) = echo_server(Server::builder(Config::default().protocol(protocol)));
    let mut tcp = raw_client(server.addr).await;
    seen.open().await;
    tcp.write_all(&masked_frame(OP_TEXT, b"close me"))
        .await
        .unwrap();
    let frame = next_frame(&mut tcp, "the server's Close").await;
    let start = Instant::now();
    assert_eq!(close_of(&frame).0, 1001);
    assert_eof(&mut tcp).await;
    assert!(
        start.elapsed() >= CLOSE_TIMEOUT / 2,
        "{:?}",
        start.elapsed()
    );
    assert_eq!(seen.closed().await.1.code, CloseCode::ABNORMAL);
    drop(tcp);
    server.stop().await.unwrap();
}

/// A client gone without a Close is reported as 1006, also when its last
/// bytes and its FIN come in one readiness event (the loop is busy with
/// another connection meanwhile).
#[tokio::test]
async fn abrupt_disconnect_is_reported_1006() {
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));
    let mut busy = connect(&server).await;
    seen.open().await;
    let mut tcp = raw_client(server.addr).await;
    let id = seen.open().await;
    within("send", busy.send(Message::text("block the loop")))
        .await
        .unwrap();
    assert!(matches!(seen.next("blocking").await, Seen::Blocking));
    // Half a frame, then gone, while the loop sleeps.
    tcp.write_all(&masked_frame(OP_TEXT, b"never finished")[..6])
        .await
        .unwrap();
    drop(tcp);
    let (closed, frame) = seen.closed().await;
    assert_eq!((closed, frame.code), (id, CloseCode::ABNORMAL));
    let echo = within("the echo", busy.recv()).await.unwrap().unwrap();
    assert_eq!(echo, Message::text("block the loop"));
    close(&mut busy, CloseCode::NORMAL).await;
    server.stop().await.unwrap();
}

// ----- 6. keepalive ------------------------------------------------------------

#[tokio::test]
async fn peer_that_never_answers_pings_gets_1011_and_is_reported_1006() {
    let (mut server, mut seen) = echo_server(Server::builder(keepalive_config()));
    let mut tcp = raw_client(server.addr).await;
    seen.open().await;
    let ping = next_frame(&mut tcp, "a keepalive Ping").await;
    assert_eq!(ping.opcode, OP_PING, "{ping:?}");
    // Never answered.
    let frame = next_frame(&mut tcp, "the Close after the pong timeout").await;
    assert_eq!(close_of(&frame).0, 1011);
    assert_eof(&mut tcp).await;
    assert_eq!(seen.closed().await.1.code, CloseCode::ABNORMAL);
    drop(tcp);
    server.stop().await.unwrap();
}

/// herald's client answers pings by itself while it waits in `recv`.
#[tokio::test]
async fn herald_client_stays_connected_past_several_ping_intervals() {
    let (mut server, mut seen) = echo_server(Server::builder(keepalive_config()));
    let mut ws = connect(&server).await;
    seen.open().await;
    let quiet = tokio::time::timeout(PING_INTERVAL * 6, ws.recv()).await;
    assert!(quiet.is_err(), "recv returned while quiet: {quiet:?}");
    let early: Vec<_> = seen.pending();
    assert!(early.is_empty(), "{early:?}");
    echo(&mut ws, Message::text("still here")).await;
    close(&mut ws, CloseCode::NORMAL).await;
    assert_eq!(seen.closed().await.1.code, CloseCode::NORMAL);
    server.stop().await.unwrap();
}

// ----- 7. backpressure ---------------------------------------------------------

const HIGH_WATER: usize = 64 << 10;
const MESSAGE: usize = 64 << 10;
/// Largest server frame header.
const HEAD: usize = 10;

/// Message `seq` of `MESSAGE` bytes: its number, then `seq % 251`.
fn numbered(seq: u32) -> Message {
    let mut payload = vec![(seq % 251) as u8; MESSAGE];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    Message::binary(payload)
}

/// Sends `total` numbered messages as fast as the queue allows: from
/// `on_open` until `Backpressure`, then again from each `on_drain`.
/// Messages from the peer are reported, not echoed.
struct Producer {
    total: u32,
    next: u32,
    seen: mpsc::UnboundedSender<Seen>,
}

impl Producer {
    fn pump(&mut self, conn: &mut Conn<'_>) {
        while self.next < self.total {
            match conn.send(numbered(self.next)) {
                SendStatus::Sent => self.next += 1,
                SendStatus::Backpressure => {
                    self.next += 1;
                    let queued = conn.buffered_amount();
                    let _ = self.seen.send(Seen::Backpressure {
                        sent: self.next,
                        queued,
                    });
                    return;
                }
                status => {
                    let _ = self.seen.send(Seen::Status(conn.id(), status));
                    return;
                }
            }
        }
        let _ = self.seen.send(Seen::AllSent);
    }
}

impl Handler for Producer {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.pump(conn);
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        let summary = MessageSummary::from(&message);
        let _ = self
            .seen
            .send(Seen::Message(conn.id(), summary, SendStatus::Sent));
    }

    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        let _ = self.seen.send(Seen::Drain);
        self.pump(conn);
    }

    fn on_close(&mut self, id: ConnId, frame: CloseFrame) {
        let _ = self.seen.send(Seen::Closed(id, frame));
    }
}

/// A client that reads nothing at first: the producer meets backpressure
/// and stalls once the kernel's buffers are full (the peer's message then
/// waits unread); when the client reads, `on_drain` comes, the producer
/// goes on, and every message arrives once, in order.
#[tokio::test]
async fn backpressure_stalls_the_sender_until_the_peer_reads_then_on_drain() {
    // 16 MiB: several times what loopback buffers for a peer that does
    // not read (send buffer at most 4 MiB, receive buffer ~128 KiB
    // until the reader reads and autotuning grows it).
    const TOTAL: u32 = 256;
    let config = Config::default().write_high_water(HIGH_WATER);
    let (tx, mut seen) = Events::channel();
    let builder = Server::builder(config).max_buffered(4 * HIGH_WATER);
    let mut server = LoopServer::start(builder, move || Producer {
        total: TOTAL,
        next: 0,
        seen: tx.clone(),
    });
    let mut ws = connect(&server).await;

    // Backpressure at once: one message is the high-water mark.
    let first = seen.next("the first backpressure").await;
    assert!(
        matches!(first, Seen::Backpressure { sent: 1 | 2, .. }),
        "{first:?}"
    );
    // Then until the kernel's buffers are full: a quiet 300 ms.
    let mut before = vec![first];
    loop {
        assert!(before.len() < 4 * TOTAL as usize, "no end of events");
        match tokio::time::timeout(Duration::from_millis(300), seen.0.recv()).await {
            Err(_) => break,
            Ok(Some(s)) => before.push(s),
            Ok(None) => panic!("the loop ended"),
        }
    }
    assert!(
        matches!(before.last(), Some(Seen::Backpressure { .. })),
        "not stalled on backpressure: {:?}",
        before.last()
    );
    let sent = before
        .iter()
        .filter_map(|s| match s {
            Seen::Backpressure { sent, queued } => {
                assert!(
                    *queued <= HIGH_WATER + MESSAGE + 2 * HEAD,
                    "{queued} bytes queued"
                );
                Some(*sent)
            }
            Seen::Drain => None,
            other => panic!("before the client reads: {other:?}"),
        })
        .max()
        .unwrap();
    assert!(sent < TOTAL, "all sent to a peer that reads nothing");

    // The server does not read a peer it is stalled on. (The readable
    // event may let it write a little more first: the kernel has room
    // before it says so with a writable event.)
    within("send", ws.send(Message::text("while paused")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let early: Vec<_> = seen
        .pending()
        .into_iter()
        .filter(|s| !matches!(s, Seen::Drain | Seen::Backpressure { .. }))
        .collect();
    assert!(early.is_empty(), "while paused: {early:?}");

    for seq in 0..TOTAL {
        let got = within("a message", ws.recv()).await.unwrap().unwrap();
        let Message::Binary(payload) = got else {
            panic!("message {seq} is text");
        };
        assert_eq!(payload.len(), MESSAGE);
        let number = u32::from_be_bytes(payload[..4].try_into().unwrap());
        assert_eq!(number, seq, "out of order");
        assert!(payload[4..].iter().all(|&b| b == (seq % 251) as u8));
    }
    // Resumed by on_drain: the producer finished, and the waiting message
    // was read after a drain.
    let mut after = Vec::new();
    let paused_message = seen
        .until("the message sent while paused", |s| match s {
            Seen::Message(_, m, _) => Some(m),
            other => {
                after.push(other);
                None
            }
        })
        .await;
    assert_eq!(paused_message.short.as_deref(), Some(&b"while paused"[..]));
    assert!(
        after.iter().any(|s| matches!(s, Seen::Drain)),
        "no on_drain before the peer was read again: {after:?}"
    );
    if !after.iter().any(|s| matches!(s, Seen::AllSent)) {
        seen.until("all sent", |s| matches!(s, Seen::AllSent).then_some(()))
            .await;
    }
    close(&mut ws, CloseCode::NORMAL).await;
    seen.closed().await;
    server.stop().await.unwrap();
}

/// Sends four messages from `on_open`, reporting each status, and "end"
/// once the queue drains.
struct Flood {
    seen: mpsc::UnboundedSender<Seen>,
}

impl Handler for Flood {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        for seq in 0..4 {
            let status = conn.send(numbered(seq));
            let _ = self.seen.send(Seen::Status(conn.id(), status));
        }
    }

    fn on_message(&mut self, _: &mut Conn<'_>, _: Message) {}

    fn on_drain(&mut self, conn: &mut Conn<'_>) {
        let _ = self.seen.send(Seen::Drain);
        conn.send(Message::text("end"));
    }
}

#[tokio::test]
async fn sends_past_max_buffered_are_dropped() {
    // High water 16 KiB, at most 100 KiB: the first two messages of
    // 64 KiB are queued (with backpressure), the next ones dropped.
    let config = Config::default().write_high_water(16 << 10);
    let builder = Server::builder(config).max_buffered(100 << 10);
    let (tx, mut seen) = Events::channel();
    let mut server = LoopServer::start(builder, move || Flood { seen: tx.clone() });
    let mut ws = connect(&server).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        match seen.next("a status").await {
            Seen::Status(_, status) => statuses.push(status),
            other => panic!("{other:?}"),
        }
    }
    use SendStatus::{Backpressure, Dropped};
    assert_eq!(statuses, [Backpressure, Backpressure, Dropped, Dropped]);
    for seq in 0..2 {
        let got = within("a message", ws.recv()).await.unwrap().unwrap();
        assert!(got == numbered(seq), "message {seq} differs");
    }
    let end = within("\"end\"", ws.recv()).await.unwrap().unwrap();
    assert_eq!(end, Message::text("end"), "a dropped message arrived");
    close(&mut ws, CloseCode::NORMAL).await;
    server.stop().await.unwrap();
    assert!(
        seen.pending().iter().any(|s| matches!(s, Seen::Drain)),
        "no on_drain"
    );
}

/// Queues 8 MiB from `on_open`, past what the kernel takes for a peer
/// that does not read, so that the peer is not read from for a while.
struct Bulk {
    seen: mpsc::UnboundedSender<Seen>,
}

impl Handler for Bulk {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        for _ in 0..8 {
            let status = conn.send(binary_of(1 << 20));
            let _ = self.seen.send(Seen::Status(conn.id(), status));
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        let summary = MessageSummary::from(&message);
        let _ = self
            .seen
            .send(Seen::Message(conn.id(), summary, SendStatus::Sent));
    }

    fn on_drain(&mut self, _: &mut Conn<'_>) {
        let _ = self.seen.send(Seen::Drain);
    }

    fn on_close(&mut self, id: ConnId, frame: CloseFrame) {
        let _ = self.seen.send(Seen::Closed(id, frame));
    }
}

/// A message and the end of the stream that arrive while the server does
/// not read the peer are both seen once it reads again.
#[tokio::test]
async fn input_and_eof_that_arrive_while_paused_are_read_after_on_drain() {
    let builder = Server::builder(Config::default()).max_buffered(64 << 20);
    let (tx, mut seen) = Events::channel();
    let mut server = LoopServer::start(builder, move || Bulk { seen: tx.clone() });
    let mut tcp = raw_client(server.addr).await;
    let id = seen.open_or_status().await;
    tcp.write_all(&masked_frame(OP_TEXT, b"last words"))
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();
    // Both arrive, and the server (paused) leaves them be.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let early: Vec<_> = seen.pending();
    assert!(
        early
            .iter()
            .all(|s| matches!(s, Seen::Status(_, SendStatus::Backpressure))),
        "not paused: {early:?}"
    );
    {
        let mut reader = tokio::io::BufReader::with_capacity(256 << 10, &mut tcp);
        for i in 0..8 {
            let frame = within("a message", read_frame(&mut reader))
                .await
                .unwrap_or_else(|| panic!("EOF before message {i}"));
            assert_eq!((frame.opcode, frame.payload.len()), (OP_BINARY, 1 << 20));
        }
    }
    assert!(matches!(seen.next("on_drain").await, Seen::Drain));
    match seen.next("the message").await {
        Seen::Message(from, m, _) => {
            assert_eq!(from, id);
            assert_eq!(m.short.as_deref(), Some(&b"last words"[..]));
        }
        other => panic!("{other:?}"),
    }
    // No Close came: 1006, at once rather than at some later timer.
    let (closed, frame) = seen.closed().await;
    assert_eq!((closed, frame.code), (id, CloseCode::ABNORMAL));
    assert_eof(&mut tcp).await;
    server.stop().await.unwrap();
}

// ----- 8. sending to other connections -------------------------------------------

/// Sends each message to every other connection. "probe" is answered to
/// its sender with whether `other` finds the live connections and none of
/// the closed ones; "kick" closes every other connection with 4000.
struct Broadcast {
    members: Vec<ConnId>,
    gone: Vec<ConnId>,
    seen: mpsc::UnboundedSender<Seen>,
}

impl Handler for Broadcast {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.members.push(conn.id());
        let _ = self
            .seen
            .send(Seen::Open(conn.id(), std::thread::current().id()));
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        if message == Message::text("probe") {
            let gone = self.gone.iter().filter(|&&id| conn.other(id).is_some());
            let stale_found = gone.count();
            let live_found = self
                .members
                .iter()
                .filter(|&&id| conn.other(id).is_some())
                .count();
            conn.send(Message::text(format!(
                "gone {}, found {stale_found}; members {}, found {live_found}",
                self.gone.len(),
                self.members.len()
            )));
            return;
        }
        let me = conn.id();
        let kick = message == Message::text("kick");
        for &id in &self.members {
            if id == me {
                continue;
            }
            match conn.other(id) {
                Some(mut other) if kick => other.close(CloseCode(4000), "kicked"),
                Some(mut other) => {
                    let status = other.send(message.clone());
                    if status != SendStatus::Sent {
                        let _ = self.seen.send(Seen::Status(id, status));
                    }
                }
                None => {
                    let _ = self
                        .seen
                        .send(Seen::Wrong(format!("member {id:?} not found")));
                }
            }
        }
    }

    fn on_close(&mut self, id: ConnId, frame: CloseFrame) {
        self.members.retain(|&m| m != id);
        self.gone.push(id);
        let _ = self.seen.send(Seen::Closed(id, frame));
    }
}

async fn recv_text(ws: &mut Ws) -> String {
    match within("a message", ws.recv()).await {
        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
        other => panic!("not a text message: {other:?}"),
    }
}

async fn raw_text(tcp: &mut TcpStream) -> String {
    let frame = next_frame(tcp, "a message").await;
    assert_eq!(frame.opcode, OP_TEXT, "{frame:?}");
    String::from_utf8(frame.payload).unwrap()
}

#[tokio::test]
async fn broadcast_reaches_the_others_and_a_closed_id_is_stale() {
    let (tx, mut seen) = Events::channel();
    let mut server = LoopServer::start(Server::builder(Config::default()), move || Broadcast {
        members: Vec::new(),
        gone: Vec::new(),
        seen: tx.clone(),
    });
    // a and b are herald clients; c is raw, so that it can keep its socket
    // open after the close handshake.
    let mut a = connect(&server).await;
    seen.open().await;
    let mut b = connect(&server).await;
    seen.open().await;
    let mut c = raw_client(server.addr).await;
    let c_id = seen.open().await;

    within("send", a.send(Message::text("from a")))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut b).await, "from a");
    assert_eq!(raw_text(&mut c).await, "from a");
    within("send", b.send(Message::text("from b")))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut a).await, "from b");
    assert_eq!(raw_text(&mut c).await, "from b");
    c.write_all(&masked_frame(OP_TEXT, b"from c"))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut a).await, "from c");
    assert_eq!(recv_text(&mut b).await, "from c");

    // c closes; its socket stays open a while longer.
    c.write_all(&masked_frame(OP_CLOSE, &close_payload(1000, "")))
        .await
        .unwrap();
    assert_eq!(
        close_of(&next_frame(&mut c, "the Close reply").await).0,
        1000
    );
    assert_eq!(seen.closed().await.0, c_id);
    // Nothing of a's own came back to it before the probe's answer.
    within("send", a.send(Message::text("probe")))
        .await
        .unwrap();
    assert_eq!(
        recv_text(&mut a).await,
        "gone 1, found 0; members 2, found 2"
    );

    // Gone altogether; a new connection, perhaps in c's slot.
    drop(c);
    let mut d = connect(&server).await;
    let d_id = seen.open().await;
    assert_ne!(d_id, c_id);
    within("send", a.send(Message::text("from a again")))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut b).await, "from a again");
    assert_eq!(recv_text(&mut d).await, "from a again");
    within("send", b.send(Message::text("probe")))
        .await
        .unwrap();
    assert_eq!(
        recv_text(&mut b).await,
        "gone 1, found 0; members 3, found 3"
    );

    // Closing other connections from b's callback.
    within("send", b.send(Message::text("kick"))).await.unwrap();
    for ws in [&mut a, &mut d] {
        let end = within("the kick", ws.recv()).await;
        assert!(end.is_none(), "not the end: {end:?}");
        assert_eq!(
            ws.close_frame(),
            Some(&CloseFrame::new(CloseCode(4000), "kicked"))
        );
    }
    for _ in 0..2 {
        assert_eq!(seen.closed().await.1.code, CloseCode(4000));
    }
    close(&mut b, CloseCode::NORMAL).await;
    seen.closed().await;
    server.stop().await.unwrap();
}

// ----- 9. several loops ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_threads_both_serve() {
    // 64 connections from as many source ports: SO_REUSEPORT hashes each
    // to one of the two listeners, so that all land on one loop has a
    // chance of 2^-63.
    const CONNECTIONS: usize = 64;
    let factories = Arc::new(Mutex::new(Vec::<ThreadId>::new()));
    let (tx, mut seen) = Events::channel();
    let builder = Server::builder(Config::default()).threads(2);
    let mut server = LoopServer::start(builder, {
        let factories = factories.clone();
        move || {
            factories.lock().unwrap().push(std::thread::current().id());
            Echo { seen: tx.clone() }
        }
    });
    let url = server.url();
    let mut set = JoinSet::new();
    for i in 0..CONNECTIONS {
        let client = Client::new(url.clone());
        set.spawn(async move {
            let (mut ws, _) = connect_with(client).await;
            for j in 0..3 {
                echo(&mut ws, Message::text(format!("{i}.{j}"))).await;
            }
            ws
        });
    }
    let clients = within("the echoes", set.join_all()).await;
    let mut threads = HashSet::new();
    for _ in 0..CONNECTIONS {
        let thread = seen
            .until("on_open", |s| match s {
                Seen::Open(_, thread) => Some(thread),
                _ => None,
            })
            .await;
        threads.insert(thread);
    }
    let mut set = JoinSet::new();
    for mut ws in clients {
        set.spawn(async move { close(&mut ws, CloseCode::NORMAL).await });
    }
    within("the closes", set.join_all()).await;
    for _ in 0..CONNECTIONS {
        assert_eq!(seen.closed().await.1.code, CloseCode::NORMAL);
    }
    server.stop().await.unwrap();

    let factories: HashSet<_> = factories.lock().unwrap().iter().copied().collect();
    assert_eq!(factories.len(), 2, "one handler per loop thread");
    assert_eq!(threads, factories, "connections on both loops");
}

// ----- 10. stopping ----------------------------------------------------------------

#[tokio::test]
async fn stop_closes_clients_with_1001_and_run_returns() {
    const CLIENTS: usize = 5;
    let (mut server, mut seen) = echo_server(Server::builder(Config::default()));
    // Clients wait in recv, as applications do, so they answer the Close.
    let mut set = JoinSet::new();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    for i in 0..CLIENTS {
        let client = Client::new(server.url());
        let ready = ready_tx.clone();
        set.spawn(async move {
            let (mut ws, _) = connect_with(client).await;
            echo(&mut ws, Message::text(format!("client {i}"))).await;
            ready.send(()).unwrap();
            let end = within("the server's Close", ws.recv()).await;
            assert!(end.is_none(), "not the end: {end:?}");
            ws.close_frame().cloned()
        });
    }
    for _ in 0..CLIENTS {
        within("a client ready", ready.recv()).await.unwrap();
    }
    // And one in the middle of its handshake.
    let mut handshaking = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    handshaking.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let handshaking = tokio::spawn(async move { read_to_end(&mut handshaking).await });
    // Let the loop read the partial request before stopping.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let start = Instant::now();
    server.stop().await.expect("run returns Ok");
    let stopped_in = start.elapsed();

    for frame in within("the clients", set.join_all()).await {
        assert_eq!(
            frame,
            Some(CloseFrame::new(
                CloseCode::GOING_AWAY,
                "server shutting down"
            ))
        );
    }
    let response = within("the handshaking client", handshaking).await.unwrap();
    let (status, ..) = parse_refusal(&response);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");

    let closes: Vec<_> = seen
        .pending()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Closed(_, frame) => Some(frame.code),
            _ => None,
        })
        .collect();
    assert_eq!(closes, [CloseCode::GOING_AWAY; CLIENTS], "on_close");
    // Every client answered: run did not wait out the close timeout (10 s).
    assert!(stopped_in < Duration::from_secs(10), "{stopped_in:?}");
}

/// A stop asked for before `run` makes `run` return at once.
#[tokio::test]
async fn stop_before_run_returns_at_once() {
    let server = Server::builder(Config::default().protocol(
        // Were it to wait for anything, it would wait this long.
        herald_proto::Config::default().close_timeout(Duration::from_secs(30)),
    ))
    .threads(2)
    .bind("127.0.0.1:0".parse().unwrap())
    .unwrap();
    server.stop_handle().stop();
    let (tx, _seen) = Events::channel();
    let thread = std::thread::spawn(move || server.run(move || Echo { seen: tx.clone() }));
    within("run to return", async {
        while !thread.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    thread.join().unwrap().unwrap();
}

/// Panics on the message "boom"; echoes the rest.
struct Boom;

impl Handler for Boom {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        assert_ne!(message, Message::text("boom"), "the handler's own panic");
        conn.send(message);
    }
}

#[tokio::test]
async fn a_panicking_loop_stops_the_whole_server() {
    // Whichever loop the panicking connection landed on, `run` must come
    // back (with the panic or an error) instead of serving on with one
    // loop dead, or, if the first loop panicked, never returning.
    // The clients below do not read, so the stop's Close waits this long.
    let protocol = herald::ProtocolConfig::default().close_timeout(Duration::from_millis(300));
    let server = Server::builder(Config::default().protocol(protocol))
        .threads(2)
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let thread = std::thread::spawn(move || server.run(|| Boom));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (mut ws, _) = connect_with(Client::new(url.clone())).await;
        echo(&mut ws, Message::text("fine")).await;
        clients.push(ws);
    }
    clients[3].send(Message::text("boom")).await.unwrap();
    within("run to return after a handler panicked", async {
        while !thread.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Either the panic itself or an error naming it; not a clean Ok.
    assert!(
        !matches!(thread.join(), Ok(Ok(()))),
        "run returned Ok after a loop panicked"
    );
}
