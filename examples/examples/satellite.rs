//! Call home through a satellite, in one process on 127.0.0.1:
//!
//! 1. a **cloud** authority with a smart account whose pool holds 1 `PAR-TPS` and
//!    2 `PAR-ADD-TPS` (300 TPS), and an ID token;
//! 2. a **satellite** the cloud delegates that virtual account to, synced with the cloud
//!    over the network every second;
//! 3. a **device** (the sidecar's code) registered with the satellite, with a packet
//!    server's gate attached and driven at 500 TPS.
//!
//! Then the satellite is cut off from the cloud: the device goes on, its usage waits on the
//! satellite, and one sync by files (`sync export`, `sync import` on the cloud, `sync
//! import` of the answer) carries it across. It ends with the cloud's ledger matching the
//! engine's admitted count exactly, and exits non-zero if it does not.
//!
//! `cargo run --release -p entitle-examples --example satellite`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use entitle_authority::satellite::{self, CloudLink};
use entitle_authority::{self as authority, AuthorityState, DataDir, Periods, Role};
use entitle_engine::{CoarseClock, Gate, Limit};
use entitle_proto::local::LocalEndpoint;
use entitle_proto::pb;
use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
use entitle_proto::pb::sidecar_client::SidecarClient;
use entitle_sidecar::{AttachOptions, Attachment, RawConfig, Sidecar};
use prost::Message as _;

const OFFERED_TPS: u64 = 500;
const ACCOUNT: (&str, &str) = ("Example Corp", "Branch Office");

/// Adds the admin credential to each call.
type Bearer =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
type Admin = AuthorityAdminClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

/// Serves an authority opened from `data` on a free loopback port; answers its URL and an
/// admin client.
async fn serve(
    state: Arc<AuthorityState>,
    data: &std::path::Path,
) -> anyhow::Result<(String, Admin)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(authority::serve(state, listener, std::future::pending()));
    let credential = std::fs::read_to_string(DataDir::new(data).admin_credential())?;
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", credential.trim()).parse()?;
    let channel = tonic::transport::Channel::from_shared(url.clone())?
        .connect()
        .await?;
    let interceptor: Bearer = Box::new(move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", bearer.clone());
        Ok(r)
    });
    Ok((
        url,
        AuthorityAdminClient::with_interceptor(channel, interceptor),
    ))
}

