//! Timing: one thread over a large batch of checks, or several threads for a fixed time,
//! with `Instant` around the whole batch (never around one check) and the decisions counted
//! so that nothing is optimised away and every run can be verified.
//!
//! Each run also reports how long its threads were runnable but waiting for a CPU (from
//! Linux's `/proc/thread-self/schedstat`; zero elsewhere), so that a caller can tell a run
//! that measured the code from one that measured another process taking the core.
//!
//! ```
//! use entitle_benches::measure::{SHARED_WARM_UP, median, time_shared};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//!
//! let counter = &AtomicU64::new(0);
//! let run = time_shared(2, Duration::from_millis(20), move || {
//!     move || counter.fetch_add(1, Ordering::Relaxed) % 2 == 0
//! });
//! assert_eq!(run.checks + 2 * SHARED_WARM_UP, counter.load(Ordering::Relaxed));
//! assert!(run.admitted > 0 && run.rejected() > 0);
//! assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
//! ```

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Checks a thread makes between two looks at the stop flag in [`time_shared`].
pub const SHARED_BATCH: u64 = 4096;

/// Checks each thread of [`time_shared`] makes before the clock starts.
pub const SHARED_WARM_UP: u64 = 100_000;

/// What one timed run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Checks made.
    pub checks: u64,
    /// Checks admitted.
    pub admitted: u64,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// Threads that made the checks.
    pub threads: u32,
    /// Time the threads spent runnable but without a CPU, all threads together.
    pub waited: Duration,
}

impl Run {
    /// Checks rejected.
    pub fn rejected(&self) -> u64 {
        self.checks - self.admitted
    }

    /// Mean wall-clock nanoseconds per check (per thread, for a single-thread run).
    pub fn nanos_per_check(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e9 / self.checks as f64
    }

    /// Checks per second over the run, all threads together.
    pub fn checks_per_second(&self) -> f64 {
        self.checks as f64 / self.elapsed.as_secs_f64()
    }

    /// The fraction of the run's thread time spent waiting for a CPU: 0 when nothing else
    /// ran on the run's cores.
    pub fn disturbance(&self) -> f64 {
        self.waited.as_secs_f64() / (self.elapsed.as_secs_f64() * f64::from(self.threads.max(1)))
    }
}

/// Nanoseconds the calling thread has spent runnable but waiting for a CPU, or 0 where the
/// kernel does not say (the second field of `/proc/thread-self/schedstat`).
pub fn waited_nanos() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Times `checks` calls of `check` on this thread, counting the admits.
#[inline(never)]
pub fn time_checks(checks: u64, mut check: impl FnMut() -> bool) -> Run {
    let checks = black_box(checks);
    let waited_before = waited_nanos();
    let start = Instant::now();
    let mut admitted = 0u64;
    for _ in 0..checks {
        admitted += u64::from(check());
    }
    let elapsed = start.elapsed();
    let waited = Duration::from_nanos(waited_nanos().saturating_sub(waited_before));
    Run {
        checks,
        admitted: black_box(admitted),
        elapsed,
        threads: 1,
        waited,
    }
}

/// Runs `threads` threads for about `duration`, each calling the check that `make` gives it
/// (made on that thread, so it may hold a per-thread handle) as fast as it can, and times
/// them together: from the earliest start to the latest finish.
///
/// Each thread first makes [`SHARED_WARM_UP`] untimed checks, then all start together.
pub fn time_shared<M, F>(threads: usize, duration: Duration, make: M) -> Run
where
    M: Fn() -> F + Sync,
    F: FnMut() -> bool,
{
    let start_line = Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    let results: Vec<(Instant, Instant, u64, u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut check = make();
                    for _ in 0..SHARED_WARM_UP {
                        black_box(check());
                    }
                    start_line.wait();
                    let waited_before = waited_nanos();
                    let start = Instant::now();
                    let (mut checks, mut admitted) = (0u64, 0u64);
                    loop {
                        for _ in 0..SHARED_BATCH {
                            admitted += u64::from(check());
                        }
                        checks += SHARED_BATCH;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    let end = Instant::now();
                    let waited = waited_nanos().saturating_sub(waited_before);
                    // The check (a worker handle, say) is dropped after the clock stopped.
                    drop(check);
                    (start, end, checks, black_box(admitted), waited)
                })
            })
            .collect();
        start_line.wait();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .collect()
    });
    let start = results
        .iter()
        .map(|r| r.0)
        .min()
        .expect("at least one thread");
    let end = results
        .iter()
        .map(|r| r.1)
        .max()
        .expect("at least one thread");
    Run {
        checks: results.iter().map(|r| r.2).sum(),
        admitted: results.iter().map(|r| r.3).sum(),
        elapsed: end - start,
        threads: u32::try_from(threads).unwrap_or(u32::MAX),
        waited: Duration::from_nanos(results.iter().map(|r| r.4).sum()),
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The spread of `values` around their median: `(max - min) / median`.
pub fn spread(values: &[f64]) -> f64 {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (max - min) / median(values)
}
