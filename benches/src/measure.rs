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
//! use entitle_benches::measure::trimmed_mean;
//! assert_eq!(trimmed_mean(&[100.0, 1.0, 2.0, 3.0, 0.0], 0.2), 2.0);
//!
//! // Caches as cold as a packet path leaves them: a buffer is written before each check.
//! let mut buffer = vec![0u8; entitle_benches::measure::eviction_bytes()];
//! let cold = entitle_benches::measure::time_cold_checks(100, &mut buffer, || true);
//! assert_eq!((cold.checks, cold.admitted), (100, 100));
//! assert!(cold.timer_nanos > 0.0);
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

/// Bytes a cold-cache run writes between two checks where the machine's L2 cannot be
/// read: twice the largest L2 a machine in `BENCHMARKS.md` had (1 MiB a core).
pub const DEFAULT_EVICTION_BYTES: usize = 2 << 20;

/// Bytes a cold-cache run writes between two checks: twice this machine's L2 (Linux's
/// `/sys/devices/system/cpu/cpu0/cache`), so the limiter's lines and code are out of L1
/// and L2 but still in L3, as a packet path's other work leaves them. The machines these
/// benchmarks run on differ from day to day (512 KB and 1 MiB of L2 so far), so the size
/// is read, not fixed. [`DEFAULT_EVICTION_BYTES`] where it cannot be read.
pub fn eviction_bytes() -> usize {
    l2_bytes().map_or(DEFAULT_EVICTION_BYTES, |l2| 2 * l2)
}

/// The size of cpu0's level-2 cache, if Linux says.
fn l2_bytes() -> Option<usize> {
    let caches = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    caches.flatten().find_map(|index| {
        let read = |name: &str| std::fs::read_to_string(index.path().join(name)).ok();
        (read("level")?.trim() == "2")
            .then(|| parse_cache_size(&read("size")?))
            .flatten()
    })
}

/// A cache size as sysfs writes it (`1024K`, `2M`, or bytes), in bytes; `None` for
/// anything else, or zero.
fn parse_cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 1 << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<usize>()
        .ok()?
        .checked_mul(unit)
        .filter(|&bytes| bytes > 0)
}

/// What a cold-cache run measured: each check timed alone, after the eviction buffer was
/// written, against as many timings of nothing made the same way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColdRun {
    /// Checks made.
    pub checks: u64,
    /// Checks admitted.
    pub admitted: u64,
    /// The time of one check (a trimmed mean, see [`COLD_TRIM`]), less that of timing
    /// nothing.
    pub nanos_per_check: f64,
    /// The time of timing nothing (two `Instant::now()` after an eviction), trimmed the same.
    pub timer_nanos: f64,
}

/// The share of the fastest and of the slowest timings a cold-cache run leaves out at each
/// end before it averages the rest. An average, not a median: `Instant` steps by about
/// 10 ns on the machine in `BENCHMARKS.md`, so a median sticks to a step, while an
/// average over checks that start at random phases of the step is not biased by it; the
/// trim drops interrupts and preemption.
pub const COLD_TRIM: f64 = 0.05;

/// Writes every byte of `buffer`, differently each `round`, so that no line of it is left
/// as it was and the writes cannot be optimised away.
#[inline(never)]
pub fn evict(buffer: &mut [u8], round: u64) {
    buffer.fill(round.to_le_bytes()[0]);
    black_box(buffer);
}

/// Times `checks` calls of `check` one by one, writing `buffer` (of
/// [`eviction_bytes`], say) before each, as a packet path's other work leaves the caches
/// between two checks. Each timed check alternates with a timing of nothing after the same
/// eviction, which is taken off: the figure is what the check adds.
#[inline(never)]
pub fn time_cold_checks(
    checks: u64,
    buffer: &mut [u8],
    mut check: impl FnMut() -> bool,
) -> ColdRun {
    let len = usize::try_from(checks).unwrap_or(usize::MAX);
    let (mut timed, mut empty) = (Vec::with_capacity(len), Vec::with_capacity(len));
    let mut admitted = 0u64;
    for i in 0..checks {
        evict(buffer, 2 * i);
        let start = Instant::now();
        let admit = check();
        let took = start.elapsed();
        admitted += u64::from(admit);
        timed.push(took.as_secs_f64() * 1e9);
        evict(buffer, 2 * i + 1);
        let start = Instant::now();
        let took = black_box(start).elapsed();
        empty.push(took.as_secs_f64() * 1e9);
    }
    let timer_nanos = trimmed_mean(&empty, COLD_TRIM);
    ColdRun {
        checks,
        admitted: black_box(admitted),
        nanos_per_check: trimmed_mean(&timed, COLD_TRIM) - timer_nanos,
        timer_nanos,
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

/// The mean of `values` without the lowest and the highest `trim` of them (a share, below
/// one half); NaN when nothing is left.
pub fn trimmed_mean(values: &[f64], trim: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let cut = (sorted.len() as f64 * trim.clamp(0.0, 0.5)) as usize;
    let kept = &sorted[cut..sorted.len() - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// The spread of `values` around their median: `(max - min) / median`.
pub fn spread(values: &[f64]) -> f64 {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (max - min) / median(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_read_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("1024K\n"), Some(1 << 20));
        assert_eq!(parse_cache_size("512K"), Some(512 << 10));
        assert_eq!(parse_cache_size(" 2M "), Some(2 << 20));
        assert_eq!(parse_cache_size("1G"), Some(1 << 30));
        assert_eq!(parse_cache_size("65536"), Some(65_536));
    }

    #[test]
    fn malformed_cache_sizes_are_refused() {
        for text in [
            "",
            "\n",
            "K",
            "M",
            "0K",
            "0",
            "-1K",
            "+1K",
            "1.5M",
            "1 K",
            "12Q",
            "K12",
            "1KK",
            "99999999999999999999K",
            "18014398509481984G",
        ] {
            assert_eq!(parse_cache_size(text), None, "{text:?}");
        }
    }
}
