//! Time for the gate: monotonic nanoseconds since a clock's origin, behind a small trait.
//!
//! - [`CoarseClock`] (the default): a ticker thread stores the time in an atomic every
//!   100 us (configurable), so a check costs one load instead of reading the TSC. A loop
//!   that reads the time anyway (a packet loop after its wakeup) can bring it up to date
//!   itself with [`CoarseClock::catch_up`], and let the ticker run slower.
//! - [`PreciseClock`]: `Instant::now()` on every read.
//! - [`FakeClock`]: moved by hand, so tests pass a year in a microsecond.
//!
//! ```
//! use entitle_engine::{Clock, FakeClock};
//! use std::time::Duration;
//!
//! let clock = FakeClock::new();
//! let seen_by_gate = clock.clone();
//! clock.advance(Duration::from_secs(90 * 86_400));
//! assert_eq!(seen_by_gate.now(), 90 * 86_400 * 1_000_000_000);
//! ```
//!
//! # Orderings
//! Clocks publish nothing but their own value, so every load and store is `Relaxed`; the
//! coarse clock's `fetch_max` keeps it monotonic even if the ticker is late.

// The clocks are not loom-modelled: their values are inputs, not a protocol.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A monotonic source of nanoseconds since an arbitrary origin.
///
/// Clones must share one timeline: a worker keeps its own clone of the gate's clock.
pub trait Clock: Clone + Send + Sync + 'static {
    /// Nanoseconds since this clock's origin. Never goes backwards.
    fn now(&self) -> u64;
}

/// A clock read from an atomic that a ticker thread updates every `period`.
///
/// Every coarse clock of a process counts from one origin (the first one made), so
/// [`CoarseClock::catch_up`] can turn an `Instant` into its time without a field of its
/// own beside the atomic. The ticker stops by itself once the last clone is dropped.
#[derive(Clone, Debug)]
pub struct CoarseClock {
    nanos: Arc<AtomicU64>,
}

impl CoarseClock {
    /// The default period of the ticker.
    pub const DEFAULT_PERIOD: Duration = Duration::from_micros(100);

    /// A coarse clock that ticks every [`Self::DEFAULT_PERIOD`].
    pub fn new() -> Result<Self> {
        Self::with_period(Self::DEFAULT_PERIOD)
    }

    /// A coarse clock that ticks every `period` (at least 1 us).
    pub fn with_period(period: Duration) -> Result<Self> {
        let period = period.max(Duration::from_micros(1));
        let origin = *COARSE_ORIGIN;
        let nanos = Arc::new(AtomicU64::new(elapsed_nanos(origin)));
        let ticker: Weak<AtomicU64> = Arc::downgrade(&nanos);
        std::thread::Builder::new()
            .name("entitle-clock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(period);
                    let Some(nanos) = ticker.upgrade() else { break };
                    nanos.fetch_max(elapsed_nanos(origin), Ordering::Relaxed);
                }
            })
            .map_err(|e| Error::ClockThread(e.to_string()))?;
        Ok(Self { nanos })
    }

    /// Brings the clock up to `now` at once (never back). A loop that has just read the
    /// time calls this before its checks: they then see that instant rather than the last
    /// tick, and the ticker can run far slower, for the other readers only.
    #[inline]
    pub fn catch_up(&self, now: Instant) {
        let nanos = duration_nanos(now.saturating_duration_since(*COARSE_ORIGIN));
        if nanos > self.nanos.load(Ordering::Relaxed) {
            self.nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }
}

/// The origin of every [`CoarseClock`] in the process.
static COARSE_ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Clock for CoarseClock {
    #[inline(always)]
    fn now(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }
}

/// A clock that reads `Instant::now()` every time.
#[derive(Clone, Copy, Debug)]
pub struct PreciseClock {
    origin: Instant,
}

impl PreciseClock {
    /// A precise clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for PreciseClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for PreciseClock {
    #[inline]
    fn now(&self) -> u64 {
        elapsed_nanos(self.origin)
    }
}

/// A clock for tests: it stands still until [`FakeClock::advance`] moves it. Clones share
/// one timeline.
#[derive(Clone, Debug, Default)]
pub struct FakeClock {
    nanos: Arc<AtomicU64>,
}

impl FakeClock {
    /// A fake clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.advance_nanos(duration_nanos(by));
    }

    /// Moves the clock forward by `nanos` nanoseconds.
    pub fn advance_nanos(&self, nanos: u64) {
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Clock for FakeClock {
    #[inline(always)]
    fn now(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }
}

fn elapsed_nanos(origin: Instant) -> u64 {
    duration_nanos(origin.elapsed())
}

/// A duration in nanoseconds, saturating after 584 years.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (bounded) until `clock` reads at least `nanos`.
    fn reaches(clock: &impl Clock, nanos: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if clock.now() >= nanos {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_coarse_clock_caught_up_reads_that_instant_and_never_goes_back() {
        // A ticker far slower than the test, so only `catch_up` moves the clock.
        let clock = CoarseClock::with_period(Duration::from_secs(3600)).unwrap();
        let reader = clock.clone();
        let before = reader.now();
        let later = Instant::now() + Duration::from_millis(250);
        clock.catch_up(later);
        let caught = reader.now();
        assert!(
            caught >= before + 250_000_000,
            "caught up by at least 250 ms: {before} -> {caught}"
        );
        // An earlier instant leaves it where it is.
        clock.catch_up(later - Duration::from_millis(100));
        assert_eq!(reader.now(), caught);
        // Two clocks share the origin: the same instant is the same time on both.
        let other = CoarseClock::with_period(Duration::from_secs(3600)).unwrap();
        other.catch_up(later);
        assert_eq!(other.now(), caught);
    }

    #[test]
    fn the_coarse_clock_ticks_and_never_goes_back() {
        let clock = CoarseClock::with_period(Duration::from_micros(50)).unwrap();
        assert!(
            reaches(&clock, clock.now() + 2_000_000),
            "the ticker moves the clock"
        );
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
        // The ticker holds only a weak reference: once the clock is gone, so is the thread.
        let weak = Arc::downgrade(&clock.nanos);
        drop(clock);
        // The ticker may hold it for the instant of a tick; it must let go.
        let deadline = Instant::now() + Duration::from_secs(10);
        while weak.upgrade().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(weak.upgrade().is_none(), "the ticker let the clock go");
    }

    #[test]
    fn the_precise_clock_reads_the_time() {
        let clock = PreciseClock::new();
        assert!(reaches(&clock, 1_000_000));
        let (a, b) = (clock.now(), clock.now());
        assert!(b >= a);
    }

    #[test]
    fn fake_clocks_share_one_timeline() {
        let clock = FakeClock::new();
        let other = clock.clone();
        clock.advance(Duration::from_secs(365 * 86_400));
        other.advance_nanos(1);
        assert_eq!(clock.now(), 365 * 86_400 * 1_000_000_000 + 1);
    }
}