async fn ledger(cloud: &mut Admin) -> anyhow::Result<u64> {
    let usage = cloud
        .get_usage(pb::GetUsageRequest {
            smart_account: ACCOUNT.0.into(),
            virtual_account: ACCOUNT.1.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(usage
        .totals
        .iter()
        .filter(|t| t.tag == "PAR-TPS")
        .map(|t| t.admitted)
        .sum())
}

async fn waiting(satellite: &mut Admin) -> anyhow::Result<u64> {
    Ok(satellite
        .satellite_status(pb::SatelliteStatusRequest {})
        .await?
        .into_inner()
        .reports_waiting)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;

    // 1. The cloud.
    let cloud_data = dir.path().join("cloud");
    authority::init(&cloud_data)?;
    let cloud_state =
        AuthorityState::open(&cloud_data, Periods::default(), authority::system_clock())?;
    let (cloud_url, mut cloud) = serve(cloud_state, &cloud_data).await?;
    cloud
        .create_smart_account(pb::CreateSmartAccountRequest {
            name: ACCOUNT.0.into(),
            ..Default::default()
        })
        .await?;
    cloud
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: ACCOUNT.0.into(),
            name: ACCOUNT.1.into(),
        })
        .await?;
    for (tag, quantity) in [("PAR-TPS", 1), ("PAR-ADD-TPS", 2)] {
        cloud
            .add_licenses(pb::AddLicensesRequest {
                smart_account: ACCOUNT.0.into(),
                virtual_account: ACCOUNT.1.into(),
                tag: tag.into(),
                quantity,
                ..Default::default()
            })
            .await?;
    }
    let token = cloud
        .create_token(pb::CreateTokenRequest {
            smart_account: ACCOUNT.0.into(),
            virtual_account: ACCOUNT.1.into(),
            validity_days: 30,
            max_uses: 1,
            description: "satellite example".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret;
    println!(
        "cloud      {cloud_url}  ({}/{}: 1 x PAR-TPS + 2 x PAR-ADD-TPS, one ID token)",
        ACCOUNT.0, ACCOUNT.1
    );

    // 2. The satellite: its own key, the cloud's delegation for it, network sync each second.
    let satellite_data = dir.path().join("satellite");
    authority::init(&satellite_data)?;
    let delegation = cloud
        .delegate_satellite(pb::DelegateSatelliteRequest {
            name: "branch-satellite".into(),
            satellite_public_key: std::fs::read(DataDir::new(&satellite_data).public_key())?,
            accounts: vec![pb::AccountName {
                smart_account: ACCOUNT.0.into(),
                virtual_account: ACCOUNT.1.into(),
            }],
            validity_days: 365,
            validity_secs: 0,
        })
        .await?
        .into_inner();
    let delegation_file = dir.path().join("branch.delegation");
    std::fs::write(&delegation_file, delegation.encode_to_vec())?;
    println!(
        "\n$ entitle-authority satellite install --delegation branch.delegation --cloud-key cloud/authority.pub\n{}",
        satellite::install(
            &satellite_data,
            &delegation_file,
            &DataDir::new(&cloud_data).public_key()
        )?
    );
    let satellite_state = AuthorityState::open_as(
        &satellite_data,
        Periods::default(),
        authority::system_clock(),
        Role::Satellite {
            sync_deadline: satellite::DEFAULT_SYNC_DEADLINE,
        },
    )?;
    let (satellite_url, mut satellite_admin) =
        serve(Arc::clone(&satellite_state), &satellite_data).await?;
    let network = tokio::spawn(satellite::network_sync(
        Arc::clone(&satellite_state),
        CloudLink {
            url: cloud_url.clone(),
            ca: None,
            interval: Duration::from_secs(1),
        },
    ));
    println!("satellite  {satellite_url}  (network sync with the cloud every second)");
    for _ in 0..100 {
        let status = satellite_admin
            .satellite_status(pb::SatelliteStatusRequest {})
            .await?
            .into_inner();
        if status.last_sequence >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 3. The device, calling home to the satellite, and its packet server's gate.
    let config_path = dir.path().join("entitled.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {:?}\nauthority_public_key = {:?}\ncallhome_url = {satellite_url:?}\nsnapshot_interval_secs = 1\n\
             [udi]\nproduct_id = \"CPAR\"\nserial = \"BRANCH-1\"\n\
             [agent]\nselection = {{ \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }}\n",
            dir.path().join("entitled"),
            DataDir::new(&cloud_data).public_key(),
        ),
    )?;
    let sidecar = Sidecar::start(RawConfig::read(&config_path)?.validate()?, None).await?;
    let api = sidecar.bind_local_api().await?;
    let sidecar_url = api.address();
    let serving = sidecar.clone();
    tokio::spawn(async move { serving.serve_local(api, std::future::pending()).await });
    let mut builder = Gate::builder(CoarseClock::new()?);
    let par_tps = builder.register("PAR-TPS", Limit::hard(10)?)?;
    let gate = builder.build();
    let attachment = Attachment::start(
        Arc::clone(&gate),
        &sidecar_url,
        AttachOptions {
            snapshot_interval: Duration::from_millis(500),
            ..AttachOptions::default()
        },
    )?;
    let mut cli = SidecarClient::new(LocalEndpoint::new(&sidecar_url, None)?.connect().await?);
    let reply = cli
        .register(pb::RegisterCommand { id_token: token })
        .await?
        .into_inner();
    println!(
        "device     CPAR/BRANCH-1 (trusts the cloud's key only)\n\nentitle> license smart register <token>\n{}",
        reply.message
    );

    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicU64::new(0));
    let packets = {
        let (gate, stop, admitted) = (Arc::clone(&gate), Arc::clone(&stop), Arc::clone(&admitted));
        thread::spawn(move || {
            let mut worker = gate.worker();
            let start = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = start.elapsed().as_micros() as u64 * OFFERED_TPS / 1_000_000;
                while sent < due {
                    sent += 1;
                    if worker.check(par_tps).is_admit() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let show = |what: &str, seconds: u64| {
        let before = admitted.load(Ordering::Relaxed);
        thread::sleep(Duration::from_secs(seconds));
        let limit = gate.limits().limit(par_tps).per_second().unwrap_or(0);
        println!(
            "  {what}: {seconds} s at {OFFERED_TPS} TPS offered, {} admitted (limit {limit} TPS)",
            admitted.load(Ordering::Relaxed) - before
        );
    };

    println!("\n-- network sync --");
    show("traffic", 4);
    println!(
        "  cloud ledger so far: {} PAR-TPS admitted",
        ledger(&mut cloud).await?
    );

    println!("\n-- the satellite is cut off from the cloud --");
    network.abort();
    show("traffic", 3);
    stop.store(true, Ordering::Relaxed);
    packets
        .join()
        .map_err(|_| anyhow::anyhow!("the packet thread panicked"))?;
    attachment
        .flush(Duration::from_secs(20))
        .await
        .context("the sidecar took every snapshot")?;
    let left = sidecar.flush().await?;
    anyhow::ensure!(
        left == 0,
        "{left} usage reports are still waiting on the device"
    );
    println!(
        "  the device delivered everything to the satellite; {} reports wait there for the cloud",
        waiting(&mut satellite_admin).await?
    );

    println!("\n-- sync by files --");
    let request = satellite_admin
        .export_sync(pb::ExportSyncRequest {})
        .await?
        .into_inner();
    let request_file = dir.path().join("branch-1.sync");
    std::fs::write(&request_file, request.encode_to_vec())?;
    println!("satellite$ entitle-authority sync export --file branch-1.sync");
    let carried = pb::SyncFile::decode(std::fs::read(&request_file)?.as_slice())?;
    let imported = cloud.import_sync(carried).await?.into_inner();
    println!(
        "cloud$     entitle-authority sync import branch-1.sync --answer branch-1.answer\n  {}",
        imported.summary
    );
    let answer_file = dir.path().join("branch-1.answer");
    std::fs::write(
        &answer_file,
        imported
            .answer
            .context("the cloud answered")?
            .encode_to_vec(),
    )?;
    let carried = pb::SyncFile::decode(std::fs::read(&answer_file)?.as_slice())?;
    let applied = satellite_admin.import_sync(carried).await?.into_inner();
    println!(
        "satellite$ entitle-authority sync import branch-1.answer\n  {}",
        applied.summary
    );

    let status = satellite_admin
        .satellite_status(pb::SatelliteStatusRequest {})
        .await?
        .into_inner();
    let ledger = ledger(&mut cloud).await?;
    let engine = admitted.load(Ordering::Relaxed);
    println!(
        "\nsatellite: {} reports waiting; cloud ledger: {ledger} PAR-TPS admitted; engine: {engine} admitted; {}",
        status.reports_waiting,
        if ledger == engine {
            "they match exactly"
        } else {
            "MISMATCH"
        }
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    anyhow::ensure!(
        ledger == engine,
        "the cloud's ledger and the engine disagree"
    );
    Ok(())
}
