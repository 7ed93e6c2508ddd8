//! The gate under real threads and the real coarse clock: two packet threads hammer one
//! entitlement while a third swaps its limit and snapshots. Bounded in time; asserts
//! correctness, not speed.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use entitle_engine::{Clock, CoarseClock, Gate, Limit, Policy};

#[test]
fn two_threads_never_exceed_the_bucket_and_every_count_is_reported_once() {
    let clock = CoarseClock::new().unwrap();
    let mut builder = Gate::builder(clock.clone());
    let rate = 1_000_000;
    let burst = 10_000;
    let tps = builder
        .register("PAR-TPS", Limit::new(rate, burst, Policy::Hard).unwrap())
        .unwrap();
    let gate = builder.build();
    let stop = Arc::new(AtomicBool::new(false));
    let start = clock.now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (gate, stop) = (gate.clone(), stop.clone());
            thread::spawn(move || {
                let mut worker = gate.worker();
                let mut admitted = 0u64;
                let mut checks = 0u64;
                while !stop.load(Ordering::Relaxed) && checks < 200_000_000 {
                    checks += 1;
                    admitted += u64::from(worker.check(tps).is_admit());
                }
                (admitted, checks)
            })
        })
        .collect();
    let mut reported = 0u64;
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(10));
        reported += gate.snapshot().entitlements[0].admitted;
    }
    stop.store(true, Ordering::Relaxed);
    let (admitted, checks) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let elapsed = clock.now() - start + 2 * CoarseClock::DEFAULT_PERIOD.as_nanos() as u64;
    let snapshot = gate.snapshot();
    reported += snapshot.entitlements[0].admitted;
    assert_eq!(
        reported, admitted,
        "snapshots add up to what the threads saw admitted"
    );
    let most = rate * elapsed / 1_000_000_000 + burst;
    assert!(
        admitted <= most,
        "admitted {admitted} in {elapsed} ns, at most {most}"
    );
    assert!(
        checks > admitted,
        "the threads offered more than the licence ({checks} checks)"
    );
}

#[test]
fn swaps_while_threads_check_lose_no_counts() {
    let clock = CoarseClock::new().unwrap();
    let mut builder = Gate::builder(clock);
    let tps = builder
        .register("PAR-TPS", Limit::hard(50_000).unwrap())
        .unwrap();
    let gate = builder.build();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (gate, stop) = (gate.clone(), stop.clone());
            thread::spawn(move || {
                let mut worker = gate.worker();
                let (mut admitted, mut rejected) = (0u64, 0u64);
                for _ in 0..50_000_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match worker.check(tps).is_admit() {
                        true => admitted += 1,
                        false => rejected += 1,
                    }
                }
                (admitted, rejected)
            })
        })
        .collect();
    for i in 0..200u64 {
        let limit = match i % 3 {
            0 => Limit::Unlimited,
            1 => Limit::new(10_000 + i, 100, Policy::Hard).unwrap(),
            _ => Limit::new(1_000_000, 1_000, Policy::SteadyState).unwrap(),
        };
        gate.set_limit(tps, limit).unwrap();
        thread::sleep(Duration::from_micros(500));
    }
    stop.store(true, Ordering::Relaxed);
    let (admitted, rejected) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let s = gate.snapshot();
    assert_eq!(
        (s.entitlements[0].admitted, s.entitlements[0].rejected),
        (admitted, rejected)
    );
    assert!(admitted > 0);
}
