//! The licence authority end to end over gRPC on 127.0.0.1: registration, authorisation
//! against pools, usage reports counted exactly once, the admin API, and every kind of bad
//! input answered with a clear status while nothing is written.

mod common;

use common::{DAY, TestAuthority, admin_client, counts, report, udi};
use entitle_proto::pb;
use entitle_proto::signing;
use entitle_sidecar::device::{DeviceClient, DeviceError};
use tonic::Code;

fn code(e: &DeviceError) -> Code {
    match e {
        DeviceError::Refused(status) => status.code(),
        other => panic!("expected a refusal, got {other}"),
    }
}

fn message(e: &DeviceError) -> String {
    match e {
        DeviceError::Refused(status) => status.message().to_owned(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn counted_tps_licences_add_up_and_a_short_pool_is_out_of_compliance() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(2).await;
    let mut first = authority.device().await;
    let certificate = first.register(&token, udi("A1")).await.unwrap();
    assert_eq!(
        (
            certificate.smart_account.as_str(),
            certificate.virtual_account.as_str()
        ),
        ("Acme", "Radius")
    );
    assert_eq!(certificate.expires_at - certificate.issued_at, 365 * DAY);

    let wanted = counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    let a = first.authorize(wanted.clone()).await.unwrap();
    let granted: Vec<_> = a
        .grants
        .iter()
        .map(|g| (g.tag.as_str(), g.granted, g.status()))
        .collect();
    assert_eq!(
        granted,
        [
            ("PAR-TPS", 1, pb::GrantStatus::Authorized),
            ("PAR-ADD-TPS", 2, pb::GrantStatus::Authorized)
        ]
    );
    assert_eq!(
        (a.next_renewal_at - a.issued_at, a.deadline_at - a.issued_at),
        (30 * DAY, 90 * DAY)
    );

    // A second device finds the pool empty; the first keeps what it has.
    let mut second = authority.device().await;
    second.register(&token, udi("B2")).await.unwrap();
    let b = second.authorize(wanted.clone()).await.unwrap();
    assert!(
        b.grants
            .iter()
            .all(|g| g.granted == 0 && g.status() == pb::GrantStatus::OutOfCompliance)
    );
    let renewed = first.authorize(wanted.clone()).await.unwrap();
    assert!(
        renewed
            .grants
            .iter()
            .all(|g| g.status() == pb::GrantStatus::Authorized)
    );

    // Deregistering the first frees its licences for the second.
    first.deregister().await.unwrap();
    let b = second.authorize(wanted).await.unwrap();
    assert!(
        b.grants
            .iter()
            .all(|g| g.status() == pb::GrantStatus::Authorized)
    );
    let pools = authority
        .admin
        .list_pools(pb::ListPoolsRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pools;
    let in_use: Vec<_> = pools
        .iter()
        .map(|p| (p.tag.as_str(), p.quantity, p.in_use))
        .collect();
    assert_eq!(in_use, [("PAR-ADD-TPS", 2, 2), ("PAR-TPS", 1, 1)]);
}

#[tokio::test]
async fn renewals_reissue_the_certificate_and_replays_are_refused() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(1).await;
    let mut device = authority.device().await;
    let first = device.register(&token, udi("A1")).await.unwrap();
    authority.advance_days(180);
    let renewed = device.renew_id().await.unwrap();
    assert_eq!(renewed.expires_at, first.expires_at + 180 * DAY);
    assert!(renewed.serial_number > first.serial_number);

    // The same signed request sent twice: the second is a replay.
    let body = pb::AuthorizeBody {
        instance_id: device.instance().unwrap().into(),
        counter: 7,
        requested: vec![],
    };
    let key = signing::generate_key().unwrap();
    let forged = signing::sign(&key, "AuthorizeBody", &body);
    let err = authority
        .device()
        .await
        .client()
        .authorize(forged)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{}", err.message());
    let counter = device.next_counter();
    let body = pb::AuthorizeBody { counter, ..body };
    let audit = authority.audit_len().await;
    let mut raw = authority.device().await;
    // Sign with the device's own key by letting the client build one request, then replay it.
    let signed = device.sign_report(&report("x", 1, 1)); // a UsageReport signature...
    let as_authorize = pb::Signed {
        body: prost::Message::encode_to_vec(&body),
        signature: signed.signature,
        ..Default::default()
    };
    let err = raw.client().authorize(as_authorize).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "a signature for another type of message: {}",
        err.message()
    );
    device.authorize(vec![]).await.unwrap();
    assert_eq!(
        authority.audit_len().await,
        audit + 1,
        "only the genuine request was recorded"
    );
}

#[tokio::test]
async fn a_replayed_request_is_refused_and_changes_nothing() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(1).await;
    let key = signing::generate_key().unwrap();
    let mut device = DeviceClient::new(
        authority.channel().await,
        key.clone(),
        authority.state.public_key(),
    );
    device.register(&token, udi("A1")).await.unwrap();
    device.authorize(counts(&[("PAR-TPS", 1)])).await.unwrap();
    // Two clients with the device's key, each resumed at the same known counter, sign
    // requests with the same counter: the second is a replay. (`resume` never lowers a
    // client's counter, so one client cannot be made to repeat itself.)
    let instance = device.instance().unwrap().to_owned();
    let mut first = DeviceClient::new(
        authority.channel().await,
        key.clone(),
        authority.state.public_key(),
    );
    first.resume(instance.clone(), 1 << 60);
    first.authorize(counts(&[("PAR-TPS", 1)])).await.unwrap();
    let mut replay =
        DeviceClient::new(authority.channel().await, key, authority.state.public_key());
    replay.resume(instance, 1 << 60);
    let err = replay
        .authorize(counts(&[("PAR-ADD-TPS", 2)]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Code::PermissionDenied);
    assert!(message(&err).contains("replayed"), "{}", message(&err));
    let instances = authority
        .admin
        .list_instances(pb::ListInstancesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .instances;
    let grants: Vec<_> = instances[0].grants.iter().map(|g| g.tag.as_str()).collect();
    assert_eq!(grants, ["PAR-TPS"], "the replay wrote nothing");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason_and_nothing_is_written() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(1).await;
    authority
        .admin
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: "Acme".into(),
            name: "Lab".into(),
        })
        .await
        .unwrap();
    let expiring = authority.token("Radius", 5, 1).await;
    let revoked = authority.token("Radius", 5, 30).await;
    let lab = authority.token("Lab", 5, 30).await;
    let id = revoked.split('.').next().unwrap().to_owned();
    authority
        .admin
        .revoke_token(pb::RevokeTokenRequest { id })
        .await
        .unwrap();
    let mut device = authority.device().await;
    device.register(&token, udi("A1")).await.unwrap();
    authority.advance_days(2);
    let audit = authority.audit_len().await;

    let other = TestAuthority::start().await;
    let foreign = {
        let mut other = other;
        other.acme(1).await
    };
    let cases = [
        (token.clone(), udi("B2"), Code::PermissionDenied, "used up"),
        (expiring, udi("B2"), Code::PermissionDenied, "expired"),
        (revoked, udi("B2"), Code::PermissionDenied, "revoked"),
        (
            "no-dot-here".to_owned(),
            udi("B2"),
            Code::InvalidArgument,
            "malformed",
        ),
        (
            ".".to_owned(),
            udi("B2"),
            Code::InvalidArgument,
            "malformed",
        ),
        (foreign, udi("B2"), Code::Unauthenticated, "not known"),
        (
            lab,
            udi("A1"),
            Code::FailedPrecondition,
            "another virtual account",
        ),
        (
            token.clone(),
            pb::Udi {
                product_id: "CPAR".into(),
                serial: "x'; DROP TABLE instances; --".into(),
            },
            Code::InvalidArgument,
            "invalid",
        ),
    ];
    for (token, udi, expected, words) in cases {
        let err = authority
            .device()
            .await
            .register(&token, udi)
            .await
            .unwrap_err();
        assert_eq!(code(&err), expected, "{token}: {}", message(&err));
        assert!(message(&err).contains(words), "{token}: {}", message(&err));
    }
    assert_eq!(
        authority.audit_len().await,
        audit,
        "no refused registration was recorded"
    );
}

