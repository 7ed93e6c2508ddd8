//! entitle against governor 0.10 and a mutex token bucket, in one process, one after
//! another, over several rounds. Prints a table of medians, then one line per case:
//!
//! - `ratio <case> <x>`: entitle's cost over governor's (time per check; for throughput
//!   cases governor's checks/s over entitle's), so lower is better;
//! - `floor_<case> <x>`: the same ratio for the mutex bucket (the floor) over governor;
//! - `value <name> <x>`: a figure of entitle alone.
//!
//! ```text
//! cargo run --release -p entitle-benches --bin compare -- [--rounds N] [--quick]
//! ```
//!
//! The cases, each on a fresh limiter (entitle: a gate on a `CoarseClock`; governor:
//! `RateLimiter::direct`, and `direct_with_clock` with a `QuantaUpkeepClock` ticking as often
//! as the coarse clock for the `_vs_upkeep` lines; the floor: a `MutexBucket`):
//!
//! - `admit_single`: one thread, 10 M/s with a burst of 10^9, every check admitted; after
//!   1 M checks of warm-up, 20 batches of 1 M checks timed, the median batch counts.
//! - `reject_single`: the same after the burst of one is spent (entitle and the floor:
//!   1/s; governor: 1/hour), every check rejected.
//! - `admit_shared_2t`: two threads for 300 ms on one entitlement (entitle: a worker each;
//!   the others: one shared limiter), checks per second together.
//! - `admit_1k_single`, `admit_10k_single`: `admit_single` at licence-sized rates, 1,000/s
//!   and 10,000/s (where the rate alone would give entitle a lease of one token).
//! - `admit_1k_single_cold`, `admit_10k_single_cold`: the same with the caches as cold as
//!   a packet path leaves them: before each check the harness writes a buffer of twice
//!   the machine's L2 (evicting L1 and L2), and each check is timed alone, less the
//!   timer's own cost.
//! - `snapshot_10k_ms`: `gate.snapshot_into()` (a reused buffer) on 10,000 entitlements that all saw traffic and
//!   were sampled.
//! - `swap_under_load_drop`: the throughput one checker thread loses while another thread
//!   changes its limit 1,000 times a second (`_2t`: two checker threads): runs of 250 ms
//!   without and with swaps, back to back in pairs, the median over the pairs.
//!
//! Every run is verified: an admit case fails loudly unless every check was admitted, a
//! reject case unless every check was rejected. A single-thread batch during which the
//! thread waited for a CPU (another process had it) more than 2% of the time is left out
//! (up to 100 batches are timed to find 20 that were not); `admit_shared_2t` runs three
//! times per round and peer and keeps the median run.
//! `BENCHMARKS.md` has the figures and how to read them.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use entitle_benches::floor::MutexBucket;
use entitle_benches::measure::{
    Run, eviction_bytes, median, spread, time_checks, time_cold_checks, time_shared,
};
use entitle_engine::{CoarseClock, Entitlement, FakeClock, Gate, Limit, Policy};
use governor::clock::{Clock as GovernorClock, QuantaUpkeepClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// The admit cases' rate: entitle's `MAX_RATE`, so its leases are the largest (64 tokens).
const ADMIT_RATE: u64 = 10_000_000;
/// Licence-sized rates, at which the rate alone would give entitle a lease of one token.
const RATE_1K: u64 = 1_000;
const RATE_10K: u64 = 10_000;
/// The admit cases' burst: large enough that every check of a run is admitted.
const ADMIT_BURST: u64 = 1_000_000_000;
/// governor's upkeep clock ticks as often as entitle's coarse clock.
const UPKEEP_INTERVAL: Duration = CoarseClock::DEFAULT_PERIOD;
/// Untimed checks on the same limiter before each single-thread run.
const WARM_UP_CHECKS: u64 = 1_000_000;
/// A single-thread run is timed in this many undisturbed batches (of 1 M checks by default).
const BATCHES: usize = 20;
/// At most this many batches are timed in search of undisturbed ones.
const MAX_BATCHES: usize = 5 * BATCHES;
/// A reject case's limiter is replaced after this long (it earns a token a second).
const REJECT_EPOCH: Duration = Duration::from_millis(500);
const SNAPSHOT_ENTITLEMENTS: usize = 10_000;
/// Sampled seconds of traffic in each snapshot window.
const SNAPSHOT_SECONDS: u32 = 3;
const SWAPS_PER_SECOND: u32 = 1_000;
/// Pairs of runs (without swaps, with swaps) per round and number of checker threads.
const SWAP_PAIRS: usize = 4;
/// Entitlements on the gate of the swap case (one is checked and swapped).
const SWAP_ENTITLEMENTS: usize = 8;
/// Exit status for bad arguments (EX_USAGE).
const EX_USAGE: u8 = 64;

const USAGE: &str = "usage: compare [--rounds N] [--quick]
  --rounds N  measured rounds (default 5, at least 1)
  --quick     smaller batches and shorter runs, for a smoke test";

struct Options {
    rounds: usize,
    quick: bool,
}

/// The options, `None` for `--help`, or what is wrong with the arguments.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        rounds: 5,
        quick: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--rounds" => {
                let n = args.next().ok_or("--rounds needs a number")?;
                options.rounds = match n.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(format!(
                            "--rounds needs a whole number of at least 1, not {n:?}"
                        ));
                    }
                };
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(options))
}

