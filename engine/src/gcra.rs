//! The GCRA token bucket: one atomic "theoretical arrival time" (TAT) per entitlement.
//!
//! Time inside the bucket is counted in ticks of 1/16 ns (`nanos << TICK_SHIFT`), so that
//! the emission interval of a high rate loses almost nothing to rounding. A `u64` of ticks
//! lasts 36 years of clock time.
//!
//! With interval `I` and tolerance `tau = burst * I`, taking `k` tokens at time `now` is
//! allowed when `max(tat, now) + k * I <= now + tau`, and moves the TAT there. So over any
//! window `W` the bucket grants at most `W / I + burst` tokens.
//!
//! # Orderings
//! The TAT publishes no other data: every grant is a read-modify-write of this one atomic,
//! and the modification order of a single atomic is total, so `Relaxed` is enough for the
//! bucket never to grant more than it holds (the loom model `bucket` checks this). The
//! `throttled` flag is stored `Relaxed` by the sampler, which then publishes it by moving
//! the gate's generation (`Release`); workers read it `Relaxed` after loading that
//! generation (`Acquire`), when they reload (loom model `throttle`).

use crate::sync::{AtomicBool, AtomicU64, Ordering};

pub(crate) const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Ticks per nanosecond, as a shift.
pub(crate) const TICK_SHIFT: u32 = 4;

/// Nanoseconds to ticks.
#[inline(always)]
pub(crate) fn ticks(nanos: u64) -> u64 {
    nanos.saturating_mul(1 << TICK_SHIFT)
}

/// The parameters of a bucket, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    /// Ticks per token.
    pub(crate) interval: u64,
    /// Burst tolerance: `burst * interval`.
    pub(crate) tau: u64,
}

/// The state of one entitlement's bucket; kept apart from its parameters so that it
/// survives a swap of the limit table.
#[derive(Debug)]
pub(crate) struct Bucket {
    tat: AtomicU64,
    /// Set by the sampler when a steady-state entitlement has been over its level for long
    /// enough; read by workers when they reload.
    pub(crate) throttled: AtomicBool,
}

/// How many of `want` tokens (at least `need`) fit in a bucket whose TAT is `tat`, and the
/// TAT after taking them. `None` when fewer than `need` fit.
#[inline]
pub(crate) fn fit(tat: u64, now: u64, need: u64, want: u64, p: Params) -> Option<(u64, u64)> {
    let base = tat.max(now);
    let limit = now.saturating_add(p.tau);
    let room = limit.checked_sub(base)?;
    // `need * interval` may overflow for absurd `need`; such a take can never fit anyway.
    let need_ticks = need.checked_mul(p.interval)?;
    if need_ticks > room {
        return None;
    }
    let take = if want.saturating_mul(p.interval) <= room {
        want
    } else {
        room / p.interval
    };
    Some((take, base + take * p.interval))
}

impl Bucket {
    pub(crate) fn new() -> Self {
        Self {
            tat: AtomicU64::new(0),
            throttled: AtomicBool::new(false),
        }
    }

