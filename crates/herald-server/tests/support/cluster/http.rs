//! HTTP for the fleet's tests: one request per connection with errors
//! returned (the node may be gone), the API with its key, and a streamed
//! response read as it arrives (HTTP streaming's NDJSON, SSE).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::API_KEY;
use crate::support::{Chunks, HttpResponse, find, request_bytes};

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), the
/// response read to its end within `limit`. Errors are returned, not
/// panicked on: the node may be gone.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    limit: Duration,
) -> Result<HttpResponse, String> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut extra = vec![("Connection", "close")];
        extra.extend_from_slice(headers);
        tcp.write_all(request_bytes(addr, method, path, &extra, body).as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        parse_response(&raw)
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{method} {path}: no answer within {limit:?}")))
}

/// [`request`] to the API, with the key, a JSON body and a 5 s bound.
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<HttpResponse, String> {
    let auth = format!("apikey {API_KEY}");
    let body = body.map(Value::to_string);
    request(
        addr,
        method,
        path,
        &[("Authorization", &auth)],
        body.as_deref(),
        Duration::from_secs(5),
    )
    .await
}

/// `POST /api/publish`: the publication's (epoch, offset), or why not.
pub async fn publish(
    addr: SocketAddr,
    channel: &str,
    data: Value,
) -> Result<(String, u64), String> {
    let body = json!({"channel": channel, "data": data});
    let r = api(addr, "POST", "/api/publish", Some(&body)).await?;
    if r.status != 200 {
        return Err(format!("{}: {}", r.status, r.body));
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    match (v["epoch"].as_str(), v["offset"].as_u64()) {
        (Some(epoch), Some(offset)) => Ok((epoch.to_owned(), offset)),
        _ => Err(format!("no epoch and offset: {v}")),
    }
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end =
        find(raw, b"\r\n\r\n").ok_or_else(|| format!("no response head in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        let mut chunks = Chunks {
            raw: body,
            ..Chunks::default()
        };
        chunks.decode();
        body = chunks.body;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A long response read as it arrives (HTTP streaming's NDJSON, SSE).
pub struct Streamed {
    tcp: TcpStream,
    pub status: u16,
    pub head: String,
    chunks: Chunks,
}

impl Streamed {
    /// Sends the request and reads the response head.
    pub async fn open(
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Self, String> {
        let open = async {
            let mut tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            tcp.write_all(request_bytes(addr, method, path, &[], body).as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut raw = Vec::new();
            let end = loop {
                if let Some(end) = find(&raw, b"\r\n\r\n") {
                    break end;
                }
                let mut buf = [0u8; 4096];
                let n = tcp.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("closed before the response head".to_owned());
                }
                raw.extend_from_slice(&buf[..n]);
            };
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let chunks = Chunks {
                raw: raw[end + 4..].to_vec(),
                ..Chunks::default()
            };
            Ok(Self {
                tcp,
                status,
                head,
                chunks,
            })
        };
        tokio::time::timeout(Duration::from_secs(5), open)
            .await
            .unwrap_or_else(|_| Err(format!("{method} {path}: no response head in 5 s")))
    }

    /// The next piece of the body ending with `sep`; `None` once it ended.
    async fn next(&mut self, sep: &[u8]) -> Option<String> {
        loop {
            self.chunks.decode();
            if let Some(i) = find(&self.chunks.body, sep) {
                let piece: Vec<u8> = self.chunks.body.drain(..i + sep.len()).collect();
                return Some(String::from_utf8_lossy(&piece[..i]).into_owned());
            }
            if self.chunks.ended {
                return None;
            }
            let mut buf = [0u8; 8192];
            match self.tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.chunks.raw.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The next NDJSON message (keepalive lines skipped).
    pub async fn line(&mut self) -> Option<Value> {
        loop {
            let line = self.next(b"\n").await?;
            if !line.trim().is_empty() {
                return serde_json::from_str(&line).ok();
            }
        }
    }

    /// The next SSE event's data as JSON (comments skipped).
    pub async fn event(&mut self) -> Option<Value> {
        loop {
            let block = self.next(b"\n\n").await?;
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                return serde_json::from_str(data).ok();
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
