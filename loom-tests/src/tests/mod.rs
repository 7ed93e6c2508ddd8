//! The loom models, and the small helpers they share. Every loom object (the gate's
//! atomics, mutexes and table cell included) is made inside `loom::model`, so each model
//! builds its gate there.

mod bucket;
mod lease;
mod meter;
mod swap;
mod throttle;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use entitle_engine::{Entitlement, FakeClock, Gate, Limit, Policy, Worker};

/// Runs `f` under `loom::model` and reports how many executions loom explored (shown
/// with `--nocapture`), so that a model that stopped exploring is noticed.
fn model(name: &str, f: impl Fn() + Send + Sync + 'static) {
    let executions = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&executions);
    loom::model(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    println!("{name}: {} executions", executions.load(Ordering::Relaxed));
}

/// A gate on a fake clock that stands at zero, with one entitlement per limit (tags `E0`,
/// `E1`, ...).
fn gate(limits: &[Limit]) -> (Arc<Gate<FakeClock>>, Vec<Entitlement>) {
    let mut builder = Gate::builder(FakeClock::new());
    let entitlements = limits
        .iter()
        .enumerate()
        .map(|(i, limit)| {
            builder
                .register(&format!("E{i}"), *limit)
                .expect("valid, distinct tags")
        })
        .collect();
    (builder.build(), entitlements)
}

/// A hard limit; the models use only valid ones.
fn hard(per_second: u64, burst: u64) -> Limit {
    Limit::new(per_second, burst, Policy::Hard).expect("a valid limit")
}

/// How many of `checks` single checks of `entitlement` the worker admits.
fn admit_count(worker: &mut Worker<FakeClock>, entitlement: Entitlement, checks: u64) -> u64 {
    (0..checks)
        .map(|_| u64::from(worker.check(entitlement).is_admit()))
        .sum()
}
