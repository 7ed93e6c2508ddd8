//! Behaviour of the gate that a packet server relies on: hot swaps, policies, events,
//! snapshots and refusals of bad input. All on the fake clock.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::Arc;
use std::time::Duration;

use entitle_engine::{
    Decision, Error, EventKind, FakeClock, Gate, Limit, Policy, SteadyStateConfig, Worker,
};

fn gate_with(limit: Limit) -> (FakeClock, Arc<Gate<FakeClock>>, entitle_engine::Entitlement) {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let e = builder.register("PAR-TPS", limit).unwrap();
    (clock, builder.build(), e)
}

fn admitted(worker: &mut Worker<FakeClock>, e: entitle_engine::Entitlement, offered: u64) -> u64 {
    (0..offered).filter(|_| worker.check(e).is_admit()).count() as u64
}

#[test]
fn raising_a_limit_hands_out_no_burst_but_refills_faster_at_once() {
    let (clock, gate, e) = gate_with(Limit::new(100, 10, Policy::Hard).unwrap());
    let mut w = gate.worker();
    assert_eq!(admitted(&mut w, e, 50), 10);
    gate.set_limit(e, Limit::new(300, 30, Policy::Hard).unwrap())
        .unwrap();
    assert_eq!(
        w.check(e),
        Decision::Reject,
        "an empty bucket stays empty across the swap"
    );
    // Intervals round up (never faster than licensed), so 100 ms holds 29.99 tokens.
    clock.advance(Duration::from_millis(101));
    assert_eq!(admitted(&mut w, e, 100), 30, "101 ms at the new 300/s");
}

#[test]
fn lowering_a_limit_takes_effect_at_once() {
    let (clock, gate, e) = gate_with(Limit::new(1000, 1000, Policy::Hard).unwrap());
    let mut w = gate.worker();
    assert_eq!(admitted(&mut w, e, 100), 100);
    gate.set_limit(e, Limit::new(100, 100, Policy::Hard).unwrap())
        .unwrap();
    assert_eq!(
        admitted(&mut w, e, 1000),
        100,
        "900 tokens were left; the new burst is 100"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(admitted(&mut w, e, 1000), 100);
}

#[test]
fn a_swap_of_another_entitlement_keeps_this_buckets_state() {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let a = builder
        .register("PAR-TPS", Limit::hard(10).unwrap())
        .unwrap();
    let b = builder
        .register("PAR-ADD-TPS", Limit::hard(10).unwrap())
        .unwrap();
    let gate = builder.build();
    let mut w = gate.worker();
    assert_eq!(admitted(&mut w, a, 20), 10);
    let table = gate.limits().with(b, Limit::hard(20).unwrap());
    gate.apply(table).unwrap();
    assert_eq!(w.check(a), Decision::Reject, "no fresh burst for PAR-TPS");
    assert_eq!(gate.limits().limit(b), Limit::hard(20).unwrap());
}

#[test]
fn unlimited_and_back() {
    let (_clock, gate, e) = gate_with(Limit::hard(5).unwrap());
    let mut w = gate.worker();
    assert_eq!(admitted(&mut w, e, 10), 5);
    gate.set_limit(e, Limit::Unlimited).unwrap();
    assert_eq!(admitted(&mut w, e, 100_000), 100_000);
    gate.set_limit(e, Limit::hard(5).unwrap()).unwrap();
    assert_eq!(admitted(&mut w, e, 10), 5, "at most the new burst");
}

#[test]
fn monitor_never_rejects_but_raises_events() {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let e = builder
        .register("PAR-TPS", Limit::new(100, 1, Policy::Monitor).unwrap())
        .unwrap();
    let events = builder.event_channel();
    let gate = builder.build();
    let mut w = gate.worker();
    assert_eq!(admitted(&mut w, e, 1000), 1000);
    clock.advance(Duration::from_secs(1));
    gate.sample();
    let kinds: Vec<_> = events.try_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::LevelCrossed { percent: 80 },
            EventKind::LevelCrossed { percent: 90 },
            EventKind::LevelCrossed { percent: 100 },
        ]
    );
}

