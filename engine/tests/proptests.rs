//! Property tests of the gate's arithmetic: any rate, burst, request size and clock jump
//! within the validated ranges, and the bucket is never exceeded and never panics.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Duration;

use entitle_engine::{Error, FakeClock, Gate, Limit, MAX_RATE, Policy};
use proptest::prelude::*;

const NANOS: u128 = 1_000_000_000;

fn rate() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1), Just(MAX_RATE), 1..=MAX_RATE, 1u64..1000]
}

/// Time steps from a nanosecond to years.
fn step() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..10,
        0u64..10_000,
        0u64..10_000_000,
        0u64..(400 * 86_400 * NANOS as u64)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn admitted_never_exceeds_rate_times_time_plus_burst(
        rate in rate(),
        burst in prop_oneof![Just(1u64), 1u64..10_000],
        ops in prop::collection::vec((step(), prop_oneof![Just(1u32), 0u32..100, any::<u32>()]), 1..300),
    ) {
        let limit = Limit::new(rate, burst, Policy::Hard).unwrap();
        let clock = FakeClock::new();
        let mut builder = Gate::builder(clock.clone());
        let e = builder.register("PAR-TPS", limit).unwrap();
        let gate = builder.build();
        let mut worker = gate.worker();
        let (mut now, mut admitted) = (0u64, 0u128);
        // (time, admitted so far) at every step, for the window bound.
        let mut history = vec![(0u64, 0u128)];
        for (advance, n) in ops {
            clock.advance_nanos(advance);
            now += advance;
            if worker.check_n(e, n).is_admit() {
                admitted += u128::from(n);
                prop_assert!(u64::from(n) <= burst, "admitted {n} > burst {burst}");
            }
            let most = u128::from(rate) * u128::from(now) / NANOS + u128::from(burst);
            prop_assert!(admitted <= most, "admitted {admitted} by {now} ns, at most {most}");
            // Any window, leases or not (a lease's time passes with the clock as the
            // bucket's does).
            for &(start, before) in &history {
                let window = u128::from(rate) * u128::from(now - start) / NANOS + 1;
                prop_assert!(admitted - before <= window + u128::from(burst));
            }
            history.push((now, admitted));
        }
        let snapshot = gate.snapshot();
        prop_assert_eq!(u128::from(snapshot.entitlements[0].admitted), admitted);
    }

    #[test]
    fn the_enforced_rate_is_never_above_and_at_most_0_1_percent_below(rate in 1..=MAX_RATE) {
        let clock = FakeClock::new();
        let mut builder = Gate::builder(clock.clone());
        let e = builder.register("PAR-TPS", Limit::new(rate, 1000, Policy::Hard).unwrap()).unwrap();
        let gate = builder.build();
        let mut worker = gate.worker();
        prop_assert!(worker.check_n(e, 1000).is_admit(), "the burst");
        // After exactly 1,000 intervals of the licensed rate, between 999 and 1,000 more fit.
        clock.advance(Duration::from_nanos(((1000 * NANOS).div_ceil(u128::from(rate))) as u64));
        let more = (0..2000).filter(|_| worker.check(e).is_admit()).count();
        prop_assert!((999..=1000).contains(&more), "{more} tokens after 1,000 intervals at {rate}/s");
    }

    #[test]
    fn limits_are_valid_exactly_in_range(
        rate in prop_oneof![any::<u64>(), 0..=MAX_RATE + 1],
        burst in prop_oneof![any::<u64>(), 0u64..3, 0u64..(1 << 30)],
    ) {
        match Limit::new(rate, burst, Policy::Hard) {
            Ok(limit) => {
                prop_assert!((1..=MAX_RATE).contains(&rate) && burst >= 1);
                prop_assert_eq!((limit.per_second(), limit.burst()), (Some(rate), Some(burst)));
            }
            Err(Error::ZeroRate) => prop_assert_eq!(rate, 0),
            Err(Error::ZeroBurst) => prop_assert!(rate != 0 && burst == 0),
            Err(Error::RateTooHigh { .. }) => prop_assert!(rate > MAX_RATE && burst != 0),
            // At least 2^28 tokens (over 8 years at 1/s) is always allowed.
            Err(Error::BurstTooLarge { max, .. }) => prop_assert!(burst > max && max >= 1 << 28),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }
}