/// How much work each measurement does.
#[derive(Clone, Copy)]
struct Sizes {
    /// Checks in one single-thread run.
    single: u64,
    /// Length of one multi-thread run.
    shared: Duration,
    /// Length of one run of the swap case (with or without swaps).
    swap: Duration,
    /// Snapshots timed per round.
    snapshots: usize,
    /// Checks timed one by one in a cold-cache run.
    cold: u64,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                single: 2_000_000,
                shared: Duration::from_millis(100),
                swap: Duration::from_millis(100),
                snapshots: 3,
                cold: 500,
            }
        } else {
            Sizes {
                single: 20_000_000,
                shared: Duration::from_millis(300),
                swap: Duration::from_millis(250),
                snapshots: 9,
                cold: 4_000,
            }
        }
    }

    /// The untimed pass before round 1.
    fn warm_up() -> Self {
        Sizes {
            single: 2_000_000,
            shared: Duration::from_millis(50),
            swap: Duration::from_millis(50),
            snapshots: 1,
            cold: 200,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    AdmitSingle,
    RejectSingle,
    AdmitShared2t,
    /// `admit_single` at licence-sized rates: every check an admit, as while traffic is
    /// under the licence.
    Admit1kSingle,
    Admit10kSingle,
    /// The same, each check after the harness wrote a buffer larger than L2.
    Admit1kSingleCold,
    Admit10kSingleCold,
}

impl Case {
    const ALL: [Case; 7] = [
        Case::AdmitSingle,
        Case::RejectSingle,
        Case::AdmitShared2t,
        Case::Admit1kSingle,
        Case::Admit10kSingle,
        Case::Admit1kSingleCold,
        Case::Admit10kSingleCold,
    ];

    /// The cases also compared with governor on its upkeep clock in `_vs_upkeep` lines.
    const VS_UPKEEP: [Case; 6] = [
        Case::AdmitSingle,
        Case::RejectSingle,
        Case::Admit1kSingle,
        Case::Admit10kSingle,
        Case::Admit1kSingleCold,
        Case::Admit10kSingleCold,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::AdmitSingle => "admit_single",
            Case::RejectSingle => "reject_single",
            Case::AdmitShared2t => "admit_shared_2t",
            Case::Admit1kSingle => "admit_1k_single",
            Case::Admit10kSingle => "admit_10k_single",
            Case::Admit1kSingleCold => "admit_1k_single_cold",
            Case::Admit10kSingleCold => "admit_10k_single_cold",
        }
    }

    /// The rate and burst of the limiter (governor's reject case: 1/hour instead).
    fn rate_and_burst(self) -> (u64, u64) {
        match self {
            Case::AdmitSingle | Case::AdmitShared2t => (ADMIT_RATE, ADMIT_BURST),
            Case::Admit1kSingle | Case::Admit1kSingleCold => (RATE_1K, ADMIT_BURST),
            Case::Admit10kSingle | Case::Admit10kSingleCold => (RATE_10K, ADMIT_BURST),
            Case::RejectSingle => (1, 1),
        }
    }

    /// Whether each check is timed alone after the caches were cooled.
    fn is_cold(self) -> bool {
        matches!(self, Case::Admit1kSingleCold | Case::Admit10kSingleCold)
    }

    /// Whether the figure is a throughput (checks/s, higher is better) rather than a cost.
    fn is_throughput(self) -> bool {
        self == Case::AdmitShared2t
    }

    fn admits(self) -> bool {
        self != Case::RejectSingle
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Entitle,
    Governor,
    GovernorUpkeep,
    Floor,
}

impl Peer {
    const ALL: [Peer; 4] = [
        Peer::Entitle,
        Peer::Governor,
        Peer::GovernorUpkeep,
        Peer::Floor,
    ];

    fn name(self) -> &'static str {
        match self {
            Peer::Entitle => "entitle",
            Peer::Governor => "governor",
            Peer::GovernorUpkeep => "gov-upkeep",
            Peer::Floor => "mutex-floor",
        }
    }
}

