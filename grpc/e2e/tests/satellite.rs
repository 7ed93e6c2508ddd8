//! Call home through a satellite: synced with the cloud over the network (with the
//! satellite killed by SIGKILL mid-sync), and by files across a real air gap (the satellite
//! in a network namespace of its own with no route to the cloud); the chain of trust
//! devices check; the satellite's sync deadline; and a device moving between the
//! satellite and the cloud. Every figure is checked against what the engine admitted.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod harness;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use entitle_proto::pb;
use harness::{Authority, Entitled, attached_gate, registration, traffic, wait_gate};

const SELECT_300: &str = "[agent]\nselection = { \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }\n";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs an admin command that must succeed; answers what it printed.
fn ok(authority: &Authority, args: &[&str]) -> String {
    let out = authority.cli(args);
    assert!(out.status.success(), "{args:?} failed: {}", text(&out));
    text(&out)
}

/// Runs an admin command that must fail; answers what it printed.
fn refused(authority: &Authority, args: &[&str]) -> String {
    let out = authority.cli(args);
    assert!(
        !out.status.success(),
        "{args:?} should fail: {}",
        text(&out)
    );
    text(&out)
}

/// `license smart register`; answers the reply or the refusal.
async fn try_register(sidecar: &Entitled, token: &str) -> String {
    match sidecar
        .client()
        .await
        .register(pb::RegisterCommand {
            id_token: token.into(),
        })
        .await
    {
        Ok(reply) => reply.into_inner().message,
        Err(status) => status.message().to_owned(),
    }
}

