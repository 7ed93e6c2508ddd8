//! The authority keeps its pools honest (over gRPC on 127.0.0.1, the authority's clock
//! moved by the test): a device silent past its deadline and the release grace gives its
//! licences back and shows EXPIRED; `instance remove` frees a dead device at once; a stolen
//! token cannot evict a registered device in contact; the periods it signs are its
//! operator's; and what each licence is worth comes from its catalogue, signed.
#![allow(clippy::unwrap_used)] // tests

mod common;

use common::{DAY, TestAuthority, counts, udi};
use entitle_authority::Periods;
use entitle_proto::pb;
use entitle_proto::signing;
use entitle_sidecar::device::DeviceError;
use tonic::Code;

fn code(e: &DeviceError) -> Code {
    match e {
        DeviceError::Refused(status) => status.code(),
        other => panic!("expected a refusal, got {other}"),
    }
}

async fn instances(authority: &mut TestAuthority) -> Vec<pb::Instance> {
    authority
        .admin
        .list_instances(pb::ListInstancesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .instances
}

async fn in_use(authority: &mut TestAuthority) -> Vec<(String, u64)> {
    authority
        .admin
        .list_pools(pb::ListPoolsRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pools
        .into_iter()
        .map(|p| (p.tag, p.in_use))
        .collect()
}

async fn audit(authority: &mut TestAuthority, action: &str) -> Vec<pb::AuditEntry> {
    authority
        .admin
        .list_audit(pb::ListAuditRequest {
            after_id: 0,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

fn granted(authorization: &pb::Authorization) -> Vec<(&str, u64)> {
    authorization
        .grants
        .iter()
        .map(|g| (g.tag.as_str(), g.granted))
        .collect()
}

const ALL: &[(&str, u64)] = &[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)];

#[tokio::test]
async fn a_device_silent_past_its_deadline_and_the_grace_releases_its_licences() {
    let periods = Periods {
        deadline: 10 * DAY,
        renewal: 2 * DAY,
        release_grace: 5 * DAY,
        ..Periods::default()
    };
    let mut authority = TestAuthority::start_with(periods).await;
    let token = authority.acme(2).await;
    let mut first = authority.device().await;
    first.register(&token, udi("A1")).await.unwrap();
    first.authorize(counts(ALL)).await.unwrap();
    let mut second = authority.device().await;
    second.register(&token, udi("B2")).await.unwrap();
    let nothing = second.authorize(counts(ALL)).await.unwrap();
    assert_eq!(granted(&nothing), [("PAR-TPS", 0), ("PAR-ADD-TPS", 0)]);

    // Past the deadline but within the grace: the silent device keeps its licences.
    authority.advance_days(14);
    let listed = instances(&mut authority).await;
    assert!(listed.iter().all(|i| i.expired_at == 0), "{listed:?}");
    assert_eq!(
        in_use(&mut authority).await,
        [("PAR-ADD-TPS".into(), 2), ("PAR-TPS".into(), 1)]
    );
    // The second device keeps in contact; the first stays silent past deadline + grace.
    second.authorize(counts(ALL)).await.unwrap();
    authority.advance_days(2);
    let listed = instances(&mut authority).await;
    let first_id = first.instance().unwrap().to_owned();
    let first_row = listed.iter().find(|i| i.instance_id == first_id).unwrap();
    assert_ne!(first_row.expired_at, 0, "EXPIRED: {first_row:?}");
    assert!(first_row.grants.is_empty(), "{first_row:?}");
    assert!(!first_row.deregistered);
    let second_row = listed.iter().find(|i| i.instance_id != first_id).unwrap();
    assert_eq!(second_row.expired_at, 0, "{second_row:?}");
    assert_eq!(
        in_use(&mut authority).await,
        [("PAR-ADD-TPS".into(), 0), ("PAR-TPS".into(), 0)],
        "the licences went back to the pool"
    );
    let expired = audit(&mut authority, "instance.expired").await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(
        expired[0].detail.contains(&first_id) && expired[0].detail.contains("PAR-ADD-TPS 2"),
        "{expired:?}"
    );
    // Released once: asking again changes nothing.
    instances(&mut authority).await;
    assert_eq!(audit(&mut authority, "instance.expired").await.len(), 1);

    // The other device gets them at its next authorisation.
    let all = second.authorize(counts(ALL)).await.unwrap();
    assert_eq!(granted(&all), [("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    // The expired one comes back: it asks the pool like anyone (now empty) and is no
    // longer EXPIRED.
    let back = first.authorize(counts(ALL)).await.unwrap();
    assert_eq!(granted(&back), [("PAR-TPS", 0), ("PAR-ADD-TPS", 0)]);
    let listed = instances(&mut authority).await;
    let first_row = listed.iter().find(|i| i.instance_id == first_id).unwrap();
    assert_eq!(first_row.expired_at, 0, "{first_row:?}");
}

#[tokio::test]
async fn instance_remove_frees_a_dead_device_at_once() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(3).await;
    let mut dead = authority.device().await;
    dead.register(&token, udi("A1")).await.unwrap();
    dead.authorize(counts(ALL)).await.unwrap();
    let id = dead.instance().unwrap().to_owned();
    let request = |instance: &str| pb::InstanceRequest {
        smart_account: "Acme".into(),
        virtual_account: "Radius".into(),
        instance_id: instance.into(),
    };

    let unknown = authority
        .admin
        .remove_instance(request("nope"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{}", unknown.message());
    let removed = authority
        .admin
        .remove_instance(request(&id))
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed && removed.deregistered, "{removed:?}");
    assert_eq!(
        in_use(&mut authority).await,
        [("PAR-ADD-TPS".into(), 0), ("PAR-TPS".into(), 0)]
    );
    let entries = audit(&mut authority, "instance.remove").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].detail.contains(&id), "{entries:?}");
    assert_eq!(entries[0].actor, "admin");
    let again = authority
        .admin
        .remove_instance(request(&id))
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        Code::FailedPrecondition,
        "{}",
        again.message()
    );

    // The removed device's requests are refused; a new device of the same UDI registers
    // with a new key at once and gets the licences.
    let refused = dead.authorize(counts(ALL)).await.unwrap_err();
    assert_eq!(code(&refused), Code::FailedPrecondition, "{refused}");
    assert!(refused.to_string().contains("removed"), "{refused}");
    let mut new = authority.device().await;
    new.register(&token, udi("A1")).await.unwrap();
    let all = new.authorize(counts(ALL)).await.unwrap();
    assert_eq!(granted(&all), [("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
}

#[tokio::test]
async fn a_stolen_token_cannot_evict_a_registered_device_in_contact() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(10).await;
    let old_key = signing::generate_key().unwrap();
    let mut device = entitle_sidecar::device::DeviceClient::new(
        authority.channel().await,
        old_key.clone(),
        authority.state.public_key(),
    );
    device.register(&token, udi("A1")).await.unwrap();
    device.authorize(counts(ALL)).await.unwrap();
    let id = device.instance().unwrap().to_owned();

    // Someone with the token and a key of their own: refused, and nothing changed.
    let audit_before = authority.audit_len().await;
    let mut thief = authority.device().await;
    let refused = thief.register(&token, udi("A1")).await.unwrap_err();
    assert_eq!(code(&refused), Code::PermissionDenied, "{refused}");
    assert!(refused.to_string().contains("in contact"), "{refused}");
    assert_eq!(authority.audit_len().await, audit_before);
    let listed = instances(&mut authority).await;
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].deregistered);
    device
        .renew_id()
        .await
        .expect("the device is still registered");
    // A forged proof of the old key does not help either.
    let forger = signing::generate_key().unwrap();
    let refused = thief
        .register_replacing(&token, udi("A1"), &forger)
        .await
        .unwrap_err();
    assert_eq!(code(&refused), Code::PermissionDenied, "{refused}");

    // The same device (same key) registering again is fine.
    device.register(&token, udi("A1")).await.unwrap();
    let id = {
        let new_id = device.instance().unwrap().to_owned();
        assert_ne!(new_id, id);
        new_id
    };
    // A new key proven by the old one replaces it.
    let mut successor = authority.device().await;
    successor
        .register_replacing(&token, udi("A1"), &old_key)
        .await
        .unwrap();
    let replaced = audit(&mut authority, "instance.replaced").await;
    assert!(
        replaced
            .last()
            .is_some_and(|e| e.actor == format!("device:{id}") && e.detail.contains("proven")),
        "{replaced:?}"
    );
    let successor_id = successor.instance().unwrap().to_owned();

    // The operator's leave lets a device that lost its key replace it.
    let refused = thief.register(&token, udi("A1")).await.unwrap_err();
    assert_eq!(code(&refused), Code::PermissionDenied, "{refused}");
    let allowed = authority
        .admin
        .allow_replace(pb::InstanceRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            instance_id: successor_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(allowed.replaceable);
    assert_eq!(
        audit(&mut authority, "instance.allow-replace").await.len(),
        1
    );
    thief.register(&token, udi("A1")).await.unwrap();

    // Out of contact (its deadline passed), any token re-registers the UDI.
    let thief_id = thief.instance().unwrap().to_owned();
    authority.advance_days(91);
    let token = authority.token("Radius", 1, 30).await;
    let mut late = authority.device().await;
    late.register(&token, udi("A1")).await.unwrap();
    let listed = instances(&mut authority).await;
    let active: Vec<_> = listed.iter().filter(|i| !i.deregistered).collect();
    assert_eq!(active.len(), 1, "{listed:?}");
    assert_ne!(active[0].instance_id, thief_id);
}

#[tokio::test]
async fn the_authority_signs_its_periods_and_its_catalogue() {
    let periods = Periods {
        renewal: 3 * DAY,
        deadline: 7 * DAY,
        ..Periods::default()
    };
    let mut authority = TestAuthority::start_with(periods).await;
    let token = authority.acme(1).await;
    let mut device = authority.device().await;
    device.register(&token, udi("A1")).await.unwrap();
    let a = device.authorize(counts(ALL)).await.unwrap();
    assert_eq!(a.next_renewal_at - a.issued_at, 3 * DAY);
    assert_eq!(a.deadline_at - a.issued_at, 7 * DAY);
    // Today's tags: 100 TPS per unit, hard, by default.
    for g in &a.grants {
        assert_eq!(g.tps_per_unit, 100, "{g:?}");
        assert_eq!(g.policy, pb::GrantPolicy::Hard as i32, "{g:?}");
    }
    let set = authority
        .admin
        .set_catalogue(pb::CatalogueEntry {
            tag: "PAR-ADD-TPS".into(),
            tps_per_unit: 250,
            policy: pb::GrantPolicy::SteadyState as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.tps_per_unit, 250);
    let a = device.authorize(counts(ALL)).await.unwrap();
    let worth: Vec<_> = a
        .grants
        .iter()
        .map(|g| (g.tag.as_str(), g.tps_per_unit, g.policy))
        .collect();
    assert_eq!(
        worth,
        [
            ("PAR-TPS", 100, pb::GrantPolicy::Hard as i32),
            ("PAR-ADD-TPS", 250, pb::GrantPolicy::SteadyState as i32)
        ]
    );
    // Only the policy: the worth stays.
    authority
        .admin
        .set_catalogue(pb::CatalogueEntry {
            tag: "PAR-ADD-TPS".into(),
            tps_per_unit: 0,
            policy: pb::GrantPolicy::Hard as i32,
        })
        .await
        .unwrap();
    let listed = authority
        .admin
        .list_catalogue(pb::ListCatalogueRequest {})
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].tps_per_unit, listed[0].policy),
        (250, pb::GrantPolicy::Hard as i32)
    );
    assert_eq!(audit(&mut authority, "catalogue.set").await.len(), 2);
    for bad in [
        pb::CatalogueEntry {
            tag: "bad tag".into(),
            tps_per_unit: 1,
            policy: 0,
        },
        pb::CatalogueEntry {
            tag: "PAR-TPS".into(),
            tps_per_unit: 2_000_000_000,
            policy: 0,
        },
        pb::CatalogueEntry {
            tag: "PAR-TPS".into(),
            tps_per_unit: 1,
            policy: 9,
        },
    ] {
        let e = authority.admin.set_catalogue(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    assert_eq!(audit(&mut authority, "catalogue.set").await.len(), 2);
}

#[test]
fn periods_that_make_no_sense_are_refused() {
    assert!(Periods::default().validate().is_ok());
    for bad in [
        Periods {
            renewal: 0,
            ..Periods::default()
        },
        Periods {
            renewal: 90 * DAY,
            ..Periods::default()
        },
        Periods {
            release_grace: -1,
            ..Periods::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}