#[test]
fn steady_state_throttles_only_after_15_minutes_over_80_percent() {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let e = builder
        .register(
            "PAR-TPS",
            Limit::new(100, 100, Policy::SteadyState).unwrap(),
        )
        .unwrap();
    let events = builder.event_channel();
    let gate = builder.build();
    let mut w = gate.worker();
    // 150 TPS offered: all admitted for 15 minutes.
    for second in 0..900 {
        assert_eq!(admitted(&mut w, e, 150), 150, "second {second}");
        clock.advance(Duration::from_secs(1));
        gate.sample();
    }
    let seen: Vec<_> = events.try_iter().collect();
    assert_eq!(
        seen.first().map(|e| e.kind),
        Some(EventKind::LevelCrossed { percent: 80 })
    );
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e.kind, EventKind::UsageWarning { .. }))
            .count(),
        2
    );
    assert_eq!(
        seen.last().map(|e| e.kind),
        Some(EventKind::ThrottleStarted)
    );
    assert_eq!(
        seen.last().map(|e| (e.offered_tps, e.licensed_tps)),
        Some((150, 100))
    );
    // Throttled: the licensed 100 TPS (after one burst of 100).
    assert_eq!(admitted(&mut w, e, 150), 100);
    clock.advance(Duration::from_secs(1));
    gate.sample();
    assert_eq!(admitted(&mut w, e, 150), 100);
    // Traffic falls to 10 TPS: after the window drains, throttling stops.
    for _ in 0..1200 {
        admitted(&mut w, e, 10);
        clock.advance(Duration::from_secs(1));
        gate.sample();
    }
    assert!(
        events
            .try_iter()
            .any(|e| e.kind == EventKind::ThrottleStopped)
    );
    assert_eq!(admitted(&mut w, e, 500), 500, "unthrottled again");
}

#[test]
fn steady_state_thresholds_are_configurable() {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    builder
        .steady_state(SteadyStateConfig {
            levels: vec![50, 100],
            throttle_level: 50,
            throttle_after: Duration::from_secs(2),
            throttle_window: Duration::from_secs(4),
            ..SteadyStateConfig::default()
        })
        .unwrap();
    let e = builder
        .register(
            "PAR-TPS",
            Limit::new(100, 100, Policy::SteadyState).unwrap(),
        )
        .unwrap();
    let events = builder.event_channel();
    let gate = builder.build();
    let mut w = gate.worker();
    for _ in 0..2 {
        assert_eq!(admitted(&mut w, e, 60), 60);
        clock.advance(Duration::from_secs(1));
        gate.sample();
    }
    let kinds: Vec<_> = events.try_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::LevelCrossed { percent: 50 },
            EventKind::ThrottleStarted
        ]
    );
    assert!(admitted(&mut w, e, 1000) < 1000);
    assert!(matches!(
        Gate::builder(FakeClock::new()).steady_state(SteadyStateConfig {
            levels: vec![],
            ..Default::default()
        }),
        Err(Error::Config(_))
    ));
}

#[test]
fn snapshots_are_numbered_windows_with_peak_and_histogram() {
    let (clock, gate, e) = gate_with(Limit::new(1000, 1000, Policy::Hard).unwrap());
    let mut w = gate.worker();
    for tps in [0, 0, 200, 500, 100] {
        admitted(&mut w, e, tps);
        clock.advance(Duration::from_secs(1));
        gate.sample();
    }
    let s = gate.snapshot();
    assert_eq!(
        (s.sequence, s.window_start_nanos, s.window_end_nanos),
        (1, 0, 5_000_000_000)
    );
    let u = s.usage("PAR-TPS").unwrap();
    assert_eq!(
        (u.admitted, u.rejected, u.peak_tps, u.sampled_seconds),
        (800, 0, 500, 5)
    );
    let h = &u.tps_histogram.as_ref().unwrap().0;
    assert_eq!(
        h.len(),
        5,
        "idle seconds before the first busy one are recorded too"
    );
    assert_eq!(h.value_at_quantile(0.5), 100);
    assert!(h.equivalent(h.max(), 500));
    // A round trip through JSON keeps everything.
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(
        serde_json::from_str::<entitle_engine::Snapshot>(&json).unwrap(),
        s
    );
    // The next window starts where this one ended and holds nothing yet.
    let next = gate.snapshot();
    assert_eq!((next.sequence, next.window_start_nanos), (2, 5_000_000_000));
    assert_eq!(next.entitlements[0].admitted, 0);
    assert!(next.entitlements[0].tps_histogram.is_none());
}

#[test]
fn a_dropped_workers_counts_are_reported_once() {
    let (_clock, gate, e) = gate_with(Limit::hard(100).unwrap());
    let mut a = gate.worker();
    let mut b = gate.worker();
    admitted(&mut a, e, 30);
    assert_eq!(gate.snapshot().entitlements[0].admitted, 30);
    admitted(&mut b, e, 20);
    admitted(&mut a, e, 5);
    drop(a);
    assert_eq!(gate.snapshot().entitlements[0].admitted, 25);
    assert_eq!(gate.snapshot().entitlements[0].admitted, 0);
    admitted(&mut b, e, 100);
    let u = gate.snapshot();
    assert_eq!(
        (u.entitlements[0].admitted, u.entitlements[0].rejected),
        (45, 55)
    );
}