/// Fails unless every check of `run` went the way `case` expects.
fn verify(case: Case, who: &str, run: &Run) -> Result<()> {
    if case.admits() {
        ensure!(
            run.admitted == run.checks,
            "{who} {}: only {} of {} checks were admitted; the case measures nothing but admits",
            case.name(),
            run.admitted,
            run.checks
        );
    } else {
        ensure!(
            run.admitted == 0,
            "{who} {}: {} of {} checks were admitted; the case measures nothing but rejects",
            case.name(),
            run.admitted,
            run.checks
        );
    }
    Ok(())
}

fn nonzero(n: u64) -> Result<NonZeroU32> {
    NonZeroU32::new(u32::try_from(n)?).context("governor quotas are not zero")
}

fn governor_quota(case: Case) -> Result<Quota> {
    let (rate, burst) = case.rate_and_burst();
    Ok(if case.admits() {
        Quota::per_second(nonzero(rate)?).allow_burst(nonzero(burst)?)
    } else {
        Quota::per_hour(nonzero(1)?)
    })
}

fn entitle_limit(case: Case) -> Result<Limit> {
    let (rate, burst) = case.rate_and_burst();
    Ok(Limit::new(rate, burst, Policy::Hard)?)
}

/// A fresh entitle gate on a coarse clock with one entitlement.
fn entitle_gate(case: Case) -> Result<(std::sync::Arc<Gate<CoarseClock>>, Entitlement)> {
    let mut builder = Gate::builder(CoarseClock::new()?);
    let entitlement = builder.register("PAR-TPS", entitle_limit(case)?)?;
    Ok((builder.build(), entitlement))
}

type DirectLimiter<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as GovernorClock>::Instant>>;

/// Times `checks` checks in batches of `checks / BATCHES` on a limiter from `make` (after
/// [`WARM_UP_CHECKS`] untimed ones), verifying every batch, until [`BATCHES`] batches ran
/// undisturbed (see [`MAX_DISTURBANCE`]) or [`MAX_BATCHES`] ran at all. Returns the median
/// batch (by time per check) of the undisturbed ones (of all, if fewer than half of
/// [`BATCHES`] were), how many batches ran, and how many were left out.
///
/// A reject case spends the burst of one first, and makes a fresh limiter every
/// [`REJECT_EPOCH`], well before its next token (one a second) is due.
fn single<F: FnMut() -> bool>(
    case: Case,
    who: &str,
    checks: u64,
    mut make: impl FnMut() -> Result<F>,
) -> Result<(Run, usize, usize)> {
    let batch = checks / BATCHES as u64;
    let mut limiter: Option<(F, Instant)> = None;
    let (mut clean, mut all) = (Vec::with_capacity(BATCHES), Vec::new());
    while clean.len() < BATCHES && all.len() < MAX_BATCHES {
        let stale = limiter
            .as_ref()
            .is_none_or(|(_, born)| !case.admits() && born.elapsed() > REJECT_EPOCH);
        if stale {
            // The old limiter goes first: governor allows one upkeep clock at a time.
            drop(limiter.take());
            let mut check = make()?;
            if !case.admits() {
                ensure!(
                    check(),
                    "{who}: the first check should take the burst of one"
                );
            }
            verify(case, who, &time_checks(WARM_UP_CHECKS, &mut check))?;
            limiter = Some((check, Instant::now()));
        }
        let (check, _) = limiter.as_mut().context("made above")?;
        let run = time_checks(batch, check);
        verify(case, who, &run)?;
        if run.disturbance() <= MAX_DISTURBANCE {
            clean.push(run);
        }
        all.push(run);
    }
    let (ran, left_out) = (all.len(), all.len() - clean.len());
    let mut kept = if clean.len() >= BATCHES / 2 {
        clean
    } else {
        all
    };
    kept.sort_by(|a, b| a.nanos_per_check().total_cmp(&b.nanos_per_check()));
    Ok((kept[kept.len() / 2], ran, left_out))
}

/// How a single-thread case times the check a `make` closure gives it: the figure is
/// nanoseconds per check.
trait Timer {
    fn time<F: FnMut() -> bool>(
        &mut self,
        case: Case,
        who: &str,
        make: impl FnMut() -> Result<F>,
    ) -> Result<f64>;
}

/// Batches of checks in a loop, caches warm (see [`single`]); counts the batches.
struct Warm {
    checks: u64,
    ran: usize,
    left_out: usize,
}

impl Timer for Warm {
    fn time<F: FnMut() -> bool>(
        &mut self,
        case: Case,
        who: &str,
        make: impl FnMut() -> Result<F>,
    ) -> Result<f64> {
        let (run, ran, left_out) = single(case, who, self.checks, make)?;
        self.ran += ran;
        self.left_out += left_out;
        Ok(run.nanos_per_check())
    }
}

