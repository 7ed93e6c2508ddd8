//! A small RADIUS server licensed by entitle: PAP from a users file, per-client secrets
//! from a clients file, and one `check()` on the gate for every Access-Request and
//! Accounting-Request (Status-Server is answered and never counted).
//!
//! ```sh
//! cargo run --release -p entitle-examples --example radius-server -- \
//!     --users examples/radius/users --clients examples/radius/clients --tps 100
//! echo 'User-Name = alice, User-Password = wonderland' | radclient -x 127.0.0.1:1812 auth testing123
//! ```
//!
//! The licence: with neither `--embedded` nor `--attach`, an unlicensed demo at the fixed
//! `--tps`; `--embedded entitled.toml` runs the licence agent in this process (and serves
//! its local API on the config's socket, for `entitle` to register it); `--attach ADDRESS`
//! attaches the gate to a running `entitled` (`unix:/var/lib/entitled/entitled.sock`, or
//! `http://host:port` with `--attach-credential-file`). `--no-gate` skips the check altogether: the
//! same packet path without the gate, for benchmarking the gate's cost.
//!
//! Every second with traffic it prints on stderr what was offered, answered and dropped, and
//! why (`--quiet` turns that off). SIGINT or SIGTERM stops it: the usage counted so far is
//! delivered, and the totals printed. A bad users, clients or sidecar file exits with
//! status 64.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use entitle_examples::radius_server::{
    ATTACH_START_TPS, Clients, DEFAULT_SOCKET_BUFFER, Licensed, Mode, OverLimit, PAR_TPS, Server,
    ServerConfig, Users,
};
use entitle_sidecar::{AttachOptions, RawConfig};

