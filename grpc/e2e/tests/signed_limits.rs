//! The licensee cannot raise its own limit, end to end with real processes: an `entitled`
//! whose file claims ten times the TPS per licence, monitor-only, still enforces what the
//! authority signed (and follows the authority's catalogue when it changes); and it renews
//! and expires on the periods the authority signs, not on its own.
#![allow(clippy::unwrap_used)] // tests

mod common;
mod harness;

use std::time::Duration;

use entitle_proto::pb;
use harness::{Authority, Entitled, authorization, rate};

/// A device file claiming 1000 TPS per licence, a monitor policy, and monitor-only when
/// unlicensed.
const GREEDY: &str = "[agent]\nselection = { \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }\n\
unlicensed = \"monitor-only\"\n\
[[agent.product.entitlements]]\ntag = \"PAR-TPS\"\npolicy = \"monitor\"\nburst_ms = 60000\n\
licences = [ { licence = \"PAR-TPS\", tps_per_unit = 1000 }, \
{ licence = \"PAR-ADD-TPS\", tps_per_unit = 1000 } ]\n";

fn policy(status: &pb::LicenseStatus, tag: &str) -> i32 {
    status
        .entitlements
        .iter()
        .find(|e| e.tag == tag)
        .and_then(|e| e.limit)
        .unwrap()
        .policy
}

fn burst(status: &pb::LicenseStatus, tag: &str) -> u64 {
    status
        .entitlements
        .iter()
        .find(|e| e.tag == tag)
        .and_then(|e| e.limit)
        .unwrap()
        .burst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_claiming_ten_times_the_tps_or_monitor_enforces_what_the_authority_signed() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "SN10X", GREEDY);
    // Before any authorisation, the vendor's evaluation: what the selection asks at the
    // vendor's 100 TPS per unit, hard.
    let evaluation = sidecar.status().await;
    assert_eq!(rate(&evaluation, "PAR-TPS"), Some(300));
    assert_eq!(policy(&evaluation, "PAR-TPS"), pb::PolicyKind::Hard as i32);
    sidecar.register(token).await;
    let status = sidecar
        .wait_for("authorised", Duration::from_secs(15), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    assert_eq!(rate(&status, "PAR-TPS"), Some(300), "{status:#?}");
    assert_eq!(policy(&status, "PAR-TPS"), pb::PolicyKind::Hard as i32);
    assert_eq!(burst(&status, "PAR-TPS"), 30, "the vendor's 100 ms burst");

    // The authority's catalogue changes what a unit is worth: the device follows at its
    // next authorisation, whatever its file says.
    let mut admin = authority.admin().await;
    admin
        .set_catalogue(pb::CatalogueEntry {
            tag: "PAR-ADD-TPS".into(),
            tps_per_unit: 50,
            policy: pb::GrantPolicy::SteadyState as i32,
        })
        .await
        .unwrap();
    sidecar
        .client()
        .await
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await
        .unwrap();
    let status = sidecar
        .wait_for("the new worth", Duration::from_secs(15), |s| {
            rate(s, "PAR-TPS") == Some(200)
        })
        .await;
    // PAR-TPS is hard and PAR-ADD-TPS steady-state: the stricter, hard, holds.
    assert_eq!(policy(&status, "PAR-TPS"), pb::PolicyKind::Hard as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_renews_and_expires_on_the_periods_the_authority_signs() {
    let dir = tempfile::tempdir().unwrap();
    // The device keeps the default timers (30 days, 90 days); the authority says 2 s, 6 s.
    let mut authority =
        Authority::start_with(dir.path(), &["--renewal-secs", "2", "--deadline-secs", "6"]);
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "SNP",
        "[agent]\nselection = { \"PAR-TPS\" = 1 }\n[agent.timers]\nretry = 1\n",
    );
    sidecar.register(token).await;
    let first = sidecar
        .wait_for("authorised", Duration::from_secs(15), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    let a = first.authorization.clone().unwrap();
    let (attempt, deadline) = (
        a.last_communication_attempt.unwrap(),
        a.communication_deadline.unwrap(),
    );
    assert!(
        (5..=7).contains(&(deadline - attempt)),
        "the deadline is the authority's 6 s: {a:?}"
    );
    sidecar
        .wait_for(
            "a renewal at the authority's 2 s",
            Duration::from_secs(10),
            |s| {
                s.authorization
                    .as_ref()
                    .and_then(|a| a.last_communication_attempt)
                    .is_some_and(|t| t > attempt)
            },
        )
        .await;
    authority.kill();
    sidecar
        .wait_for(
            "expiry at the authority's deadline",
            Duration::from_secs(20),
            |s| authorization(s) == "AUTHORIZATION EXPIRED",
        )
        .await;
}
