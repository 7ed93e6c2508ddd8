//! The licence agent: authorisation: renewals, compliance, deadlines and grace, as operators and the sidecar rely on
//! them (on the fake clock, a year passes in a microsecond).
#![allow(clippy::unwrap_used)] // tests

mod common;

use common::*;

// ----- Authorisation -----

#[test]
fn a_failed_authorisation_renewal_is_retried_every_hour_and_enforcement_holds() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    let deadline = rig.agent.status().authorization.communication_deadline;
    let actions = rig.advance(days(30));
    assert!(matches!(&actions[..], [Action::Authorize { .. }]));
    for _ in 0..5 {
        rig.agent
            .authorization_failed(rig.now(), "connection refused")
            .unwrap();
        assert!(rig.advance(HOUR - Duration::from_secs(1)).is_empty());
        assert!(matches!(
            &rig.advance(Duration::from_secs(1))[..],
            [Action::Authorize { .. }]
        ));
    }
    let a = rig.agent.status().authorization;
    assert_eq!(a.status, AuthorizationStatus::Authorized);
    assert_eq!(
        a.communication_deadline, deadline,
        "failures do not move it"
    );
    assert_eq!(
        a.last_communication_attempt.unwrap().outcome,
        Outcome::Failed {
            reason: "connection refused".into()
        }
    );
    assert_eq!(rig.tps(), Some(300));

    let t = rig.now();
    rig.agent
        .authorization_received(t, counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    let a = rig.agent.status().authorization;
    assert_eq!(
        a.communication_deadline.unwrap().mono_nanos,
        (t + nanos(days(90))) as i64
    );
    assert_eq!(
        a.next_communication_attempt.unwrap().mono_nanos,
        (t + nanos(days(30))) as i64
    );
}

#[test]
fn a_year_without_contact_expires_the_authorisation_then_the_registration() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    assert_eq!(rig.tps(), Some(300));
    rig.events.clear();

    // Every call fails for a year; the driver samples the state daily.
    let mut tps_by_day = Vec::new();
    let mut calls = 0;
    for _ in 0..366 {
        rig.drive(DAY, DAY, |agent, now, action| {
            calls += 1;
            match action {
                Action::Authorize { .. } => agent.authorization_failed(now, "no route").unwrap(),
                Action::RenewId => agent.id_renewal_failed(now, "no route").unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        });
        tps_by_day.push((rig.auth(), rig.enforcement(), rig.tps()));
    }
    // Day n (1-based) is sampled at the end of day n.
    assert_eq!(
        tps_by_day[88],
        (
            AuthorizationStatus::Authorized,
            Enforcement::Authorized,
            Some(300)
        )
    );
    assert_eq!(
        tps_by_day[89],
        (
            AuthorizationStatus::AuthorizationExpired,
            Enforcement::Grace,
            Some(300)
        ),
        "the last authorised counts stay enforced in grace"
    );
    assert_eq!(
        tps_by_day[118],
        (
            AuthorizationStatus::AuthorizationExpired,
            Enforcement::Grace,
            Some(300)
        )
    );
    assert_eq!(
        tps_by_day[119],
        (
            AuthorizationStatus::AuthorizationExpired,
            Enforcement::Unlicensed,
            Some(10)
        ),
        "then the unlicensed floor"
    );
    assert_eq!(tps_by_day[363].1, Enforcement::Unlicensed);
    assert_eq!(
        tps_by_day[364],
        (
            AuthorizationStatus::Evaluation,
            Enforcement::Evaluation,
            Some(300)
        ),
        "the certificate expired: unregistered, back on the 90 days of evaluation it never used"
    );
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    let status = rig.agent.status();
    assert_eq!(
        status.registration.last_failure.unwrap().reason,
        "ID certificate expired"
    );
    assert_eq!(status.authorization.evaluation_remaining, days(89));
    // Retried hourly from day 30 (authorisation) and day 180 (ID) until the expiry.
    assert!(calls > 24 * (365 - 30), "{calls} calls");

    // The audit log dates each change when it happened.
    assert_eq!(
        authorization_changes(&rig),
        vec![
            (
                nanos(days(90)) as i64,
                AuthorizationStatus::AuthorizationExpired
            ),
            (nanos(days(365)) as i64, AuthorizationStatus::Evaluation),
        ]
    );
    let enforcement: Vec<_> = rig
        .events_where(|k| matches!(k, EventKind::Enforcement { .. }))
        .into_iter()
        .map(|(at, k)| match k {
            EventKind::Enforcement { to, .. } => (at / nanos(DAY) as i64, to),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        enforcement,
        vec![
            (90, Enforcement::Grace),
            (120, Enforcement::Unlicensed),
            (365, Enforcement::Evaluation)
        ]
    );
    assert!(rig.events.iter().any(|e| e.kind
        == EventKind::Registration {
            from: RegistrationStatus::Registered,
            to: RegistrationStatus::Unregistered,
            reason: Some("ID certificate expired".into())
        }
        && e.at.mono_nanos == nanos(days(365)) as i64));
}

#[test]
fn a_grace_of_zero_applies_the_unlicensed_behaviour_at_the_deadline() {
    let mut config = par_config();
    config.timers.grace = Duration::ZERO;
    let mut rig = Rig::new(config);
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(days(90) - Duration::from_nanos(1));
    assert_eq!(rig.tps(), Some(300));
    rig.advance(Duration::from_nanos(1));
    assert_eq!(rig.auth(), AuthorizationStatus::AuthorizationExpired);
    assert_eq!(rig.enforcement(), Enforcement::Unlicensed);
    assert_eq!(rig.tps(), Some(10));
}

#[test]
fn a_later_successful_contact_recovers_from_an_expired_authorisation() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(days(125));
    assert_eq!(rig.enforcement(), Enforcement::Unlicensed);
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 1)]))
        .unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::OutOfCompliance);
    assert_eq!(rig.tps(), Some(200));
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);
    assert_eq!(rig.tps(), Some(300));
}

