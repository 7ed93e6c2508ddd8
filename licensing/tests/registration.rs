//! The licence agent: defaults, evaluation and registration, as operators and the sidecar rely on
//! them (on the fake clock, a year passes in a microsecond).
#![allow(clippy::unwrap_used)] // tests

mod common;

use common::*;

// ----- Defaults -----

#[test]
fn the_default_timers_are_those_of_the_design() {
    let t = Timers::default();
    assert_eq!(t.evaluation, days(90));
    assert_eq!(t.id_validity, days(365));
    assert_eq!(t.id_renewal, days(180));
    assert_eq!(t.authorization_renewal, days(30));
    assert_eq!(t.communication_deadline, days(90));
    assert_eq!(t.grace, days(30));
    assert_eq!(t.retry, HOUR);
    assert_eq!(t.clock_jump_tolerance, Duration::from_secs(300));
    t.validate().unwrap();
}

// ----- Evaluation -----

#[test]
fn a_new_agent_evaluates_what_it_requests_for_90_days() {
    let mut rig = Rig::par();
    rig.poll();
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.enforcement(), Enforcement::Evaluation);
    assert_eq!(rig.tps(), Some(300), "1 PAR-TPS + 2 PAR-ADD-TPS requested");
    assert_eq!(rig.agent.next_wakeup(), Some(nanos(days(90))));

    rig.advance(days(90) - Duration::from_nanos(1));
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.evaluation_left(), Duration::from_nanos(1));

    // Polled late: the expiry is dated when it happened.
    rig.advance(days(5));
    assert_eq!(rig.auth(), AuthorizationStatus::EvaluationExpired);
    assert_eq!(rig.enforcement(), Enforcement::Unlicensed);
    assert_eq!(rig.tps(), Some(10), "the default floor");
    assert_eq!(rig.evaluation_left(), Duration::ZERO);
    assert_eq!(
        authorization_changes(&rig),
        vec![(
            nanos(days(90)) as i64,
            AuthorizationStatus::EvaluationExpired
        )]
    );
    let limits = rig.events_where(|k| matches!(k, EventKind::LimitsChanged { .. }));
    assert_eq!(limits.len(), 1);
    assert_eq!(rig.agent.next_wakeup(), None, "nothing left to time");
}

#[test]
fn evaluation_time_runs_only_while_unregistered() {
    let mut rig = Rig::par();
    rig.advance(days(30));
    assert_eq!(rig.evaluation_left(), days(60));

    // It still runs while registering.
    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    rig.poll();
    rig.advance(days(1));
    rig.agent.registration_succeeded(rig.now(), cert()).unwrap();
    assert_eq!(rig.evaluation_left(), days(59));

    // Registered for 100 days (renewing as it should): it stands still.
    rig.drive(days(100), DAY, |agent, now, action| match action {
        Action::Authorize { requests } => {
            agent.authorization_received(now, requests.clone()).unwrap()
        }
        Action::RenewId => agent.id_renewed(now, cert()).unwrap(),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);
    assert_eq!(rig.evaluation_left(), days(59));

    // Deregistered: it goes on from where it was.
    rig.agent.deregister(rig.now()).unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.evaluation_left(), days(59));
    rig.advance(days(58));
    assert_eq!(rig.evaluation_left(), days(1));
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    rig.advance(days(1));
    assert_eq!(rig.auth(), AuthorizationStatus::EvaluationExpired);
    assert_eq!(rig.tps(), Some(10));
}

#[test]
fn a_fixed_evaluation_rate_overrides_the_request() {
    let product = Product::new([EntitlementSpec::new("PAR-TPS", Policy::Hard)
        .fed_by("PAR-TPS", 100)
        .evaluation_tps(50)]);
    let rig = Rig::new(AgentConfig::new(product).with_selection([("PAR-TPS", 4)]));
    assert_eq!(rig.tps(), Some(50));
}

// ----- Registration -----

