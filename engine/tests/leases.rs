//! Leases against the bucket, on the fake clock: however a lease is taken, spent, aged and
//! handed back, the workers together admit no more than the bucket allows in any window,
//! at one clock reading no more than the burst.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Duration;

use entitle_engine::{FakeClock, Gate, Limit, Policy, Worker};

fn admitted(worker: &mut Worker<FakeClock>, e: entitle_engine::Entitlement, checks: u64) -> u64 {
    (0..checks)
        .map(|_| u64::from(worker.check(e).is_admit()))
        .sum()
}

/// A worker leases 64 tokens and spends one; a second later (the bucket full again) the
/// other worker takes the whole burst, and then the first checks again at the same
/// reading. The 63 tokens it did not spend were earned back by the bucket long ago:
/// handing them back must not make room for more than the burst at that reading.
#[test]
fn a_lease_handed_back_late_gives_the_bucket_nothing_it_earned_back() {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let e = builder
        .register(
            "PAR-TPS",
            Limit::new(1_000_000, 1_000, Policy::Hard).unwrap(),
        )
        .unwrap();
    let gate = builder.build();
    let (mut first, mut second) = (gate.worker(), gate.worker());
    assert_eq!(admitted(&mut first, e, 1), 1, "a lease of 64, one spent");
    clock.advance(Duration::from_secs(1));
    assert_eq!(admitted(&mut second, e, 2_000), 1_000, "the burst");
    assert_eq!(
        admitted(&mut first, e, 100),
        0,
        "nothing beyond the burst at one reading"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(admitted(&mut first, e, 2_000), 1_000, "1 ms at 1,000,000/s");
}

/// At a licence-sized rate a roomy bucket leases many tokens at once. The lease ages as the
/// clock moves: the bucket refills meanwhile, so what the lease still covers shrinks by as
/// much, and the two together never hold more than the burst.
#[test]
fn an_aging_lease_and_the_refilled_bucket_hold_no_more_than_the_burst() {
    for (rate, burst) in [(1_000, 1_000), (10_000, 1_000), (1_000, 600)] {
        let clock = FakeClock::new();
        let mut builder = Gate::builder(clock.clone());
        let e = builder
            .register("PAR-TPS", Limit::new(rate, burst, Policy::Hard).unwrap())
            .unwrap();
        let gate = builder.build();
        let (mut first, mut second) = (gate.worker(), gate.worker());
        let case = format!("{rate}/s, burst {burst}");
        assert_eq!(admitted(&mut first, e, 1), 1, "{case}");
        // 10 intervals later.
        clock.advance(Duration::from_nanos(10 * 1_000_000_000 / rate));
        let at_once = admitted(&mut second, e, 2 * burst) + admitted(&mut first, e, 2 * burst);
        assert_eq!(at_once, burst, "{case}: the burst at one reading, no more");
        assert_eq!(
            admitted(&mut first, e, 1) + admitted(&mut second, e, 1),
            0,
            "{case}"
        );
        // Handed back when dropped, the lease leaves the bucket exactly as it was.
        drop(first);
        drop(second);
        assert_eq!(admitted(&mut gate.worker(), e, 10), 0, "{case}");
        clock.advance(Duration::from_nanos(3 * 1_000_000_000 / rate));
        assert_eq!(
            admitted(&mut gate.worker(), e, 10),
            3,
            "{case}: 3 intervals, 3 tokens"
        );
    }
}
