//! A stand-in packet server for the end-to-end tests that SIGKILL one (not a program users
//! run): a gate with PAR-TPS, about 5,000 checks a second offered from one thread, and the
//! cumulative admitted count printed every second as `admitted N`, so that a test that
//! kills it knows what it had counted and what its last second was.
//!
//! - `e2e-packet-server attached <sidecar address>`: the gate attached to an `entitled`
//!   (at `unix:PATH`) with the default options (a snapshot a second).
//! - `e2e-packet-server embedded <config> [--load]`: the sidecar embedded around the gate
//!   (`Sidecar::start(config, Some(gate))`), its local API on the configuration's socket
//!   (printed first as `listening on unix:PATH`); with `--load`, the traffic. Without, it
//!   flushes once (prints `waiting N`, the reports not delivered) and serves on.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use entitle_engine::{CoarseClock, Gate, Limit};
use entitle_sidecar::{AttachOptions, Attachment, RawConfig, Sidecar};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut builder = Gate::builder(CoarseClock::new()?);
    builder.register("PAR-TPS", Limit::hard(10)?)?;
    let gate = builder.build();
    match args {
        [mode, url] if mode == "attached" => {
            let _attachment = Attachment::start(Arc::clone(&gate), url, AttachOptions::default())?;
            load(gate).await
        }
        [mode, config, rest @ ..] if mode == "embedded" => {
            let config = RawConfig::read(config.as_ref())?.validate()?;
            let sidecar = Sidecar::start(config, Some(Arc::clone(&gate))).await?;
            let api = sidecar.bind_local_api().await?;
            println!("listening on {}", api.address());
            std::io::stdout().flush()?;
            let serving = sidecar.clone();
            tokio::spawn(async move { serving.serve_local(api, std::future::pending()).await });
            if rest.iter().any(|a| a == "--load") {
                return load(gate).await;
            }
            let waiting = sidecar.flush().await?;
            println!("waiting {waiting}");
            std::io::stdout().flush()?;
            std::future::pending().await
        }
        _ => anyhow::bail!(
            "usage: e2e-packet-server attached <sidecar address> | embedded <config> [--load]"
        ),
    }
}

/// Drives `gate` from a thread and prints the admitted count every second, until killed.
async fn load(gate: Arc<Gate<CoarseClock>>) -> anyhow::Result<()> {
    let admitted = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&admitted);
    let tag = gate
        .entitlement("PAR-TPS")
        .context("the gate has PAR-TPS")?;
    std::thread::spawn(move || {
        let mut worker = gate.worker();
        loop {
            let mut n = 0;
            for _ in 0..5 {
                if worker.check(tag).is_admit() {
                    n += 1;
                }
            }
            // After the checks, so that a printed count never runs ahead of the gate's.
            counted.fetch_add(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        println!("admitted {}", admitted.load(Ordering::SeqCst));
        std::io::stdout().flush()?;
    }
}