#[test]
fn registration_succeeds_and_status_shows_the_certificate_and_timers() {
    let mut rig = Rig::par();
    rig.clock.advance(days(2));
    rig.agent
        .register(rig.now(), IdToken::new("token-1").unwrap())
        .unwrap();
    assert_eq!(rig.reg(), RegistrationStatus::Registering);
    let actions = rig.poll();
    assert!(matches!(&actions[..], [Action::Register { token }] if token.expose() == "token-1"));
    assert!(rig.poll().is_empty(), "the registration goes out once");

    let t0 = rig.now();
    rig.agent.registration_succeeded(t0, cert()).unwrap();
    let status = rig.agent.status();
    let r = &status.registration;
    assert_eq!(r.status, RegistrationStatus::Registered);
    assert_eq!(r.smart_account.as_deref(), Some("Example Corp"));
    assert_eq!(r.virtual_account.as_deref(), Some("RADIUS"));
    assert_eq!(r.export_controlled, Some(true));
    let initial = r.initial_registration.unwrap();
    assert_eq!(initial.mono_nanos, t0 as i64);
    assert_eq!(initial.wall_unix_secs, Some(WALL0 + 2 * 86_400));
    assert_eq!(
        r.next_renewal_attempt.unwrap().mono_nanos,
        (t0 + nanos(days(180))) as i64
    );
    assert_eq!(
        r.expires.unwrap().mono_nanos,
        (t0 + nanos(days(365))) as i64
    );
    assert_eq!(
        r.expires.unwrap().wall_unix_secs,
        Some(WALL0 + 367 * 86_400),
        "the wall time it will be, from the last reading"
    );
    assert_eq!(status.authorization.status, AuthorizationStatus::Pending);
    assert_eq!(
        status.enforcement,
        Enforcement::Evaluation,
        "evaluation limits until the first authorisation"
    );

    // The first authorisation is asked for at once.
    let actions = rig.poll();
    assert_eq!(
        actions,
        vec![Action::Authorize {
            requests: counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)])
        }]
    );
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    let a = rig.agent.status().authorization;
    assert_eq!(a.status, AuthorizationStatus::Authorized);
    assert_eq!(
        a.last_communication_attempt.unwrap().outcome,
        Outcome::Succeeded
    );
    assert_eq!(
        a.next_communication_attempt.unwrap().mono_nanos,
        (t0 + nanos(days(30))) as i64
    );
    assert_eq!(
        a.communication_deadline.unwrap().mono_nanos,
        (t0 + nanos(days(90))) as i64
    );
    assert_eq!(
        a.grace_ends.unwrap().mono_nanos,
        (t0 + nanos(days(120))) as i64
    );
    assert!(
        a.entitlements
            .iter()
            .all(|e| e.status == EntitlementStatus::Authorized)
    );
    assert_eq!(rig.enforcement(), Enforcement::Authorized);
    assert_eq!(rig.tps(), Some(300));

    rig.events.extend(rig.agent.take_events());
    let registrations: Vec<_> = rig
        .events_where(|k| matches!(k, EventKind::Registration { .. }))
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert_eq!(
        registrations,
        vec![
            EventKind::Registration {
                from: RegistrationStatus::Unregistered,
                to: RegistrationStatus::Registering,
                reason: None
            },
            EventKind::Registration {
                from: RegistrationStatus::Registering,
                to: RegistrationStatus::Registered,
                reason: None
            },
        ]
    );
}

#[test]
fn a_failed_registration_goes_back_to_unregistered_and_keeps_the_reason() {
    let mut rig = Rig::par();
    rig.agent
        .register(rig.now(), IdToken::new("expired-token").unwrap())
        .unwrap();
    assert!(rig.poll().iter().any(is_register));
    rig.clock.advance(Duration::from_secs(30));
    rig.agent
        .registration_failed(rig.now(), "token expired")
        .unwrap();
    let status = rig.agent.status();
    assert_eq!(status.registration.status, RegistrationStatus::Unregistered);
    let failure = status.registration.last_failure.unwrap();
    assert_eq!(failure.reason, "token expired");
    assert_eq!(failure.at.mono_nanos, 30 * SEC as i64);
    assert_eq!(status.authorization.status, AuthorizationStatus::Evaluation);
    rig.events.extend(rig.agent.take_events());
    assert!(rig.events.iter().any(|e| e.kind
        == EventKind::Registration {
            from: RegistrationStatus::Registering,
            to: RegistrationStatus::Unregistered,
            reason: Some("token expired".into())
        }));
    // And it can be tried again.
    rig.agent
        .register(rig.now(), IdToken::new("new-token").unwrap())
        .unwrap();
    assert!(rig.poll().iter().any(is_register));
}

#[test]
fn registration_inputs_out_of_turn_are_refused_and_change_nothing() {
    let mut rig = Rig::par();
    assert_eq!(IdToken::new("  ").unwrap_err(), Error::EmptyToken);
    assert_eq!(
        rig.agent.registration_succeeded(rig.now(), cert()),
        Err(Error::NotRegistering)
    );
    assert_eq!(
        rig.agent.registration_failed(rig.now(), "x"),
        Err(Error::NotRegistering)
    );
    assert_eq!(rig.agent.deregister(rig.now()), Err(Error::NotRegistered));
    assert_eq!(
        rig.agent.id_renewed(rig.now(), cert()),
        Err(Error::NotRegistered)
    );
    assert_eq!(
        rig.agent.id_renewal_failed(rig.now(), "x"),
        Err(Error::NotRegistered)
    );
    assert_eq!(rig.agent.renew_id(rig.now()), Err(Error::NotRegistered));
    assert_eq!(
        rig.agent.renew_authorization(rig.now()),
        Err(Error::NotRegistered)
    );
    assert_eq!(
        rig.agent.authorization_received(rig.now(), Counts::new()),
        Err(Error::NotRegistered)
    );
    assert_eq!(
        rig.agent.authorization_failed(rig.now(), "x"),
        Err(Error::NotRegistered)
    );
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    assert!(rig.agent.take_events().is_empty());

    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    assert_eq!(
        rig.agent.register(rig.now(), IdToken::new("t").unwrap()),
        Err(Error::AlreadyRegistering)
    );
    rig.poll();
    rig.agent.registration_succeeded(rig.now(), cert()).unwrap();
    assert_eq!(
        rig.agent.register(rig.now(), IdToken::new("t").unwrap()),
        Err(Error::AlreadyRegistered)
    );
    assert_eq!(rig.reg(), RegistrationStatus::Registered);
}

