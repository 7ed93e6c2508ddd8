//! Criterion benches of one check, the admit and the reject path timed separately:
//! entitle (coarse clock, and a fake clock driven in the setup of each iteration, as
//! governor's own benches do), governor 0.10's direct limiter (fake, default and upkeep
//! clocks) and the mutex floor.
//!
//! ```text
//! cargo bench -p entitle-benches --bench gate
//! ```
//!
//! Every bench counts its decisions and panics afterwards if the path it claims to time
//! was not the one taken (a reject in an admit bench, or more admits in a reject bench
//! than the clock allowed).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use entitle_benches::floor::MutexBucket;
use entitle_engine::{CoarseClock, FakeClock, Gate, Limit, Policy};
use governor::clock::{FakeRelativeClock, QuantaUpkeepClock};
use governor::{Quota, RateLimiter};

/// The fake-clock benches use governor's own set-up: 50 per second, one interval a step.
/// Criterion runs the set-ups of a whole batch before the batch, so the admit benches
/// also need a burst larger than a batch: otherwise most of their checks are rejects
/// (governor's own bench, with a burst of 50, times mostly rejects).
const FAKE_RATE: u32 = 50;
const FAKE_BURST: u32 = 1_000_000_000;
const FAKE_STEP: Duration = Duration::from_millis(20);
/// The real-clock admit benches: entitle's highest rate (the largest leases) and a burst
/// that a bench cannot spend.
const ADMIT_RATE: u64 = 10_000_000;
const ADMIT_BURST: u64 = 1_000_000_000_000;
/// governor's burst is a `u32`: 429 s of its 10 M/s, more than a bench spends.
const GOVERNOR_ADMIT_BURST: u32 = u32::MAX;

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("the constants above are not zero")
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(1));
    group
}

fn admit(c: &mut Criterion) {
    let mut group = group(c, "admit");
    let mut rejected = 0u64;

    {
        let mut builder = Gate::builder(CoarseClock::new().expect("clock thread"));
        let limit = Limit::new(ADMIT_RATE, ADMIT_BURST, Policy::Hard).expect("valid");
        let e = builder.register("PAR-TPS", limit).expect("registers");
        let gate = builder.build();
        let mut worker = gate.worker();
        group.bench_function("entitle/coarse", |b| {
            b.iter(|| {
                let admit = worker.check(black_box(e)).is_admit();
                rejected += u64::from(!admit);
                admit
            })
        });
    }
    {
        let clock = FakeClock::new();
        let mut builder = Gate::builder(clock.clone());
        let limit = Limit::new(FAKE_RATE.into(), FAKE_BURST.into(), Policy::Hard).expect("valid");
        let e = builder.register("PAR-TPS", limit).expect("registers");
        let gate = builder.build();
        let mut worker = gate.worker();
        group.bench_function("entitle/fake", |b| {
            b.iter_batched(
                || clock.advance(FAKE_STEP),
                |()| {
                    let admit = worker.check(black_box(e)).is_admit();
                    rejected += u64::from(!admit);
                    admit
                },
                BatchSize::SmallInput,
            )
        });
    }
    {
        let clock = FakeRelativeClock::default();
        let quota = Quota::per_second(nonzero(FAKE_RATE)).allow_burst(nonzero(FAKE_BURST));
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        group.bench_function("governor/fake", |b| {
            b.iter_batched(
                || clock.advance(FAKE_STEP),
                |()| {
                    let admit = limiter.check().is_ok();
                    rejected += u64::from(!admit);
                    admit
                },
                BatchSize::SmallInput,
            )
        });
    }
    let quota =
        Quota::per_second(nonzero(ADMIT_RATE as u32)).allow_burst(nonzero(GOVERNOR_ADMIT_BURST));
    {
        let limiter = RateLimiter::direct(quota);
        group.bench_function("governor/default", |b| {
            b.iter(|| {
                let admit = limiter.check().is_ok();
                rejected += u64::from(!admit);
                admit
            })
        });
    }
    {
        // One upkeep thread per process: it stops when `clock` and the limiter are dropped.
        let clock =
            QuantaUpkeepClock::from_interval(CoarseClock::DEFAULT_PERIOD).expect("upkeep thread");
        let limiter = RateLimiter::direct_with_clock(quota, clock);
        group.bench_function("governor/upkeep", |b| {
            b.iter(|| {
                let admit = limiter.check().is_ok();
                rejected += u64::from(!admit);
                admit
            })
        });
    }
    {
        let bucket = MutexBucket::new(
            CoarseClock::new().expect("clock thread"),
            ADMIT_RATE,
            ADMIT_BURST,
        );
        group.bench_function("floor/mutex", |b| {
            b.iter(|| {
                let admit = bucket.check();
                rejected += u64::from(!admit);
                admit
            })
        });
    }
    group.finish();
    assert_eq!(
        rejected, 0,
        "an admit bench rejected: it timed the wrong path"
    );
}

