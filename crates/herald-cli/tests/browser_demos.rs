//! The browser side of `herald serve`: the demo pages and the JavaScript
//! client (web/), run for real.
//!
//! `demos_in_chromium` starts the `herald` binary on a free port and runs
//! web/tests/demos.mjs against it: Debian's Chromium, driven by
//! playwright-core, plays the chat (presence, messages both ways, offline
//! and back without losing a message), the quotes ticker (live feed, a
//! backend publishing through the HTTP API), the game (monsters move, a
//! player's move reaches the other player), herald.js reconnecting after
//! the server kicks it (POST /api/disconnect) and recovering what it missed,
//! the QR-code login (the code decoded with jsQR, a blip between scan and
//! confirm), herald.js getting back to WebSocket after a fallback, and,
//! last, the server's graceful shutdown (SIGTERM): each page told to come
//! back after its own "retry in N ms", and the server exiting 0.
//!
//! `demos_in_chromium_without_websocket` runs the same pages through
//! web/tests/proxy.mjs, which refuses every WebSocket upgrade: herald.js
//! falls back (within 3 s, remembered for the session), every demo works,
//! and across outages of the push connection nothing is lost on HTTP
//! streaming, SSE, long polling or polling, nor in the QR-code login on
//! each of them.
//!
//! `client_reconnect_logic` runs web/tests/client.mjs: herald.js against a
//! scripted fake server in Node (close codes, backoff, heartbeat, recovery
//! and de-duplication), no browser.
//!
//! Both scripts print one JSON line per check, `{"check":NAME,"ok":BOOL,...}`.
//! Missing peers (Node, Chromium, web/node_modules) fail the test: run
//! scripts/install-peers.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Each run of the demo checks takes 20 to 80 s; the bound is a hang guard
/// with room for a loaded CI machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// A child process killed (and reaped) when the test ends, passing or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails, with what to do, unless Node (and, for the browser, Chromium and
/// playwright-core) are installed.
fn require_peers(browser: bool) {
    let fix = "run scripts/install-peers (it installs Debian's chromium and runs `npm ci` in web/)";
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("`node --version` failed ({}): {fix}", o.status),
        Err(e) => panic!("node is not installed ({e}): {fix}"),
    }
    if browser {
        assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: {fix}");
        let playwright = web_dir().join("node_modules/playwright-core/package.json");
        assert!(
            playwright.exists(),
            "{} is missing: {fix}",
            playwright.display()
        );
    }
}

/// `herald serve` on a free loopback port, in dev mode with the demos.
struct Server {
    child: Killed,
    url: String,
}

