//! The whole of entitle in one process, on 127.0.0.1:
//!
//! 1. a licence **authority** on SQLite in a temporary directory, with a smart account
//!    whose pool holds 1 `PAR-TPS` (100 TPS), and an ID token;
//! 2. a **sidecar** (`entitled`'s code) that registers with the token and asks for
//!    1 `PAR-TPS` + 2 `PAR-ADD-TPS` (300 TPS);
//! 3. a **packet server**'s gate attached to the sidecar over gRPC on its Unix socket,
//!    driven at 500 TPS.
//!
//! The pool is short, so the device is OUT OF COMPLIANCE at 100 TPS. Then the pool grows by
//! 2 `PAR-ADD-TPS`, the sidecar renews its authorisation, and the gate admits 300 TPS: no
//! restart. It ends with `show license status` and the authority's ledger matching the
//! engine's admitted count exactly.
//!
//! `cargo run --release -p entitle-examples --example quickstart`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use entitle_authority::{self as authority, AuthorityState, DataDir, Periods};
use entitle_cli::format;
use entitle_engine::{CoarseClock, Gate, Limit};
use entitle_proto::local::LocalEndpoint;
use entitle_proto::pb;
use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
use entitle_proto::pb::sidecar_client::SidecarClient;
use entitle_sidecar::{AttachOptions, Attachment, RawConfig, Sidecar};

