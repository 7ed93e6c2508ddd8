//! `Limit::closed` (a share of nothing) and `Gate::offered` (demand without draining), the
//! two things a sidecar sharing one licence among gates needs from the engine.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use entitle_engine::{FakeClock, Gate, Limit, Policy};

#[test]
fn a_closed_limit_admits_nothing_meters_the_rejects_and_reopens_from_an_empty_bucket() {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let tps = builder
        .register("PAR-TPS", Limit::hard(100).unwrap())
        .unwrap();
    let gate = builder.build();
    let mut worker = gate.worker();
    assert!(worker.check(tps).is_admit(), "a full bucket admits");

    gate.set_limit(tps, Limit::closed()).unwrap();
    assert!(gate.limits().limit(tps).is_closed());
    for _ in 0..10 {
        assert!(!worker.check(tps).is_admit());
        assert!(!worker.check_n(tps, 3).is_admit());
        clock.advance(Duration::from_secs(60));
    }
    gate.sample(); // a closed entitlement has no level to cross: no division by its rate
    let usage = gate.snapshot();
    assert_eq!(
        (
            usage.entitlements[0].admitted,
            usage.entitlements[0].rejected
        ),
        (1, 40),
        "check_n counts n"
    );

    // Reopened: nothing at once (no burst handed out), then the new rate.
    gate.set_limit(tps, Limit::new(10, 10, Policy::Hard).unwrap())
        .unwrap();
    assert!(!worker.check(tps).is_admit());
    clock.advance(Duration::from_millis(100));
    assert!(worker.check(tps).is_admit());
}

#[test]
fn closed_round_trips_through_serde_and_zero_rates_stay_refused() {
    let json = serde_json::to_string(&Limit::closed()).unwrap();
    assert_eq!(json, r#"{"closed":true}"#);
    assert_eq!(
        serde_json::from_str::<Limit>(&json).unwrap(),
        Limit::closed()
    );
    for bad in [
        r#"{"closed": true, "per_second": 5}"#,
        r#"{"closed": true, "unlimited": true}"#,
        r#"{"per_second": 0}"#,
    ] {
        assert!(serde_json::from_str::<Limit>(bad).is_err(), "{bad}");
    }
    assert!(!Limit::hard(1).unwrap().is_closed());
    assert!(!Limit::Unlimited.is_closed());
}

#[test]
fn offered_counts_admits_and_rejects_without_draining_the_snapshot() {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let tps = builder
        .register("PAR-TPS", Limit::new(5, 5, Policy::Hard).unwrap())
        .unwrap();
    builder.register("OTHER", Limit::Unlimited).unwrap();
    let gate = builder.build();
    let mut worker = gate.worker();
    for _ in 0..12 {
        let _ = worker.check(tps);
    }
    assert_eq!(gate.offered(), vec![12, 0]);
    drop(worker); // a retired worker's counts stay
    assert_eq!(gate.offered(), vec![12, 0]);
    let usage = gate.snapshot();
    assert_eq!(
        (
            usage.entitlements[0].admitted,
            usage.entitlements[0].rejected
        ),
        (5, 7)
    );
    assert_eq!(
        gate.offered(),
        vec![12, 0],
        "cumulative: a snapshot drains nothing of it"
    );
}