#[test]
fn a_registration_never_authorised_expires_at_the_deadline_to_the_unlicensed_behaviour() {
    let mut rig = Rig::par();
    rig.register();
    assert_eq!(rig.auth(), AuthorizationStatus::Pending);
    assert_eq!(rig.tps(), Some(300), "evaluation limits while pending");
    rig.advance(days(90));
    assert_eq!(rig.auth(), AuthorizationStatus::AuthorizationExpired);
    assert_eq!(
        rig.enforcement(),
        Enforcement::Unlicensed,
        "no counts to keep in grace"
    );
    assert_eq!(rig.tps(), Some(10));
}

#[test]
fn out_of_compliance_enforces_what_was_granted_but_never_below_the_floor() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 1)]);
    let a = rig.agent.status().authorization;
    assert_eq!(a.status, AuthorizationStatus::OutOfCompliance);
    let add = a
        .entitlements
        .iter()
        .find(|e| e.licence == "PAR-ADD-TPS")
        .unwrap();
    assert_eq!((add.requested, add.granted), (2, 1));
    assert_eq!(add.status, EntitlementStatus::OutOfCompliance);
    let base = a
        .entitlements
        .iter()
        .find(|e| e.licence == "PAR-TPS")
        .unwrap();
    assert_eq!(base.status, EntitlementStatus::Authorized);
    assert_eq!(rig.enforcement(), Enforcement::Authorized);
    assert_eq!(rig.tps(), Some(200));

    rig.agent.renew_authorization(rig.now()).unwrap();
    assert!(matches!(&rig.poll()[..], [Action::Authorize { .. }]));
    rig.agent
        .authorization_received(rig.now(), Counts::new())
        .unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::OutOfCompliance);
    assert_eq!(rig.tps(), Some(10), "nothing granted: the floor, not zero");

    let mut config = par_config();
    config.unlicensed = Unlicensed::Floor { tps: 150 };
    let mut rig = Rig::new(config);
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    assert_eq!(rig.auth(), AuthorizationStatus::OutOfCompliance);
    assert_eq!(rig.tps(), Some(150), "100 granted, raised to the floor");
}

