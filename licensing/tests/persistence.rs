//! The licence agent: saving and restoring across a restart, as operators and the sidecar rely on
//! them (on the fake clock, a year passes in a microsecond).
#![allow(clippy::unwrap_used)] // tests

mod common;

use common::*;

// ----- Persistence -----

#[test]
fn a_deadline_passing_while_the_agent_is_down_takes_effect_at_restore() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(days(80));
    let saved = rig.agent.save(rig.now());
    let json = serde_json::to_string(&saved).unwrap();

    // A new process: its clock starts near zero; the agent was down 15 days.
    let clock = FakeClock::new();
    clock.advance(Duration::from_secs(5));
    let state: State = serde_json::from_str(&json).unwrap();
    assert_eq!(state, saved, "round trip");
    let mut agent = Agent::restore(par_config(), state, clock.now(), days(15)).unwrap();
    let status = agent.status();
    assert_eq!(
        status.authorization.status,
        AuthorizationStatus::AuthorizationExpired
    );
    assert_eq!(status.enforcement, Enforcement::Grace);
    // The deadline (day 90) was 5 days before the restore (day 95), on the new clock.
    let deadline = status.authorization.communication_deadline.unwrap();
    assert_eq!(deadline.mono_nanos, 5 * SEC as i64 - nanos(days(5)) as i64);
    let events = agent.take_events();
    assert!(events.iter().any(|e| e.at.mono_nanos == deadline.mono_nanos
        && e.kind
            == EventKind::Authorization {
                from: AuthorizationStatus::Authorized,
                to: AuthorizationStatus::AuthorizationExpired
            }));
    // The grace ends at day 120: 25 days after the restore on the new clock. The overdue
    // authorisation goes out at once.
    assert_eq!(agent.next_wakeup(), Some(clock.now()));
    assert!(matches!(
        &agent.poll(clock.now(), WALL0)[..],
        [Action::Authorize { .. }]
    ));
    agent
        .authorization_failed(clock.now(), "still down")
        .unwrap();
    clock.advance(days(25) - Duration::from_secs(1));
    agent.poll(clock.now(), WALL0);
    assert_eq!(agent.status().enforcement, Enforcement::Grace);
    clock.advance(Duration::from_secs(1));
    agent.poll(clock.now(), WALL0);
    assert_eq!(agent.status().enforcement, Enforcement::Unlicensed);
    assert_eq!(agent.limits()[0].1.per_second(), Some(10));
}

#[test]
fn restore_rebases_every_timer_onto_the_new_clock() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    rig.advance(days(10));
    let before = rig.agent.status();
    let next = rig.agent.next_wakeup().unwrap();
    let saved = rig.agent.save(rig.now());

    let new_now = 42 * SEC;
    let agent = Agent::restore(par_config(), saved, new_now, HOUR).unwrap();
    let shift = new_now as i64 - (rig.now() as i64 + nanos(HOUR) as i64);
    assert_eq!(
        agent.next_wakeup(),
        Some((next as i64 + shift) as u64),
        "the renewal is still 20 days (less an hour) away"
    );
    let after = agent.status();
    assert_eq!(
        after.authorization.status,
        AuthorizationStatus::OutOfCompliance
    );
    let moved = |s: &entitle_licensing::Status| {
        (
            s.authorization.communication_deadline.unwrap().mono_nanos,
            s.registration.expires.unwrap().mono_nanos,
            s.registration.initial_registration.unwrap().mono_nanos,
        )
    };
    let (d0, e0, i0) = moved(&before);
    assert_eq!(moved(&after), (d0 + shift, e0 + shift, i0 + shift));
    assert!(
        after.registration.initial_registration.unwrap().mono_nanos < 0,
        "before this process"
    );
    assert_eq!(
        after.authorization.evaluation_remaining,
        before.authorization.evaluation_remaining
    );
}

#[test]
fn a_registration_in_flight_at_a_restart_goes_out_again() {
    let mut rig = Rig::par();
    rig.agent
        .register(rig.now(), IdToken::new("token-9").unwrap())
        .unwrap();
    assert!(rig.poll().iter().any(is_register));
    let json = serde_json::to_string(&rig.agent.save(rig.now())).unwrap();
    let state: State = serde_json::from_str(&json).unwrap();
    let mut agent = Agent::restore(par_config(), state, 0, Duration::from_secs(3)).unwrap();
    assert!(matches!(
        &agent.poll(0, WALL0)[..],
        [Action::Register { token }] if token.expose() == "token-9"
    ));
}

#[test]
fn saved_state_of_another_version_is_refused() {
    let mut agent = Agent::new(par_config(), 0).unwrap();
    let json = serde_json::to_string(&agent.save(0)).unwrap();
    let json = json.replacen("\"version\":1", "\"version\":2", 1);
    let state: State = serde_json::from_str(&json).unwrap();
    assert_eq!(
        Agent::restore(par_config(), state, 0, Duration::ZERO).unwrap_err(),
        Error::StateVersion {
            found: 2,
            supported: 1
        }
    );
}

#[test]
fn the_id_token_stays_out_of_debug_output() {
    let mut agent = Agent::new(par_config(), 0).unwrap();
    agent
        .register(0, IdToken::new("s3cr3t-token").unwrap())
        .unwrap();
    let actions = agent.poll(0, WALL0);
    assert!(!format!("{actions:?}").contains("s3cr3t"));
    assert!(!format!("{agent:?}").contains("s3cr3t"));
    assert!(!format!("{:?}", agent.status()).contains("s3cr3t"));
}

#[test]
fn next_wakeup_is_the_earliest_timer() {
    let mut rig = Rig::par();
    assert_eq!(
        rig.agent.next_wakeup(),
        Some(nanos(days(90))),
        "evaluation end"
    );
    rig.clock.advance(days(1));
    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    assert_eq!(
        rig.agent.next_wakeup(),
        Some(rig.now()),
        "a registration to send"
    );
    rig.poll();
    assert_eq!(rig.agent.next_wakeup(), Some(nanos(days(90))));
    rig.agent.registration_succeeded(rig.now(), cert()).unwrap();
    assert_eq!(
        rig.agent.next_wakeup(),
        Some(rig.now()),
        "the first authorisation"
    );
    rig.poll();
    assert_eq!(
        rig.agent.next_wakeup(),
        Some(rig.now() + nanos(HOUR)),
        "the authorisation again if unanswered"
    );
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    assert_eq!(rig.agent.next_wakeup(), Some(rig.now() + nanos(days(30))));
}