const OFFERED_TPS: u64 = 500;
const SECONDS_SHORT: u64 = 4;
const SECONDS_GROWN: u64 = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;

    // 1. The authority.
    let data = dir.path().join("authority");
    authority::init(&data)?;
    let state = AuthorityState::open(&data, Periods::default(), authority::system_clock())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let authority_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(authority::serve(state, listener, std::future::pending()));
    println!(
        "authority     {authority_url}  (SQLite in {})",
        data.display()
    );

    let credential = std::fs::read_to_string(DataDir::new(&data).admin_credential())?;
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", credential.trim()).parse()?;
    let channel = tonic::transport::Channel::from_shared(authority_url.clone())?
        .connect()
        .await?;
    let mut admin =
        AuthorityAdminClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        });
    admin
        .create_smart_account(pb::CreateSmartAccountRequest {
            name: "Example Corp".into(),
            plr_authorized: false,
            export_controlled: false,
        })
        .await?;
    admin
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: "Example Corp".into(),
            name: "RADIUS".into(),
        })
        .await?;
    let add = |tag: &str, quantity: u64| pb::AddLicensesRequest {
        smart_account: "Example Corp".into(),
        virtual_account: "RADIUS".into(),
        tag: tag.into(),
        quantity,
        term_end: 0,
        plr_capable: false,
    };
    admin.add_licenses(add("PAR-TPS", 1)).await?;
    let token = admin
        .create_token(pb::CreateTokenRequest {
            smart_account: "Example Corp".into(),
            virtual_account: "RADIUS".into(),
            validity_days: 30,
            max_uses: 1,
            export_controlled: false,
            description: "quickstart".into(),
        })
        .await?
        .into_inner()
        .secret;
    println!("pool          Example Corp / RADIUS: 1 x PAR-TPS; one ID token issued");

    // 2. The sidecar, as `entitled` runs it.
    let config_path = dir.path().join("entitled.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {:?}\nauthority_public_key = {:?}\nsnapshot_interval_secs = 1\n\
             [udi]\nproduct_id = \"CPAR\"\nserial = \"QUICKSTART-1\"\n\
             [agent]\nselection = {{ \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }}\n",
            dir.path().join("entitled"),
            DataDir::new(&data).public_key(),
        ),
    )?;
    let sidecar = Sidecar::start(RawConfig::read(&config_path)?.validate()?, None).await?;
    // Its local API on its socket (`<data_dir>/entitled.sock`), as `entitled` serves it.
    let api = sidecar.bind_local_api().await?;
    let sidecar_url = api.address();
    let serving = sidecar.clone();
    tokio::spawn(async move { serving.serve_local(api, std::future::pending()).await });
    println!("sidecar       {sidecar_url}  (device CPAR/QUICKSTART-1 asks for 300 TPS)");

    // 3. The packet server's gate, attached to the sidecar.
    let mut builder = Gate::builder(CoarseClock::new()?);
    let par_tps = builder.register("PAR-TPS", Limit::hard(10)?)?;
    let gate = builder.build();
    let options = AttachOptions {
        snapshot_interval: Duration::from_millis(500),
        ..AttachOptions::default()
    };
    let attachment = Attachment::start(Arc::clone(&gate), &sidecar_url, options)?;

    // The operator's commands, as `entitle` sends them.
    let mut cli = SidecarClient::new(LocalEndpoint::new(&sidecar_url, None)?.connect().await?);
    let say = |command: &str, reply: &str| println!("\nentitle> {command}\n{reply}");
    let reply = cli
        .set_call_home(pb::SetCallHomeCommand {
            url: authority_url.clone(),
        })
        .await?
        .into_inner();
    say(
        &format!("callhome destination address http {authority_url}"),
        &reply.message,
    );
    let reply = cli
        .register(pb::RegisterCommand { id_token: token })
        .await?
        .into_inner();
    say("license smart register <token>", &reply.message);

    // Traffic above the licence, from two packet threads.
    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (gate, stop, offered, admitted) = (
                Arc::clone(&gate),
                Arc::clone(&stop),
                Arc::clone(&offered),
                Arc::clone(&admitted),
            );
            thread::spawn(move || {
                let mut worker = gate.worker();
                let start = Instant::now();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = start.elapsed().as_micros() as u64 * (OFFERED_TPS / 2) / 1_000_000;
                    while sent < due {
                        sent += 1;
                        offered.fetch_add(1, Ordering::Relaxed);
                        if worker.check(par_tps).is_admit() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();

    println!(
        "\n{:>6} {:>8} {:>9} {:>7}",
        "second", "offered", "admitted", "limit"
    );
    let mut last = (0, 0);
    let mut second = 0;
    let print_seconds = |n: u64, last: &mut (u64, u64), second: &mut u64| {
        for _ in 0..n {
            thread::sleep(Duration::from_secs(1));
            *second += 1;
            let now = (
                offered.load(Ordering::Relaxed),
                admitted.load(Ordering::Relaxed),
            );
            let limit = gate.limits().limit(par_tps).per_second().unwrap_or(0);
            println!(
                "{:>6} {:>8} {:>9} {limit:>7}",
                second,
                now.0 - last.0,
                now.1 - last.1
            );
            *last = now;
        }
    };
    print_seconds(SECONDS_SHORT, &mut last, &mut second);

    // The pool grows; the next authorisation raises the limit, live.
    admin.add_licenses(add("PAR-ADD-TPS", 2)).await?;
    println!("  -- the portal adds 2 x PAR-ADD-TPS to the pool --");
    let reply = cli
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await?
        .into_inner();
    println!("  entitle> license smart renew auth: {}", reply.message);
    print_seconds(SECONDS_GROWN, &mut last, &mut second);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a packet thread panicked"))?;
    }

    // Deliver everything: engine -> sidecar spool -> authority ledger.
    attachment
        .flush(Duration::from_secs(20))
        .await
        .context("the sidecar took every snapshot")?;
    let waiting = sidecar.flush().await?;
    anyhow::ensure!(waiting == 0, "{waiting} usage reports are still waiting");

    let status = cli.get_status(pb::GetStatusRequest {}).await?.into_inner();
    println!(
        "\nentitle> show license status\n{}",
        format::status(&status)
    );
    println!(
        "entitle> show license summary\n{}",
        format::summary(&status)
    );

    let usage = admin
        .get_usage(pb::GetUsageRequest {
            smart_account: "Example Corp".into(),
            virtual_account: "RADIUS".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let ledger: u64 = usage
        .totals
        .iter()
        .filter(|t| t.tag == "PAR-TPS")
        .map(|t| t.admitted)
        .sum();
    let reports: u64 = usage.totals.iter().map(|t| t.reports).max().unwrap_or(0);
    let engine = admitted.load(Ordering::Relaxed);
    println!(
        "ledger: {ledger} PAR-TPS admitted in {reports} usage reports; engine: {engine} admitted; {}",
        if ledger == engine {
            "they match exactly"
        } else {
            "MISMATCH"
        }
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    anyhow::ensure!(ledger == engine, "the ledger and the engine disagree");
    Ok(())
}
