//! `entitled`: the sidecar beside a packet server. It holds the device's licence state,
//! calls home, spools and delivers usage, and serves the `Sidecar` gRPC service (with
//! health and reflection) on its Unix socket (and on TCP with a bearer credential when
//! configured), and Prometheus metrics. It prints `entitled listening on unix:PATH`, then
//! `entitled listening on ADDRESS` for TCP and `entitled metrics on ADDRESS` when they are
//! configured.
//!
//! `entitled --config entitled.toml`; see [`RawConfig`](crate::RawConfig) for the file. A
//! bad configuration prints what is wrong and exits with status 64.
//!
//! The binary's body, in the library so that the end-to-end tests run the same program.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::{LocalApi, RawConfig, Sidecar, SidecarConfig};
use anyhow::Context as _;
use clap::Parser;

/// The licence sidecar of a packet server.
#[derive(Parser)]
#[command(name = "entitled", version)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, env = "ENTITLED_CONFIG")]
    config: PathBuf,
}

/// Exit status for a bad configuration (EX_CONFIG's neighbour, EX_USAGE's 64 in sysexits).
const BAD_CONFIG: u8 = 64;

/// Runs `entitled` with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match RawConfig::read(&cli.config).and_then(RawConfig::validate) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: bad configuration: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: SidecarConfig) -> anyhow::Result<()> {
    let metrics = config.metrics_listen;
    // The socket first: a second `entitled` on it stops here, before it touches the data.
    let api = LocalApi::bind(&config).await?;
    let sidecar = Sidecar::start(config, None).await?;
    println!("entitled listening on {}", api.address());
    if let Some(address) = api.tcp_address() {
        println!("entitled listening on {address}");
    }
    if let Some(address) = metrics {
        let metrics_listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))?;
        println!("entitled metrics on {}", metrics_listener.local_addr()?);
        let serving = sidecar.clone();
        tokio::spawn(async move {
            if let Err(e) = serving.serve_metrics(metrics_listener).await {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    std::io::stdout().flush()?;
    sidecar
        .serve_local(api, async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        })
        .await?;
    // Deliver what is left on a clean stop; what cannot go now stays spooled for next time.
    let waiting = sidecar.flush().await.unwrap_or(0);
    tracing::info!(waiting, "stopped");
    Ok(())
}
