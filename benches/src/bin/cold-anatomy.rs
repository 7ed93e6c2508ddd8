//! Where a cold check's time goes: `compare`'s `admit_1k_single_cold` (1,000/s, a burst of
//! 10^9, each check timed alone after twice the L2 was written) for entitle on three
//! clocks and for governor on two, in one run, rounds alternated.
//!
//! ```text
//! cargo run --release -p entitle-benches --bin cold-anatomy -- [--rounds N]
//! taskset -c 0 target/release/cold-anatomy   # the clocks' tickers on the checking core
//! ```
//!
//! The peers differ in what a cold check fetches besides its code:
//! - `entitle`: the worker's record and the coarse clock's line, which its ticker thread
//!   writes every 100 us (from another core, unless pinned beside the checks);
//! - `entitle-still`: the same on a `FakeClock` that stands still, a line no thread writes;
//! - `entitle-ticked`: the same on a `FakeClock` that a thread moves by 1 ns every 100 us,
//!   so that its line is written as the coarse clock's is, with nothing else alike;
//! - `entitle-tsc`: the same on the TSC (`quanta`), no clock line at all;
//! - `floor`: a mutex bucket held in the caller's closure, on the coarse clock;
//! - `governor`: its state in the caller's closure, on the TSC (`quanta`);
//! - `governor-upkeep`: the same on its upkeep clock, an atomic that a thread writes every
//!   100 us.
//!
//! It prints each peer's median ns a check (`value cold_<peer>_ns`) and its ratio to
//! governor's (`ratio cold_<peer>_vs_governor`).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entitle_benches::floor::MutexBucket;
use entitle_benches::measure::{eviction_bytes, median, time_checks, time_cold_checks};
use entitle_engine::{Clock, CoarseClock, FakeClock, Gate, Limit, Policy};
use governor::clock::QuantaUpkeepClock;
use governor::{Quota, RateLimiter};

const USAGE: &str = "usage: cold-anatomy [--rounds N]";
const RATE: u64 = 1_000;
const BURST: u64 = 1_000_000_000;
const WARM_UP_CHECKS: u64 = 1_000_000;
const COLD_CHECKS: u64 = 4_000;
const PEERS: [&str; 7] = [
    "entitle",
    "entitle-still",
    "entitle-ticked",
    "entitle-tsc",
    "floor",
    "governor",
    "governor-upkeep",
];

/// The TSC as an entitle clock, as governor reads it: nanoseconds since the clock was
/// made, through `quanta`'s calibration.
#[derive(Clone)]
struct TscClock {
    clock: quanta::Clock,
    origin: u64,
}

impl TscClock {
    fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self { clock, origin }
    }
}

impl Clock for TscClock {
    #[inline(always)]
    fn now(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

/// Warms `check` up, then times it cold; every check must be admitted.
fn time(peer: &str, buffer: &mut [u8], mut check: impl FnMut() -> bool) -> Result<f64> {
    let warm = time_checks(WARM_UP_CHECKS, &mut check);
    let cold = time_cold_checks(COLD_CHECKS, buffer, &mut check);
    ensure!(
        warm.admitted == warm.checks && cold.admitted == cold.checks,
        "{peer}: not every check was admitted; the case measures admits only"
    );
    Ok(cold.nanos_per_check)
}

fn entitle<C: Clock>(peer: &str, clock: C, buffer: &mut [u8]) -> Result<f64> {
    let mut builder = Gate::builder(clock);
    let tps = builder.register("PAR-TPS", Limit::new(RATE, BURST, Policy::Hard)?)?;
    let mut worker = builder.build().worker();
    time(peer, buffer, move || {
        worker.check(black_box(tps)).is_admit()
    })
}

fn quota() -> Result<Quota> {
    let n = |v: u64| NonZeroU32::new(u32::try_from(v)?).context("a zero quota");
    Ok(Quota::per_second(n(RATE)?).allow_burst(n(BURST)?))
}

fn run(peer: &str, buffer: &mut [u8]) -> Result<f64> {
    match peer {
        "entitle" => entitle(peer, CoarseClock::new()?, buffer),
        "entitle-still" => entitle(peer, FakeClock::new(), buffer),
        "entitle-ticked" => {
            let clock = FakeClock::new();
            let stop = AtomicBool::new(false);
            let ticked = clock.clone();
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(CoarseClock::DEFAULT_PERIOD);
                        ticked.advance(Duration::from_nanos(1));
                    }
                });
                let nanos = entitle(peer, clock, buffer);
                stop.store(true, Ordering::Relaxed);
                nanos
            })
        }
        "entitle-tsc" => entitle(peer, TscClock::new(), buffer),
        "floor" => {
            let bucket = MutexBucket::new(CoarseClock::new()?, RATE, BURST);
            time(peer, buffer, move || bucket.check())
        }
        "governor" => {
            let limiter = RateLimiter::direct(quota()?);
            time(peer, buffer, move || limiter.check().is_ok())
        }
        "governor-upkeep" => {
            let clock = QuantaUpkeepClock::from_interval(CoarseClock::DEFAULT_PERIOD)?;
            let limiter = RateLimiter::direct_with_clock(quota()?, clock);
            time(peer, buffer, move || limiter.check().is_ok())
        }
        _ => bail!("no peer {peer}"),
    }
}

fn parse_rounds(mut args: impl Iterator<Item = String>) -> Result<usize> {
    let mut rounds = 5;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                let value = args.next().context("--rounds needs a number")?;
                rounds =
                    value.parse().ok().filter(|&r| r > 0).with_context(|| {
                        format!("--rounds {value:?}: not a number of at least 1")
                    })?;
            }
            _ => bail!("unknown argument {arg:?}"),
        }
    }
    Ok(rounds)
}

fn main_result() -> Result<()> {
    let rounds = parse_rounds(std::env::args().skip(1))?;
    let mut buffer = vec![0u8; eviction_bytes()];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); PEERS.len()];
    for round in 0..rounds {
        // Rotated, so that no peer always runs first or last.
        for i in (0..PEERS.len()).map(|i| (i + round) % PEERS.len()) {
            figures[i].push(run(PEERS[i], &mut buffer).with_context(|| PEERS[i])?);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    println!(
        "1,000/s, each check timed alone after writing {} KiB; ns a check, less the timer's",
        buffer.len() >> 10
    );
    let governor = median(&figures[PEERS.iter().position(|&p| p == "governor").unwrap_or(0)]);
    for (peer, values) in PEERS.iter().zip(&figures) {
        let rounded: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
        println!(
            "{peer:<16} {:>6.1}   rounds {}",
            median(values),
            rounded.join(" ")
        );
    }
    for (peer, values) in PEERS.iter().zip(&figures) {
        let name = peer.replace('-', "_");
        println!("value cold_{name}_ns {:.2}", median(values));
        println!(
            "ratio cold_{name}_vs_governor {:.4}",
            median(values) / governor
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match main_result() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cold-anatomy: {e:#}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}
