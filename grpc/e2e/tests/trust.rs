//! The device keeps the authority key it registered with: a configuration changed to name
//! another key (a mistake, or a licensee's own authority) is logged and not followed until
//! the operator runs `license smart trust renew`, which is logged too.
#![allow(clippy::unwrap_used)] // tests

mod common;
mod harness;

use std::time::Duration;

use entitle_proto::pb;
use entitle_sidecar::trust::fingerprint;
use harness::{Authority, Entitled, authorization, registration};

async fn events(sidecar: &Entitled) -> Vec<pb::LicenseEvent> {
    sidecar
        .client()
        .await
        .get_event_log(pb::GetEventLogRequest { limit: 200 })
        .await
        .unwrap()
        .into_inner()
        .events
}

fn key_fingerprint(authority: &Authority) -> String {
    fingerprint(&std::fs::read(authority.public_key()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_authority_key_takes_effect_only_through_trust_renew() {
    let dir = tempfile::tempdir().unwrap();
    let (first_dir, second_dir) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&second_dir).unwrap();
    let first = Authority::start(&first_dir);
    let second = Authority::start(&second_dir);
    let (first_key, second_key) = (key_fingerprint(&first), key_fingerprint(&second));
    let token = first.acme(&[("PAR-TPS", 1)]).await;

    let mut sidecar = Entitled::start(
        dir.path(),
        &first,
        "SNTRUST",
        "[agent]\nselection = { \"PAR-TPS\" = 1 }\n",
    );
    let before = sidecar.status().await.trust.unwrap();
    assert_eq!(
        (before.authority_key.as_str(), before.authority_pinned),
        (first_key.as_str(), false)
    );
    sidecar.register(token).await;
    let status = sidecar
        .wait_for("authorised", Duration::from_secs(15), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    let trust = status.trust.unwrap();
    assert!(trust.authority_pinned, "{trust:?}");
    assert!(
        trust.codes_pinned,
        "codes.pub beside authority.pub: {trust:?}"
    );
    let logged = events(&sidecar).await;
    assert!(
        logged.iter().any(|e| e.kind == "trust"
            && e.message
                .contains(&format!("pinned the authority key {first_key}"))),
        "{logged:#?}"
    );

    // The configuration now names the second authority's key (still calling the first).
    sidecar.kill();
    let config = sidecar.dir.join("entitled.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text.replace(
        &format!("{:?}", first.public_key()),
        &format!("{:?}", second.public_key()),
    );
    assert_ne!(changed, text);
    std::fs::write(&config, changed).unwrap();
    sidecar.restart();

    let trust = sidecar.status().await.trust.unwrap();
    assert_eq!(trust.authority_key, first_key, "the pinned key applies");
    // Both keys moved: the codes key is read beside the authority key.
    assert_eq!(trust.differences.len(), 2, "{trust:?}");
    assert!(trust.differences[0].contains(&second_key), "{trust:?}");
    assert!(
        trust.differences[1].contains("reservation code key"),
        "{trust:?}"
    );
    let logged = events(&sidecar).await;
    assert!(
        logged.iter().any(|e| e.kind == "trust"
            && e.severity == "WARNING"
            && e.message.contains(&second_key)
            && e.message.contains("trust renew")),
        "{logged:#?}"
    );
    // The first authority's answers still verify.
    let renewed = sidecar
        .client()
        .await
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await;
    assert!(renewed.is_ok(), "{renewed:?}");

    let reply = sidecar
        .client()
        .await
        .renew_trust(pb::RenewTrustCommand {})
        .await
        .unwrap()
        .into_inner()
        .message;
    assert!(
        reply.contains(&format!("authority key {first_key} -> {second_key}")),
        "{reply}"
    );
    let trust = sidecar.status().await.trust.unwrap();
    assert_eq!(trust.authority_key, second_key);
    assert!(trust.differences.is_empty(), "{trust:?}");
    let logged = events(&sidecar).await;
    assert!(
        logged
            .iter()
            .any(|e| e.kind == "trust" && e.message.starts_with("trust renewed")),
        "{logged:#?}"
    );

    // Now the first authority's answers no longer verify, and the re-trust survives a
    // restart.
    let refused = sidecar
        .client()
        .await
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("does not verify"),
        "{}",
        refused.message()
    );
    sidecar.kill();
    sidecar.restart();
    let trust = sidecar.status().await.trust.unwrap();
    assert_eq!(trust.authority_key, second_key);
    assert!(trust.differences.is_empty(), "{trust:?}");
    assert_eq!(registration(&sidecar.status().await), "REGISTERED");
}
