//! `herald conformance-client`: the client driver for a conformance
//! suite's fuzzing server: count the cases, run each (echoing every message
//! until the server closes), then ask for the reports.

use std::process::ExitCode;

use herald::{Client, Config, DeflateConfig, Message};

use crate::BoxError;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The fuzzing server.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// Agent name the reports are filed under.
    #[arg(long, default_value = "herald")]
    agent: String,
    /// Run only these case numbers (e.g. 1-10,15).
    #[arg(long)]
    cases: Option<String>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, BoxError> {
    crate::runtime(1)?.block_on(async move {
        let base = args.url.trim_end_matches('/');
        let count = case_count(base).await?;
        eprintln!("{count} cases");
        let selected = match &args.cases {
            Some(spec) => parse_cases(spec, count)?,
            None => (1..=count).collect(),
        };
        for case in selected {
            let url = format!("{base}/runCase?case={case}&agent={}", args.agent);
            if let Err(e) = run_case(&url).await {
                // The suite judges the case; a failed connection is data.
                eprintln!("case {case}: {e}");
            }
        }
        let url = format!("{base}/updateReports?agent={}", args.agent);
        let (mut ws, _) = Client::new(url).connect().await?;
        while ws.recv().await.is_some() {}
        eprintln!("reports updated");
        Ok(ExitCode::SUCCESS)
    })
}

fn config() -> Config {
    let protocol = herald::ProtocolConfig::default()
        .ping_interval(None)
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20);
    Config::default()
        .protocol(protocol)
        .deflate(Some(DeflateConfig::default()))
}

async fn case_count(base: &str) -> Result<u32, BoxError> {
    let (mut ws, _) = Client::new(format!("{base}/getCaseCount"))
        .connect()
        .await?;
    let mut count = None;
    while let Some(msg) = ws.recv().await {
        if let Message::Text(t) = msg? {
            count = Some(t.trim().parse()?);
        }
    }
    count.ok_or_else(|| "no case count received".into())
}

async fn run_case(url: &str) -> Result<(), BoxError> {
    let (ws, _) = Client::new(url).config(config()).connect().await?;
    crate::echo::EchoTask::Echo(ws).await;
    Ok(())
}

fn parse_cases(spec: &str, count: u32) -> Result<Vec<u32>, BoxError> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.trim().parse()?, b.trim().parse()?);
        out.extend((a..=b).filter(|c| (1..=count).contains(c)));
    }
    Ok(out)
}
