//! The sidecar `entitled` as a real process beside a real `entitle-authority`: registration
//! by token, the gate following the licence live, bad input refused with the state
//! unchanged, renewals and expiry on shortened timers, a shrinking pool, and usage delivered
//! exactly once through SIGKILLs of either process.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use entitle_proto::pb;
use harness::{
    Authority, Entitled, attached_gate, authorization, rate, registration, traffic, wait_gate,
};
use tonic::Code;

const SELECT_300: &str = "[agent]\nselection = { \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_a_token_and_the_gate_enforces_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "SN1", SELECT_300);
    let (gate, attachment) = attached_gate(&sidecar).await;

    let before = sidecar.status().await;
    assert_eq!(registration(&before), "UNREGISTERED");
    assert_eq!(authorization(&before), "EVALUATION MODE");

    let reply = sidecar.register(token).await;
    assert!(reply.contains("smart account Acme"), "{}", reply);
    let status = sidecar.status().await;
    assert_eq!(registration(&status), "REGISTERED");
    assert_eq!(authorization(&status), "AUTHORIZED");
    let r = status.registration.as_ref().unwrap();
    assert_eq!(r.smart_account.as_deref(), Some("Acme"));
    assert_eq!(r.virtual_account.as_deref(), Some("Radius"));
    let grants = &status.authorization.as_ref().unwrap().grants;
    assert_eq!(
        grants
            .iter()
            .map(|g| (g.tag.as_str(), g.granted))
            .collect::<Vec<_>>(),
        [("PAR-ADD-TPS", 2), ("PAR-TPS", 1)]
    );
    assert_eq!(rate(&status, "PAR-TPS"), Some(300));
    assert_eq!(status.enforcement, "AUTHORIZED");

    // The attached engine got the same limit, and enforces it: one second of traffic at
    // ten times the rate admits 300 plus the burst (30), give or take a clock tick.
    wait_gate(&gate, 300).await;
    assert!(attachment.limit_tables() >= 1);
    let mut worker = gate.worker();
    let tps = gate.entitlement("PAR-TPS").unwrap();
    std::thread::sleep(Duration::from_millis(200)); // let the bucket fill to its burst
    let start = std::time::Instant::now();
    let mut admitted = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..3 {
            admitted += u64::from(worker.check(tps).is_admit());
        }
        std::thread::sleep(Duration::from_micros(1000));
    }
    drop(worker);
    let elapsed = start.elapsed().as_secs_f64();
    let most = (300.0 * elapsed).ceil() as u64 + 30 + 64;
    assert!(admitted <= most, "admitted {admitted} in {elapsed:.3} s");
    assert!(admitted >= 250, "admitted {admitted} in {elapsed:.3} s");

    // The usage reaches the authority's ledger, exactly.
    attachment.flush(Duration::from_secs(20)).await.unwrap();
    sidecar
        .wait_for("the spool drains", Duration::from_secs(30), |s| {
            s.spool.as_ref().unwrap().depth == 0
        })
        .await;
    assert_eq!(
        authority.admitted("PAR-TPS").await,
        attachment.admitted("PAR-TPS")
    );
    assert_eq!(attachment.admitted("PAR-TPS"), admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "SN2", "");
    let mut client = sidecar.client().await;
    let before = sidecar.status().await;

    // A bad token: the authority refuses; the device stays unregistered.
    let refused = client
        .register(pb::RegisterCommand {
            id_token: "0123456789ab.not-the-secret".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("token"), "{}", refused.message());
    let empty = client
        .register(pb::RegisterCommand {
            id_token: "  ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);

    // Malformed call-home URLs are refused and the destination is unchanged.
    for url in ["", "authority.example", "ftp://x", "http://", "http://a b"] {
        let e = client
            .set_call_home(pb::SetCallHomeCommand { url: url.into() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{url:?}");
    }
    assert_eq!(sidecar.status().await.callhome_url, authority.url);

    // An unreachable authority.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    client
        .set_call_home(pb::SetCallHomeCommand {
            url: format!("http://{closed}"),
        })
        .await
        .unwrap();
    let unreachable = client
        .register(pb::RegisterCommand {
            id_token: token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(unreachable.code(), Code::Unavailable, "{unreachable:?}");
    assert!(
        unreachable.message().contains("cannot reach the authority"),
        "{}",
        unreachable.message()
    );

    // A URL that answers gRPC, but is no authority (a server of gRPC health only).
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_url = format!("http://{}", other.local_addr().unwrap());
    let (_, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(other)),
    );
    client
        .set_call_home(pb::SetCallHomeCommand { url: other_url })
        .await
        .unwrap();
    let wrong = client
        .register(pb::RegisterCommand {
            id_token: token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unavailable, "{wrong:?}");
    assert!(
        wrong
            .message()
            .contains("does not answer as an entitle authority"),
        "{}",
        wrong.message()
    );

    // Unknown licences in the selection; commands that need a registration.
    let unknown = client
        .set_selection(pb::SetSelectionCommand {
            counts: vec![pb::LicenseCount {
                tag: "NOT-A-LICENCE".into(),
                count: 1,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    for e in [
        client
            .deregister(pb::DeregisterCommand {})
            .await
            .unwrap_err(),
        client
            .renew_authorization(pb::RenewAuthorizationCommand {})
            .await
            .unwrap_err(),
        client.renew_id(pb::RenewIdCommand {}).await.unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("not registered"), "{}", e.message());
    }

    let after = sidecar.status().await;
    assert_eq!(registration(&after), "UNREGISTERED");
    assert_eq!(authorization(&after), authorization(&before));
    assert_eq!(after.selection, before.selection);
    assert_eq!(rate(&after, "PAR-TPS"), rate(&before, "PAR-TPS"));

    // And with the right URL the same token still works: nothing was used up.
    client
        .set_call_home(pb::SetCallHomeCommand {
            url: authority.url.clone(),
        })
        .await
        .unwrap();
    client
        .register(pb::RegisterCommand { id_token: token })
        .await
        .unwrap();
    assert_eq!(registration(&sidecar.status().await), "REGISTERED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_delivered_exactly_once_through_sigkills_of_the_sidecar_and_the_authority() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let mut sidecar = Entitled::start(dir.path(), &authority, "SN3", SELECT_300);
    sidecar.register(token).await;
    let (gate, attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, 300).await;
    let stop = Arc::new(AtomicBool::new(false));
    let driver = traffic(Arc::clone(&gate), Arc::clone(&stop));

    // Snapshots flow every 50 ms, reports every second: kill the sidecar mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sidecar.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sidecar.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Then the authority, while the sidecar streams reports to it.
    authority.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    authority.restart();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // And the sidecar once more, right after the authority came back.
    sidecar.kill();
    sidecar.restart();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    stop.store(true, Ordering::Relaxed);
    let admitted = driver.join().unwrap().admitted;
    attachment.flush(Duration::from_secs(30)).await.unwrap();
    let status = sidecar
        .wait_for("the spool drains", Duration::from_secs(60), |s| {
            s.spool.as_ref().unwrap().depth == 0
        })
        .await;
    assert_eq!(
        registration(&status),
        "REGISTERED",
        "the registration survived"
    );
    assert!(admitted > 1_000, "traffic flowed: {admitted}");
    assert_eq!(
        attachment.admitted("PAR-TPS"),
        admitted,
        "every admit is in a snapshot"
    );
    assert_eq!(
        authority.admitted("PAR-TPS").await,
        admitted,
        "the ledger holds every admit once: no gap, no double count"
    );
}

/// The PAR-TPS selection with timers in seconds: 3 s of grace. The renewal (every 2 s) and
/// the deadline (5 s after the last success) are the authority's ([`SHORT_PERIODS`]): the
/// device follows what it signs.
const SHORT_TIMERS: &str = "[agent]\nselection = { \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }\n\
[agent.timers]\nretry = 1\nauthorization_renewal = 2\ncommunication_deadline = 5\n\
grace = 3\nid_renewal = 30\nid_validity = 60\n";

/// The authority's periods for [`SHORT_TIMERS`].
const SHORT_PERIODS: &[&str] = &["--renewal-secs", "2", "--deadline-secs", "5"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_run_on_their_timers_and_an_absent_authority_expires_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start_with(dir.path(), SHORT_PERIODS);
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "SN4", SHORT_TIMERS);
    let (gate, _attachment) = attached_gate(&sidecar).await;
    sidecar.register(token).await;
    let first = sidecar.status().await;
    assert_eq!(authorization(&first), "AUTHORIZED");
    let attempt = |s: &pb::LicenseStatus| {
        s.authorization
            .as_ref()
            .unwrap()
            .last_communication_attempt
            .unwrap_or(0)
    };
    let t0 = attempt(&first);

    // The renewal timer fires with no command.
    sidecar
        .wait_for("a timed renewal", Duration::from_secs(10), |s| {
            attempt(s) > t0 && authorization(s) == "AUTHORIZED"
        })
        .await;

    // The authority goes away: past the deadline the authorisation expires, the last counts
    // hold through the grace, then the unlicensed floor (10 TPS) applies. Live, in the
    // attached gate too.
    authority.kill();
    let expired = sidecar
        .wait_for("expiry", Duration::from_secs(15), |s| {
            authorization(s) == "AUTHORIZATION EXPIRED"
        })
        .await;
    assert_eq!(expired.enforcement, "GRACE");
    assert_eq!(rate(&expired, "PAR-TPS"), Some(300));
    let failure = expired
        .authorization
        .as_ref()
        .unwrap()
        .last_communication_failure
        .clone()
        .unwrap();
    assert!(failure.contains("cannot reach the authority"), "{failure}");
    let unlicensed = sidecar
        .wait_for("the end of the grace", Duration::from_secs(10), |s| {
            s.enforcement == "UNLICENSED"
        })
        .await;
    assert_eq!(rate(&unlicensed, "PAR-TPS"), Some(10));
    wait_gate(&gate, 10).await;

    // It comes back: the next retry authorises again.
    authority.restart();
    let back = sidecar
        .wait_for("recovery", Duration::from_secs(15), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    assert_eq!(back.enforcement, "AUTHORIZED");
    assert_eq!(rate(&back, "PAR-TPS"), Some(300));
    wait_gate(&gate, 300).await;
    assert_eq!(registration(&back), "REGISTERED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_shrunk_by_a_transfer_lowers_the_limit_at_the_next_renewal_live() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 5)]).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "SN5",
        "[agent]\nselection = { \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 5 }\n",
    );
    let (gate, _attachment) = attached_gate(&sidecar).await;
    let mut client = sidecar.client().await;
    client
        .register(pb::RegisterCommand { id_token: token })
        .await
        .unwrap();
    assert_eq!(rate(&sidecar.status().await, "PAR-TPS"), Some(600));
    wait_gate(&gate, 600).await;

    authority
        .admin()
        .await
        .transfer(pb::TransferRequest {
            smart_account: "Acme".into(),
            from_virtual_account: "Radius".into(),
            to_virtual_account: "Lab".into(),
            tag: "PAR-ADD-TPS".into(),
            quantity: 3,
            force: true,
        })
        .await
        .unwrap();
    // Nothing changes until the device renews.
    assert_eq!(authorization(&sidecar.status().await), "AUTHORIZED");

    let reply = client
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.message.contains("OUT OF COMPLIANCE"),
        "{}",
        reply.message
    );
    let status = sidecar.status().await;
    assert_eq!(authorization(&status), "OUT OF COMPLIANCE");
    let short = status
        .authorization
        .as_ref()
        .unwrap()
        .grants
        .iter()
        .find(|g| g.tag == "PAR-ADD-TPS")
        .cloned()
        .unwrap();
    assert_eq!((short.requested, short.granted), (5, 2));
    assert_eq!(rate(&status, "PAR-TPS"), Some(300));
    wait_gate(&gate, 300).await;

    // Asking for what the pool holds is compliant again, live.
    client
        .set_selection(pb::SetSelectionCommand {
            counts: vec![pb::LicenseCount {
                tag: "PAR-ADD-TPS".into(),
                count: 2,
            }],
        })
        .await
        .unwrap();
    let status = sidecar.status().await;
    assert_eq!(authorization(&status), "AUTHORIZED");
    assert_eq!(rate(&status, "PAR-TPS"), Some(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistering_delivers_usage_first_and_frees_the_licences() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "SN6",
        "[agent]\nselection = { \"PAR-TPS\" = 1 }\n",
    );
    let mut client = sidecar.client().await;
    client
        .register(pb::RegisterCommand { id_token: token })
        .await
        .unwrap();
    assert_eq!(rate(&sidecar.status().await, "PAR-TPS"), Some(100));

    // The remote check admits against the sidecar's own gate, at its limit.
    let mut admitted = 0;
    for _ in 0..300 {
        let answer = client
            .check(pb::CheckRequest {
                tag: "PAR-TPS".into(),
                count: 1,
            })
            .await
            .unwrap()
            .into_inner();
        admitted += u64::from(answer.admitted);
    }
    assert!(
        (10..300).contains(&admitted),
        "some admitted, some refused: {admitted}"
    );
    let unknown = client
        .check(pb::CheckRequest {
            tag: "NOPE".into(),
            count: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);

    // Deregistration first delivers what the gate counted, then frees the licences.
    let reply = client
        .deregister(pb::DeregisterCommand {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.message.starts_with("Deregistered"),
        "{}",
        reply.message
    );
    let status = sidecar.status().await;
    assert_eq!(registration(&status), "UNREGISTERED");
    assert_eq!(authorization(&status), "EVALUATION MODE");
    assert_eq!(status.spool.as_ref().unwrap().depth, 0);
    assert_eq!(authority.admitted("PAR-TPS").await, admitted);
    let instances = authority
        .admin()
        .await
        .list_instances(pb::ListInstancesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        instances.instances.iter().all(|i| i.deregistered),
        "{instances:?}"
    );
}