#[test]
fn dropping_a_worker_returns_its_lease() {
    // 1,000,000/s leases 64 tokens at a time; a burst of 100.
    let (clock, gate, e) = gate_with(Limit::new(1_000_000, 100, Policy::Hard).unwrap());
    let mut a = gate.worker();
    assert!(a.check(e).is_admit());
    drop(a);
    let mut b = gate.worker();
    assert_eq!(admitted(&mut b, e, 200), 99, "a's unused tokens came back");
    // A lease with another's taken after it stays taken when dropped (handing it back
    // would move the other's time back below it): its time passes unused.
    clock.advance(Duration::from_secs(1));
    let mut a = gate.worker();
    assert!(a.check(e).is_admit());
    assert_eq!(admitted(&mut b, e, 100), 36, "a holds 63 leased tokens");
    drop(a);
    clock.advance_nanos(1);
    assert_eq!(admitted(&mut b, e, 100), 0);
    // 64 us later the bucket has earned back a's 64 tokens of time.
    clock.advance(Duration::from_micros(64));
    assert_eq!(admitted(&mut b, e, 100), 64);
}

#[test]
fn check_n_is_all_or_nothing() {
    let (_clock, gate, e) = gate_with(Limit::new(100, 10, Policy::Hard).unwrap());
    let mut w = gate.worker();
    assert!(w.check_n(e, 7).is_admit());
    assert_eq!(w.check_n(e, 4), Decision::Reject);
    assert!(w.check_n(e, 3).is_admit());
    assert_eq!(
        w.check_n(e, 11),
        Decision::Reject,
        "more than the burst never fits"
    );
    assert_eq!(w.check_n(e, u32::MAX), Decision::Reject);
    assert!(w.check_n(e, 0).is_admit());
    let s = gate.snapshot();
    assert_eq!(
        (s.entitlements[0].admitted, s.entitlements[0].rejected),
        (10, 4 + 11 + u64::from(u32::MAX))
    );
}

#[test]
fn bad_limits_and_tags_are_refused_with_a_reason() {
    assert_eq!(Limit::new(0, 1, Policy::Hard), Err(Error::ZeroRate));
    assert_eq!(Limit::new(1, 0, Policy::Hard), Err(Error::ZeroBurst));
    assert!(matches!(
        Limit::new(u64::MAX, 1, Policy::Hard),
        Err(Error::RateTooHigh { .. })
    ));
    assert!(matches!(
        Limit::new(1, u64::MAX, Policy::Hard),
        Err(Error::BurstTooLarge { .. })
    ));
    let msg = Limit::new(entitle_engine::MAX_RATE + 1, 1, Policy::Hard)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("10000000/s"), "{msg}");

    let mut builder = Gate::builder(FakeClock::new());
    builder
        .register("PAR-TPS", Limit::hard(1).unwrap())
        .unwrap();
    for bad in [
        "",
        "has space",
        "quote\"",
        "tab\t",
        &"x".repeat(65),
        "naïve",
        "x';DROP TABLE",
    ] {
        assert_eq!(
            builder.register(bad, Limit::hard(1).unwrap()),
            Err(Error::InvalidTag(bad.to_owned()))
        );
    }
    assert_eq!(
        builder.register("PAR-TPS", Limit::hard(2).unwrap()),
        Err(Error::DuplicateTag("PAR-TPS".into()))
    );
    let gate = builder.build();

    let (_, other, _) = gate_with(Limit::hard(1).unwrap());
    assert_eq!(
        gate.apply(other.limits().as_ref().clone()),
        Err(Error::ForeignTable)
    );
    let mut table = gate.limits().as_ref().clone();
    assert_eq!(
        table.set_tag("NOPE", Limit::Unlimited),
        Err(Error::UnknownTag("NOPE".into()))
    );
    let far = other.limits().entitlement("PAR-TPS").unwrap();
    assert_eq!(gate.limits().tag(far), "PAR-TPS");
}

#[test]
fn limits_deserialise_only_when_valid() {
    let ok: Limit =
        serde_json::from_str(r#"{"per_second": 100, "burst": 10, "policy": "steady-state"}"#)
            .unwrap();
    assert_eq!(ok, Limit::new(100, 10, Policy::SteadyState).unwrap());
    let unlimited: Limit = serde_json::from_str(r#"{"unlimited": true}"#).unwrap();
    assert_eq!(unlimited, Limit::Unlimited);
    assert_eq!(
        serde_json::from_str::<Limit>(&serde_json::to_string(&ok).unwrap()).unwrap(),
        ok
    );
    for bad in [
        r#"{"per_second": 0}"#,
        r#"{"per_second": 100, "burst": 0}"#,
        r#"{"per_second": 100, "policy": "lenient"}"#,
        r#"{"unlimited": true, "per_second": 5}"#,
        r#"{}"#,
        r#"{"per_second": 100, "extra": 1}"#,
        r#"{"per_second": -1}"#,
    ] {
        assert!(serde_json::from_str::<Limit>(bad).is_err(), "{bad}");
    }
}