/// Checks timed one by one after the caches were cooled (see
/// [`time_cold_checks`]), on a limiter warmed up with [`WARM_UP_CHECKS`] first.
struct Cold {
    checks: u64,
    buffer: Vec<u8>,
}

impl Timer for Cold {
    fn time<F: FnMut() -> bool>(
        &mut self,
        case: Case,
        who: &str,
        mut make: impl FnMut() -> Result<F>,
    ) -> Result<f64> {
        let mut check = make()?;
        verify(case, who, &time_checks(WARM_UP_CHECKS, &mut check))?;
        let run = time_cold_checks(self.checks, &mut self.buffer, &mut check);
        ensure!(
            run.admitted == run.checks,
            "{who} {}: only {} of {} checks were admitted; the case measures nothing but admits",
            case.name(),
            run.admitted,
            run.checks
        );
        Ok(run.nanos_per_check)
    }
}

/// One single-thread case of `peer` on a fresh limiter, timed by `timer`.
fn run_single(case: Case, peer: Peer, timer: &mut impl Timer) -> Result<f64> {
    match peer {
        Peer::Entitle => timer.time(case, "entitle", || {
            let (gate, e) = entitle_gate(case)?;
            let mut worker = gate.worker();
            Ok(
                #[inline(always)]
                move || worker.check(black_box(e)).is_admit(),
            )
        }),
        Peer::Governor => timer.time(case, "governor", || {
            let limiter = RateLimiter::direct(governor_quota(case)?);
            Ok(
                #[inline(always)]
                move || limiter.check().is_ok(),
            )
        }),
        Peer::GovernorUpkeep => timer.time(case, "governor (upkeep clock)", || {
            // The upkeep thread stops when the limiter (which owns the clock) is dropped.
            let clock = QuantaUpkeepClock::from_interval(UPKEEP_INTERVAL)?;
            let limiter: DirectLimiter<_> =
                RateLimiter::direct_with_clock(governor_quota(case)?, clock);
            Ok(
                #[inline(always)]
                move || limiter.check().is_ok(),
            )
        }),
        Peer::Floor => timer.time(case, "mutex floor", || {
            let (rate, burst) = case.rate_and_burst();
            let bucket = MutexBucket::new(CoarseClock::new()?, rate, burst);
            Ok(
                #[inline(always)]
                move || bucket.check(),
            )
        }),
    }
}

/// Two threads on one entitlement (entitle: a worker each; the others: one shared
/// limiter), on a fresh limiter.
fn run_shared(peer: Peer, duration: Duration) -> Result<Run> {
    const THREADS: usize = 2;
    let case = Case::AdmitShared2t;
    let (who, run) = match peer {
        Peer::Entitle => {
            let (gate, e) = entitle_gate(case)?;
            let gate = &gate;
            let run = time_shared(THREADS, duration, move || {
                let mut worker = gate.worker();
                #[inline(always)]
                move || worker.check(black_box(e)).is_admit()
            });
            ("entitle", run)
        }
        Peer::Governor => {
            let limiter = &RateLimiter::direct(governor_quota(case)?);
            (
                "governor",
                time_shared(THREADS, duration, move || {
                    #[inline(always)]
                    move || limiter.check().is_ok()
                }),
            )
        }
        Peer::GovernorUpkeep => {
            let clock = QuantaUpkeepClock::from_interval(UPKEEP_INTERVAL)?;
            let limiter: &DirectLimiter<_> =
                &RateLimiter::direct_with_clock(governor_quota(case)?, clock);
            let run = time_shared(THREADS, duration, move || {
                #[inline(always)]
                move || limiter.check().is_ok()
            });
            ("governor (upkeep clock)", run)
        }
        Peer::Floor => {
            let (rate, burst) = case.rate_and_burst();
            let bucket = &MutexBucket::new(CoarseClock::new()?, rate, burst);
            (
                "mutex floor",
                time_shared(THREADS, duration, move || {
                    #[inline(always)]
                    move || bucket.check()
                }),
            )
        }
    };
    verify(case, who, &run)?;
    Ok(run)
}