#[tokio::test]
async fn usage_is_stored_once_per_sequence_and_flags_gaps() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(1).await;
    let mut device = authority.device().await;
    device.register(&token, udi("A1")).await.unwrap();
    let instance = device.instance().unwrap().to_owned();
    let sign = |device: &entitle_sidecar::device::DeviceClient, n: u64, admitted: u64| {
        device.sign_report(&report(&instance, n, admitted))
    };
    let batch = [(1, 100), (2, 200), (2, 200), (4, 400), (3, 300), (1, 100)]
        .map(|(n, a)| sign(&device, n, a))
        .to_vec();
    let (acks, err) = device.report(batch).await;
    assert!(err.is_none(), "{err:?}");
    let flags: Vec<_> = acks
        .iter()
        .map(|a| (a.sequence, a.duplicate, a.gap, a.out_of_order))
        .collect();
    assert_eq!(
        flags,
        [
            (1, false, false, false),
            (2, false, false, false),
            (2, true, false, false),
            (4, false, true, false),
            (3, false, false, true),
            (1, true, false, false)
        ]
    );
    // A different report under a used sequence is refused; the stream ends there.
    let batch = [(5, 1), (3, 999), (6, 1)]
        .map(|(n, a)| sign(&device, n, a))
        .to_vec();
    let (acks, err) = device.report(batch).await;
    assert_eq!(
        acks.len(),
        1,
        "5 is stored; 3 is refused, and 6 after it is not stored"
    );
    let err = err.expect("refused");
    assert_eq!(code(&err), Code::AlreadyExists, "{}", message(&err));
    let totals = authority
        .admin
        .get_usage(pb::GetUsageRequest {
            instance_id: instance.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .totals;
    let par = totals.iter().find(|t| t.tag == "PAR-TPS").unwrap();
    assert_eq!(
        (par.admitted, par.reports, par.last_sequence),
        (100 + 200 + 300 + 400 + 1, 5, 5)
    );
}

#[tokio::test]
async fn bad_reports_get_a_status_and_nothing_is_counted() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(2).await;
    let mut device = authority.device().await;
    device.register(&token, udi("A1")).await.unwrap();
    let instance = device.instance().unwrap().to_owned();

    let forger = signing::generate_key().unwrap();
    let forged = signing::sign(&forger, "UsageReport", &report(&instance, 1, 5));
    let mut tampered = device.sign_report(&report(&instance, 1, 5));
    *tampered.body.last_mut().unwrap() ^= 1;
    let unknown = device.sign_report(&report("no-such-instance", 1, 5));
    let mut huge = report(&instance, 1, 5);
    huge.usage[0].tps_histogram = vec![7; 300 * 1024];
    let oversized = device.sign_report(&huge);
    let mut duplicated_tag = report(&instance, 1, 5);
    duplicated_tag.usage[1].tag = "PAR-TPS".into();
    let duplicated_tag = device.sign_report(&duplicated_tag);
    let zero = device.sign_report(&report(&instance, 0, 5));
    let garbage = pb::Signed {
        body: vec![0xff, 0xff, 0xff],
        signature: vec![0; 64],
        ..Default::default()
    };
    for (signed, expected) in [
        (forged, Code::Unauthenticated),
        (tampered, Code::Unauthenticated),
        (unknown, Code::NotFound),
        (oversized, Code::OutOfRange),
        (duplicated_tag, Code::InvalidArgument),
        (zero, Code::InvalidArgument),
        (garbage, Code::InvalidArgument),
    ] {
        let (acks, err) = device.report(vec![signed]).await;
        assert!(acks.is_empty());
        let err = err.expect("refused");
        assert!(
            code(&err) == expected
                || (expected == Code::OutOfRange && code(&err) == Code::ResourceExhausted),
            "expected {expected:?}: {:?} {}",
            code(&err),
            message(&err)
        );
        assert!(!message(&err).is_empty());
    }
    let totals = authority
        .admin
        .get_usage(pb::GetUsageRequest {
            instance_id: instance.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .totals;
    assert!(totals.is_empty(), "nothing was stored: {totals:?}");

    // After deregistration its reports are closed: one it never stored is answered
    // `retired` (not stored, never will be), so the device may count it elsewhere.
    let late = device.sign_report(&report(&instance, 1, 5));
    device.deregister().await.unwrap();
    let (acks, err) = device.report(vec![late]).await;
    assert!(err.is_none(), "{err:?}");
    assert!(acks[0].retired && !acks[0].duplicate, "{acks:?}");
}

#[tokio::test]
async fn admin_calls_need_the_credential() {
    let authority = TestAuthority::start().await;
    for credential in [None, Some("wrong"), Some("")] {
        let mut admin = admin_client(&authority.url, credential).await;
        let err = admin
            .list_smart_accounts(pb::ListSmartAccountsRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{credential:?}");
        assert!(err.message().contains("credential"), "{}", err.message());
    }
}

#[tokio::test]
async fn names_with_quotes_or_sql_are_refused_and_the_store_is_intact() {
    let mut authority = TestAuthority::start().await;
    authority.acme(1).await;
    for name in [
        "Robert'); DROP TABLE smart_accounts;--",
        "a\"b",
        "",
        " padded",
        &"x".repeat(65),
        "tab\there",
    ] {
        let err = authority
            .admin
            .create_smart_account(pb::CreateSmartAccountRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}");
        assert!(err.message().contains("invalid"), "{}", err.message());
    }
    let err = authority
        .admin
        .add_licenses(pb::AddLicensesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            tag: "PAR'TPS".into(),
            quantity: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let accounts = authority
        .admin
        .list_smart_accounts(pb::ListSmartAccountsRequest {})
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(accounts.len(), 1);
    let err = authority
        .admin
        .create_smart_account(pb::CreateSmartAccountRequest {
            name: "Acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn transfers_move_unconsumed_licences_atomically() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(1).await;
    authority
        .admin
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: "Acme".into(),
            name: "Lab".into(),
        })
        .await
        .unwrap();
    let mut device = authority.device().await;
    device.register(&token, udi("A1")).await.unwrap();
    device
        .authorize(counts(&[("PAR-ADD-TPS", 1)]))
        .await
        .unwrap();
    let transfer = |quantity| pb::TransferRequest {
        smart_account: "Acme".into(),
        from_virtual_account: "Radius".into(),
        to_virtual_account: "Lab".into(),
        tag: "PAR-ADD-TPS".into(),
        quantity,
        force: false,
    };
    let audit = authority.audit_len().await;
    let err = authority.admin.transfer(transfer(2)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("1 unconsumed"), "{}", err.message());
    assert_eq!(authority.audit_len().await, audit, "nothing changed");
    let moved = authority
        .admin
        .transfer(transfer(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (moved.from.unwrap().quantity, moved.to.unwrap().quantity),
        (1, 1)
    );
    for bad in [
        pb::TransferRequest {
            quantity: 0,
            ..transfer(0)
        },
        pb::TransferRequest {
            to_virtual_account: "Radius".into(),
            ..transfer(1)
        },
        pb::TransferRequest {
            to_virtual_account: "Nowhere".into(),
            ..transfer(1)
        },
    ] {
        assert!(authority.admin.transfer(bad).await.is_err());
    }
}

/// Acme/Radius with 5 PAR-ADD-TPS, all granted to one device, and an empty Acme/Lab.
async fn five_in_use() -> (TestAuthority, entitle_sidecar::device::DeviceClient) {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(1).await;
    authority
        .admin
        .add_licenses(pb::AddLicensesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            tag: "PAR-ADD-TPS".into(),
            quantity: 3,
            term_end: 0,
            plr_capable: false,
        })
        .await
        .expect("licences");
    authority
        .admin
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: "Acme".into(),
            name: "Lab".into(),
        })
        .await
        .expect("virtual account");
    let mut device = authority.device().await;
    device.register(&token, udi("A1")).await.expect("registers");
    let a = device
        .authorize(counts(&[("PAR-ADD-TPS", 5)]))
        .await
        .expect("authorised");
    assert_eq!(a.grants[0].granted, 5);
    (authority, device)
}

/// (quantity, in use) of PAR-ADD-TPS in Acme/`va`.
async fn add_tps(authority: &mut TestAuthority, va: &str) -> (u64, u64) {
    authority
        .admin
        .list_pools(pb::ListPoolsRequest {
            smart_account: "Acme".into(),
            virtual_account: va.into(),
        })
        .await
        .expect("pools")
        .into_inner()
        .pools
        .iter()
        .find(|p| p.tag == "PAR-ADD-TPS")
        .map_or((0, 0), |p| (p.quantity, p.in_use))
}

fn add_tps_to_lab(quantity: u64, force: bool) -> pb::TransferRequest {
    pb::TransferRequest {
        smart_account: "Acme".into(),
        from_virtual_account: "Radius".into(),
        to_virtual_account: "Lab".into(),
        tag: "PAR-ADD-TPS".into(),
        quantity,
        force,
    }
}

#[tokio::test]
async fn a_forced_transfer_moves_licences_in_use_and_their_device_goes_out_of_compliance() {
    let (mut authority, mut device) = five_in_use().await;
    let audit = authority.audit_len().await;

    let err = authority
        .admin
        .transfer(add_tps_to_lab(3, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("0 unconsumed"), "{}", err.message());
    assert_eq!(authority.audit_len().await, audit, "nothing changed");
    assert_eq!(add_tps(&mut authority, "Radius").await, (5, 5));
    assert_eq!(add_tps(&mut authority, "Lab").await, (0, 0));

    let moved = authority
        .admin
        .transfer(add_tps_to_lab(3, true))
        .await
        .unwrap()
        .into_inner();
    let (from, to) = (moved.from.unwrap(), moved.to.unwrap());
    assert_eq!(
        (from.quantity, from.in_use),
        (2, 5),
        "grants stand until renewal"
    );
    assert_eq!((to.quantity, to.in_use), (3, 0));
    let entries = authority
        .admin
        .list_audit(pb::ListAuditRequest {
            after_id: 0,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let last = entries.last().unwrap();
    assert_eq!(last.action, "pool.transfer");
    assert!(
        last.detail.contains("forced, 3 of them in use"),
        "{}",
        last.detail
    );

    let renewed = device
        .authorize(counts(&[("PAR-ADD-TPS", 5)]))
        .await
        .unwrap();
    let grant = &renewed.grants[0];
    assert_eq!(
        (grant.granted, grant.status()),
        (2, pb::GrantStatus::OutOfCompliance)
    );
    assert_eq!(add_tps(&mut authority, "Radius").await, (2, 2));
    assert_eq!(add_tps(&mut authority, "Lab").await, (3, 0));
}

#[tokio::test]
async fn a_forced_transfer_never_moves_more_than_the_pool_holds() {
    let (mut authority, _device) = five_in_use().await;
    let audit = authority.audit_len().await;
    let err = authority
        .admin
        .transfer(add_tps_to_lab(6, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("5 PAR-ADD-TPS licences in the pool")
            && err.message().contains("cannot transfer 6"),
        "{}",
        err.message()
    );
    assert_eq!(authority.audit_len().await, audit, "nothing changed");
    assert_eq!(add_tps(&mut authority, "Radius").await, (5, 5));
    assert_eq!(add_tps(&mut authority, "Lab").await, (0, 0));
}

#[tokio::test]
async fn data_is_durable_across_a_restart_and_secrets_are_0600() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(1).await;
    let mut device = authority.device().await;
    device.register(&token, udi("A1")).await.unwrap();
    let instance = device.instance().unwrap().to_owned();
    let (acks, _) = device
        .report(vec![device.sign_report(&report(&instance, 1, 42))])
        .await;
    assert_eq!(acks.len(), 1);
    let dir = authority.stop().await;
    #[cfg(unix)]
    for secret in [
        "signing.key",
        "admin.credential",
        "codes.key",
        "database.url",
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        // database.url exists when the store is PostgreSQL.
        if secret == "database.url" && !dir.path().join(secret).exists() {
            assert_ne!(
                std::env::var("ENTITLE_TEST_STORE").as_deref(),
                Ok("postgres"),
                "database.url on PostgreSQL"
            );
            continue;
        }
        let mode = std::fs::metadata(dir.path().join(secret))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
    assert!(
        entitle_authority::init(dir.path()).is_err(),
        "init refuses an existing authority"
    );
    let mut again = TestAuthority::open(dir).await;
    let totals = again
        .admin
        .get_usage(pb::GetUsageRequest {
            instance_id: instance,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .totals;
    assert_eq!(totals.iter().map(|t| t.admitted).sum::<u64>(), 4 * 42);
}
