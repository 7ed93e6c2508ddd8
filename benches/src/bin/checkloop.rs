//! One peer's single-thread check loop, exactly as `compare` runs it (the same closures,
//! through `measure::time_checks`), and nothing else: a program to count instructions with
//! `valgrind --tool=callgrind` or to read with `objdump`, where `compare` is too big.
//!
//! ```text
//! cargo build --release -p entitle-benches --bin checkloop
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/checkloop entitle admit 1000000
//! ```
//!
//! Instructions per check: the difference between the totals of two runs with different
//! numbers of checks, over the difference in checks (that cancels the set-up). The peers
//! are `entitle`, `governor`, `upkeep` (governor on its `QuantaUpkeepClock`) and `floor`;
//! the cases `admit` (10 M/s, a burst of 10^9), `low` (the same at 1,000/s: `compare`'s
//! `admit_1k_single`), `10k` (at 10,000/s) and `reject` (entitle and the floor 1/s,
//! governor 1/hour, after the burst of one); `low-cold` and `10k-cold` time the checks one
//! by one after writing twice the L2, as `compare`'s `_cold` cases do (for `perf stat`;
//! under callgrind the eviction's instructions swamp the check's). The run prints how many
//! checks were admitted, so that a count of the wrong path is noticed.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use entitle_benches::floor::MutexBucket;
use entitle_benches::measure::{Run, eviction_bytes, time_checks, time_cold_checks};
use entitle_engine::{CoarseClock, Gate, Limit, Policy};
use governor::clock::QuantaUpkeepClock;
use governor::{Quota, RateLimiter};

const USAGE: &str = "usage: checkloop entitle|governor|upkeep|floor \
admit|low|10k|low-cold|10k-cold|reject CHECKS";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Admit,
    Low,
    Low10k,
    Reject,
}

/// Warms the limiter up with as many checks as it then times, as `compare` does; `cold`:
/// times them one by one after evicting the caches, as `compare`'s `_cold` cases do.
fn twice(checks: u64, cold: bool, mut check: impl FnMut() -> bool) -> Run {
    let warm = time_checks(checks, &mut check);
    if !cold {
        return time_checks(checks, &mut check);
    }
    let run = time_cold_checks(checks, &mut vec![0; eviction_bytes()], &mut check);
    let nanos = (run.nanos_per_check.max(0.0) * checks as f64) as u64;
    Run {
        admitted: run.admitted,
        elapsed: Duration::from_nanos(nanos),
        ..warm
    }
}

fn run(peer: &str, case: Case, cold: bool, checks: u64) -> Result<Run> {
    let (rate, burst) = match case {
        Case::Admit => (10_000_000, 1_000_000_000),
        Case::Low => (1_000, 1_000_000_000),
        Case::Low10k => (10_000, 1_000_000_000),
        Case::Reject => (1, 1),
    };
    let admit = case != Case::Reject;
    let quota = if admit {
        Quota::per_second(NonZeroU32::new(u32::try_from(rate)?).context("not zero")?)
            .allow_burst(NonZeroU32::new(u32::try_from(burst)?).context("not zero")?)
    } else {
        Quota::per_hour(NonZeroU32::MIN)
    };
    Ok(match peer {
        "entitle" => {
            let mut builder = Gate::builder(CoarseClock::new()?);
            let e = builder.register("PAR-TPS", Limit::new(rate, burst, Policy::Hard)?)?;
            let gate = builder.build();
            let mut worker = gate.worker();
            if !admit {
                let _ = worker.check(e);
            }
            twice(
                checks,
                cold,
                #[inline(always)]
                move || worker.check(black_box(e)).is_admit(),
            )
        }
        "governor" => {
            let limiter = RateLimiter::direct(quota);
            if !admit {
                let _ = limiter.check();
            }
            twice(
                checks,
                cold,
                #[inline(always)]
                move || limiter.check().is_ok(),
            )
        }
        "upkeep" => {
            let clock = QuantaUpkeepClock::from_interval(Duration::from_micros(100))?;
            let limiter = RateLimiter::direct_with_clock(quota, clock);
            if !admit {
                let _ = limiter.check();
            }
            twice(
                checks,
                cold,
                #[inline(always)]
                move || limiter.check().is_ok(),
            )
        }
        "floor" => {
            let bucket = MutexBucket::new(CoarseClock::new()?, rate, burst);
            if !admit {
                let _ = bucket.check();
            }
            twice(
                checks,
                cold,
                #[inline(always)]
                move || bucket.check(),
            )
        }
        other => bail!("unknown peer {other:?}"),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match &args[..] {
        [peer, case, checks] => match (case.as_str(), checks.parse::<u64>()) {
            ("admit", Ok(n)) => Some((peer, Case::Admit, false, n)),
            ("low", Ok(n)) => Some((peer, Case::Low, false, n)),
            ("10k", Ok(n)) => Some((peer, Case::Low10k, false, n)),
            ("low-cold", Ok(n)) => Some((peer, Case::Low, true, n)),
            ("10k-cold", Ok(n)) => Some((peer, Case::Low10k, true, n)),
            ("reject", Ok(n)) => Some((peer, Case::Reject, false, n)),
            _ => None,
        },
        _ => None,
    };
    let Some((peer, case, cold, checks)) = parsed else {
        eprintln!("{USAGE}");
        return ExitCode::from(64);
    };
    match run(peer, case, cold, checks) {
        Ok(run) => {
            println!(
                "{peer} {}: {} of {} checks admitted, {:.2} ns/check",
                args[1],
                run.admitted,
                run.checks,
                run.nanos_per_check()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("checkloop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
