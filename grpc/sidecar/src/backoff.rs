//! Exponential backoff with full jitter for every retry towards the authority (calls home,
//! renewals, usage delivery), so that a fleet that lost its authority comes back spread
//! over the backoff window instead of all at once.
//!
//! After the `n`th consecutive failure (`n` from 0) the wait is drawn uniformly from
//! `[0, min(cap, base * 2^n)]` ("full jitter"). The schedule is a pure function of the
//! attempt and a random number, so the spread of a thousand devices is tested without a
//! clock; the sidecar draws its random numbers from the operating system.
//!
//! ```
//! # use std::time::Duration;
//! use entitle_sidecar::backoff::Backoff;
//!
//! let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
//! assert_eq!(b.window(0), Duration::from_secs(5));
//! assert_eq!(b.window(3), Duration::from_secs(40));
//! assert_eq!(b.window(10), Duration::from_secs(60));
//! assert_eq!(b.delay(3, 0), Duration::ZERO);
//! assert_eq!(b.delay(3, u64::MAX), Duration::from_secs(40)); // the whole window
//! ```

use std::time::Duration;

/// A backoff schedule: the first window and the largest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Windows of `base`, `2 * base`, `4 * base`... up to `cap` (`base` is raised to at
    /// least a millisecond, `cap` to at least `base`).
    pub fn new(base: Duration, cap: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self {
            base,
            cap: cap.max(base),
        }
    }

    /// The window after the `attempt`th consecutive failure (0 for the first).
    pub fn window(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait after the `attempt`th consecutive failure, for a `random` number uniform
    /// over the `u64`s: uniform over `[0, window(attempt)]`.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        // At most 584 years, so that the product fits in 128 bits.
        let window = self.window(attempt).as_nanos().min(u128::from(u64::MAX));
        let nanos = window * u128::from(random) / u128::from(u64::MAX);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// [`Backoff::delay`] with a random number from the operating system (a fixed half
    /// window if it has none to give).
    pub fn delay_now(&self, attempt: u32) -> Duration {
        self.delay(attempt, getrandom::u64().unwrap_or(u64::MAX / 2))
    }
}

/// A run of failures and the retry it schedules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retry {
    /// Consecutive failures so far.
    pub failures: u32,
    /// When the next attempt is due (caller's clock, nanoseconds), if one is scheduled.
    pub due: Option<u64>,
}

impl Retry {
    /// A failure at `now_nanos`: the next attempt is due after the jittered wait.
    pub fn failed(&mut self, backoff: &Backoff, now_nanos: u64, random: u64) -> Duration {
        let wait = backoff.delay(self.failures, random);
        self.failures = self.failures.saturating_add(1);
        let wait_nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.due = Some(now_nanos.saturating_add(wait_nanos));
        wait
    }

    /// A success: the run is over.
    pub fn succeeded(&mut self) {
        *self = Self::default();
    }

    /// Whether the scheduled attempt is due at `now_nanos`; if so, it is taken.
    pub fn take_due(&mut self, now_nanos: u64) -> bool {
        match self.due {
            Some(due) if due <= now_nanos => {
                self.due = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic random source (SplitMix64), one per simulated device.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    /// How many of `times` fall in each tenth of `[0, window]`.
    fn histogram(times: &[Duration], window: Duration) -> [usize; 10] {
        let mut buckets = [0; 10];
        for t in times {
            let i = (t.as_nanos() * 10 / window.as_nanos()).min(9) as usize;
            buckets[i] += 1;
        }
        buckets
    }

    #[test]
    fn a_fleets_first_retries_after_an_outage_spread_over_the_window() {
        // 1,000 devices all fail their renewal at the same moment (the authority went down
        // under them); each schedules its first retry on its own random numbers.
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(3600));
        let outage_at = 1_000_000_000u64;
        let firsts: Vec<Duration> = (0..1000u64)
            .map(|device| {
                let mut random = SplitMix(device.wrapping_mul(7919) + 1);
                let mut retry = Retry::default();
                retry.failed(&backoff, outage_at, random.next());
                Duration::from_nanos(retry.due.unwrap_or(0) - outage_at)
            })
            .collect();
        let window = backoff.window(0);
        assert!(firsts.iter().all(|t| *t <= window));
        let buckets = histogram(&firsts, window);
        assert!(
            buckets.iter().all(|&n| n <= 200),
            "no tenth of the window holds more than 20% of the devices: {buckets:?}"
        );
        assert!(
            buckets.iter().all(|&n| n >= 50),
            "every tenth gets some: {buckets:?}"
        );
    }

    #[test]
    fn later_retries_spread_over_wider_windows_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        let mut randoms: Vec<SplitMix> = (0..1000).map(|d| SplitMix(d * 31 + 7)).collect();
        let mut retries = vec![Retry::default(); 1000];
        let mut now = vec![0u64; 1000];
        for attempt in 0..8u32 {
            let waits: Vec<Duration> = retries
                .iter_mut()
                .zip(&mut randoms)
                .zip(&mut now)
                .map(|((retry, random), now)| {
                    let wait = retry.failed(&backoff, *now, random.next());
                    *now = retry.due.unwrap_or(0);
                    wait
                })
                .collect();
            let window = backoff.window(attempt);
            assert_eq!(
                window,
                Duration::from_secs(5 << attempt).min(Duration::from_secs(300))
            );
            assert!(waits.iter().all(|w| *w <= window));
            let buckets = histogram(&waits, window);
            assert!(
                buckets.iter().all(|&n| n <= 200),
                "attempt {attempt}: {buckets:?}"
            );
        }
        assert!(retries.iter().all(|r| r.failures == 8));
    }

    #[test]
    fn a_success_ends_the_run_and_a_due_retry_is_taken_once() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let mut retry = Retry::default();
        let wait = retry.failed(&backoff, 100, u64::MAX);
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(retry.due, Some(100 + 1_000_000_000));
        assert!(!retry.take_due(100));
        assert!(retry.take_due(100 + 1_000_000_000));
        assert!(!retry.take_due(u64::MAX), "taken once");
        retry.failed(&backoff, 0, 0);
        assert_eq!(retry.failures, 2);
        retry.succeeded();
        assert_eq!(retry, Retry::default());
    }

    #[test]
    fn windows_never_overflow() {
        let backoff = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert_eq!(backoff.window(u32::MAX), Duration::MAX);
        let small = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(small.window(0), Duration::from_millis(1));
        assert!(small.delay(40, u64::MAX) <= Duration::from_millis(1));
        let mut retry = Retry {
            failures: u32::MAX,
            due: None,
        };
        retry.failed(&backoff, u64::MAX, u64::MAX);
        assert_eq!((retry.failures, retry.due), (u32::MAX, Some(u64::MAX)));
    }
}
