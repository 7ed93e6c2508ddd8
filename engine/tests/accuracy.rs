//! Accuracy of the gate on the fake clock: offered 2x to 10x the rate for a simulated
//! 10 s, from one and from two threads, the gate admits at most `rate x T + burst` and at
//! least `0.999 x rate x T`; and the snapshots taken meanwhile add up to the admitted total
//! exactly.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use entitle_engine::{FakeClock, Gate, Limit, Policy};

const SECONDS: u64 = 10;
const STEP: Duration = Duration::from_millis(1);
const STEPS: u64 = SECONDS * 1000;

struct Outcome {
    admitted: u64,
    rejected: u64,
    snapshot_admitted: u64,
    snapshot_rejected: u64,
    snapshots: u64,
}

/// Offers `rate x factor` checks per simulated second, spread over `threads` workers in
/// 1 ms steps; the leader advances the clock between steps and snapshots every second.
fn run(rate: u64, factor: u64, threads: u64) -> Outcome {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let burst = (rate / 10).max(1);
    let tps = builder
        .register("PAR-TPS", Limit::new(rate, burst, Policy::Hard).unwrap())
        .unwrap();
    let gate = builder.build();
    let barrier = Arc::new(Barrier::new(threads as usize));
    let snapshots = Arc::new(totals::Totals::default());

    let workers: Vec<_> = (0..threads)
        .map(|me| {
            let (gate, clock, barrier, snapshots) = (
                gate.clone(),
                clock.clone(),
                barrier.clone(),
                snapshots.clone(),
            );
            thread::spawn(move || {
                let mut worker = gate.worker();
                let (mut admitted, mut rejected) = (0, 0);
                for step in 0..STEPS {
                    // Offered so far, summed over all threads, with no rounding drift.
                    let due = |s: u64| rate * factor * s / 1000;
                    let offered = due(step + 1) - due(step);
                    let mine = offered / threads + u64::from(me < offered % threads);
                    for _ in 0..mine {
                        if worker.check(tps).is_admit() {
                            admitted += 1;
                        } else {
                            rejected += 1;
                        }
                    }
                    if barrier.wait().is_leader() {
                        clock.advance(STEP);
                        if step % 1000 == 999 {
                            gate.sample();
                            snapshots.add(&gate.snapshot());
                        }
                    }
                    barrier.wait();
                }
                (admitted, rejected)
            })
        })
        .collect();
    let (admitted, rejected) = workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .fold((0, 0), |(a, r), (a2, r2)| (a + a2, r + r2));
    // The workers are gone; whatever they counted since the last snapshot is in this one.
    snapshots.add(&gate.snapshot());
    Outcome {
        admitted,
        rejected,
        snapshot_admitted: snapshots.admitted(),
        snapshot_rejected: snapshots.rejected(),
        snapshots: snapshots.count(),
    }
}

/// Sums of snapshots, shared between the leader thread and the test.
mod totals {
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    pub struct Totals(AtomicU64, AtomicU64, AtomicU64);

    impl Totals {
        pub fn add(&self, s: &entitle_engine::Snapshot) {
            let u = &s.entitlements[0];
            self.0.fetch_add(u.admitted, Ordering::SeqCst);
            self.1.fetch_add(u.rejected, Ordering::SeqCst);
            assert_eq!(
                s.sequence,
                self.2.fetch_add(1, Ordering::SeqCst) + 1,
                "snapshots are numbered in order"
            );
        }
        pub fn admitted(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        pub fn rejected(&self) -> u64 {
            self.1.load(Ordering::SeqCst)
        }
        pub fn count(&self) -> u64 {
            self.2.load(Ordering::SeqCst)
        }
    }
}

fn check(rate: u64, factor: u64, threads: u64) {
    let o = run(rate, factor, threads);
    let burst = (rate / 10).max(1);
    let most = rate * SECONDS + burst;
    let least = rate * SECONDS * 999 / 1000;
    let case = format!("rate {rate}/s, offered {factor}x, {threads} thread(s)");
    assert!(
        o.admitted <= most,
        "{case}: admitted {} > rate x T + burst = {most}",
        o.admitted
    );
    assert!(
        o.admitted >= least,
        "{case}: admitted {} < 0.999 x rate x T = {least}",
        o.admitted
    );
    assert_eq!(
        o.admitted + o.rejected,
        rate * factor * SECONDS,
        "{case}: every offered check was answered"
    );
    assert_eq!(
        o.snapshot_admitted, o.admitted,
        "{case}: snapshots add up to the admitted total"
    );
    assert_eq!(
        o.snapshot_rejected, o.rejected,
        "{case}: snapshots add up to the rejected total"
    );
    assert_eq!(o.snapshots, SECONDS + 1, "{case}");
}

#[test]
fn rate_100() {
    for threads in [1, 2] {
        for factor in [2, 10] {
            check(100, factor, threads);
        }
    }
}

#[test]
fn rate_1_000() {
    for threads in [1, 2] {
        for factor in [2, 10] {
            check(1_000, factor, threads);
        }
    }
}

#[test]
fn rate_10_000() {
    for threads in [1, 2] {
        for factor in [2, 10] {
            check(10_000, factor, threads);
        }
    }
}

#[test]
fn rate_1_000_000() {
    for threads in [1, 2] {
        for factor in [2, 10] {
            check(1_000_000, factor, threads);
        }
    }
}
