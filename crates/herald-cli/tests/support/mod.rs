//! The `herald` binary as a child process: started with none of the
//! caller's `HERALD_*` variables (the defaults, whatever the environment of
//! the test run says), its output collected line by line, every wait
//! bounded, killed and reaped when dropped.

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for a loaded CI machine to start the binary.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub struct Herald {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Stream, String)>,
    /// Every line read so far, in the order read.
    pub output: Vec<(Stream, String)>,
}

impl Herald {
    /// `herald <args>` with `env` as its only `HERALD_*` variables.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let env: Vec<(&OsStr, &OsStr)> = env
            .iter()
            .map(|(k, v)| (OsStr::new(k), OsStr::new(v)))
            .collect();
        Self::start_os(args, &env)
    }

    /// As [`Herald::start`], with variables that need not be UTF-8.
    pub fn start_os(args: &[&str], env: &[(&OsStr, &OsStr)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("HERALD_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("start herald");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        forward(out, Stream::Stdout, tx.clone());
        forward(err, Stream::Stderr, tx);
        Self {
            child,
            stdin,
            lines,
            output: Vec::new(),
        }
    }

    /// Writes to the child's stdin.
    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to herald");
        stdin.flush().expect("flush to herald");
    }

    /// Closes the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The first line (on either stream) containing `needle`, read within
    /// `timeout`; `None` if the child's output ended or time ran out first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((stream, line)) => {
                    self.output.push((stream, line.clone()));
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `herald serve`'s address, from its banner.
    pub fn serve_addr(&mut self) -> String {
        let line = self
            .wait_for("herald serve: http://", TIMEOUT)
            .unwrap_or_else(|| panic!("herald serve did not start: {}", self.text()));
        let rest = &line[line.find("http://").unwrap() + "http://".len()..];
        rest[..rest.find('/').unwrap()].to_owned()
    }

    /// Waits within `timeout` for the child to exit, reading all its output;
    /// kills it and returns `None` if it does not.
    pub fn exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.close_stdin();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.output.push(line),
                // Both streams closed: the child has exited (or closed
                // them on its way out).
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return self.child.wait().ok();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
            }
        }
    }

    /// The lines of one stream read so far.
    pub fn lines(&self, stream: Stream) -> Vec<&str> {
        self.output
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    /// Everything read so far, both streams, for failure messages.
    pub fn text(&self) -> String {
        self.output
            .iter()
            .map(|(s, l)| format!("[{s:?}] {l}\n"))
            .collect()
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(stream: impl Read + Send + 'static, which: Stream, tx: mpsc::Sender<(Stream, String)>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send((which, line)).is_err() {
                break;
            }
        }
    });
}

/// A file in the temporary directory, removed when dropped.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("herald-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write a temporary file");
        Self(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