#[test]
fn deregistration_tells_the_authority_and_falls_back_to_evaluation() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    assert_eq!(rig.tps(), Some(100));
    rig.agent.deregister(rig.now()).unwrap();
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.tps(), Some(300), "back to evaluating the request");
    assert!(
        rig.agent
            .status()
            .authorization
            .communication_deadline
            .is_none()
    );
    assert_eq!(rig.poll(), vec![Action::Deregister]);
    assert!(rig.poll().is_empty(), "once");
}

#[test]
fn deregistering_while_registering_cancels_the_registration() {
    let mut rig = Rig::par();
    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    // Not sent yet: nothing to undo at the authority.
    rig.agent.deregister(rig.now()).unwrap();
    assert!(rig.poll().is_empty());
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);

    // Sent: the authority may have registered it, so it is told.
    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    assert!(rig.poll().iter().any(is_register));
    rig.agent.deregister(rig.now()).unwrap();
    assert_eq!(rig.poll(), vec![Action::Deregister]);
    assert_eq!(
        rig.agent.registration_succeeded(rig.now(), cert()),
        Err(Error::NotRegistering),
        "a late answer is refused"
    );
}

#[test]
fn the_id_certificate_is_renewed_every_six_months() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    let log = rig.drive(days(800), DAY, |agent, now, action| match action {
        Action::Authorize { requests } => {
            agent.authorization_received(now, requests.clone()).unwrap()
        }
        Action::RenewId => agent.id_renewed(now, cert()).unwrap(),
        other => panic!("unexpected {other:?}"),
    });
    let renewals: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == Action::RenewId)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        renewals,
        vec![
            nanos(days(180)),
            nanos(days(360)),
            nanos(days(540)),
            nanos(days(720))
        ]
    );
    let authorizations = log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Authorize { .. }))
        .count();
    assert_eq!(authorizations, 800 / 30, "every 30 days");
    assert_eq!(rig.reg(), RegistrationStatus::Registered, "never expired");
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);
    let r = rig.agent.status().registration;
    assert_eq!(r.expires.unwrap().mono_nanos, nanos(days(720 + 365)) as i64);
    assert_eq!(r.last_renewal_attempt.unwrap().outcome, Outcome::Succeeded);
}

#[test]
fn a_failed_id_renewal_is_retried_every_hour_until_it_succeeds() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    rig.clock.advance(days(180));
    let actions = rig.poll();
    assert!(actions.contains(&Action::RenewId));
    for attempt in 1..=3 {
        rig.agent
            .id_renewal_failed(rig.now(), format!("unreachable {attempt}"))
            .unwrap();
        let r = rig.agent.status().registration;
        assert_eq!(
            r.next_renewal_attempt.unwrap().mono_nanos,
            (rig.now() + nanos(HOUR)) as i64
        );
        assert_eq!(
            r.last_renewal_attempt.unwrap().outcome,
            Outcome::Failed {
                reason: format!("unreachable {attempt}")
            }
        );
        assert!(
            !rig.advance(HOUR - Duration::from_secs(1))
                .contains(&Action::RenewId)
        );
        assert!(
            rig.advance(Duration::from_secs(1))
                .contains(&Action::RenewId)
        );
    }
    assert_eq!(
        rig.agent.status().registration.expires.unwrap().mono_nanos,
        nanos(days(365)) as i64,
        "failures do not extend the certificate"
    );
    let t = rig.now();
    rig.agent.id_renewed(t, cert()).unwrap();
    let r = rig.agent.status().registration;
    assert_eq!(r.expires.unwrap().mono_nanos, (t + nanos(days(365))) as i64);
    assert_eq!(
        r.next_renewal_attempt.unwrap().mono_nanos,
        (t + nanos(days(180))) as i64
    );
    assert!(!rig.advance(HOUR).contains(&Action::RenewId));
}

#[test]
fn an_unanswered_id_renewal_goes_out_again_after_the_retry_interval() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    assert!(rig.advance(days(180)).contains(&Action::RenewId));
    assert!(
        !rig.advance(Duration::from_secs(60))
            .contains(&Action::RenewId)
    );
    assert!(rig.advance(HOUR).contains(&Action::RenewId));
}
