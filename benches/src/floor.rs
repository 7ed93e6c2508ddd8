//! The floor: one token bucket (in GCRA form, like entitle's and governor's) behind a
//! `parking_lot` mutex, read from an entitle [`Clock`] so that it pays for the lock and
//! nothing else.
//!
//! ```
//! use entitle_benches::floor::MutexBucket;
//! use entitle_engine::FakeClock;
//! use std::time::Duration;
//!
//! let clock = FakeClock::new();
//! let bucket = MutexBucket::new(clock.clone(), 10, 2);
//! assert!(bucket.check() && bucket.check(), "a burst of two");
//! assert!(!bucket.check());
//! clock.advance(Duration::from_millis(100));
//! assert!(bucket.check(), "one token per 100 ms");
//! ```

use entitle_engine::Clock;
use parking_lot::Mutex;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A token bucket whose state (the theoretical arrival time) sits behind a mutex.
pub struct MutexBucket<C: Clock> {
    clock: C,
    /// Nanoseconds per token, rounded up.
    interval: u64,
    /// Burst tolerance in nanoseconds: `burst * interval`.
    tau: u64,
    tat: Mutex<u64>,
}

impl<C: Clock> MutexBucket<C> {
    /// A bucket of `per_second` tokens per second (at least 1), of which `burst` may be taken
    /// at once.
    pub fn new(clock: C, per_second: u64, burst: u64) -> Self {
        let interval = NANOS_PER_SECOND.div_ceil(per_second.max(1));
        Self {
            clock,
            interval,
            tau: burst.saturating_mul(interval),
            tat: Mutex::new(0),
        }
    }

    /// Takes one token if there is one.
    #[inline]
    pub fn check(&self) -> bool {
        let now = self.clock.now();
        let mut tat = self.tat.lock();
        let next = (*tat).max(now).saturating_add(self.interval);
        if next <= now.saturating_add(self.tau) {
            *tat = next;
            true
        } else {
            false
        }
    }
}