impl Server {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With `extra` arguments after the defaults.
    fn start_with(extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--threads", "2"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The defaults, whatever the environment says.
        for (key, _) in std::env::vars() {
            if key.starts_with("HERALD_") {
                command.env_remove(key);
            }
        }
        let mut child = Killed(command.spawn().expect("start herald serve"));
        let stderr = child.0.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Reads the printed address, then keeps draining (and echoing) the
        // log so the server never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[herald] {line}");
                if let Some((scheme, rest)) = line
                    .strip_prefix("herald serve: ")
                    .and_then(|l| l.split_once("://"))
                    && let Some((addr, _)) = rest.split_once('/')
                {
                    let _ = tx.send(format!("{scheme}://{addr}"));
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("herald serve did not print its address within 20 s");
        Self { child, url }
    }
}

/// What a script printed and how it ended.
struct Run {
    status: ExitStatus,
    lines: Vec<String>,
}

impl Run {
    /// Asserts every check passed, exactly the `expected` ones ran, and the
    /// script exited 0.
    fn assert_passed(&self, expected: &[&str]) {
        let mut ran = Vec::new();
        let mut failures = Vec::new();
        for line in &self.lines {
            match parse_check(line) {
                Some((name, true)) => ran.push(name),
                Some((name, false)) => {
                    ran.push(name);
                    failures.push(line.as_str());
                }
                None => {}
            }
        }
        assert!(
            failures.is_empty(),
            "failed checks:\n{}",
            failures.join("\n")
        );
        assert_eq!(ran, expected, "checks reported");
        assert!(self.status.success(), "exit status {}", self.status);
    }
}

/// `{"check":"NAME","ok":BOOL,...}`, the scripts' result lines.
fn parse_check(line: &str) -> Option<(&str, bool)> {
    let rest = line.strip_prefix(r#"{"check":""#)?;
    let (name, rest) = rest.split_once('"')?;
    if rest.starts_with(r#","ok":true"#) {
        Some((name, true))
    } else if rest.starts_with(r#","ok":false"#) {
        Some((name, false))
    } else {
        None
    }
}

/// Runs `node web/tests/<script> args...`, printing its lines as they come,
/// killed after [`RUN_TIMEOUT`].
fn node(script: &str, args: &[&str]) -> Run {
    let mut child = Killed(
        Command::new("node")
            .arg(web_dir().join("tests").join(script))
            .args(args)
            .current_dir(web_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node {script}: {e}")),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let label = script.to_owned();
    let out = thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[{label}] {line}");
            lines.push(line);
        }
        lines
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        eprint!("{text}");
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for node") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node {script} still running after {RUN_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let lines = out.join().expect("stdout reader");
    let _ = err.join();
    Run { status, lines }
}

#[test]
fn demos_in_chromium() {
    require_peers(true);
    let mut server = Server::start();
    let pid = server.child.0.id().to_string();
    // The last check stops the server with SIGTERM to watch the drain.
    let run = node("demos.mjs", &[&server.url, "--server-pid", &pid]);
    run.assert_passed(&[
        "demos/chat",
        "demos/chat_phone",
        "demos/quotes",
        "demos/game",
        "demos/reconnect",
        "demos/qr_websocket",
        "demos/websocket_comeback",
        "demos/shutdown",
    ]);
    // Drained (5 s window) and gone, cleanly.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.0.try_wait().expect("wait for herald") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "herald serve still running 20 s after SIGTERM"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "herald serve exited with {status} after SIGTERM"
    );
}

#[test]
fn demos_in_chromium_without_websocket() {
    require_peers(true);
    let server = Server::start();
    let run = node("demos.mjs", &[&server.url, "--block-websocket"]);
    run.assert_passed(&[
        "blocked/chat",
        "blocked/chat_transports",
        "blocked/quotes",
        "blocked/game",
        "blocked/fallback",
        "blocked/recovery_stream",
        "blocked/recovery_sse",
        "blocked/recovery_longpoll",
        "blocked/recovery_poll",
        "blocked/qr_stream",
        "blocked/qr_sse",
        "blocked/qr_longpoll",
        "blocked/qr_poll",
    ]);
}

/// `--token-secret`: the chat page says a token is required; the QR-code
/// login, whose backend hands out a token for its one channel, works over
/// WebSocket and SSE.
#[test]
fn demos_in_chromium_with_tokens() {
    require_peers(true);
    let server = Server::start_with(&["--token-secret", "browser-demos-secret-0123456789abcdef"]);
    let run = node("demos.mjs", &[&server.url, "--token-required"]);
    run.assert_passed(&[
        "tokens/token_required",
        "tokens/qr_websocket",
        "tokens/qr_sse",
    ]);
}

/// `--tls-cert/--tls-key`: Chromium, trusting the certificate by a pin of
/// its key, loads a page over https:// and receives a publication over
/// wss:// (web/tests/tls.mjs).
#[test]
fn wss_in_chromium() {
    require_peers(true);
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate");
    let dir = std::env::temp_dir().join(format!("herald-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let server = Server::start_with(&[
        "--tls-cert",
        cert.to_str().expect("UTF-8 path"),
        "--tls-key",
        key.to_str().expect("UTF-8 path"),
    ]);
    assert!(server.url.starts_with("https://"), "banner: {}", server.url);
    let run = node(
        "tls.mjs",
        &[&server.url, cert.to_str().expect("UTF-8 path")],
    );
    let _ = std::fs::remove_dir_all(&dir);
    run.assert_passed(&["tls/untrusted_without_pin", "tls/wss_publication"]);
}

#[test]
fn client_reconnect_logic() {
    require_peers(false);
    let run = node("client.mjs", &[]);
    run.assert_passed(&[
        "client/close_code_table",
        "client/connect_sends_name_and_token",
        "client/get_token_called_per_connect",
        "client/refreshes_token_before_expiry",
        "client/reconnects_with_fresh_token_after_4005",
        "client/error_reply_and_timeout",
        "client/pending_requests_rejected_on_close",
        "client/no_reconnect_at_or_above_4100",
        "client/shutdown_hint_delays_reconnect",
        "client/backoff_grows_while_failing",
        "client/resubscribe_recovers_in_order_exactly_once",
        "client/gap_raises_on_gap",
        "client/heartbeat_detects_dead_connection",
        "client/unsubscribe_and_server_refusal",
        "client/batched_presence_calls_on_join_and_on_leave",
        "client/disconnect_then_connect_recovers",
        "client/falls_back_and_remembers",
        "client/stream_disconnect_message_is_the_close",
        "client/poll_subscribe_recover_gap_and_refusal",
        "client/longpoll_command_does_not_wait_for_held_poll",
    ]);
}

#[test]
fn result_lines_parse() {
    assert_eq!(
        parse_check(r#"{"check":"demos/chat","ok":true,"ms":3}"#),
        Some(("demos/chat", true))
    );
    assert_eq!(
        parse_check(r#"{"check":"a","ok":false,"error":"x"}"#),
        Some(("a", false))
    );
    assert_eq!(parse_check("[page] hello"), None);
}
