//! The authority on PostgreSQL as it runs highly available: two authority processes over
//! one database (the last licences given out exactly once; usage exact with one process
//! killed mid-stream), a synchronous standby promoted after the primary is killed (every
//! acknowledged report kept), and the database failing under an authority (a clear error
//! at start, UNAVAILABLE while down, recovery without a restart, a newer schema refused).
//!
//! Every PostgreSQL here is real and started by the test (`entitle-pgtest`), whatever
//! `ENTITLE_TEST_STORE` says; every authority is a real `entitle-authority serve` process.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{counts, udi};
use entitle_codes as codes;
use entitle_pgtest::{Cluster, Pair};
use entitle_proto::pb;
use entitle_proto::pb::authority_client::AuthorityClient;
use entitle_proto::signing;
use entitle_sidecar::device::{DeviceClient, DeviceError};
use harness::Authority;
use tonic::Code;
use tonic::transport::Channel;

const AUTHORITY: &str = env!("CARGO_BIN_EXE_e2e-entitle-authority");

/// The tags every report carries.
const TAGS: [&str; 2] = ["PAR-TPS", "PAR-ADD-TPS"];

/// How long a device keeps resending before the test gives up.
const RESEND_FOR: Duration = Duration::from_secs(120);

/// Two processes serving one database, each from its own copy of the data directory.
fn two_processes(dir: &std::path::Path, url: &str) -> (Authority, Authority) {
    let mut first = Authority::init_database(dir.join("first"), url);
    let mut second = first.another_process(dir.join("second"));
    first.restart();
    second.restart();
    (first, second)
}

/// A registered device with its usage reports signed ahead, `1..=count`.
struct Reporter {
    instance: String,
    reports: Vec<pb::Signed>,
    /// What the reports carry, per tag.
    admitted: u64,
    /// How many reports, from the first, are acknowledged.
    acked: Arc<AtomicUsize>,
}

/// What a reporter saw: how often its stream broke (and it resent from its first
/// unacknowledged report), and how many acknowledgements were duplicates.
#[derive(Debug, Default)]
struct Resent {
    broken: usize,
    duplicates: usize,
}

