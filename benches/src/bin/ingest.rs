//! Usage ingest of the licence authority: an authority in a temporary directory, N
//! registered devices each streaming signed usage reports (4 entitlements each), every
//! report acknowledged only once durable. Prints reports/s and the acknowledgement latency
//! percentiles (HDR), then checks the ledger against what was acknowledged.
//!
//! `--store` picks the authority's store: `sqlite` (the data directory's file), `postgres`
//! (the database of `--database URL`, which must hold no authority yet, or else a
//! throwaway PostgreSQL cluster this bench starts in a temporary directory), or `both`
//! (the default), one after the other in one run.
//!
//! On SQLite, the same load also runs through a satellite (itself on SQLite, with a cloud
//! on SQLite; the satellite leg runs on SQLite only): the devices report to a satellite
//! (which also keeps each report for the cloud in the same transaction), then network
//! syncs carry everything to the cloud; it prints the satellite's ingest, the syncs'
//! forwarding rate, the ratio to the direct run, and checks the cloud's ledger.
//!
//! The lines for scripts, by store:
//!
//! - SQLite: `value ingest_reports_per_s`, `value ingest_ack_p99_ms` (the names from before
//!   PostgreSQL, kept so that older figures compare), then `value ingest_satellite_*` and
//!   `ratio ingest_satellite_vs_direct`;
//! - PostgreSQL: `value ingest_postgres_reports_per_s`, `value ingest_postgres_ack_p99_ms`;
//! - both: `ratio ingest_postgres_vs_sqlite` (reports/s, direct).
//!
//! `cargo run --release -p entitle-benches --bin ingest [-- --store both --devices 16 --seconds 10 --window 16]`

use std::collections::VecDeque;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use entitle_authority::{self as authority, AuthorityState, Periods, satellite};
use entitle_proto::pb;
use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
use entitle_proto::signing;
use entitle_sidecar::device::DeviceClient;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tonic::transport::Channel;

// The authority binary's allocator: the authority serves in this process.
#[global_allocator]
static ALLOCATOR: authority::Allocator = authority::Allocator;

/// Which stores the run measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stores {
    Sqlite,
    Postgres,
    Both,
}

struct Args {
    stores: Stores,
    /// The PostgreSQL database to use instead of a throwaway cluster.
    database: Option<String>,
    devices: usize,
    seconds: u64,
    window: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        stores: Stores::Both,
        database: None,
        devices: 16,
        seconds: 10,
        window: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--devices" => args.devices = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--window" => args.window = value()?.parse()?,
            "--quick" => (args.devices, args.seconds) = (8, 3),
            "--store" => {
                args.stores = match value()?.as_str() {
                    "sqlite" => Stores::Sqlite,
                    "postgres" => Stores::Postgres,
                    "both" => Stores::Both,
                    other => bail!("--store is sqlite, postgres or both, not {other:?}"),
                }
            }
            "--database" => args.database = Some(value()?),
            other => bail!(
                "unknown argument {other:?}; use --store sqlite|postgres|both --database URL --devices N --seconds S --window W or --quick"
            ),
        }
    }
    if args.devices == 0 || args.seconds == 0 || args.window == 0 {
        bail!("--devices, --seconds and --window must be at least 1");
    }
    if args.database.is_some() && args.stores == Stores::Sqlite {
        bail!("--database names a PostgreSQL database; use it with --store postgres or both");
    }
    Ok(args)
}

/// One device's run: acknowledged reports, admitted total of those, latencies (us).
struct DeviceRun {
    acked: u64,
    admitted: u64,
    latencies: Histogram<u64>,
}

