//! `herald bench`: load generators. `idle` holds many idle connections
//! and reports the server's memory per connection.

mod idle;

use std::process::ExitCode;

use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Subcommand, Debug)]
enum Scenario {
    /// Open N idle connections and report the server's RSS per connection.
    Idle(idle::Args),
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    match args.scenario {
        Scenario::Idle(a) => idle::run(a),
    }
}

/// Resident set size of a process, from /proc/PID/status (Linux).
pub(crate) fn rss_bytes(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("bad VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}