/// Milliseconds of `gate.snapshot_into()` (into a reused buffer) on a gate of 10,000 entitlements that all saw
/// traffic from two workers and were sampled for a few seconds (the median of `reps`),
/// and of the `gate.sample()` calls before them (every one of them, for the record).
fn run_snapshots(reps: usize) -> Result<(f64, Vec<f64>)> {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let entitlements = (0..SNAPSHOT_ENTITLEMENTS)
        .map(|i| builder.register(&format!("ENT-{i:05}"), Limit::hard(1_000)?))
        .collect::<entitle_engine::Result<Vec<_>>>()?;
    let gate = builder.build();
    let mut workers = [gate.worker(), gate.worker()];
    // 1 to 8 checks per entitlement, worker and second: different TPS, all admitted.
    let checks = |i: usize, w: usize| (i + w) % 8 + 1;
    let mut times = Vec::with_capacity(reps);
    let mut samples = Vec::new();
    let mut snapshot = entitle_engine::Snapshot::default();
    for rep in 0..=reps {
        for _ in 0..SNAPSHOT_SECONDS {
            for (w, worker) in workers.iter_mut().enumerate() {
                for (i, &e) in entitlements.iter().enumerate() {
                    for _ in 0..checks(i, w) {
                        let _ = black_box(worker.check(e));
                    }
                }
            }
            clock.advance(Duration::from_secs(1));
            let start = Instant::now();
            gate.sample();
            samples.push(start.elapsed().as_secs_f64() * 1e3);
        }
        // A periodic reporter keeps one buffer; the previous snapshot was sent and consumed.
        snapshot.entitlements.clear();
        let start = Instant::now();
        gate.snapshot_into(&mut snapshot);
        let elapsed = start.elapsed();
        ensure!(
            snapshot.entitlements.len() == SNAPSHOT_ENTITLEMENTS,
            "a snapshot covers every entitlement"
        );
        for (i, usage) in snapshot.entitlements.iter().enumerate() {
            let expected = u64::from(SNAPSHOT_SECONDS) * (checks(i, 0) + checks(i, 1)) as u64;
            ensure!(
                usage.admitted == expected && usage.rejected == 0 && usage.tps_histogram.is_some(),
                "{}: {} admitted, {} rejected (expected {expected} and 0), histogram {}",
                usage.tag,
                usage.admitted,
                usage.rejected,
                if usage.tps_histogram.is_some() {
                    "present"
                } else {
                    "missing"
                },
            );
        }
        // The first snapshot after the gate was built is a warm-up.
        if rep > 0 {
            times.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    Ok((median(&times), samples))
}

/// `threads` workers on one entitlement for `duration`, while (if `swapping`) another
/// thread changes that entitlement's limit 1,000 times a second, alternating `set_limit`
/// and `apply`. Returns the run and the swaps per second achieved.
fn run_swap(threads: usize, duration: Duration, swapping: bool) -> Result<(Run, f64)> {
    let mut builder = Gate::builder(CoarseClock::new()?);
    let checked = builder.register("PAR-TPS", entitle_limit(Case::AdmitSingle)?)?;
    for i in 1..SWAP_ENTITLEMENTS {
        builder.register(&format!("OTHER-{i}"), Limit::hard(1_000)?)?;
    }
    let gate = builder.build();
    let limits = [
        entitle_limit(Case::AdmitSingle)?,
        Limit::new(ADMIT_RATE / 10 * 9, ADMIT_BURST, Policy::Hard)?,
    ];
    let stop = AtomicBool::new(false);
    let (run, swaps) = std::thread::scope(|scope| {
        let swapper = swapping.then(|| {
            scope.spawn(|| -> Result<f64> {
                let period = Duration::from_secs(1) / SWAPS_PER_SECOND;
                let start = Instant::now();
                let mut n: u32 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let limit = limits[(n % 2) as usize];
                    if n % 4 < 2 {
                        gate.set_limit(checked, limit)?;
                    } else {
                        gate.apply(gate.limits().with(checked, limit))?;
                    }
                    n += 1;
                    if let Some(wait) = (start + period * n).checked_duration_since(Instant::now())
                    {
                        std::thread::sleep(wait);
                    }
                }
                Ok(f64::from(n) / start.elapsed().as_secs_f64())
            })
        });
        let gate = &gate;
        let run = time_shared(threads, duration, move || {
            let mut worker = gate.worker();
            #[inline(always)]
            move || worker.check(black_box(checked)).is_admit()
        });
        stop.store(true, Ordering::Relaxed);
        let swaps = match swapper {
            Some(handle) => handle
                .join()
                .map_err(|_| anyhow::anyhow!("the swapper thread panicked"))??,
            None => 0.0,
        };
        Ok::<_, anyhow::Error>((run, swaps))
    })?;
    verify(Case::AdmitSingle, "entitle (swap case)", &run)?;
    if swapping {
        ensure!(
            swaps >= f64::from(SWAPS_PER_SECOND) * 0.9,
            "the swapper managed only {swaps:.0} swaps/s of {SWAPS_PER_SECOND}"
        );
    }
    Ok((run, swaps))
}

/// A single-thread batch whose thread waited for a CPU longer than this fraction of its
/// time measured another process as much as the code: it is left out.
const MAX_DISTURBANCE: f64 = 0.02;
/// Multi-thread runs per round and peer of `admit_shared_2t`; the median one counts.
const SHARED_RUNS: usize = 3;

/// Runs `measure` [`SHARED_RUNS`] times and keeps the run of median throughput. Every peer
/// gets the same treatment: with two busy threads on two cores, the clock threads
/// (entitle's ticker, governor's upkeep) take their turns too, so waiting is not only
/// another process's doing and does not decide which run counts.
fn median_run(results: &mut Results, mut measure: impl FnMut() -> Result<Run>) -> Result<Run> {
    let mut runs = (0..SHARED_RUNS)
        .map(|_| measure())
        .collect::<Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.checks_per_second().total_cmp(&b.checks_per_second()));
    results.note_multi_thread(&runs);
    Ok(runs[runs.len() / 2])
}