async fn reporter(channel: Channel, authority: &Authority, token: &str, serial: &str) -> Reporter {
    let key = signing::generate_key().unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(
        std::fs::read(authority.public_key()).unwrap()[..]
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let mut device = DeviceClient::new(channel, key, public);
    device.register(token, udi(serial)).await.unwrap();
    let instance = device.instance().unwrap().to_owned();
    let mut admitted = 0;
    let reports = (1..=REPORTS as u64)
        .map(|sequence| {
            let report = pb::UsageReport {
                instance_id: instance.clone(),
                sequence,
                window_start: 0,
                window_end: 60_000,
                usage: TAGS
                    .iter()
                    .map(|tag| pb::EntitlementUsage {
                        tag: (*tag).into(),
                        admitted: sequence % 7 + 1,
                        rejected: 1,
                        peak_tps: 10,
                        tps_histogram: vec![],
                    })
                    .collect(),
            };
            admitted += sequence % 7 + 1;
            device.sign_report(&report)
        })
        .collect();
    Reporter {
        instance,
        reports,
        admitted,
        acked: Arc::new(AtomicUsize::new(0)),
    }
}

/// Reports per device.
const REPORTS: usize = 600;

impl Reporter {
    /// Streams every report not yet acknowledged to `channels[0]`; when the stream breaks
    /// (the process killed, the database down), waits a little and resends from the first
    /// unacknowledged report to the next channel in turn, until every report is
    /// acknowledged.
    async fn send_all(&self, channels: Vec<Channel>) -> Resent {
        let mut resent = Resent::default();
        let started = Instant::now();
        for turn in 0.. {
            let from = self.acked.load(Ordering::SeqCst);
            if from == self.reports.len() {
                return resent;
            }
            assert!(
                started.elapsed() < RESEND_FOR,
                "{} reports of {} still unacknowledged after {RESEND_FOR:?}",
                self.reports.len() - from,
                self.instance
            );
            let mut client = AuthorityClient::new(channels[turn % channels.len()].clone());
            let stream = tokio_stream::iter(self.reports[from..].to_vec());
            let broke = match client.report_usage(stream).await {
                Ok(answer) => {
                    let mut acks = answer.into_inner();
                    loop {
                        match acks.message().await {
                            Ok(Some(ack)) => {
                                let at = self.acked.load(Ordering::SeqCst);
                                assert_eq!(ack.sequence as usize, at + 1, "acks come in order");
                                assert!(!ack.retired && !ack.out_of_order, "{ack:?}");
                                resent.duplicates += usize::from(ack.duplicate);
                                self.acked.store(at + 1, Ordering::SeqCst);
                            }
                            Ok(None) => break false,
                            Err(status) => break broken(status),
                        }
                    }
                }
                Err(status) => broken(status),
            };
            if broke {
                resent.broken += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        unreachable!()
    }
}

/// A stream that broke as a crash or an outage breaks it; any other refusal fails the test.
fn broken(status: tonic::Status) -> bool {
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "a refusal, not an outage: {status:?}"
    );
    true
}

/// Waits until `acked` reports of all `reporters` together are acknowledged.
async fn until_acked(reporters: &[Arc<Reporter>], acked: usize) {
    let deadline = Instant::now() + RESEND_FOR;
    while reporters
        .iter()
        .map(|r| r.acked.load(Ordering::SeqCst))
        .sum::<usize>()
        < acked
    {
        assert!(Instant::now() < deadline, "the reports did not get through");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The ledger's (admitted, reports) per instance and tag of Acme/Radius.
async fn ledger(authority: &Authority) -> BTreeMap<(String, String), (u64, u64)> {
    authority
        .admin()
        .await
        .get_usage(pb::GetUsageRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .totals
        .into_iter()
        .map(|t| ((t.instance_id, t.tag), (t.admitted, t.reports)))
        .collect()
}

/// Every report of every reporter counted, each once.
async fn assert_ledger_exact(authority: &Authority, reporters: &[Arc<Reporter>]) {
    let ledger = ledger(authority).await;
    assert_eq!(ledger.len(), reporters.len() * TAGS.len(), "{ledger:?}");
    for r in reporters {
        for tag in TAGS {
            assert_eq!(
                ledger[&(r.instance.clone(), tag.to_owned())],
                (r.admitted, REPORTS as u64),
                "{} {tag}",
                r.instance
            );
        }
    }
}

async fn token(authority: &Authority, uses: u32) -> String {
    authority
        .admin()
        .await
        .create_token(pb::CreateTokenRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            validity_days: 30,
            max_uses: uses,
            export_controlled: false,
            description: "fleet".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

fn all_audit() -> pb::ListAuditRequest {
    pb::ListAuditRequest {
        limit: 100_000,
        ..Default::default()
    }
}

fn refusal(e: &DeviceError) -> Code {
    match e {
        DeviceError::Refused(status) => status.code(),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_give_out_the_last_licences_exactly_once() {
    let pg = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = two_processes(dir.path(), &pg.url());
    first.acme(&[("PAR-TPS", 6)]).await;
    let processes = [&first, &second];

    // Twelve registrations at once, alternating between the processes, on a token of 8 uses.
    let token = token(&first, 8).await;
    let public = ed25519_dalek::VerifyingKey::from_bytes(
        std::fs::read(first.public_key()).unwrap()[..]
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let registrations = (0..12).map(|i| {
        let channel = processes[i % 2].device_channel();
        let token = token.clone();
        tokio::spawn(async move {
            let mut device = DeviceClient::new(channel, signing::generate_key().unwrap(), public);
            let registered = device.register(&token, udi(&format!("R{i:02}"))).await;
            (device, registered)
        })
    });
    let mut devices = Vec::new();
    let mut used_up = 0;
    for registration in registrations.collect::<Vec<_>>() {
        match registration.await.unwrap() {
            (device, Ok(_)) => devices.push(device),
            (_, Err(e)) => {
                assert_eq!(refusal(&e), Code::PermissionDenied, "{e}");
                assert!(e.to_string().contains("used up"), "{e}");
                used_up += 1;
            }
        }
    }
    assert_eq!((devices.len(), used_up), (8, 4));

    // The 8 devices ask for one licence each and 4 SLR reservations for one each, all at
    // once over both processes, against a pool of 6.
    let asks = devices.into_iter().map(|mut device| {
        tokio::spawn(async move {
            let authorization = device.authorize(counts(&[("PAR-TPS", 1)])).await.unwrap();
            let grant = &authorization.grants[0];
            let status = pb::GrantStatus::try_from(grant.status).unwrap();
            match grant.granted {
                1 => assert_eq!(status, pb::GrantStatus::Authorized),
                0 => assert_eq!(status, pb::GrantStatus::OutOfCompliance),
                n => panic!("{n} granted of 1 asked"),
            }
            grant.granted
        })
    });
    let asks: Vec<_> = asks.collect();
    let mut reservations = Vec::new();
    for i in 0..4 {
        let mut admin = processes[i % 2].admin().await;
        reservations.push(tokio::spawn(async move {
            let request =
                codes::make_request(&codes::Udi::new("CPAR", format!("SLR{i}")).unwrap(), 1)
                    .unwrap();
            match admin
                .authorize_reservation(pb::AuthorizeReservationRequest {
                    smart_account: "Acme".into(),
                    virtual_account: "Radius".into(),
                    request_code: request,
                    kind: pb::ReservationKind::Specific as i32,
                    licenses: counts(&[("PAR-TPS", 1)]),
                })
                .await
            {
                Ok(_) => 1,
                Err(e) => {
                    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
                    assert!(e.message().contains("0 available"), "{}", e.message());
                    0
                }
            }
        }));
    }
    let mut granted = 0;
    for ask in asks {
        granted += ask.await.unwrap();
    }
    let mut reserved = 0;
    for reservation in reservations {
        reserved += reservation.await.unwrap();
    }
    assert_eq!(
        granted + reserved,
        6,
        "{granted} granted, {reserved} reserved"
    );

    // Both processes see the same pool: all 6 in use.
    for process in processes {
        let pools = process
            .admin()
            .await
            .list_pools(pb::ListPoolsRequest {
                smart_account: "Acme".into(),
                virtual_account: "Radius".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pools;
        let pool = pools.iter().find(|p| p.tag == "PAR-TPS").unwrap();
        assert_eq!((pool.quantity, pool.in_use), (6, 6), "{pool:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_over_two_processes_is_exact_with_one_killed_mid_stream() {
    let pg = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut first, second) = two_processes(dir.path(), &pg.url());
    first.acme(&[("PAR-TPS", 10)]).await;
    let token = token(&first, 8).await;

    // Eight devices, half reporting to each process; the first process's devices move to
    // the second when it dies.
    let mut reporters = Vec::new();
    for i in 0..8 {
        let home = if i % 2 == 0 { &first } else { &second };
        reporters.push(Arc::new(
            reporter(home.device_channel(), &first, &token, &format!("U{i:02}")).await,
        ));
    }
    let runs: Vec<_> = reporters
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let channels = if i % 2 == 0 {
                vec![first.device_channel(), second.device_channel()]
            } else {
                vec![second.device_channel()]
            };
            let r = r.clone();
            tokio::spawn(async move { r.send_all(channels).await })
        })
        .collect();

    // A quarter through, SIGKILL the first process.
    until_acked(&reporters, reporters.len() * REPORTS / 4).await;
    first.kill();
    let mut resent = Vec::new();
    for run in runs {
        resent.push(run.await.unwrap());
    }
    for (i, r) in resent.iter().enumerate() {
        if i % 2 == 0 {
            assert!(r.broken >= 1, "device {i} was on the killed process: {r:?}");
        }
    }
    assert_ledger_exact(&second, &reporters).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_to_the_synchronous_standby_keeps_every_acknowledged_report() {
    let pair = Pair::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut authority =
        Authority::init_database(dir.path().join("authority"), &pair.multi_host_url());
    authority.restart();
    authority.acme(&[("PAR-TPS", 10)]).await;
    let token = token(&authority, 6).await;
    let mut reporters = Vec::new();
    for i in 0..6 {
        reporters.push(Arc::new(
            reporter(
                authority.device_channel(),
                &authority,
                &token,
                &format!("F{i:02}"),
            )
            .await,
        ));
    }
    let runs: Vec<_> = reporters
        .iter()
        .map(|r| {
            let (r, channel) = (r.clone(), authority.device_channel());
            tokio::spawn(async move { r.send_all(vec![channel]).await })
        })
        .collect();

    // A third through, kill the primary; what was acknowledged by then must be on the
    // standby once it is promoted.
    until_acked(&reporters, reporters.len() * REPORTS / 3).await;
    pair.primary().kill().unwrap();
    let acked_before: Vec<usize> = reporters
        .iter()
        .map(|r| r.acked.load(Ordering::SeqCst))
        .collect();
    pair.promote_standby().unwrap();
    for (r, acked) in reporters.iter().zip(&acked_before) {
        let kept = pair
            .standby()
            .psql(&format!(
                "SELECT count(*) FROM usage_reports u JOIN instances i ON i.number = u.instance_number
                 WHERE i.id = '{}' AND u.sequence <= {acked}",
                r.instance
            ))
            .unwrap();
        assert_eq!(
            kept,
            acked.to_string(),
            "{}: acknowledged but lost",
            r.instance
        );
    }

    // The same authority process reconnects through its multi-host URL; the devices resend
    // what was not acknowledged, and the ledger counts every report once. Whether a device
    // sees its stream break depends on timing: a writer that finds its connection lost
    // only after the promotion reconnects to the new primary at once, and no device
    // notices (on a busy machine, every device; `resent` then shows no break). Either way
    // the reports not acknowledged by the kill are stored on the promoted standby alone.
    let mut resent = Vec::new();
    for run in runs {
        resent.push(run.await.unwrap());
    }
    let total = reporters.len() * REPORTS;
    assert!(
        acked_before.iter().sum::<usize>() < total,
        "the primary was killed after every report was in: {acked_before:?}, {resent:?}"
    );
    assert!(
        authority.is_running(),
        "the authority did not need a restart"
    );
    assert_ledger_exact(&authority, &reporters).await;
    let stored = pair
        .standby()
        .psql("SELECT count(*), count(DISTINCT (instance_number, sequence)) FROM usage_reports")
        .unwrap();
    assert_eq!(stored, format!("{total}|{total}"));
}

/// `serve` on `data`, expected to fail: its exit status, and its error output.
fn serve_fails(data: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(AUTHORITY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn postgres_down_at_start_is_a_clear_error() {
    let pg = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::init_database(dir.path().join("authority"), &pg.url());
    pg.stop().unwrap();
    let (status, stderr) = serve_fails(&authority.data);
    assert!(!status.success());
    assert!(
        stderr.contains("PostgreSQL") && stderr.contains(&pg.port().to_string()),
        "{stderr}"
    );

    // And init against a server that is not there.
    let out = Command::new(AUTHORITY)
        .arg("init")
        .arg("--data")
        .arg(dir.path().join("other"))
        .arg("--database")
        .arg(pg.url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
}

#[test]
fn a_database_of_a_newer_schema_is_refused() {
    let pg = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::init_database(dir.path().join("authority"), &pg.url());
    pg.psql("UPDATE schema_version SET version = version + 1")
        .unwrap();
    let (status, stderr) = serve_fails(&authority.data);
    assert!(!status.success());
    assert!(
        stderr.contains("newer than this authority knows"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_while_serving_answers_unavailable_and_recovers_without_a_restart() {
    let pg = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::init_database(dir.path().join("authority"), &pg.url());
    authority.restart();
    authority.acme(&[("PAR-TPS", 10)]).await;
    let token = token(&authority, 1).await;
    let r = reporter(authority.device_channel(), &authority, &token, "O01").await;
    let mut admin = authority.admin().await;
    let audit_len = |entries: pb::ListAuditResponse| entries.entries.len();
    let before = audit_len(admin.list_audit(all_audit()).await.unwrap().into_inner());

    pg.kill().unwrap();
    // Every kind of request answers UNAVAILABLE: an admin change, a read, a usage report.
    let e = admin
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: "Acme".into(),
            name: "DuringTheOutage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = admin.list_audit(all_audit()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let mut client = AuthorityClient::new(authority.device_channel());
    let mut acks = client
        .report_usage(tokio_stream::iter(r.reports[..3].to_vec()))
        .await
        .unwrap()
        .into_inner();
    let e = acks.message().await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    // Back up: the same process serves again, and nothing of the failed requests was written.
    pg.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        match admin.list_audit(all_audit()).await {
            Ok(entries) => break audit_len(entries.into_inner()),
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the authority did not recover: {e:?}"),
        }
    };
    assert_eq!(after, before, "nothing was written during the outage");
    let names: Vec<String> = admin
        .list_virtual_accounts(pb::ListVirtualAccountsRequest {
            smart_account: "Acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .accounts
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["Lab", "Radius"]);
    assert!(ledger(&authority).await.is_empty(), "no report was stored");
    let resent = r.send_all(vec![authority.device_channel()]).await;
    assert_eq!(resent.duplicates, 0);
    assert!(authority.is_running());
    assert_ledger_exact(&authority, &[Arc::new(r)]).await;
}