/// The exit status for a bad configuration.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(about = "A small RADIUS server licensed by entitle")]
struct Args {
    /// Where to listen, for authentication and accounting alike.
    #[arg(long, default_value = "127.0.0.1:1812")]
    listen: SocketAddr,
    /// The users file (`NAME Cleartext-Password := "PASSWORD"` or `NAME:PASSWORD`).
    #[arg(long)]
    users: PathBuf,
    /// The clients file (`ADDRESS SECRET [require-message-authenticator]`).
    #[arg(long)]
    clients: PathBuf,
    /// The fixed limit of the unlicensed demo, in transactions per second.
    #[arg(long, default_value_t = 100, conflicts_with_all = ["embedded", "attach", "no_gate"])]
    tps: u64,
    /// The demo's burst (default: a tenth of a second of `--tps`, at least 1).
    #[arg(long, conflicts_with_all = ["embedded", "attach", "no_gate"])]
    burst: Option<u64>,
    /// Run the licence agent in this process, with this `entitled` configuration.
    #[arg(long, value_name = "CONFIG.toml", conflicts_with_all = ["attach", "no_gate"])]
    embedded: Option<PathBuf>,
    /// Attach the gate to the `entitled` at this address (its socket,
    /// unix:/var/lib/entitled/entitled.sock, or http://host:port).
    #[arg(long, value_name = "ADDRESS", conflicts_with = "no_gate")]
    attach: Option<String>,
    /// The sidecar's TCP credential (its `api.credential`), for an http:// `--attach`.
    #[arg(long, value_name = "FILE", requires = "attach")]
    attach_credential_file: Option<PathBuf>,
    /// The gate entitlement each transaction spends.
    #[arg(long, default_value = PAR_TPS)]
    entitlement: String,
    /// What happens over the licence: drop silently, or reject with Access-Reject.
    #[arg(long, default_value = "drop", value_parser = ["drop", "reject"])]
    over_limit: String,
    /// No gate at all: every transaction is answered (for benchmarking the gate's cost).
    #[arg(long)]
    no_gate: bool,
    /// Packet tasks (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// The socket's receive and send buffers to ask the kernel for, in octets.
    #[arg(long, default_value_t = DEFAULT_SOCKET_BUFFER)]
    socket_buffer: usize,
    /// Print no line per second.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("radius-server: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(e)) => {
            eprintln!("radius-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Config(anyhow::Error),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

fn config<T, E: Into<anyhow::Error>>(result: Result<T, E>) -> Result<T, Failure> {
    result.map_err(|e| Failure::Config(e.into()))
}

async fn run(args: Args) -> Result<(), Failure> {
    let users = config(Users::read(&args.users))?;
    let clients = config(Clients::read(&args.clients))?;
    let over_limit: OverLimit = config(args.over_limit.parse().map_err(anyhow::Error::msg))?;

    let licensed = if args.no_gate {
        None
    } else if let Some(path) = &args.embedded {
        let sidecar_config =
            config(RawConfig::read(path).and_then(RawConfig::validate)).map_err(|f| match f {
                Failure::Config(e) => Failure::Config(e.context(format!("{}", path.display()))),
                other => other,
            })?;
        let metrics = sidecar_config.metrics_listen;
        let licensed = Licensed::embedded(sidecar_config, &args.entitlement).await?;
        if let Mode::Embedded(sidecar) = &licensed.mode {
            let api = sidecar
                .bind_local_api()
                .await
                .context("cannot serve the sidecar's local API")?;
            let address = api.address();
            let serving = sidecar.clone();
            tokio::spawn(async move { serving.serve_local(api, std::future::pending()).await });
            if let Some(metrics) = metrics {
                let listener = tokio::net::TcpListener::bind(metrics)
                    .await
                    .with_context(|| format!("cannot listen on {metrics} for metrics"))?;
                let serving = sidecar.clone();
                tokio::spawn(async move { serving.serve_metrics(listener).await });
            }
            eprintln!(
                "licence: the agent is embedded (data in its data_dir); register it with\n  \
                 entitle --sidecar {address} license smart register <id-token>"
            );
        }
        Some(licensed)
    } else if let Some(url) = &args.attach {
        let credential = match &args.attach_credential_file {
            Some(file) => Some(config(entitle_proto::local::Credential::read(file))?),
            None => None,
        };
        let options = AttachOptions {
            credential,
            ..AttachOptions::default()
        };
        let licensed = config(Licensed::attached(url, &args.entitlement, options))?;
        eprintln!(
            "licence: attached to entitled at {url}; {ATTACH_START_TPS} TPS until it sends the licensed limit"
        );
        Some(licensed)
    } else {
        let burst = args.burst.unwrap_or((args.tps / 10).max(1));
        let licensed = config(Licensed::standalone(args.tps, burst))?;
        eprintln!(
            "licence: UNLICENSED DEMO MODE, a fixed limit of {} TPS (burst {burst}); \
             use --embedded or --attach for a real licence",
            args.tps
        );
        Some(licensed)
    };
    if licensed.is_none() {
        eprintln!("licence: --no-gate, nothing is checked (for benchmarks only)");
    }

    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (n_users, n_clients) = (users.len(), clients.len());
    let server = Server::bind(ServerConfig {
        listen: args.listen,
        clients,
        users,
        licence: licensed.as_ref().map(|l| l.licence.clone()),
        over_limit,
        workers,
        socket_buffer: args.socket_buffer,
    })?;
    let (receive, send) = server.socket_buffers();
    eprintln!(
        "radius-server: listening on {} (authentication and accounting), {n_clients} clients, \
         {n_users} users, {workers} workers, over the licence: {}; socket buffers {receive} / \
         {send} octets",
        server.local_addr()?,
        args.over_limit,
    );

    let stats = server.stats();
    let serving = tokio::spawn(server.serve(stop_signal()?));
    if !args.quiet {
        let stats = std::sync::Arc::clone(&stats);
        let licence = licensed.as_ref().map(|l| l.licence.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            ticks.tick().await;
            let mut last = stats.totals();
            loop {
                ticks.tick().await;
                let now = stats.totals();
                if now.received == last.received {
                    continue; // an idle second: nothing to say
                }
                let limit = match &licence {
                    Some(l) => match l.gate.limits().limit(l.entitlement).per_second() {
                        Some(tps) => format!("limit {tps} TPS"),
                        None => "unlimited".into(),
                    },
                    None => "no gate".into(),
                };
                eprintln!(
                    "[{:>4}s] {limit}: {}",
                    started.elapsed().as_secs(),
                    now - last
                );
                last = now;
            }
        });
    }
    let served = serving.await.context("the server task")?;
    if let Some(licensed) = &licensed
        && let Err(e) = licensed.flush(Duration::from_secs(10)).await
    {
        eprintln!("radius-server: usage not delivered: {e}");
    }
    eprintln!("radius-server: in all, {}", stats.totals());
    Ok(served?)
}

/// Completes at SIGINT (Ctrl-C) or SIGTERM (a service manager's stop).
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
