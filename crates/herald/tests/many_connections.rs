//! 10,000 concurrent connections to one herald server: each sends a message
//! and gets its echo, all stay open at once, then all close cleanly.
//!
//! The server runs in the test process; the 10,000 clients run in a child
//! process (this test binary again, running `client_process`), so each
//! process needs about 10,000 file descriptors rather than 20,000: this
//! machine kind's hard RLIMIT_NOFILE is 20,000 and an unprivileged process
//! cannot raise it.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::within;
use herald::{Acceptor, Client, CloseCode, Config, Message};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

const CONNECTIONS: usize = 10_000;
/// Handshakes in flight at once.
const BATCH: usize = 250;
/// Descriptors one process needs: its sockets plus the runtime's and stdio.
const FDS_NEEDED: u64 = CONNECTIONS as u64 + 100;
/// Tells `client_process` where to connect; set only for the child.
const URL_VAR: &str = "HERALD_MANY_CONNECTIONS_URL";
/// The whole run, opening and closing, must fit in this.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Raises the soft limit on open files to the hard limit; fails the test
/// if that is too low for `CONNECTIONS` sockets.
fn raise_nofile_limit() {
    let soft = rlimit::increase_nofile_limit(u64::MAX).expect("setrlimit(RLIMIT_NOFILE)");
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(
        soft >= FDS_NEEDED,
        "RLIMIT_NOFILE is {soft} (hard limit {hard}); {CONNECTIONS} connections need {FDS_NEEDED} \
         descriptors in each process: raise the hard limit (ulimit -Hn) for this test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_connections() {
    raise_nofile_limit();
    let started = Instant::now();

    // The server: echo, counting live connections and the peak.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done) = mpsc::unbounded_channel::<Result<CloseCode, String>>();
    let server = {
        let (live, peak) = (live.clone(), peak.clone());
        tokio::spawn(async move {
            let acceptor = Acceptor::new(Config::default());
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (tcp, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = done_tx.send(Err(format!("accept: {e}")));
                        return;
                    }
                };
                let (acceptor, live, peak, done_tx) = (
                    acceptor.clone(),
                    live.clone(),
                    peak.clone(),
                    done_tx.clone(),
                );
                conns.spawn(async move {
                    let mut ws = match acceptor.accept(tcp).await {
                        Ok(ws) => ws,
                        Err(e) => return drop(done_tx.send(Err(format!("handshake: {e}")))),
                    };
                    let n = live.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    let mut result = Ok(());
                    while let Some(r) = ws.recv().await {
                        match r {
                            Ok(msg) => {
                                if let Err(e) = ws.send(msg).await {
                                    result = Err(format!("send: {e}"));
                                    break;
                                }
                            }
                            Err(e) => {
                                result = Err(format!("recv: {e}"));
                                break;
                            }
                        }
                    }
                    live.fetch_sub(1, Ordering::SeqCst);
                    let code = ws
                        .close_frame()
                        .map(|f| f.code)
                        .unwrap_or(CloseCode::ABNORMAL);
                    let _ = done_tx.send(result.map(|()| code));
                });
                while conns.try_join_next().is_some() {}
            }
        })
    };

    // The clients, in a child process.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "client_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(URL_VAR, &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut expect = async |want: &str| loop {
        let line = tokio::time::timeout(RUN_TIMEOUT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the client process printed no {want:?} in {RUN_TIMEOUT:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the client process exited before {want:?}"));
        // libtest's own output is skipped; it starts the line with
        // "test client_process ... " before the test prints.
        if let Some(at) = line.find("herald:") {
            assert_eq!(&line[at..], want);
            return;
        }
    };

    expect(&format!("herald: {CONNECTIONS} open")).await;
    let opened_in = started.elapsed();
    // Every connection is open at once, on both sides.
    assert_eq!(
        live.load(Ordering::SeqCst),
        CONNECTIONS,
        "live server connections"
    );
    stdin.write_all(b"close\n").await.unwrap();
    expect(&format!("herald: {CONNECTIONS} closed")).await;

    let mut codes = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let r = within("the server side of every connection ending", done.recv())
            .await
            .unwrap();
        codes.push(r.unwrap_or_else(|e| panic!("server side: {e}")));
    }
    assert!(
        codes.iter().all(|&c| c == CloseCode::NORMAL),
        "a connection did not close with 1000"
    );
    assert_eq!(peak.load(Ordering::SeqCst), CONNECTIONS);
    assert_eq!(live.load(Ordering::SeqCst), 0);
    let status = within("the client process's exit", child.wait())
        .await
        .unwrap();
    assert!(status.success(), "client process: {status}");
    server.abort();
    eprintln!(
        "{CONNECTIONS} connections: open after {opened_in:?}, all closed after {:?}",
        started.elapsed()
    );
}

/// The client side of `ten_thousand_concurrent_connections`, run in a child
/// process; on its own (without `HERALD_MANY_CONNECTIONS_URL`) it does
/// nothing.
///
/// Opens every connection (`BATCH` handshakes at a time), each sending a
/// message and checking its echo, prints "herald: N open", waits for
/// "close" on stdin, closes them all and prints "herald: N closed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_process() {
    let Ok(url) = std::env::var(URL_VAR) else {
        return;
    };
    raise_nofile_limit();
    let permits = Arc::new(Semaphore::new(BATCH));
    let (opened_tx, mut opened) = mpsc::unbounded_channel::<()>();
    let (close_tx, close_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CONNECTIONS {
        let (url, permits, opened_tx, mut close_rx) = (
            url.clone(),
            permits.clone(),
            opened_tx.clone(),
            close_rx.clone(),
        );
        tasks.spawn(async move {
            let permit = permits.clone().acquire_owned().await.unwrap();
            let (mut ws, _) = Client::new(url)
                .connect()
                .await
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let msg = Message::text(format!("hello from {i}"));
            ws.send(msg.clone()).await.unwrap();
            let echo = ws.recv().await.expect("closed before the echo").unwrap();
            assert_eq!(echo, msg);
            drop(permit);
            opened_tx.send(()).unwrap();
            close_rx.wait_for(|&close| close).await.unwrap();
            let _permit = permits.acquire_owned().await.unwrap();
            let frame = ws.close(CloseCode::NORMAL, "").await.unwrap();
            assert_eq!(frame.code, CloseCode::NORMAL);
        });
    }
    drop(opened_tx);
    for _ in 0..CONNECTIONS {
        tokio::time::timeout(RUN_TIMEOUT, opened.recv())
            .await
            .expect("opening timed out")
            .expect("a client task failed");
    }
    println!("herald: {CONNECTIONS} open");
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    assert_eq!(line.await.unwrap().unwrap(), "close\n");
    close_tx.send(true).unwrap();
    while let Some(r) = tokio::time::timeout(RUN_TIMEOUT, tasks.join_next())
        .await
        .expect("closing timed out")
    {
        r.unwrap();
    }
    println!("herald: {CONNECTIONS} closed");
}
