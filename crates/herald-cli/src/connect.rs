//! `herald connect`: an interactive client, like websocat.

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

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or("expected Name: value")?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
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
                        let _ = stdout.write_all(&b).await;
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
