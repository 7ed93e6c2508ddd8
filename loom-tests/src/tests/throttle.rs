//! Model `throttle`: a steady-state entitlement admits everything (its workers hold an
//! endless lease and never look at the bucket) until the sampler throttles it. The sampler
//! stores the throttle flag and then moves the generation (`Release`); a worker that loads
//! the generation (`Acquire`) reloads its records and enforces the bucket. A check that
//! starts after the throttling `sample()` returned must be enforced.

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

use entitle_engine::{FakeClock, Gate, Limit, Policy, SteadyStateConfig};

use super::model;

/// Throttles after one second at 1% or more of the licensed rate, so that the first sample
/// throttles an entitlement that saw any traffic.
fn eager() -> SteadyStateConfig {
    SteadyStateConfig {
        levels: vec![100],
        throttle_level: 1,
        throttle_after: Duration::from_secs(1),
        throttle_window: Duration::from_secs(1),
        ..SteadyStateConfig::default()
    }
}

/// 1/s with a burst of one, steady-state. Two checks before the race (admitted: not
/// throttled, and the bucket untouched); then the sampler throttles while the checker
/// checks. Once the sample returned, the bucket's one token is all a worker may admit.
#[test]
fn a_throttle_holds_once_the_sample_returned() {
    model("a_throttle_holds_once_the_sample_returned", || {
        let mut builder = Gate::builder(FakeClock::new());
        builder
            .steady_state(eager())
            .expect("a valid configuration");
        let limit = Limit::new(1, 1, Policy::SteadyState).expect("a valid limit");
        let e = builder.register("E0", limit).expect("a valid tag");
        let gate = builder.build();
        let mut worker = gate.worker();
        for _ in 0..2 {
            assert!(worker.check(e).is_admit(), "not throttled yet");
        }
        let sampled = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (gate, sampled) = (gate.clone(), sampled.clone());
            thread::spawn(move || {
                gate.clock().advance(Duration::from_secs(1));
                gate.sample();
                sampled.store(true, Ordering::Release);
            })
        };
        let checker = thread::spawn(move || {
            // Anywhere in the sample: admitted (not throttled yet, or the bucket's token).
            let before = worker.check(e).is_admit();
            if sampled.load(Ordering::Acquire) {
                let after = [worker.check(e), worker.check(e)]
                    .iter()
                    .filter(|d| d.is_admit())
                    .count();
                assert!(
                    after <= 1,
                    "{after} of two checks after the throttling sample admitted, with a burst of one"
                );
            }
            before
        });
        sampler.join().expect("no panic");
        assert!(checker.join().expect("no panic"), "the first check admits");
        let mut fresh = gate.worker();
        let admitted = (0..2).filter(|_| fresh.check(e).is_admit()).count();
        assert!(admitted <= 1, "the sample throttled the entitlement");
    });
}
