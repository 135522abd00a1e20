//! `herald connect`: an interactive client, like websocat.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use herald::{Client, CloseCode, Config, DeflateConfig, Message};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// ws:// or wss:// URL.
    url: String,
    /// Offer a subprotocol (repeatable).
    #[arg(long)]
    subprotocol: Vec<String>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long, value_parser = parse_header)]
    header: Vec<(String, String)>,
    /// The `Origin` header, as a browser on that origin would send it
    /// (`https://app.example`).
    #[arg(long, value_parser = parse_origin)]
    origin: Option<String>,
    /// Send stdin lines as binary messages instead of text.
    #[arg(long)]
    binary: bool,
    /// Send a keepalive ping this often, in seconds (0: never).
    #[arg(long, default_value_t = 30)]
    ping_interval: u64,
    /// Do not offer permessage-deflate.
    #[arg(long)]
    no_deflate: bool,
}

/// Fields the handshake writes itself, and the flag that sets each one.
const HANDSHAKE_FIELDS: &[(&str, &str)] = &[
    ("Origin", "use --origin"),
    ("Sec-WebSocket-Protocol", "use --subprotocol"),
    (
        "Sec-WebSocket-Extensions",
        "permessage-deflate is offered unless --no-deflate",
    ),
    ("Host", "it comes from the URL"),
];

/// `Name: value`, refused here (naming the header and why) rather than at
/// connect time by the handshake, whose error cannot say which one.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not `Name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!(
            "`{name}` is not a valid header name (RFC 9110 5.1)"
        ));
    }
    if let Some((field, hint)) = HANDSHAKE_FIELDS
        .iter()
        .find(|(f, _)| f.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "header `{field}` is written by the handshake itself: {hint}"
        ));
    }
    // The core's own checks, so this parser cannot drift from them.
    let request = || herald_proto::handshake::ClientHandshake::new("localhost", "/");
    if request().and_then(|r| r.header(name, "x")).is_err() {
        return Err(format!(
            "header `{name}` is written by the handshake itself"
        ));
    }
    if request().and_then(|r| r.header(name, value)).is_err() {
        return Err(format!(
            "the value of header `{name}` has a control character (CR, LF, ...)"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// RFC 9110 5.6.2: `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_origin(s: &str) -> Result<String, String> {
    herald_proto::handshake::ClientHandshake::new("localhost", "/")
        .and_then(|r| r.origin(s))
        .map(|_| s.to_owned())
        .map_err(|_| format!("`{s}` is not an origin (like https://app.example)"))
}

/// How a binary message is printed: its length and its first bytes in hex,
/// since raw bytes would garble the terminal and look like text.
fn show_binary(b: &[u8]) -> String {
    const SHOWN: usize = 32;
    let mut line = format!("< binary {} bytes", b.len());
    if !b.is_empty() {
        line.push_str(": ");
        for byte in &b[..b.len().min(SHOWN)] {
            let _ = write!(line, "{byte:02x}");
        }
        if b.len() > SHOWN {
            line.push_str("...");
        }
    }
    line
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    crate::runtime(1)?.block_on(async move {
        let interval = (args.ping_interval > 0).then(|| Duration::from_secs(args.ping_interval));
        let config = Config::default()
            .protocol(herald::ProtocolConfig::default().ping_interval(interval))
            .deflate((!args.no_deflate).then(DeflateConfig::default));
        let mut client = Client::new(&args.url).config(config);
        for p in &args.subprotocol {
            client = client.protocol(p.clone());
        }
        for (k, v) in &args.header {
            client = client.header(k.clone(), v.clone());
        }
        if let Some(origin) = &args.origin {
            client = client.origin(origin.clone());
        }
        let (ws, _response) = client.connect().await?;
        if let Some(p) = ws.protocol() {
            eprintln!("connected, subprotocol {p}");
        } else {
            eprintln!("connected");
        }
        let (mut rx, mut tx) = ws.split();
        let printer = tokio::spawn(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(r) = rx.recv().await {
                match r {
                    Ok(Message::Text(t)) => {
                        let _ = stdout.write_all(t.as_bytes()).await;
                    }
                    Ok(Message::Binary(b)) => {
                        let _ = stdout.write_all(show_binary(&b).as_bytes()).await;
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return (rx.close_frame(), false);
                    }
                }
                let _ = stdout.write_all(b"\n").await;
                let _ = stdout.flush().await;
            }
            (rx.close_frame(), true)
        });
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut printer = printer;
        let (frame, clean) = loop {
            tokio::select! {
                line = lines.next_line() => match line? {
                    Some(line) => {
                        let msg = if args.binary {
                            Message::Binary(Bytes::from(line))
                        } else {
                            Message::text(line)
                        };
                        if tx.send(msg).await.is_err() {
                            break printer.await?;
                        }
                    }
                    None => {
                        let _ = tx.close(CloseCode::NORMAL, "").await;
                        break printer.await?;
                    }
                },
                r = &mut printer => break r?,
            }
        };
        match frame {
            Some(f) => eprintln!("closed: {} {}", f.code, f.reason),
            None => eprintln!("closed"),
        }
        Ok(if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_messages_are_shown_as_such() {
        assert_eq!(show_binary(b""), "< binary 0 bytes");
        assert_eq!(show_binary(b"hello"), "< binary 5 bytes: 68656c6c6f");
        let long = show_binary(&[0xab; 40]);
        assert_eq!(long, format!("< binary 40 bytes: {}...", "ab".repeat(32)));
    }

    #[test]
    fn header_errors_name_the_header() {
        assert_eq!(
            parse_header("X-Token: abc").unwrap(),
            ("X-Token".into(), "abc".into())
        );
        let e = parse_header("origin: https://a.example").unwrap_err();
        assert!(e.contains("`Origin`") && e.contains("--origin"), "{e}");
        let e = parse_header("Sec-WebSocket-Key: x").unwrap_err();
        assert!(e.contains("`Sec-WebSocket-Key`"), "{e}");
        let e = parse_header("Bad Name: x").unwrap_err();
        assert!(e.contains("`Bad Name` is not a valid header name"), "{e}");
        let e = parse_header("X-A: b\u{7}").unwrap_err();
        assert!(e.contains("value of header `X-A`"), "{e}");
        assert!(parse_header("no colon").is_err());
        assert!(parse_origin("").is_err());
    }
}