fn reject(c: &mut Criterion) {
    let mut group = group(c, "reject");
    // One token a second and a burst of one, spent before timing: a bench that runs for
    // `s` seconds may see `s` admits, no more.
    let mut admitted = 0u64;
    let started = Instant::now();

    {
        let mut builder = Gate::builder(CoarseClock::new().expect("clock thread"));
        let e = builder
            .register("PAR-TPS", Limit::new(1, 1, Policy::Hard).expect("valid"))
            .expect("registers");
        let gate = builder.build();
        let mut worker = gate.worker();
        assert!(worker.check(e).is_admit(), "the burst of one");
        group.bench_function("entitle/coarse", |b| {
            b.iter(|| {
                let admit = worker.check(black_box(e)).is_admit();
                admitted += u64::from(admit);
                admit
            })
        });
    }
    // The fake clocks step by a nanosecond in the set-up, as in the admit benches, but at
    // one token a second that never earns a token within a bench.
    let step = Duration::from_nanos(1);
    let mut stepped = Duration::ZERO;
    {
        let clock = FakeClock::new();
        let mut builder = Gate::builder(clock.clone());
        let e = builder
            .register("PAR-TPS", Limit::new(1, 1, Policy::Hard).expect("valid"))
            .expect("registers");
        let gate = builder.build();
        let mut worker = gate.worker();
        assert!(worker.check(e).is_admit(), "the burst of one");
        group.bench_function("entitle/fake", |b| {
            b.iter_batched(
                || {
                    clock.advance(step);
                    stepped += step;
                },
                |()| {
                    let admit = worker.check(black_box(e)).is_admit();
                    admitted += u64::from(admit);
                    admit
                },
                BatchSize::SmallInput,
            )
        });
    }
    {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(Quota::per_second(nonzero(1)), clock.clone());
        assert!(limiter.check().is_ok(), "the burst of one");
        group.bench_function("governor/fake", |b| {
            b.iter_batched(
                || {
                    clock.advance(step);
                    stepped += step;
                },
                |()| {
                    let admit = limiter.check().is_ok();
                    admitted += u64::from(admit);
                    admit
                },
                BatchSize::SmallInput,
            )
        });
    }
    let quota = Quota::per_hour(nonzero(1));
    {
        let limiter = RateLimiter::direct(quota);
        assert!(limiter.check().is_ok(), "the burst of one");
        group.bench_function("governor/default", |b| {
            b.iter(|| {
                let admit = limiter.check().is_ok();
                admitted += u64::from(admit);
                admit
            })
        });
    }
    {
        let clock =
            QuantaUpkeepClock::from_interval(CoarseClock::DEFAULT_PERIOD).expect("upkeep thread");
        let limiter = RateLimiter::direct_with_clock(quota, clock);
        assert!(limiter.check().is_ok(), "the burst of one");
        group.bench_function("governor/upkeep", |b| {
            b.iter(|| {
                let admit = limiter.check().is_ok();
                admitted += u64::from(admit);
                admit
            })
        });
    }
    {
        let bucket = MutexBucket::new(CoarseClock::new().expect("clock thread"), 1, 1);
        assert!(bucket.check(), "the burst of one");
        group.bench_function("floor/mutex", |b| {
            b.iter(|| {
                let admit = bucket.check();
                admitted += u64::from(admit);
                admit
            })
        });
    }
    group.finish();
    // The real clocks (entitle's coarse one, the floor's) earn a token a second each; the
    // fake ones one a second of steps each.
    let allowed = 2 * (started.elapsed().as_secs() + 1) + 2 * (stepped.as_secs() + 1);
    assert!(
        admitted <= allowed,
        "a reject bench admitted {admitted} (at most {allowed} allowed)"
    );
}

criterion_group! {
    name = benches;
    // Fewer bootstrap resamples than the default 100,000: the analysis, not the
    // measurement, took most of the run on two cores.
    config = Criterion::default().nresamples(20_000);
    targets = admit, reject
}
criterion_main!(benches);
