//! Out of file descriptors: `herald echo` (tokio and `--event-loop`) and
//! `herald serve`, started with a low `RLIMIT_NOFILE`, are filled with
//! connections until `accept` fails with EMFILE. The process must stay up,
//! keep serving the connections it has, log the failure at most once a
//! second, and take the connection that waits in the listen queue as soon
//! as some others close, with no new connection arriving to wake it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use herald::{MaybeTlsStream, Message, WebSocket};

/// Descriptors the child may have open.
const NOFILE: u64 = 64;
/// More connections than that can take: the fill stops well before.
const MAX_TRIES: usize = 200;
/// How long a handshake may take before the server counts as full.
const FULL_AFTER: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(10);

/// The child, killed and reaped when the test ends.
struct Herald {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Herald {
    /// Starts `herald ARGS` with at most [`NOFILE`] descriptors and reads
    /// the address it listens on from its banner.
    fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .args(args)
            .env("HERALD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: setrlimit is async-signal-safe, and only lowers the limit
        // of the child about to exec.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: NOFILE,
                    rlim_max: NOFILE,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn herald");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    // "herald echo listening on ws://ADDR", "herald serve: http://ADDR/ (...)"
                    if let Some(rest) = line.split("://").nth(1)
                        && let Some(addr) = rest.split(['/', ' ']).next()
                        && let Ok(addr) = addr.parse::<SocketAddr>()
                    {
                        let _ = addr_tx.send(addr);
                    }
                    lines.lock().unwrap().push(line);
                }
            }
        });
        let addr = addr_rx
            .recv_timeout(TIMEOUT)
            .expect("herald printed its address");
        Self {
            child,
            addr,
            stderr: lines,
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "herald exited ({status}) when out of descriptors:\n{}",
                self.stderr.lock().unwrap().join("\n")
            );
        }
    }

    /// Lines of its log that report a failed accept.
    fn accept_log_lines(&self) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("accept"))
            .count()
    }
}

type Ws = WebSocket<MaybeTlsStream>;

async fn open(url: String) -> Result<Ws, herald::Error> {
    herald::Client::new(url).connect().await.map(|(ws, _)| ws)
}

/// Opens connections until one is not accepted within [`FULL_AFTER`];
/// returns the open ones and the one left waiting in the listen queue.
async fn fill(url: &str) -> (Vec<Ws>, tokio::task::JoinHandle<Result<Ws, herald::Error>>) {
    let mut open_ones = Vec::new();
    for _ in 0..MAX_TRIES {
        let mut pending = tokio::spawn(open(url.to_owned()));
        match tokio::time::timeout(FULL_AFTER, &mut pending).await {
            Ok(r) => open_ones.push(r.expect("task").expect("handshake")),
            Err(_) => return (open_ones, pending),
        }
    }
    panic!("{MAX_TRIES} connections accepted with RLIMIT_NOFILE {NOFILE}");
}

/// The whole scenario; `works` checks that an open connection is served.
async fn out_of_descriptors(herald: &mut Herald, path: &str, works: impl AsyncFn(&mut Ws)) {
    let url = format!("ws://{}{path}", herald.addr);
    let started = Instant::now();
    let (mut open_ones, pending) = fill(&url).await;
    assert!(open_ones.len() > 10, "only {} connections", open_ones.len());

    // Out of descriptors: still up, still serving.
    tokio::time::sleep(FULL_AFTER).await;
    herald.assert_running();
    works(open_ones.last_mut().expect("an open connection")).await;

    // Some close; the queued connection is taken, with nothing new
    // arriving to wake the listener.
    open_ones.truncate(open_ones.len() - 5);
    let mut taken = tokio::time::timeout(TIMEOUT, pending)
        .await
        .expect("the queued connection accepted once descriptors were free")
        .expect("task")
        .expect("handshake");
    works(&mut taken).await;
    herald.assert_running();

    let seconds = started.elapsed().as_secs() as usize;
    let logged = herald.accept_log_lines();
    assert!(logged >= 1, "the failure is logged");
    assert!(
        logged <= seconds + 1,
        "at most one line a second: {logged} in {seconds} s"
    );
}

async fn echoes(ws: &mut Ws) {
    ws.send(Message::text("still here")).await.expect("send");
    let reply = tokio::time::timeout(TIMEOUT, ws.recv())
        .await
        .expect("an echo");
    assert_eq!(
        reply.expect("open").expect("message"),
        Message::text("still here")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_survives_running_out_of_descriptors() {
    let mut herald = Herald::start(&["echo", "--listen", "127.0.0.1:0"]);
    out_of_descriptors(&mut herald, "/", echoes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_event_loop_survives_running_out_of_descriptors() {
    let mut herald = Herald::start(&["echo", "--event-loop", "--listen", "127.0.0.1:0"]);
    out_of_descriptors(&mut herald, "/", echoes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_survives_running_out_of_descriptors_and_counts_it() {
    let mut herald = Herald::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-demos",
        "--threads",
        "1",
    ]);
    let addr = herald.addr;
    out_of_descriptors(&mut herald, "/connection/websocket", async |ws: &mut Ws| {
        ws.send(Message::text(r#"{"id":1,"connect":{}}"#))
            .await
            .expect("send");
        let reply = tokio::time::timeout(TIMEOUT, ws.recv())
            .await
            .expect("a reply")
            .expect("open")
            .expect("message");
        let Message::Text(text) = reply else {
            panic!("{reply:?}")
        };
        assert!(text.contains("\"client\""), "{text}");
    })
    .await;
    let metrics = http_get(addr, "/metrics").await;
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_accept_errors_total "))
        .unwrap_or_else(|| panic!("no herald_accept_errors_total in:\n{metrics}"))
        .trim()
        .parse()
        .expect("a number");
    assert!(errors >= 1.0, "accept errors counted: {errors}");
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_string(&mut out))
        .await
        .expect("a response")
        .expect("read");
    out
}