/// Where one run's authority keeps its ledger, and whether devices report through a
/// satellite.
enum Leg<'a> {
    Sqlite { via_satellite: bool },
    Postgres { url: &'a str },
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let mut sqlite = None;
    if args.stores != Stores::Postgres {
        let direct = ingest(
            &args,
            Leg::Sqlite {
                via_satellite: false,
            },
        )
        .await?;
        let through = ingest(
            &args,
            Leg::Sqlite {
                via_satellite: true,
            },
        )
        .await?;
        println!(
            "ratio ingest_satellite_vs_direct {:.3}",
            through / direct.max(1.0)
        );
        sqlite = Some(direct);
    }
    if args.stores != Stores::Sqlite {
        // Kept until the run ends: dropping it stops the server and removes its directory.
        let mut cluster = None;
        let url = match &args.database {
            Some(url) => url.clone(),
            None => {
                eprintln!("starting a throwaway PostgreSQL cluster...");
                let started = tokio::task::spawn_blocking(entitle_pgtest::Cluster::start)
                    .await?
                    .context("cannot start PostgreSQL (is postgresql-15 installed?)")?;
                let url = started.url();
                cluster = Some(started);
                url
            }
        };
        let postgres = ingest(&args, Leg::Postgres { url: &url }).await?;
        if let Some(sqlite) = sqlite {
            println!(
                "ratio ingest_postgres_vs_sqlite {:.3}",
                postgres / sqlite.max(1.0)
            );
        }
        if let Some(cluster) = cluster {
            tokio::task::spawn_blocking(move || drop(cluster)).await?;
        }
    }
    Ok(())
}

/// An authority served on loopback: its URL and its server's stop.
async fn serve(
    state: std::sync::Arc<AuthorityState>,
) -> anyhow::Result<(
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(authority::serve(state, listener, async {
        let _ = stopped.await;
    }));
    Ok((url, stop, server))
}