/// Everything measured, one value per round.
#[derive(Default)]
struct Results {
    /// The disturbance of every multi-thread run.
    multi_thread_waits: Vec<f64>,
    /// Single-thread batches timed, and batches left out because they were disturbed.
    batches: usize,
    batches_left_out: usize,
    cases: std::collections::BTreeMap<(Case, Peer), Vec<f64>>,
    snapshot_ms: Vec<f64>,
    /// Every `sample()` of the snapshot case, for the record.
    sample_ms: Vec<f64>,
    /// Per number of checker threads.
    swap: std::collections::BTreeMap<usize, SwapSamples>,
}

/// The swap case's figures, one per pair of runs.
#[derive(Default)]
struct SwapSamples {
    /// Checks per second without swaps.
    without: Vec<f64>,
    /// Checks per second with swaps.
    with: Vec<f64>,
    /// `(without - with) / without` of each pair.
    drops: Vec<f64>,
    /// Swaps per second achieved.
    swaps: Vec<f64>,
}

impl Results {
    fn note_multi_thread(&mut self, runs: &[Run]) {
        self.multi_thread_waits
            .extend(runs.iter().map(Run::disturbance));
    }

    fn median(&self, case: Case, peer: Peer) -> f64 {
        self.cases
            .get(&(case, peer))
            .map_or(f64::NAN, |v| median(v))
    }

    /// `peer`'s cost over governor's (time per check, or governor's throughput over its).
    fn ratio(&self, case: Case, peer: Peer, over: Peer) -> f64 {
        let (mine, theirs) = (self.median(case, peer), self.median(case, over));
        if case.is_throughput() {
            theirs / mine
        } else {
            mine / theirs
        }
    }

    /// The same ratio between the best rounds (fastest, or highest throughput) of each.
    fn best_ratio(&self, case: Case, peer: Peer, over: Peer) -> f64 {
        let best = |p| {
            let values = self.cases.get(&(case, p)).map_or(&[][..], |v| &v[..]);
            if case.is_throughput() {
                values.iter().copied().fold(f64::NAN, f64::max)
            } else {
                values.iter().copied().fold(f64::NAN, f64::min)
            }
        };
        let (mine, theirs) = (best(peer), best(over));
        if case.is_throughput() {
            theirs / mine
        } else {
            mine / theirs
        }
    }

    /// The median over the pairs of runs of the throughput lost to swaps.
    fn swap_drop(&self, threads: usize) -> f64 {
        self.swap
            .get(&threads)
            .map_or(f64::NAN, |s| median(&s.drops))
    }
}

/// One round of every case; the peers' order rotates with `round` so that none is always
/// first or last.
fn round(round: usize, sizes: Sizes, results: &mut Results) -> Result<()> {
    let mut peers = Peer::ALL;
    peers.rotate_left(round % Peer::ALL.len());
    // The cold cases' eviction buffer, made (and its pages faulted in) once per round.
    let mut buffer = vec![0u8; eviction_bytes()];
    for case in Case::ALL {
        for peer in peers {
            let context = || format!("{} {}", case.name(), peer.name());
            let value = if case.is_throughput() {
                median_run(results, || run_shared(peer, sizes.shared))
                    .with_context(context)?
                    .checks_per_second()
            } else if case.is_cold() {
                let mut cold = Cold {
                    checks: sizes.cold,
                    buffer: std::mem::take(&mut buffer),
                };
                let value = run_single(case, peer, &mut cold).with_context(context)?;
                buffer = cold.buffer;
                value
            } else {
                let mut warm = Warm {
                    checks: sizes.single,
                    ran: 0,
                    left_out: 0,
                };
                let value = run_single(case, peer, &mut warm).with_context(context)?;
                results.batches += warm.ran;
                results.batches_left_out += warm.left_out;
                value
            };
            results.cases.entry((case, peer)).or_default().push(value);
        }
    }
    let (snapshot_ms, sample_ms) = run_snapshots(sizes.snapshots).context("snapshot_10k")?;
    results.snapshot_ms.push(snapshot_ms);
    results.sample_ms.extend(sample_ms);
    for threads in [1, 2] {
        for pair in 0..SWAP_PAIRS {
            // Each pair runs without and with swaps back to back, in alternating order.
            let order = if (round + pair).is_multiple_of(2) {
                [false, true]
            } else {
                [true, false]
            };
            let mut throughput = [0.0; 2];
            for swapping in order {
                let (run, swaps) =
                    run_swap(threads, sizes.swap, swapping).context("swap_under_load")?;
                results.note_multi_thread(&[run]);
                throughput[usize::from(swapping)] = run.checks_per_second();
                if swapping {
                    results.swap.entry(threads).or_default().swaps.push(swaps);
                }
            }
            let [without, with] = throughput;
            let entry = results.swap.entry(threads).or_default();
            entry.without.push(without);
            entry.with.push(with);
            entry.drops.push((without - with) / without);
        }
    }
    Ok(())
}