    /// Takes between `need` and `want` tokens in one CAS, giving back `returning` unused
    /// tokens of an old lease in the same CAS. Returns how many were taken, or `None`
    /// (having written nothing) when fewer than `need` are available.
    #[inline]
    pub(crate) fn take(
        &self,
        now: u64,
        need: u64,
        want: u64,
        returning: u64,
        p: Params,
    ) -> Option<u64> {
        let give_back = returning * p.interval;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let (taken, new_tat) = fit(tat.saturating_sub(give_back), now, need, want, p)?;
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(taken),
                Err(current) => tat = current,
            }
        }
    }

    /// Gives `tokens` unused tokens back to the bucket.
    pub(crate) fn give_back(&self, tokens: u64, p: Params) {
        let ticks = tokens.saturating_mul(p.interval);
        // The closure never returns `None`, so the update always succeeds.
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(ticks))
            });
    }

    /// Carries the bucket over to new parameters at `now`: the tokens available stay the
    /// same, capped at the new burst, so a swap never hands out tokens. `old` is `None` when
    /// the entitlement was unlimited (everything available).
    pub(crate) fn rescale(&self, now: u64, old: Option<Params>, new: Params) {
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                let available = match old {
                    None => new.tau,
                    Some(old) => {
                        let room = now.saturating_add(old.tau).saturating_sub(tat.max(now));
                        let scaled =
                            u128::from(room) * u128::from(new.interval) / u128::from(old.interval);
                        u64::try_from(scaled).unwrap_or(u64::MAX).min(new.tau)
                    }
                };
                Some(now.saturating_add(new.tau) - available)
            });
    }

    /// The current TAT, for tests and models.
    #[cfg(any(test, entitle_loom))]
    pub(crate) fn tat(&self) -> u64 {
        self.tat.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: Params = Params {
        interval: 10,
        tau: 50,
    };

    #[test]
    fn a_full_bucket_grants_its_burst_then_one_token_per_interval() {
        let b = Bucket::new();
        assert_eq!(b.take(1000, 1, 100, 0, P), Some(5));
        assert_eq!(b.take(1000, 1, 1, 0, P), None);
        assert_eq!(b.tat(), 1050);
        assert_eq!(b.take(1009, 1, 1, 0, P), None);
        assert_eq!(b.take(1010, 1, 1, 0, P), Some(1));
    }

    #[test]
    fn a_reject_writes_nothing() {
        let b = Bucket::new();
        assert_eq!(b.take(0, 5, 5, 0, P), Some(5));
        let before = b.tat();
        assert_eq!(b.take(3, 2, 2, 0, P), None);
        assert_eq!(b.tat(), before);
    }

    #[test]
    fn returned_tokens_count_in_the_same_take() {
        let b = Bucket::new();
        assert_eq!(b.take(0, 1, 5, 0, P), Some(5));
        // Two of the five went unused: returning them makes room for two more.
        assert_eq!(b.take(0, 2, 2, 2, P), Some(2));
        assert_eq!(b.tat(), 50);
    }

    #[test]
    fn rescale_keeps_available_tokens_and_never_adds_a_burst() {
        let b = Bucket::new();
        // Empty the bucket: 0 of 5 available.
        assert_eq!(b.take(0, 5, 5, 0, P), Some(5));
        let faster = Params {
            interval: 5,
            tau: 50,
        };
        b.rescale(0, Some(P), faster);
        assert_eq!(
            b.take(0, 1, 1, 0, faster),
            None,
            "raising a limit hands out nothing at once"
        );
        assert_eq!(
            b.take(5, 1, 1, 0, faster),
            Some(1),
            "it refills at the new rate"
        );
        // From unlimited to a rate: the new burst, no more.
        let c = Bucket::new();
        c.rescale(100, None, P);
        assert_eq!(c.take(100, 1, 100, 0, P), Some(5));
    }

    proptest! {
        #[test]
        fn fit_never_exceeds_the_tolerance(
            tat in any::<u64>(), now in 0u64..(1 << 62), need in 1u64..1000, want in 1u64..1000,
            interval in 1u64..(1 << 40), burst in 1u64..1000,
        ) {
            let tau = interval * burst;
            let p = Params { interval, tau };
            if let Some((taken, new_tat)) = fit(tat, now, need, want.max(need), p) {
                prop_assert!(taken >= need && taken <= want.max(need));
                prop_assert!(new_tat <= now + tau);
                prop_assert_eq!(new_tat, tat.max(now) + taken * interval);
            } else {
                // Refused only when `need` does not fit.
                prop_assert!(tat.max(now) as u128 + need as u128 * interval as u128 > now as u128 + tau as u128);
            }
        }

        #[test]
        fn rescale_never_makes_more_tokens_available(
            used in 0u64..100, old_rate in 1u64..crate::MAX_RATE, new_rate in 1u64..crate::MAX_RATE,
            old_burst in 1u64..1000, new_burst in 1u64..1000, now in 0u64..(1 << 50),
        ) {
            let old = crate::Limit::new(old_rate, old_burst, crate::Policy::Hard).unwrap().params().unwrap();
            let new = crate::Limit::new(new_rate, new_burst, crate::Policy::Hard).unwrap().params().unwrap();
            let b = Bucket::new();
            let used = used.min(old_burst);
            if used > 0 {
                prop_assert_eq!(b.take(now, used, used, 0, old), Some(used));
            }
            b.rescale(now, Some(old), new);
            let after = b.take(now, 1, u64::MAX, 0, new).unwrap_or(0);
            prop_assert!(after <= new_burst);
            prop_assert!(after <= old_burst - used, "tokens left before the swap: {}", old_burst - used);
            prop_assert!(after + 1 >= (old_burst - used).min(new_burst), "and the same tokens stay available");
        }
    }
}