/// One run, directly to the cloud or through a satellite; answers reports/s durable where
/// the devices report.
async fn ingest(args: &Args, leg: Leg<'_>) -> anyhow::Result<f64> {
    let (via_satellite, database, name, prefix) = match leg {
        Leg::Sqlite {
            via_satellite: false,
        } => (false, None, "sqlite direct", "ingest"),
        Leg::Sqlite {
            via_satellite: true,
        } => (true, None, "sqlite satellite", "ingest_satellite"),
        Leg::Postgres { url } => (false, Some(url), "postgres direct", "ingest_postgres"),
    };
    println!("-- {name} --");
    let dir = tempfile::tempdir()?;
    let cloud_dir = dir.path().join("cloud");
    authority::init_at(&cloud_dir, &authority::TlsSource::PrivateCa, database)?;
    let cloud = AuthorityState::open(&cloud_dir, Periods::default(), authority::system_clock())?;
    let (cloud_url, cloud_stop, cloud_server) = serve(cloud.clone()).await?;
    let channel = Channel::from_shared(cloud_url.clone())?.connect().await?;

    // An account, a pool and one token for every device.
    let credential = std::fs::read_to_string(cloud_dir.join("admin.credential"))?;
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", credential.trim()).parse()?;
    let mut admin =
        AuthorityAdminClient::with_interceptor(channel.clone(), move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        });
    admin
        .create_smart_account(pb::CreateSmartAccountRequest {
            name: "Bench".into(),
            ..Default::default()
        })
        .await?;
    admin
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: "Bench".into(),
            name: "Load".into(),
        })
        .await?;
    let token = admin
        .create_token(pb::CreateTokenRequest {
            smart_account: "Bench".into(),
            virtual_account: "Load".into(),
            validity_days: 1,
            max_uses: args.devices as u32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret;

    // Through a satellite: delegate the account to it and sync once, so it knows the token.
    let mut satellite = None;
    let device_channel = if via_satellite {
        let satellite_dir = dir.path().join("satellite");
        authority::init(&satellite_dir)?;
        let delegation = admin
            .delegate_satellite(pb::DelegateSatelliteRequest {
                name: "bench".into(),
                satellite_public_key: std::fs::read(
                    authority::DataDir::new(&satellite_dir).public_key(),
                )?,
                accounts: vec![pb::AccountName {
                    smart_account: "Bench".into(),
                    virtual_account: "Load".into(),
                }],
                ..Default::default()
            })
            .await?
            .into_inner();
        let file = dir.path().join("bench.delegation");
        std::fs::write(&file, prost::Message::encode_to_vec(&delegation))?;
        satellite::install(
            &satellite_dir,
            &file,
            &authority::DataDir::new(&cloud_dir).public_key(),
        )?;
        let state = AuthorityState::open_as(
            &satellite_dir,
            Periods::default(),
            authority::system_clock(),
            authority::Role::Satellite {
                sync_deadline: satellite::DEFAULT_SYNC_DEADLINE,
            },
        )?;
        let (url, stop, server) = serve(state.clone()).await?;
        let link = satellite::CloudLink {
            url: cloud_url.clone(),
            ca: None,
            interval: Duration::from_secs(1),
        };
        satellite::sync_once(&state, &link).await?;
        let channel = Channel::from_shared(url)?.connect().await?;
        satellite = Some((state, link, stop, server));
        channel
    } else {
        channel.clone()
    };

    // Register the devices and sign their reports before the clock starts: devices are
    // other machines, so their signing is not the authority's cost. Enough reports that no
    // device runs out within the run at twice the SQLite goal (50,000/s): a device that
    // runs out leaves fewer in flight, and the rate measured at the end falls.
    let per_device = (REPORTS_PER_S * args.seconds as usize / args.devices).max(1000);
    eprintln!(
        "registering {} devices and signing {} reports each...",
        args.devices, per_device
    );
    let mut registered = Vec::new();
    for d in 0..args.devices {
        let mut device = DeviceClient::new(
            device_channel.clone(),
            signing::generate_key()?,
            cloud.public_key(),
        );
        device
            .register(
                &token,
                pb::Udi {
                    product_id: "CPAR".into(),
                    serial: format!("LOAD{d:05}"),
                },
            )
            .await?;
        let instance = device.instance().context("registered")?.to_owned();
        registered.push((device, instance));
    }
    let prepared =
        tokio::task::spawn_blocking(move || sign_reports(registered, per_device)).await?;

    eprintln!(
        "streaming for {} s, {} reports in flight per device...",
        args.seconds, args.window
    );
    let duration = Duration::from_secs(args.seconds);
    let start = Instant::now();
    let runs: Vec<_> = prepared
        .into_iter()
        .map(|(device, reports)| {
            tokio::spawn(run_device(device, reports, start + duration, args.window))
        })
        .collect();
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut acked, mut admitted) = (0u64, 0u64);
    for run in runs {
        let run = run.await??;
        acked += run.acked;
        admitted += run.admitted;
        latencies.add(&run.latencies)?;
    }
    let elapsed = start.elapsed().as_secs_f64();

    let rate = acked as f64 / elapsed;
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "devices {}  seconds {:.1}  reports acknowledged {acked} (by the {})",
        args.devices,
        elapsed,
        if via_satellite { "satellite" } else { "cloud" }
    );
    println!("reports/s durable: {rate:.0}");
    println!(
        "ack latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        latencies.max() as f64 / 1000.0
    );

    // Through a satellite: network syncs carry everything to the cloud.
    if let Some((state, link, stop, server)) = satellite {
        let start = Instant::now();
        let mut syncs = 1;
        while satellite::sync_once(&state, &link).await? {
            syncs += 1;
        }
        let forwarding = start.elapsed().as_secs_f64();
        println!(
            "forwarded to the cloud in {syncs} syncs, {forwarding:.2} s: {:.0} reports/s",
            acked as f64 / forwarding
        );
        println!(
            "value ingest_satellite_forward_per_s {:.0}",
            acked as f64 / forwarding
        );
        let _ = stop.send(());
        server.await??;
    }

    // The cloud's ledger must hold exactly what was acknowledged.
    let totals = admin
        .get_usage(pb::GetUsageRequest {
            smart_account: "Bench".into(),
            virtual_account: "Load".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .totals;
    let ledger: u64 = totals.iter().map(|t| t.admitted).sum();
    let _ = cloud_stop.send(());
    cloud_server.await??;
    println!(
        "cloud ledger admitted {ledger}, acknowledged reports carried {admitted}: {}",
        if ledger == admitted {
            "exact"
        } else {
            "MISMATCH"
        }
    );
    println!("value {prefix}_reports_per_s {rate:.0}");
    println!("value {prefix}_ack_p99_ms {:.2}", ms(0.99));
    if ledger != admitted {
        bail!("the ledger ({ledger}) differs from the acknowledged reports ({admitted})");
    }
    Ok(rate)
}

/// Reports signed ahead of a run, per second of it, over all devices.
const REPORTS_PER_S: usize = 100_000;

/// Each device's reports, `per_device` of them, signed on every core: each a report with
/// its admitted total.
fn sign_reports(
    registered: Vec<(DeviceClient, String)>,
    per_device: usize,
) -> Vec<(DeviceClient, Vec<(pb::Signed, u64)>)> {
    let sign = |device: &DeviceClient, instance: &str| -> Vec<(pb::Signed, u64)> {
        (1..=per_device as u64)
            .map(|sequence| {
                let admitted = 1000 + sequence % 7;
                let usage = ["PAR-TPS", "PAR-ADD-TPS", "EAP", "DIAMETER"]
                    .iter()
                    .map(|tag| pb::EntitlementUsage {
                        tag: (*tag).into(),
                        admitted,
                        rejected: 3,
                        peak_tps: 20,
                        tps_histogram: vec![],
                    })
                    .collect();
                let report = pb::UsageReport {
                    instance_id: instance.to_owned(),
                    sequence,
                    window_start: 0,
                    window_end: 60_000,
                    usage,
                };
                (device.sign_report(&report), admitted * 4)
            })
            .collect()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = registered.len().div_ceil(cores).max(1);
    let signed: Vec<Vec<(pb::Signed, u64)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = registered
            .chunks(per_thread)
            .map(|devices| {
                scope.spawn(move || {
                    devices
                        .iter()
                        .map(|(device, instance)| sign(device, instance))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a signing thread panicked"))
            .collect()
    });
    // In the devices' order: the chunks are, and so is joining them.
    registered
        .into_iter()
        .map(|(device, _)| device)
        .zip(signed)
        .collect()
}

/// Streams `reports` until `deadline` with at most `window` unacknowledged.
async fn run_device(
    mut device: DeviceClient,
    reports: Vec<(pb::Signed, u64)>,
    deadline: Instant,
    window: usize,
) -> anyhow::Result<DeviceRun> {
    let (tx, rx) = mpsc::channel::<pb::Signed>(window);
    let mut acks = device
        .client()
        .report_usage(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut run = DeviceRun {
        acked: 0,
        admitted: 0,
        latencies: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    let mut in_flight: VecDeque<(Instant, u64)> = VecDeque::with_capacity(window);
    let mut next = reports.into_iter();
    let mut sending = true;
    loop {
        while sending && in_flight.len() < window && Instant::now() < deadline {
            match next.next() {
                Some((signed, admitted)) => {
                    in_flight.push_back((Instant::now(), admitted));
                    tx.send(signed).await.context("the stream closed")?;
                }
                None => sending = false,
            }
        }
        if in_flight.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            sending = false;
        }
        let ack = acks
            .message()
            .await?
            .context("the authority ended the stream early")?;
        let (sent, admitted) = in_flight
            .pop_front()
            .context("an acknowledgement for nothing sent")?;
        if ack.duplicate {
            bail!("report {} was acknowledged as a duplicate", ack.sequence);
        }
        run.acked += 1;
        run.admitted += admitted;
        run.latencies
            .saturating_record(sent.elapsed().as_micros() as u64);
    }
    drop(tx);
    Ok(run)
}
