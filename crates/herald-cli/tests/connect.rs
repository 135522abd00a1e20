//! `herald connect` against real `herald echo` and `herald serve` children:
//! binary messages are shown as such, `--origin` is sent, and a refused
//! `--header` is named.

mod support;

use support::{Herald, Stream, TIMEOUT};

/// `herald echo` on a free loopback port, and its ws:// URL.
fn echo() -> (Herald, String) {
    let mut echo = Herald::start(&["echo", "--listen", "127.0.0.1:0"], &[]);
    let line = echo
        .wait_for("herald echo listening on ", TIMEOUT)
        .unwrap_or_else(|| panic!("herald echo did not start: {}", echo.text()));
    // "herald echo listening on ws://ADDR (1 thread)": the URL is the
    // first word.
    let url = line["herald echo listening on ".len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    (echo, format!("{url}/"))
}

#[test]
fn binary_messages_are_shown_as_such() {
    let (_echo, url) = echo();
    let mut client = Herald::start(&["connect", "--binary", &url], &[]);
    client
        .wait_for("connected", TIMEOUT)
        .unwrap_or_else(|| panic!("no connection: {}", client.text()));
    client.write(b"hello world!\n");
    let line = client
        .wait_for("binary", TIMEOUT)
        .unwrap_or_else(|| panic!("no echo: {}", client.text()));
    assert_eq!(line, "< binary 12 bytes: 68656c6c6f20776f726c6421");
    let long = "a".repeat(40);
    client.write(format!("{long}\n").as_bytes());
    let line = client
        .wait_for("binary 40", TIMEOUT)
        .unwrap_or_else(|| panic!("no echo: {}", client.text()));
    assert_eq!(line, format!("< binary 40 bytes: {}...", "61".repeat(32)));
    let status = client.exit(TIMEOUT);
    assert!(status.is_some_and(|s| s.success()), "{}", client.text());
    assert!(
        client
            .lines(Stream::Stdout)
            .iter()
            .all(|l| l.starts_with("< binary ")),
        "raw bytes printed: {}",
        client.text()
    );
}

#[test]
fn origin_is_sent() {
    let mut server = Herald::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--no-demos",
            "--allowed-origin",
            "https://app.example",
        ],
        &[],
    );
    let url = format!("ws://{}/connection/websocket", server.serve_addr());

    let mut allowed = Herald::start(&["connect", "--origin", "https://app.example", &url], &[]);
    allowed
        .wait_for("connected", TIMEOUT)
        .unwrap_or_else(|| panic!("not connected: {}", allowed.text()));

    // The server refuses this origin, so the header did go out.
    let mut refused = Herald::start(&["connect", "--origin", "https://evil.example", &url], &[]);
    let status = refused.exit(TIMEOUT);
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?}: {}",
        refused.text()
    );
    assert!(refused.text().contains("403"), "{}", refused.text());
}

#[test]
fn a_refused_header_is_named() {
    let (_echo, url) = echo();
    for (header, expected) in [
        ("Origin: https://app.example", "`Origin`"),
        (
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==",
            "`Sec-WebSocket-Key`",
        ),
        ("Bad Name: x", "`Bad Name`"),
    ] {
        let mut client = Herald::start(&["connect", "--header", header, &url], &[]);
        let status = client.exit(TIMEOUT);
        let stderr = client.lines(Stream::Stderr).join("\n");
        assert!(status.is_some_and(|s| !s.success()), "{header}: {stderr}");
        assert!(stderr.contains(expected), "{header}: {stderr}");
    }
    // A header that is allowed goes through.
    let mut client = Herald::start(&["connect", "--header", "X-Token: abc", &url], &[]);
    assert!(
        client.wait_for("connected", TIMEOUT).is_some(),
        "{}",
        client.text()
    );
}