fn print_report(results: &Results, rounds: usize) {
    let governor = Peer::Governor;
    println!(
        "medians of {rounds} rounds; cold cases evict {} KiB before each check; ratio = entitle / governor (lower is better), vs-upkeep = entitle / governor on its upkeep clock, best-ratio = between the best rounds; spread = (max - min) / median over the rounds, entitle / governor",
        eviction_bytes() >> 10
    );
    println!(
        "waiting for a CPU: {} of {} single-thread batches left out (waited over {:.0}% of the time); multi-thread runs waited {:.1}% of the time (median of {}), at most {:.1}%",
        results.batches_left_out,
        results.batches,
        MAX_DISTURBANCE * 100.0,
        median(&results.multi_thread_waits) * 100.0,
        results.multi_thread_waits.len(),
        results
            .multi_thread_waits
            .iter()
            .copied()
            .fold(0.0, f64::max)
            * 100.0
    );
    print!("{:<22} {:<10}", "case", "unit");
    for peer in Peer::ALL {
        print!(" {:>12}", peer.name());
    }
    println!(
        " {:>8} {:>10} {:>10} {:>14}",
        "ratio", "vs-upkeep", "best-ratio", "spread"
    );
    for case in Case::ALL {
        let (unit, scale) = if case.is_throughput() {
            ("Mchecks/s", 1e-6)
        } else {
            ("ns/check", 1.0)
        };
        print!("{:<22} {:<10}", case.name(), unit);
        for peer in Peer::ALL {
            print!(" {:>12.2}", results.median(case, peer) * scale);
        }
        let spreads = |peer| {
            results
                .cases
                .get(&(case, peer))
                .map_or(f64::NAN, |v| spread(v) * 100.0)
        };
        println!(
            " {:>8.4} {:>10.4} {:>10.4} {:>6.1}%/{:.1}%",
            results.ratio(case, Peer::Entitle, governor),
            results.ratio(case, Peer::Entitle, Peer::GovernorUpkeep),
            results.best_ratio(case, Peer::Entitle, governor),
            spreads(Peer::Entitle),
            spreads(governor),
        );
    }
    println!(
        "{:<22} {:<10} {:>12.3}   (median of the rounds' medians; spread {:.1}%)",
        "snapshot_10k",
        "ms",
        median(&results.snapshot_ms),
        spread(&results.snapshot_ms) * 100.0
    );
    let sample_max = results.sample_ms.iter().copied().fold(0.0, f64::max);
    println!(
        "{:<22} {:<10} {:>12.3}   (median of {} samples of the snapshot case; the slowest {:.3})",
        "sample_10k",
        "ms",
        median(&results.sample_ms),
        results.sample_ms.len(),
        sample_max
    );
    for (
        threads,
        SwapSamples {
            without,
            with,
            drops,
            swaps,
        },
    ) in &results.swap
    {
        println!(
            "swap_under_load        {threads} checker thread(s): {:.1} Mchecks/s without swaps, {:.1} with {:.0} swaps/s; drop: median {:.4} of {} pairs, from {:.4} to {:.4}",
            median(without) * 1e-6,
            median(with) * 1e-6,
            median(swaps),
            results.swap_drop(*threads),
            drops.len(),
            drops.iter().copied().fold(f64::INFINITY, f64::min),
            drops.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
    }
    println!();
    for case in Case::ALL {
        println!(
            "ratio {} {:.4}",
            case.name(),
            results.ratio(case, Peer::Entitle, governor)
        );
    }
    for case in Case::VS_UPKEEP {
        println!(
            "ratio {}_vs_upkeep {:.4}",
            case.name(),
            results.ratio(case, Peer::Entitle, Peer::GovernorUpkeep)
        );
    }
    for case in Case::ALL {
        println!(
            "floor_{} {:.4}",
            case.name(),
            results.ratio(case, Peer::Floor, governor)
        );
    }
    println!("value snapshot_10k_ms {:.4}", median(&results.snapshot_ms));
    println!("value swap_under_load_drop {:.4}", results.swap_drop(1));
    println!("value swap_under_load_drop_2t {:.4}", results.swap_drop(2));
}

/// The load averages, for the record.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU time of the whole machine and of this process, in clock ticks (`/proc/stat`,
/// `/proc/self/stat`), to tell how much else ran during the measurement.
#[derive(Clone, Copy, Default)]
struct CpuTimes {
    /// Ticks all CPUs spent doing anything but idling (steal included).
    busy: u64,
    /// Ticks all CPUs spent idle.
    idle: u64,
    /// Ticks the hypervisor ran something else on our virtual CPUs.
    steal: u64,
    /// Ticks this process used.
    own: u64,
}

impl CpuTimes {
    /// The times now; zeros where Linux's `/proc` is not there.
    fn now() -> Self {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let stat = read("/proc/stat");
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let own_stat = read("/proc/self/stat");
        // The fields after the command name, which is in parentheses: utime and stime are
        // the 12th and 13th of them.
        let own: u64 = own_stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        CpuTimes {
            busy: field(0) + field(1) + field(2) + field(5) + field(6) + field(7),
            idle: field(3) + field(4),
            steal: field(7),
            own,
        }
    }

    /// What happened between `self` and `later`, as a sentence.
    fn describe(self, later: CpuTimes) -> String {
        let total = (later.busy + later.idle)
            .saturating_sub(self.busy + self.idle)
            .max(1) as f64;
        let busy = later.busy.saturating_sub(self.busy) as f64;
        let own = later.own.saturating_sub(self.own) as f64;
        let steal = later.steal.saturating_sub(self.steal) as f64;
        format!(
            "of all CPU time during the measurement, this benchmark used {:.0}%, other processes {:.0}%, the hypervisor stole {:.0}%, and {:.0}% was idle",
            own / total * 100.0,
            (busy - own - steal).max(0.0) / total * 100.0,
            steal / total * 100.0,
            (total - busy) / total * 100.0
        )
    }
}

fn run(options: &Options) -> Result<()> {
    let sizes = Sizes::new(options.quick);
    let load_before = load_average();
    eprintln!("warming up (one untimed pass of every case)");
    round(0, Sizes::warm_up(), &mut Results::default()).context("warm-up")?;
    let mut results = Results::default();
    let cpu_before = CpuTimes::now();
    for r in 0..options.rounds {
        let start = Instant::now();
        round(r, sizes, &mut results)?;
        eprintln!(
            "round {} of {} done in {:.1} s",
            r + 1,
            options.rounds,
            start.elapsed().as_secs_f64()
        );
    }
    if results.cases.values().any(|v| v.len() != options.rounds) {
        bail!("a case is missing rounds");
    }
    let cpu = cpu_before.describe(CpuTimes::now());
    println!(
        "load average (1, 5, 15 min) before: {load_before}; after: {}; {cpu}",
        load_average()
    );
    print_report(&results, options.rounds);
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("compare: {why}\n{USAGE}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn arguments_set_rounds_and_quick_and_refuse_the_rest() {
        let o = parse(&[]).unwrap().unwrap();
        assert_eq!((o.rounds, o.quick), (5, false));
        let o = parse(&["--rounds", "3", "--quick"]).unwrap().unwrap();
        assert_eq!((o.rounds, o.quick), (3, true));
        assert!(parse(&["--help"]).unwrap().is_none());
        for bad in [
            &["--rounds"][..],
            &["--rounds", "0"],
            &["--rounds", "x"],
            &["-q"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ratios_put_entitle_over_governor_so_lower_is_better() {
        let mut results = Results::default();
        results
            .cases
            .insert((Case::AdmitSingle, Peer::Entitle), vec![2.0, 3.0, 4.0]);
        results
            .cases
            .insert((Case::AdmitSingle, Peer::Governor), vec![10.0, 12.0, 30.0]);
        results
            .cases
            .insert((Case::AdmitShared2t, Peer::Entitle), vec![200e6]);
        results
            .cases
            .insert((Case::AdmitShared2t, Peer::Governor), vec![20e6]);
        // Time per check: 3 ns over 12 ns.
        assert_eq!(
            results.ratio(Case::AdmitSingle, Peer::Entitle, Peer::Governor),
            0.25
        );
        assert_eq!(
            results.best_ratio(Case::AdmitSingle, Peer::Entitle, Peer::Governor),
            0.2
        );
        // Throughput: governor's checks/s over entitle's.
        assert_eq!(
            results.ratio(Case::AdmitShared2t, Peer::Entitle, Peer::Governor),
            0.1
        );
    }
}