async fn satellite_status(satellite: &Authority) -> pb::SatelliteInfo {
    satellite
        .admin()
        .await
        .satellite_status(pb::SatelliteStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Polls the satellite's status every 100 ms, for at most `limit`, until `ready` holds.
async fn wait_satellite(
    satellite: &Authority,
    what: &str,
    limit: Duration,
    ready: impl Fn(&pb::SatelliteInfo) -> bool,
) -> pb::SatelliteInfo {
    let start = Instant::now();
    loop {
        if let Ok(mut admin) = tokio::time::timeout(Duration::from_secs(5), satellite.admin()).await
            && let Ok(status) = admin.satellite_status(pb::SatelliteStatusRequest {}).await
            && ready(status.get_ref())
        {
            return status.into_inner();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}\nsatellite log:\n{}",
            std::fs::read_to_string(satellite.data.with_extension("log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cloud's admitted total of `tag` over the instances of `serial` in `accounts`.
async fn ledger_admitted(
    cloud: &Authority,
    accounts: &[&str],
    serial: &str,
    tag: &str,
) -> (u64, u64) {
    let mut admin = cloud.admin().await;
    let (mut admitted, mut instances) = (0, 0);
    for va in accounts {
        let list = admin
            .list_instances(pb::ListInstancesRequest {
                smart_account: "Acme".into(),
                virtual_account: (*va).into(),
            })
            .await
            .unwrap()
            .into_inner()
            .instances;
        for instance in list
            .iter()
            .filter(|i| i.udi.as_ref().is_some_and(|u| u.serial == serial))
        {
            instances += 1;
            let totals = admin
                .get_usage(pb::GetUsageRequest {
                    instance_id: instance.instance_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .totals;
            admitted += totals
                .iter()
                .filter(|t| t.tag == tag)
                .map(|t| {
                    assert_eq!(t.reports, t.last_sequence, "reports 1..=n, each once");
                    t.admitted
                })
                .sum::<u64>();
        }
    }
    (admitted, instances)
}

async fn pool_in_use(authority: &Authority, va: &str, tag: &str) -> u64 {
    authority
        .admin()
        .await
        .list_pools(pb::ListPoolsRequest {
            smart_account: "Acme".into(),
            virtual_account: va.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pools
        .iter()
        .filter(|p| p.tag == tag)
        .map(|p| p.in_use)
        .sum()
}

/// Traffic through an attached gate until `stop`, then every count delivered from the
/// sidecar: answers the engine's admitted total.
async fn finish(
    sidecar: &Entitled,
    attachment: &entitle_sidecar::Attachment,
    stop: &AtomicBool,
    driver: std::thread::JoinHandle<harness::Seen>,
) -> u64 {
    stop.store(true, Ordering::Relaxed);
    let seen = driver.join().unwrap();
    attachment.flush(Duration::from_secs(60)).await.unwrap();
    assert_eq!(attachment.admitted("PAR-TPS"), seen.admitted);
    sidecar
        .wait_for("the spool drains", Duration::from_secs(60), |s| {
            s.spool.as_ref().unwrap().depth == 0
        })
        .await;
    seen.admitted
}

// ----- Network sync -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_satellite_synced_over_the_network_delivers_usage_exactly_once_through_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Authority::start(dir.path());
    let token = cloud.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let mut satellite = Authority::satellite(dir.path(), &cloud, "site-a", &["Acme/Radius"], &[]);
    let cloud_ca = cloud.ca().to_string_lossy().into_owned();
    satellite.serve(
        &[
            "--role",
            "satellite",
            "--cloud",
            &cloud.url,
            "--cloud-ca",
            &cloud_ca,
            "--sync-interval-secs",
            "1",
        ],
        &[],
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    let listed = ok(&cloud, &["satellite", "list"]);
    assert!(
        listed.contains("site-a") && listed.contains("active"),
        "{listed}"
    );

    // The first sync brings the delegated account, its pools and its token.
    wait_satellite(&satellite, "the first sync", Duration::from_secs(30), |s| {
        s.last_sequence >= 1
    })
    .await;

    // The cloud no longer registers devices in the account it delegated.
    let direct = Entitled::start(dir.path(), &cloud, "DIRECT", SELECT_300);
    let message = try_register(&direct, &token).await;
    assert!(
        message.contains("served by satellite \"site-a\""),
        "{message}"
    );
    drop(direct);

    let sidecar = Entitled::start(dir.path(), &satellite, "SAT1", SELECT_300);
    sidecar.register(token).await;
    assert_eq!(registration(&sidecar.status().await), "REGISTERED");
    let (gate, attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, 300).await;
    let stop = Arc::new(AtomicBool::new(false));
    let driver = traffic(Arc::clone(&gate), Arc::clone(&stop));

    // SIGKILL at different points of the one-second sync cycle; each time the satellite
    // comes back on the same data and its sync resumes.
    for pause in [1300, 650, 900] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        satellite.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        satellite.restart();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let admitted = finish(&sidecar, &attachment, &stop, driver).await;
    assert!(admitted > 0);

    // Everything reaches the cloud, once.
    let before = satellite_status(&satellite).await.last_sequence;
    wait_satellite(
        &satellite,
        "the satellite's outbox empties",
        Duration::from_secs(60),
        |s| s.reports_waiting == 0 && s.last_sequence > before,
    )
    .await;
    let (ledger, instances) = ledger_admitted(&cloud, &["Radius"], "SAT1", "PAR-TPS").await;
    assert_eq!(instances, 1);
    assert_eq!(
        ledger, admitted,
        "the cloud's ledger holds every admit once"
    );
    // The cloud counts the satellite's grants in its pool.
    assert_eq!(pool_in_use(&cloud, "Radius", "PAR-ADD-TPS").await, 2);
    let audit = cloud
        .admin()
        .await
        .list_audit(pb::ListAuditRequest {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        audit
            .iter()
            .any(|e| e.action == "satellite.sync" && e.actor == "satellite:site-a")
    );
    assert!(
        !audit.iter().any(|e| e.action == "usage.sequence"),
        "no report out of sequence"
    );
}

// ----- Sync by files across an air gap -----

/// A network namespace with a veth pair to the test's own: `10.77.N.1` here, `10.77.N.2`
/// inside. Inside, 127.0.0.1 is the namespace's own loopback and there is no route out:
/// the cloud on this side's loopback cannot be reached.
struct Namespace {
    name: String,
    inside: String,
}

impl Namespace {
    fn new(n: u8) -> Result<Self, String> {
        let name = format!("entitle-{}-{n}", std::process::id());
        let host = format!("veh{}{n}", std::process::id() % 10_000);
        let peer = format!("ves{}{n}", std::process::id() % 10_000);
        let inside = format!("10.77.{n}.2");
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), name.clone()],
            vec![
                "link".into(),
                "add".into(),
                host.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                peer.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                peer.clone(),
                "netns".into(),
                name.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("10.77.{n}.1/30"),
                "dev".into(),
                host.clone(),
            ],
            vec!["link".into(), "set".into(), host.clone(), "up".into()],
            vec![
                "-n".into(),
                name.clone(),
                "addr".into(),
                "add".into(),
                format!("{inside}/30"),
                "dev".into(),
                peer.clone(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                peer,
                "up".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        let made = Self { name, inside };
        for step in steps {
            let out = Command::new("ip")
                .args(&step)
                .output()
                .map_err(|e| format!("cannot run ip: {e}"))?;
            if !out.status.success() {
                return Err(format!("ip {}: {}", step.join(" "), text(&out)));
            }
        }
        Ok(made)
    }

    /// Whether a TCP connection to `address` succeeds from inside.
    fn connects(&self, address: &str) -> bool {
        let (host, port) = address.rsplit_once(':').unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.name, "timeout", "3", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{host}/{port}"))
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn flip_a_byte(from: &Path, to: &Path) {
    let mut bytes = std::fs::read(from).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(to, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_air_gapped_satellite_syncs_by_files_and_refuses_bad_ones() {
    let namespace = Namespace::new(1).unwrap_or_else(|e| {
        panic!("this test needs a network namespace of its own (ip netns, as root) and could not make one: {e}")
    });
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let cloud = Authority::start(dir.path());
    let token = cloud.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    // In its namespace the satellite reaches nothing outside, a test's PostgreSQL neither.
    let mut satellite = Authority::satellite_on(
        dir.path(),
        &cloud,
        "site-b",
        &["Acme/Radius"],
        &[&namespace.inside],
        false,
    );
    let inside = format!("{}:0", namespace.inside);
    satellite.serve(
        &["--role", "satellite"],
        &["ip", "netns", "exec", &namespace.name],
        &inside,
        &inside,
    );

    // The gap is real: from the satellite's side the cloud does not answer; from ours it does.
    assert!(
        !namespace.connects(&cloud.address),
        "the cloud is reachable from the satellite's namespace"
    );
    assert!(!namespace.connects(&cloud.admin_address));
    assert!(
        satellite.url.starts_with("https://10.77."),
        "{}",
        satellite.url
    );

    // A device cannot register before the first sync: the satellite knows no token yet.
    let sidecar = Entitled::start(dir.path(), &satellite, "GAP1", SELECT_300);
    let early = try_register(&sidecar, &token).await;
    assert!(early.contains("not known"), "{early}");

    // Sync 1 by files.
    let said = ok(&satellite, &["sync", "export", "--file", &path("s1.sync")]);
    assert!(said.contains("wrote sync 1"), "{said}");
    let mode = std::fs::metadata(path("s1.sync")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let said = ok(
        &cloud,
        &[
            "sync",
            "import",
            &path("s1.sync"),
            "--answer",
            &path("a1.sync"),
        ],
    );
    assert!(said.contains("sync 1 of satellite \"site-b\""), "{said}");
    let said = ok(&satellite, &["sync", "import", &path("a1.sync")]);
    assert!(said.contains("applied the answer to sync 1"), "{said}");

    // The device registers with the satellite and works.
    sidecar.register(token).await;
    let (gate, attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, 300).await;
    let stop = Arc::new(AtomicBool::new(false));
    let driver = traffic(Arc::clone(&gate), Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let admitted = finish(&sidecar, &attachment, &stop, driver).await;
    let waiting = satellite_status(&satellite).await.reports_waiting;
    assert!(waiting > 0, "the satellite holds the usage for the cloud");
    assert_eq!(
        ledger_admitted(&cloud, &["Radius"], "GAP1", "PAR-TPS")
            .await
            .1,
        0
    );

    // Sync 2 carries it.
    ok(&satellite, &["sync", "export", "--file", &path("s2.sync")]);
    // A tampered request is refused and changes nothing.
    flip_a_byte(
        Path::new(&path("s2.sync")),
        Path::new(&path("s2-tampered.sync")),
    );
    let said = refused(
        &cloud,
        &[
            "sync",
            "import",
            &path("s2-tampered.sync"),
            "--answer",
            &path("x.sync"),
        ],
    );
    assert!(
        said.contains("altered") || said.contains("not a sync file"),
        "{said}"
    );
    assert_eq!(
        ledger_admitted(&cloud, &["Radius"], "GAP1", "PAR-TPS")
            .await
            .0,
        0
    );
    ok(
        &cloud,
        &[
            "sync",
            "import",
            &path("s2.sync"),
            "--answer",
            &path("a2.sync"),
        ],
    );
    assert_eq!(
        ledger_admitted(&cloud, &["Radius"], "GAP1", "PAR-TPS")
            .await
            .0,
        admitted
    );
    // The same request twice changes nothing.
    let said = ok(
        &cloud,
        &[
            "sync",
            "import",
            &path("s2.sync"),
            "--answer",
            &path("a2-again.sync"),
        ],
    );
    assert!(
        said.contains("0 reports stored") && said.contains("imported before"),
        "{said}"
    );
    assert_eq!(
        ledger_admitted(&cloud, &["Radius"], "GAP1", "PAR-TPS")
            .await
            .0,
        admitted
    );
    // An older request after a newer one is out of order.
    let said = refused(
        &cloud,
        &[
            "sync",
            "import",
            &path("s1.sync"),
            "--answer",
            &path("x.sync"),
        ],
    );
    assert!(said.contains("out of order"), "{said}");

    // The answers: a tampered one, then the real one twice, then an older one.
    flip_a_byte(
        Path::new(&path("a2.sync")),
        Path::new(&path("a2-tampered.sync")),
    );
    let said = refused(&satellite, &["sync", "import", &path("a2-tampered.sync")]);
    assert!(
        said.contains("altered") || said.contains("not a sync file"),
        "{said}"
    );
    let said = ok(&satellite, &["sync", "import", &path("a2.sync")]);
    assert!(said.contains("applied the answer to sync 2"), "{said}");
    let said = ok(&satellite, &["sync", "import", &path("a2.sync")]);
    assert!(said.contains("imported before; nothing changed"), "{said}");
    let said = refused(&satellite, &["sync", "import", &path("a1.sync")]);
    assert!(said.contains("out of order"), "{said}");
    let status = satellite_status(&satellite).await;
    assert_eq!((status.reports_waiting, status.last_sequence), (0, 2));
    // A request file imported on the satellite, an answer on the cloud: each told where.
    let said = refused(&satellite, &["sync", "import", &path("s2.sync")]);
    assert!(said.contains("import it on the cloud"), "{said}");
    let said = refused(&cloud, &["sync", "import", &path("a2.sync")]);
    assert!(said.contains("import it on the satellite"), "{said}");

    // A file for another satellite: site-c's answer imported at site-b.
    cloud
        .admin()
        .await
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: "Acme".into(),
            name: "Branch".into(),
        })
        .await
        .unwrap();
    let mut other = Authority::satellite(dir.path(), &cloud, "site-c", &["Acme/Branch"], &[]);
    other.serve(&["--role", "satellite"], &[], "127.0.0.1:0", "127.0.0.1:0");
    ok(&other, &["sync", "export", "--file", &path("c1.sync")]);
    ok(
        &cloud,
        &[
            "sync",
            "import",
            &path("c1.sync"),
            "--answer",
            &path("c1-answer.sync"),
        ],
    );
    let said = refused(&satellite, &["sync", "import", &path("c1-answer.sync")]);
    assert!(said.contains("is for satellite \"site-c\""), "{said}");
    // And a request from a satellite of another cloud.
    let elsewhere = Authority::start(&dir.path().join("elsewhere"));
    let said = refused(
        &elsewhere,
        &[
            "sync",
            "import",
            &path("s2.sync"),
            "--answer",
            &path("x.sync"),
        ],
    );
    assert!(said.contains("another cloud"), "{said}");

    // The ledger is what the engine admitted, after all of it.
    assert_eq!(
        ledger_admitted(&cloud, &["Radius"], "GAP1", "PAR-TPS")
            .await
            .0,
        admitted
    );
}

// ----- The chain of trust -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_refuse_a_satellite_of_another_cloud_and_one_whose_delegation_was_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Authority::start(dir.path());
    let token = cloud.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;

    // A rogue satellite: a real delegation, from a cloud the device does not trust.
    let rogue_cloud = Authority::start(&dir.path().join("rogue-cloud"));
    let rogue_token = rogue_cloud.acme(&[("PAR-TPS", 10)]).await;
    let mut rogue = Authority::satellite(dir.path(), &rogue_cloud, "rogue", &["Acme/Radius"], &[]);
    let rogue_ca = rogue_cloud.ca().to_string_lossy().into_owned();
    rogue.serve(
        &[
            "--role",
            "satellite",
            "--cloud",
            &rogue_cloud.url,
            "--cloud-ca",
            &rogue_ca,
            "--sync-interval-secs",
            "1",
        ],
        &[],
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    wait_satellite(
        &rogue,
        "the rogue's first sync",
        Duration::from_secs(30),
        |s| s.last_sequence >= 1,
    )
    .await;
    rogue.device_key = cloud.public_key();
    let fooled = Entitled::start(dir.path(), &rogue, "ROGUE1", SELECT_300);
    let said = try_register(&fooled, &rogue_token).await;
    assert!(
        said.contains("delegation the trusted authority did not sign"),
        "{said}"
    );
    assert_ne!(registration(&fooled.status().await), "REGISTERED");

    // A real satellite of our cloud, revoked after the device registered with it.
    let mut satellite = Authority::satellite(dir.path(), &cloud, "site-d", &["Acme/Radius"], &[]);
    let cloud_ca = cloud.ca().to_string_lossy().into_owned();
    satellite.serve(
        &[
            "--role",
            "satellite",
            "--cloud",
            &cloud.url,
            "--cloud-ca",
            &cloud_ca,
            "--sync-interval-secs",
            "1",
        ],
        &[],
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    wait_satellite(&satellite, "the first sync", Duration::from_secs(30), |s| {
        s.last_sequence >= 1
    })
    .await;
    let device = Entitled::start(dir.path(), &satellite, "REV1", SELECT_300);
    device.register(token.clone()).await;
    assert_eq!(registration(&device.status().await), "REGISTERED");
    let said = ok(&cloud, &["satellite", "revoke", "site-d"]);
    assert!(said.contains("revoked satellite \"site-d\""), "{said}");
    let listed = ok(&cloud, &["satellite", "list"]);
    assert!(listed.contains("REVOKED"), "{listed}");
    // The revoked satellite's next syncs are refused (it syncs every second; a loaded
    // machine may take a few).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(satellite.data.with_extension("log")).unwrap();
        if log.contains("was revoked") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no sync was refused as revoked within 30 s: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The device learns of the revocation from the cloud: it moves there (another account
    // the cloud serves), which brings the cloud's revocation list...
    cloud
        .admin()
        .await
        .add_licenses(pb::AddLicensesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Lab".into(),
            tag: "PAR-TPS".into(),
            quantity: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let lab_token = cloud
        .admin()
        .await
        .create_token(pb::CreateTokenRequest {
            smart_account: "Acme".into(),
            virtual_account: "Lab".into(),
            validity_days: 30,
            max_uses: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut client = device.client().await;
    client.deregister(pb::DeregisterCommand {}).await.unwrap();
    client
        .set_call_home(pb::SetCallHomeCommand {
            url: cloud.url.clone(),
        })
        .await
        .unwrap();
    device.register(lab_token).await;
    let status = device.status().await;
    assert_eq!(registration(&status), "REGISTERED");
    assert_eq!(
        status
            .registration
            .as_ref()
            .unwrap()
            .virtual_account
            .as_deref(),
        Some("Lab")
    );
    assert!(
        device.dir.join("data/revocations.bin").exists(),
        "the device keeps the list"
    );

    // ...and from then on refuses what the revoked satellite signs, though it still
    // serves (the token is still valid there).
    client.deregister(pb::DeregisterCommand {}).await.unwrap();
    client
        .set_call_home(pb::SetCallHomeCommand {
            url: satellite.url.clone(),
        })
        .await
        .unwrap();
    let said = try_register(&device, &token).await;
    assert!(
        said.contains("whose delegation 1 the cloud revoked"),
        "{said}"
    );
}

// ----- The sync deadline -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_sync_deadline_a_satellite_refuses_devices_until_it_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Authority::start(dir.path());
    let token = cloud.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let mut satellite = Authority::satellite(dir.path(), &cloud, "site-e", &["Acme/Radius"], &[]);
    satellite.serve(
        &["--role", "satellite", "--sync-deadline-secs", "8"],
        &[],
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let sync = |n: u32| {
        ok(
            &satellite,
            &["sync", "export", "--file", &path(&format!("s{n}"))],
        );
        ok(
            &cloud,
            &[
                "sync",
                "import",
                &path(&format!("s{n}")),
                "--answer",
                &path(&format!("a{n}")),
            ],
        );
        ok(&satellite, &["sync", "import", &path(&format!("a{n}"))]);
    };
    sync(1);
    let device = Entitled::start(dir.path(), &satellite, "LATE1", SELECT_300);
    device.register(token).await;
    assert_eq!(registration(&device.status().await), "REGISTERED");

    // As the deadline nears the satellite warns; past it, it refuses the device.
    let warned = wait_satellite(&satellite, "the warning", Duration::from_secs(20), |s| {
        !s.warning.is_empty()
    })
    .await;
    assert!(
        warned.warning.contains("unless it syncs") || warned.warning.contains("passed"),
        "{}",
        warned.warning
    );
    let shown = ok(&satellite, &["satellite", "status"]);
    assert!(
        shown.contains("WARNING") && shown.contains("last sync: answer to sync 1"),
        "{shown}"
    );
    wait_satellite(
        &satellite,
        "the deadline passes",
        Duration::from_secs(20),
        |s| s.warning.contains("passed"),
    )
    .await;
    let renewal = device
        .client()
        .await
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await;
    let said = match renewal {
        Ok(reply) => reply.into_inner().message,
        Err(status) => status.message().to_owned(),
    };
    assert!(said.contains("has not synced with the cloud"), "{said}");

    // A sync by files, and the device is served again.
    sync(2);
    let reply = device
        .client()
        .await
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await;
    let said = match reply {
        Ok(reply) => reply.into_inner().message,
        Err(status) => status.message().to_owned(),
    };
    assert!(!said.contains("has not synced"), "{said}");
    assert_eq!(satellite_status(&satellite).await.warning, "");
}

// ----- A device moving between a satellite and the cloud -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_moves_from_a_satellite_to_the_cloud_and_back_and_nothing_is_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Authority::start(dir.path());
    let satellite_token = cloud.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let mut admin = cloud.admin().await;
    for tag in ["PAR-TPS", "PAR-ADD-TPS"] {
        admin
            .add_licenses(pb::AddLicensesRequest {
                smart_account: "Acme".into(),
                virtual_account: "Lab".into(),
                tag: tag.into(),
                quantity: 2,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let cloud_token = admin
        .create_token(pb::CreateTokenRequest {
            smart_account: "Acme".into(),
            virtual_account: "Lab".into(),
            validity_days: 30,
            max_uses: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut satellite = Authority::satellite(dir.path(), &cloud, "site-f", &["Acme/Radius"], &[]);
    let cloud_ca = cloud.ca().to_string_lossy().into_owned();
    satellite.serve(
        &[
            "--role",
            "satellite",
            "--cloud",
            &cloud.url,
            "--cloud-ca",
            &cloud_ca,
            "--sync-interval-secs",
            "1",
        ],
        &[],
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    wait_satellite(&satellite, "the first sync", Duration::from_secs(30), |s| {
        s.last_sequence >= 1
    })
    .await;

    let sidecar = Entitled::start(dir.path(), &satellite, "MOVE1", SELECT_300);
    let mut client = sidecar.client().await;
    let (gate, attachment) = attached_gate(&sidecar).await;
    let mut admitted = 0;
    // Satellite, cloud, satellite: deregister where it is, point call home at the other,
    // register with that side's token; traffic in each place.
    for (url, token, rate) in [
        (satellite.url.clone(), satellite_token.clone(), 300),
        (cloud.url.clone(), cloud_token, 300),
        (satellite.url.clone(), satellite_token, 300),
    ] {
        if registration(&sidecar.status().await) == "REGISTERED" {
            client.deregister(pb::DeregisterCommand {}).await.unwrap();
        }
        client
            .set_call_home(pb::SetCallHomeCommand { url })
            .await
            .unwrap();
        sidecar.register(token).await;
        assert_eq!(registration(&sidecar.status().await), "REGISTERED");
        wait_gate(&gate, rate).await;
        let stop = Arc::new(AtomicBool::new(false));
        let driver = traffic(Arc::clone(&gate), Arc::clone(&stop));
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        admitted += driver.join().unwrap().admitted;
        attachment.flush(Duration::from_secs(60)).await.unwrap();
        sidecar
            .wait_for("the spool drains", Duration::from_secs(60), |s| {
                s.spool.as_ref().unwrap().depth == 0
            })
            .await;
    }
    assert_eq!(attachment.admitted("PAR-TPS"), admitted);
    let before = satellite_status(&satellite).await.last_sequence;
    wait_satellite(
        &satellite,
        "the satellite's usage reaches the cloud",
        Duration::from_secs(60),
        |s| s.reports_waiting == 0 && s.last_sequence > before,
    )
    .await;
    let (ledger, instances) = ledger_admitted(&cloud, &["Radius", "Lab"], "MOVE1", "PAR-TPS").await;
    assert_eq!(instances, 3, "one instance per registration");
    assert_eq!(
        ledger, admitted,
        "every admit counted once, wherever it was made"
    );
    // Licences followed the device: the cloud's Lab pool is free again, the satellite's
    // instance holds the Radius ones.
    assert_eq!(pool_in_use(&cloud, "Lab", "PAR-TPS").await, 0);
    assert_eq!(pool_in_use(&cloud, "Radius", "PAR-TPS").await, 1);
}

// ----- Licence reservation through a satellite -----

const ENTITLE: &str = env!("CARGO_BIN_EXE_e2e-entitle");

/// Runs `entitle --sidecar <url> args`, which must succeed; answers its last line.
fn entitle(sidecar: &Entitled, args: &[&str]) -> String {
    let out = Command::new(ENTITLE)
        .arg("--sidecar")
        .arg(&sidecar.url)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

async fn reservations(authority: &Authority) -> Vec<pb::Reservation> {
    authority
        .admin()
        .await
        .list_reservations(pb::ListReservationsRequest {
            smart_account: "Acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_asked_at_a_satellite_is_made_by_the_cloud_at_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Authority::start(dir.path());
    cloud.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let mut satellite = Authority::satellite(dir.path(), &cloud, "site-g", &["Acme/Radius"], &[]);
    let cloud_ca = cloud.ca().to_string_lossy().into_owned();
    satellite.serve(
        &[
            "--role",
            "satellite",
            "--cloud",
            &cloud.url,
            "--cloud-ca",
            &cloud_ca,
            "--sync-interval-secs",
            "1",
        ],
        &[],
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    wait_satellite(&satellite, "the first sync", Duration::from_secs(30), |s| {
        s.last_sequence >= 1
    })
    .await;
    let device = Entitled::start(dir.path(), &satellite, "RES1", "");
    entitle(&device, &["license", "smart", "reservation"]);
    let request = entitle(&device, &["license", "smart", "reservation", "request"]);

    // Asked at the satellite: queued, made by the cloud, back with the next sync.
    let said = ok(
        &satellite,
        &[
            "reservation",
            "slr",
            "Acme",
            "Radius",
            &request,
            "PAR-TPS=1",
            "PAR-ADD-TPS=2",
        ],
    );
    assert!(said.contains("queued on this satellite"), "{said}");
    let start = Instant::now();
    let code = loop {
        if let Some(r) = reservations(&satellite).await.first()
            && !r.authorization_code.is_empty()
        {
            break r.authorization_code.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no code came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        reservations(&cloud).await[0].authorization_code,
        code,
        "the cloud made it"
    );
    // The reserved licences are in use on both sides: the satellite grants them to no one.
    assert_eq!(pool_in_use(&cloud, "Radius", "PAR-ADD-TPS").await, 2);
    assert_eq!(pool_in_use(&satellite, "Radius", "PAR-ADD-TPS").await, 2);

    // The device installs the cloud's code (it trusts the cloud's codes key).
    entitle(
        &device,
        &["license", "smart", "reservation", "install", &code],
    );
    let status = device.status().await;
    assert_eq!(
        registration(&status),
        "REGISTERED - SPECIFIC LICENSE RESERVATION"
    );
    assert_eq!(harness::rate(&status, "PAR-TPS"), Some(300));

    // Its return, taken at the satellite, frees the licences on both sides after a sync.
    let return_code = entitle(&device, &["license", "smart", "reservation", "return"]);
    let said = ok(&satellite, &["reservation", "return", &return_code]);
    assert!(said.contains("queued on this satellite"), "{said}");
    let start = Instant::now();
    while pool_in_use(&satellite, "Radius", "PAR-ADD-TPS").await != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the return never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(pool_in_use(&cloud, "Radius", "PAR-ADD-TPS").await, 0);
    assert_ne!(reservations(&cloud).await[0].returned_at, 0);

    // A request the cloud refuses comes back as a refusal, in the audit, not a code.
    let other = Entitled::start(dir.path(), &satellite, "RES2", "");
    entitle(&other, &["license", "smart", "reservation"]);
    let request = entitle(&other, &["license", "smart", "reservation", "request"]);
    ok(
        &satellite,
        &[
            "reservation",
            "slr",
            "Acme",
            "Radius",
            &request,
            "PAR-TPS=5",
        ],
    );
    let start = Instant::now();
    loop {
        let audit = ok(&satellite, &["audit", "list", "--kind", "reservation"]);
        if audit.contains("reservation.refused") {
            assert!(audit.contains("PAR-TPS: 5 asked"), "{audit}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no refusal came back: {audit}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