#[test]
fn counted_licences_add_up_with_the_burst_rule_and_policy() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    assert_eq!(rig.limit(), Limit::new(300, 30, Policy::Hard).unwrap());

    // Two gate entitlements; one licence may feed both.
    let product = Product::new([
        EntitlementSpec::new("AUTH-TPS", Policy::SteadyState)
            .fed_by("PAR-TPS", 100)
            .fed_by("PAR-ADD-TPS", 100)
            .burst_ms(1000),
        EntitlementSpec::new("ACCT-TPS", Policy::Monitor)
            .fed_by("PAR-TPS", 50)
            .fed_by("PAR-ACCT-TPS", 25)
            .burst_ms(1),
    ]);
    let config = AgentConfig::new(product).with_selection([
        ("PAR-TPS", 2),
        ("PAR-ADD-TPS", 3),
        ("PAR-ACCT-TPS", 4),
    ]);
    let mut rig = Rig::new(config);
    rig.register_and_authorize(&[("PAR-TPS", 2), ("PAR-ADD-TPS", 3), ("PAR-ACCT-TPS", 4)]);
    assert_eq!(
        rig.agent.limits(),
        vec![
            (
                "AUTH-TPS".to_owned(),
                Limit::new(500, 500, Policy::SteadyState).unwrap()
            ),
            (
                "ACCT-TPS".to_owned(),
                Limit::new(200, 1, Policy::Monitor).unwrap()
            ),
        ]
    );
}

#[test]
fn monitor_only_never_rejects_when_nothing_is_licensed() {
    let mut config = par_config();
    config.unlicensed = Unlicensed::MonitorOnly;
    let mut rig = Rig::new(config);
    rig.advance(days(90));
    assert_eq!(rig.enforcement(), Enforcement::Unlicensed);
    assert_eq!(
        rig.limit(),
        Limit::new(300, 30, Policy::Monitor).unwrap(),
        "metered against what is requested"
    );
    rig.agent.set_selection(rig.now(), Counts::new()).unwrap();
    assert_eq!(rig.limit(), Limit::Unlimited);
}

#[test]
fn a_selection_change_triggers_an_authorisation_and_the_gate_follows_without_restart() {
    let mut rig = Rig::par();
    // In evaluation, the evaluation limits follow the selection at once.
    rig.agent
        .set_selection(rig.now(), counts(&[("PAR-TPS", 1)]))
        .unwrap();
    assert_eq!(rig.tps(), Some(100));
    assert_eq!(
        rig.agent
            .set_selection(rig.now(), counts(&[("PAR-BOGUS", 1)])),
        Err(Error::UnknownLicence("PAR-BOGUS".into()))
    );
    assert_eq!(rig.agent.selection(), &counts(&[("PAR-TPS", 1)]));

    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    assert_eq!(rig.tps(), Some(100));
    let gate = gate_for(&rig.agent);
    let par_tps = gate.entitlement("PAR-TPS").unwrap();

    rig.clock.advance(days(3));
    rig.agent
        .set_selection(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 4)]))
        .unwrap();
    assert_eq!(
        rig.tps(),
        Some(100),
        "registered: it waits for the authority"
    );
    assert_eq!(
        rig.poll(),
        vec![Action::Authorize {
            requests: counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 4)])
        }]
    );
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 4)]))
        .unwrap();
    assert_eq!(rig.tps(), Some(500));
    rig.agent.apply_to(&gate).unwrap();
    assert_eq!(gate.limits().limit(par_tps).per_second(), Some(500));
    assert_eq!(
        rig.agent
            .status()
            .authorization
            .next_communication_attempt
            .unwrap()
            .mono_nanos,
        (rig.now() + nanos(days(30))) as i64
    );
}

#[test]
fn an_answer_to_an_older_selection_asks_again_at_once() {
    let mut rig = Rig::par();
    rig.register();
    // The first request (300 TPS) is in flight when the operator changes the selection.
    rig.agent
        .set_selection(rig.now(), counts(&[("PAR-TPS", 1)]))
        .unwrap();
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    assert_eq!(rig.tps(), Some(300), "what was granted");
    assert_eq!(
        rig.poll(),
        vec![Action::Authorize {
            requests: counts(&[("PAR-TPS", 1)])
        }]
    );
}
