//! The licence agent: the limit table on a gate, and clock jumps, as operators and the sidecar rely on
//! them (on the fake clock, a year passes in a microsecond).
#![allow(clippy::unwrap_used)] // tests

mod common;

use common::*;

// ----- Limits on a gate -----

#[test]
fn the_agents_limits_apply_to_a_running_gate() {
    let clock = FakeClock::new();
    let mut agent = Agent::new(par_config(), clock.now()).unwrap();
    let mut builder = Gate::builder(clock.clone());
    let mut tags = Vec::new();
    for (tag, limit) in agent.limits() {
        tags.push(builder.register(&tag, limit).unwrap());
    }
    let other = builder.register("OTHER", Limit::hard(7).unwrap()).unwrap();
    let gate = builder.build();
    let par_tps = tags[0];
    let mut worker = gate.worker();

    let admitted = |w: &mut entitle_engine::Worker<FakeClock>| {
        (0..10_000).filter(|_| w.check(par_tps).is_admit()).count()
    };
    assert_eq!(
        admitted(&mut worker),
        30,
        "evaluation: 300 TPS, a burst of 30"
    );

    // The evaluation ends: the same gate and worker, now at the floor.
    clock.advance(days(90));
    agent.poll(clock.now(), WALL0);
    assert!(
        agent
            .take_events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::LimitsChanged { .. }))
    );
    agent.apply_to(&gate).unwrap();
    assert_eq!(
        gate.limits().limit(par_tps),
        Limit::new(10, 1, Policy::Hard).unwrap()
    );
    assert_eq!(
        gate.limits().limit(other).per_second(),
        Some(7),
        "untouched"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(admitted(&mut worker), 1, "the floor's burst");
    clock.advance(Duration::from_secs(1));
    let per_second = (0..10)
        .map(|_| {
            clock.advance(Duration::from_millis(100));
            admitted(&mut worker)
        })
        .sum::<usize>();
    assert_eq!(per_second, 10, "10 TPS");
}

#[test]
fn applying_limits_with_an_unknown_tag_is_refused_and_applies_nothing() {
    let agent = Agent::new(par_config(), 0).unwrap();
    let gate = gate_for(&agent);
    let before = gate.limits().limit(gate.entitlement("PAR-TPS").unwrap());
    let limits = vec![
        ("PAR-TPS".to_owned(), Limit::hard(5).unwrap()),
        ("NOT-ON-GATE".to_owned(), Limit::hard(5).unwrap()),
    ];
    let err = apply_limits(&gate, &limits).unwrap_err();
    assert!(matches!(err, Error::Gate(entitle_engine::Error::UnknownTag(t)) if t == "NOT-ON-GATE"));
    assert_eq!(
        gate.limits().limit(gate.entitlement("PAR-TPS").unwrap()),
        before
    );
}

// ----- Clocks -----

#[test]
fn wall_clock_jumps_raise_events_and_move_no_timer() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(days(1));
    rig.events.clear();
    let wakeup = rig.agent.next_wakeup();
    let deadline = rig
        .agent
        .status()
        .authorization
        .communication_deadline
        .unwrap();

    // Someone sets the clock back an hour.
    rig.wall_skew = -3600;
    rig.advance(Duration::from_secs(10));
    let jumps = rig.events_where(|k| matches!(k, EventKind::ClockJump { .. }));
    assert_eq!(jumps.len(), 1);
    let EventKind::ClockJump {
        direction,
        by,
        expected_wall_unix_secs,
        wall_unix_secs,
    } = &jumps[0].1
    else {
        unreachable!()
    };
    assert_eq!(*direction, JumpDirection::Backward);
    assert_eq!(*by, HOUR);
    assert_eq!(*wall_unix_secs, expected_wall_unix_secs - 3600);
    assert_eq!(rig.agent.next_wakeup(), wakeup, "timers unchanged");
    let after = rig
        .agent
        .status()
        .authorization
        .communication_deadline
        .unwrap();
    assert_eq!(after.mono_nanos, deadline.mono_nanos);
    assert_eq!(
        after.wall_unix_secs.unwrap(),
        deadline.wall_unix_secs.unwrap() - 3600,
        "shown on the new wall clock"
    );
    assert!(rig.poll().is_empty());
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);

    // Reported once; then forwards by ten minutes.
    rig.advance(Duration::from_secs(10));
    rig.wall_skew += 600;
    rig.advance(Duration::from_secs(10));
    let jumps = rig.events_where(|k| matches!(k, EventKind::ClockJump { .. }));
    assert_eq!(jumps.len(), 2);
    assert!(matches!(
        jumps[1].1,
        EventKind::ClockJump { direction: JumpDirection::Forward, by, .. } if by == Duration::from_secs(600)
    ));
    assert_eq!(rig.agent.next_wakeup(), wakeup);
}

#[test]
fn drift_within_the_tolerance_is_quiet_until_it_adds_up() {
    let mut rig = Rig::par();
    rig.poll();
    for step in 1..=4 {
        rig.wall_skew += 100; // 100 s at a time
        rig.advance(Duration::from_secs(60));
        let jumps = rig.events_where(|k| matches!(k, EventKind::ClockJump { .. }));
        assert_eq!(jumps.len(), usize::from(step == 4), "step {step}");
    }
}
