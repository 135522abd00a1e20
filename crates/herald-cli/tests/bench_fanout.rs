//! `herald bench fanout` against a real `herald serve`, small and short:
//! every publication reaches every subscriber, in order, and the report
//! says so. (The long runs live in bench/fanout.py, never in the suite.)

mod support;

use support::{Herald, Stream, TIMEOUT};

#[test]
fn every_subscriber_gets_every_publication() {
    let mut server = Herald::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--no-demos",
        ],
        &[],
    );
    let addr = server.serve_addr();
    let pid = server.pid().to_string();
    let url = format!("http://{addr}");
    let mut bench = Herald::start(
        &[
            "bench",
            "fanout",
            "--server",
            &url,
            "--subscribers",
            "100",
            "--threads",
            "2",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--drain",
            "10s",
            "--settle",
            "0s",
            "--server-pid",
            &pid,
            "--json",
        ],
        &[],
    );
    let status = bench.exit(TIMEOUT * 3).expect("the bench ends");
    let stdout = bench.lines(Stream::Stdout).join("\n");
    assert!(status.success(), "{status:?}: {}", bench.text());
    let field = |name: &str| -> u64 {
        let key = format!("\"{name}\":");
        let at = stdout
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            + key.len();
        stdout[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("bad {name} in {stdout}"))
    };
    assert_eq!(field("subscribers"), 100, "{stdout}");
    assert_eq!(field("publications"), 20, "{stdout}");
    assert_eq!(field("deliveries"), 2000, "{stdout}");
    assert_eq!(field("missed_publications"), 0, "{stdout}");
    assert_eq!(field("out_of_order"), 0, "{stdout}");
    assert_eq!(field("connections_lost"), 0, "{stdout}");
    assert!(stdout.contains("\"server_cpu\":{\"util\""), "{stdout}");
    assert!(field("server_bytes_per_connection") > 0, "{stdout}");
}
