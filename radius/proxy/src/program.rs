//! `entitle-radius-proxy --config proxy.toml`: the binary's body, in the library so that
//! tests run the same program. A bad configuration prints what is wrong and exits with
//! status 64. Once serving, it prints one line per address it listens on
//! (`entitle-radius-proxy listening on ADDRESS`, then `... metrics on ADDRESS` and
//! `... licence agent on unix:PATH` and on its TCP address when there are), and stops on SIGINT or SIGTERM after
//! delivering the usage it counted.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::{Config, Proxy, RawConfig};

/// The TPS-licensing RADIUS proxy.
#[derive(Parser)]
#[command(name = "entitle-radius-proxy", version)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, env = "ENTITLE_RADIUS_PROXY_CONFIG")]
    config: PathBuf,
}

/// Exit status for a bad configuration (EX_USAGE in sysexits).
const BAD_CONFIG: u8 = 64;

/// Runs the proxy with the process's arguments.
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
        Err(crate::Error::Config(e)) => {
            eprintln!("error: bad configuration: {e}");
            ExitCode::from(BAD_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> crate::Result<()> {
    let proxy = Proxy::start(config).await?;
    let mut out = std::io::stdout().lock();
    for address in proxy.listen() {
        let _ = writeln!(out, "entitle-radius-proxy listening on {address}");
    }
    if let Some(address) = proxy.metrics_listen() {
        let _ = writeln!(out, "entitle-radius-proxy metrics on {address}");
    }
    if let Some(address) = proxy.sidecar_address() {
        let _ = writeln!(out, "entitle-radius-proxy licence agent on {address}");
    }
    if let Some(address) = proxy.sidecar_tcp() {
        let _ = writeln!(out, "entitle-radius-proxy licence agent on {address}");
    }
    let _ = out.flush();
    drop(out);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
    tracing::info!("stopping");
    proxy.stop().await;
    Ok(())
}
