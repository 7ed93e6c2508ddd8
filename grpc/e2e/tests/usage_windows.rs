//! No usage lost in the windows a crash or a re-registration opens: reports bound to an
//! instance that retired (the device registered again) are acknowledged once if stored, or
//! answered `retired` and delivered under the new instance; and a packet server killed
//! with SIGKILL, attached or with the sidecar embedded, loses at most its last second (the
//! one-second local hop), while the sidecar still sends one report per report interval.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestAuthority, report, udi};
use ed25519_dalek::SigningKey;
use entitle_proto::pb;
use entitle_proto::signing;
use entitle_sidecar::device::{DeviceClient, DeviceError};
use harness::{
    Authority, Entitled, PacketServer, attached_gate, registration, sidecar_client, traffic,
    wait_gate,
};
use tonic::Code;

const SELECT_300: &str = "[agent]\nselection = { \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }\n";

fn spool(status: &pb::LicenseStatus) -> &pb::SpoolInfo {
    status.spool.as_ref().unwrap()
}

async fn usage(authority: &TestAuthority, instance: &str) -> (u64, u64) {
    let totals = authority
        .admin
        .clone()
        .get_usage(pb::GetUsageRequest {
            instance_id: instance.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .totals;
    let par = totals.iter().find(|t| t.tag == "PAR-TPS").unwrap();
    (par.admitted, par.reports)
}

// ----- The authority's answers for a retired instance -----

#[tokio::test]
async fn reports_of_a_retired_instance_are_acknowledged_once_or_answered_retired() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(3).await;
    let key = signing::generate_key().unwrap();
    let device = || async {
        DeviceClient::new(
            authority.channel().await,
            key.clone(),
            authority.state.public_key(),
        )
    };
    let mut old = device().await;
    old.register(&token, udi("R1")).await.unwrap();
    let a = old.instance().unwrap().to_owned();
    let batch = vec![
        old.sign_report(&report(&a, 1, 100)),
        old.sign_report(&report(&a, 2, 200)),
    ];
    let (acks, err) = old.report(batch).await;
    assert!(err.is_none() && acks.len() == 2, "{err:?}");

    // The device registers again (its ID certificate expired, say): a new instance
    // replaces the old one.
    let mut new = device().await;
    new.register(&token, udi("R1")).await.unwrap();
    let b = new.instance().unwrap().to_owned();
    assert_ne!(a, b);

    // 2 was stored before the instance retired (its acknowledgement lost): a duplicate.
    // 3 never was: `retired`, and the stream goes on after it.
    let batch = vec![
        old.sign_report(&report(&a, 2, 200)),
        old.sign_report(&report(&a, 3, 300)),
        old.sign_report(&report(&a, 1, 100)),
    ];
    let (acks, err) = old.report(batch).await;
    assert!(err.is_none(), "{err:?}");
    let answers: Vec<(u64, bool, bool)> = acks
        .iter()
        .map(|a| (a.sequence, a.duplicate, a.retired))
        .collect();
    assert_eq!(
        answers,
        [(2, true, false), (3, false, true), (1, true, false)]
    );
    assert!(acks.iter().all(|ack| ack.instance_id == a));

    // Other content under a stored sequence is still refused; an unknown instance too.
    let (acks, err) = old.report(vec![old.sign_report(&report(&a, 2, 999))]).await;
    assert!(acks.is_empty());
    match err {
        Some(DeviceError::Refused(s)) => assert_eq!(s.code(), Code::AlreadyExists, "{s}"),
        other => panic!("expected a refusal: {other:?}"),
    }
    let (_, err) = old
        .report(vec![old.sign_report(&report("no-such-instance", 1, 1))])
        .await;
    match err {
        Some(DeviceError::Refused(s)) => assert_eq!(s.code(), Code::NotFound, "{s}"),
        other => panic!("expected a refusal: {other:?}"),
    }

    // The device reports 3's usage again under its new instance: counted once there.
    let (acks, err) = new.report(vec![new.sign_report(&report(&b, 1, 300))]).await;
    assert!(err.is_none() && !acks[0].duplicate && !acks[0].retired);
    assert_eq!(usage(&authority, &a).await, (300, 2));
    assert_eq!(usage(&authority, &b).await, (300, 1));

    // A deregistered instance answers the same way.
    new.deregister().await.unwrap();
    let (acks, err) = new.report(vec![new.sign_report(&report(&b, 2, 5))]).await;
    assert!(err.is_none() && acks[0].retired, "{err:?} {acks:?}");
    let (acks, _) = new.report(vec![new.sign_report(&report(&b, 1, 300))]).await;
    assert!(acks[0].duplicate && !acks[0].retired);
    assert_eq!(usage(&authority, &b).await, (300, 1));
}

// ----- The sidecar moves them to its new instance -----

/// The PAR-TPS selection with an ID certificate that expires 6 s after its last renewal.
const EXPIRING: &str = "[agent]\nselection = { \"PAR-TPS\" = 1 }\n\n[agent.timers]\n\
retry = 1\nid_renewal = 4\nid_validity = 6\nauthorization_renewal = 30\ncommunication_deadline = 60\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_spooled_under_an_instance_that_retired_is_delivered_once_under_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "RB1", EXPIRING);
    sidecar.register(token.clone()).await;
    let (gate, attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, 100).await;
    let stop = Arc::new(AtomicBool::new(false));
    let driver = traffic(Arc::clone(&gate), Arc::clone(&stop));
    sidecar
        .wait_for("reports flow", Duration::from_secs(10), |s| {
            spool(s).delivered > 0
        })
        .await;

    // The authority goes away; the usage spools, bound to the instance, and the ID
    // certificate expires without a deregistration.
    authority.kill();
    sidecar
        .wait_for("the certificate expires", Duration::from_secs(30), |s| {
            registration(s) == "UNREGISTERED"
        })
        .await;
    let mut client = sidecar.client().await;
    let start = Instant::now();
    loop {
        let history = client
            .get_recent_usage(pb::GetRecentUsageRequest { limit: 200 })
            .await
            .unwrap()
            .into_inner();
        if history
            .snapshots
            .iter()
            .any(|s| s.sequence > 0 && !s.delivered)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no report bound to the instance waits: {history:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The authority is back at a new address. Before the sidecar hears of it, the device
    // is registered again by another way (with its own key): its instance retires there
    // with those reports unstored.
    authority.address = "127.0.0.1:0".into();
    authority.restart();
    let anchor = signing::verifying_key(&std::fs::read(authority.public_key()).unwrap()).unwrap();
    let seed: [u8; 32] = signing::read_secret(&sidecar.dir.join("data/device.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let channel = authority.device_channel();
    let mut elsewhere = DeviceClient::new(channel, SigningKey::from_bytes(&seed), anchor);
    elsewhere.register(&token, udi("RB1")).await.unwrap();

    // The operator points the sidecar at it and registers again: a new instance, and the
    // old instance's reports go under it.
    client
        .set_call_home(pb::SetCallHomeCommand {
            url: authority.url.clone(),
        })
        .await
        .unwrap();
    let reply = sidecar.register(token).await;
    assert!(reply.contains("smart account Acme"), "{reply}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = driver.join().unwrap();
    attachment.flush(Duration::from_secs(30)).await.unwrap();
    let status = sidecar
        .wait_for("the spool drains", Duration::from_secs(60), |s| {
            spool(s).depth == 0
        })
        .await;
    assert_eq!(spool(&status).last_failure, None);
    assert_eq!(attachment.admitted("PAR-TPS"), seen.admitted);
    // The last snapshots go in the next report (one a second here).
    assert_eq!(
        ledger_reaches(&authority, seen.admitted).await,
        seen.admitted,
        "every admit in the ledger once, over the old and the new instance"
    );
    let status = sidecar.status().await;
    assert_eq!(spool(&status).depth, 0);
    let log = std::fs::read_to_string(sidecar.dir.join("entitled.log")).unwrap();
    assert!(
        log.contains("reports of a retired instance move to the current one"),
        "the retired instance's reports were moved:\n{log}"
    );
}

/// The ledger's PAR-TPS total once it has at least `expected` (within 20 s), or as it
/// stands then.
async fn ledger_reaches(authority: &Authority, expected: u64) -> u64 {
    let start = Instant::now();
    loop {
        let admitted = authority.admitted("PAR-TPS").await;
        if admitted >= expected || start.elapsed() > Duration::from_secs(20) {
            return admitted;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- SIGKILL of a packet server -----

/// Lost at most the last second: the ledger has everything counted up to the
/// second-to-last count printed, less what a quarter second counts (the snapshot's way
/// to the durable spool, on a busy machine), and never more than was counted.
fn assert_at_most_the_last_second_lost(ledger: u64, counts: &[u64]) {
    let [.., before, total] = counts else {
        panic!("two counts needed: {counts:?}");
    };
    let last = total - before;
    eprintln!(
        "counted each second {counts:?}; the ledger has {ledger}: {} short of the last count, the last second counted {last}",
        total.saturating_sub(ledger)
    );
    assert!(last > 0, "traffic in the last second: {counts:?}");
    assert!(
        ledger + last / 4 >= *before,
        "the ledger has {ledger} of {total} counted, {} lost: more than the last second ({last}); counts {counts:?}",
        total.saturating_sub(ledger)
    );
    assert!(
        ledger <= total + last,
        "the ledger has {ledger}, more than was counted ({total}, then at most a second more)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_attached_packet_server_loses_at_most_its_last_second() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "KA1", SELECT_300);
    sidecar.register(token).await;

    // Attached with the default options; killed right after its fourth count.
    let mut server = PacketServer::start(
        &["attached", &sidecar.url],
        &dir.path().join("packet-server.log"),
    );
    let counts = server.admitted(4);
    server.kill();

    // The sidecar closes a report a second here; wait for the one with the last snapshots.
    let ledger = ledger_reaches(&authority, counts[2]).await;
    let status = sidecar
        .wait_for("the spool drains", Duration::from_secs(30), |s| {
            spool(s).depth == 0
        })
        .await;
    assert_eq!(spool(&status).last_failure, None);
    assert_at_most_the_last_second_lost(ledger.max(authority.admitted("PAR-TPS").await), &counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_embedded_sidecar_loses_at_most_its_last_second() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    // The default intervals: a report a minute, the gate into the spool every second.
    let config = dir.path().join("embedded.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nauthority_public_key = {key:?}\n\
             callhome_url = {url:?}\nauthority_ca = {ca:?}\ncall_timeout_secs = 2\n\n\
             [udi]\nproduct_id = \"CPAR\"\nserial = \"KE1\"\n\n{SELECT_300}",
            data = dir.path().join("embedded"),
            key = authority.public_key(),
            url = authority.url,
            ca = authority.ca(),
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let log = dir.path().join("embedded.log");

    let mut server = PacketServer::start(&["embedded", &config, "--load"], &log);
    let listening = server.line(Duration::from_secs(30));
    let url = listening.strip_prefix("listening on ").unwrap();
    let reply = sidecar_client(url, None)
        .await
        .register(pb::RegisterCommand { id_token: token })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.message.contains("smart account Acme"),
        "{}",
        reply.message
    );
    let counts = server.admitted(4);
    server.kill();

    // Started again on the same data, it delivers what the killed one had spooled.
    let again = PacketServer::start(&["embedded", &config], &log);
    again.line(Duration::from_secs(30));
    assert_eq!(again.line(Duration::from_secs(30)), "waiting 0");
    assert_at_most_the_last_second_lost(authority.admitted("PAR-TPS").await, &counts);
}
