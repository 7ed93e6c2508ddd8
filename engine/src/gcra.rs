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
//! one exception is [`Bucket::retire`], a `Release` swap made after the gate published the
//! table that replaced the bucket: a worker whose take found the bucket retired loads that
//! with `Acquire` ([`Bucket::is_retired`]), so it then sees the new generation and table.
//!
//! # Swaps
//! A bucket belongs to one limit. When `apply` changes an entitlement's limit it starts a
//! new bucket holding the old one's available tokens (capped at the new burst, see
//! [`carried`]), publishes it, then retires the old bucket and charges the new one with
//! what checks that raced the swap took from the old one meanwhile. So every take is
//! decided by the parameters of its own bucket, and a lease handed back to a retired bucket
//! is lost, never valued at another rate (loom model `swap`).

use crate::sync::{AtomicU64, Ordering};

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

/// The state of one entitlement's bucket under one limit (see Swaps above).
#[derive(Debug)]
pub(crate) struct Bucket {
    tat: AtomicU64,
}

/// The TAT of a retired bucket: no take fits below it, and no lease ends at it.
const RETIRED: u64 = u64::MAX;

/// The TAT a new bucket with parameters `new` starts from at `now`, carrying over a bucket
/// whose TAT is `tat` under `old` (`None`: unlimited, everything available): the tokens
/// available stay the same, capped at the new burst, so a swap never hands out tokens.
pub(crate) fn carried(tat: u64, now: u64, old: Option<Params>, new: Params) -> u64 {
    let available = match old {
        None => new.tau,
        Some(old) => {
            let room = now.saturating_add(old.tau).saturating_sub(tat.max(now));
            let scaled = u128::from(room) * u128::from(new.interval) / u128::from(old.interval);
            u64::try_from(scaled).unwrap_or(u64::MAX).min(new.tau)
        }
    };
    now.saturating_add(new.tau) - available
}

/// A take of several tokens is made this many times larger than the rate's lease while the
/// bucket has room for `ROOM_SHARE` such takes: a worker then renews its lease once per
/// many admits at any rate, and a bucket short of room still shares it out token by token.
pub(crate) const ROOM_SHARE: u64 = 8;

/// How many tokens a take gets from a bucket whose TAT is `tat`, and the TAT after taking
/// them: `most` while the bucket has room for [`ROOM_SHARE`] times as many, else `want`
/// or as many as fit; `None` when fewer than `need` fit.
#[inline]
pub(crate) fn fit(
    tat: u64,
    now: u64,
    need: u64,
    want: u64,
    most: u64,
    p: Params,
) -> Option<(u64, u64)> {
    let base = tat.max(now);
    let limit = now.saturating_add(p.tau);
    let room = limit.checked_sub(base)?;
    // `need * interval` may overflow for absurd `need`; such a take can never fit anyway.
    let need_ticks = need.checked_mul(p.interval)?;
    if need_ticks > room {
        return None;
    }
    let take = if most > want && most.saturating_mul(p.interval).saturating_mul(ROOM_SHARE) <= room
    {
        most
    } else if want.saturating_mul(p.interval) <= room {
        want
    } else {
        room / p.interval
    };
    Some((take, base + take * p.interval))
}

/// The TAT once what is left at `now` of a lease from `front` to `end` is handed back:
/// the lease's time from `front` (or `now`, if later: the clock has passed the rest) to
/// `end`, taken off the top of the bucket. Only while the lease is the top, `end` the TAT:
/// time taken after it stays taken, and the lease's time then passes unused, as the
/// bucket's own does when nobody asks for it. (Taking time out of the middle would move
/// the later leases' time back below their owners' feet.)
#[inline]
pub(crate) fn returned(tat: u64, now: u64, lease: Option<(u64, u64)>) -> u64 {
    match lease {
        Some((front, end)) if end == tat => front.max(now).min(tat),
        _ => tat,
    }
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new() -> Self {
        Self::starting_at(0)
    }

    /// A bucket whose TAT is `tat` (see [`carried`]).
    pub(crate) fn starting_at(tat: u64) -> Self {
        Self {
            tat: AtomicU64::new(tat),
        }
    }

    /// The TAT now, for `apply` to carry the bucket over.
    pub(crate) fn load(&self) -> u64 {
        self.tat.load(Ordering::Relaxed)
    }

    /// Takes the bucket out of use once the table that replaced it is published: every
    /// later take fails and every later hand-back is lost. Returns the last TAT.
    pub(crate) fn retire(&self) -> u64 {
        self.tat.swap(RETIRED, Ordering::Release)
    }

    /// Whether [`Bucket::retire`] was called; if so, the table that replaced this bucket is
    /// visible to the caller.
    pub(crate) fn is_retired(&self) -> bool {
        self.tat.load(Ordering::Acquire) == RETIRED
    }

    /// Charges this bucket (parameters `new`) with the time that checks racing a swap took
    /// from the bucket it replaced (parameters `old`): `taken` ticks of the old bucket's,
    /// scaled to as many tokens of this one, rounded up. Never up to [`RETIRED`] (a closed
    /// limit's interval scales a charge past it).
    pub(crate) fn charge(&self, taken: u64, old: Params, new: Params) {
        if taken == 0 {
            return;
        }
        let scaled =
            (u128::from(taken) * u128::from(new.interval)).div_ceil(u128::from(old.interval));
        let scaled = u64::try_from(scaled).unwrap_or(u64::MAX);
        // The closure never returns `None`, so the update always succeeds.
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.saturating_add(scaled).min(RETIRED - 1))
            });
    }

    /// Takes between `need` and `want` tokens (`most` while there is room for many such
    /// takes, see [`fit`]) in one CAS, handing back in the same CAS what is left of an old
    /// lease, `returning` (the bucket's time from `front`, or `now` if later, to `end`).
    /// Returns how many were taken and the TAT after them (where the tokens taken end in
    /// the bucket's time), or `None` (having written nothing) when fewer than `need` are
    /// available.
    #[inline]
    pub(crate) fn take(
        &self,
        now: u64,
        need: u64,
        want: u64,
        most: u64,
        returning: Option<(u64, u64)>,
        p: Params,
    ) -> Option<(u64, u64)> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let (taken, new_tat) = fit(returned(tat, now, returning), now, need, want, most, p)?;
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some((taken, new_tat)),
                Err(current) => tat = current,
            }
        }
    }

    /// Hands back what is left at `now` of a lease of the bucket's time from `front` to
    /// `end` (see [`returned`]).
    pub(crate) fn give_back(&self, now: u64, front: u64, end: u64) {
        // The closure never returns `None`, so the update always succeeds.
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(returned(tat, now, Some((front, end))))
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

    /// A take of `want` tokens at most, returning the last `returning` whole tokens below
    /// the TAT: the count taken.
    fn tokens(
        b: &Bucket,
        now: u64,
        need: u64,
        want: u64,
        returning: u64,
        p: Params,
    ) -> Option<u64> {
        let tat = b.tat();
        let lease = (returning > 0).then(|| (tat - returning * p.interval, tat));
        b.take(now, need, want, want, lease, p)
            .map(|(taken, _)| taken)
    }

    #[test]
    fn a_full_bucket_grants_its_burst_then_one_token_per_interval() {
        let b = Bucket::new();
        assert_eq!(tokens(&b, 1000, 1, 100, 0, P), Some(5));
        assert_eq!(tokens(&b, 1000, 1, 1, 0, P), None);
        assert_eq!(b.tat(), 1050);
        assert_eq!(tokens(&b, 1009, 1, 1, 0, P), None);
        assert_eq!(tokens(&b, 1010, 1, 1, 0, P), Some(1));
    }

    #[test]
    fn a_reject_writes_nothing() {
        let b = Bucket::new();
        assert_eq!(tokens(&b, 0, 5, 5, 0, P), Some(5));
        let before = b.tat();
        assert_eq!(tokens(&b, 3, 2, 2, 0, P), None);
        assert_eq!(b.tat(), before);
    }

    #[test]
    fn returned_tokens_count_in_the_same_take() {
        let b = Bucket::new();
        assert_eq!(tokens(&b, 0, 1, 5, 0, P), Some(5));
        // Two of the five went unused: returning them makes room for two more.
        assert_eq!(tokens(&b, 0, 2, 2, 2, P), Some(2));
        assert_eq!(b.tat(), 50);
    }

    #[test]
    fn a_carried_bucket_keeps_its_available_tokens_and_never_gains_a_burst() {
        let b = Bucket::new();
        // Empty the bucket: 0 of 5 available.
        assert_eq!(tokens(&b, 0, 5, 5, 0, P), Some(5));
        let faster = Params {
            interval: 5,
            tau: 50,
        };
        let b = Bucket::starting_at(carried(b.load(), 0, Some(P), faster));
        assert_eq!(
            tokens(&b, 0, 1, 1, 0, faster),
            None,
            "raising a limit hands out nothing at once"
        );
        assert_eq!(
            tokens(&b, 5, 1, 1, 0, faster),
            Some(1),
            "it refills at the new rate"
        );
        // From unlimited to a rate: the new burst, no more.
        let c = Bucket::starting_at(carried(12_345, 100, None, P));
        assert_eq!(tokens(&c, 100, 1, 100, 0, P), Some(5));
    }

    #[test]
    fn a_retired_bucket_grants_nothing_and_takes_nothing_back() {
        let b = Bucket::new();
        assert_eq!(tokens(&b, 0, 1, 3, 0, P), Some(3));
        assert!(!b.is_retired());
        assert_eq!(b.retire(), 30, "the last TAT");
        assert!(b.is_retired());
        assert_eq!(tokens(&b, 1 << 40, 1, 1, 0, P), None, "however long after");
        assert_eq!(
            b.take(0, 1, 1, 1, Some((10, 30)), P),
            None,
            "even with a lease handed back"
        );
        b.give_back(0, 10, 30);
        assert!(b.is_retired(), "a hand-back is lost");
    }

    #[test]
    fn a_charge_takes_as_many_tokens_of_the_new_bucket_rounded_up() {
        let faster = Params {
            interval: 4,
            tau: 40,
        };
        let b = Bucket::starting_at(100);
        // Two old tokens (20 ticks) are two new ones (8 ticks).
        b.charge(20, P, faster);
        assert_eq!(b.load(), 108);
        // Part of an old token is a whole new one.
        b.charge(1, P, faster);
        assert_eq!(b.load(), 109);
        b.charge(0, P, faster);
        assert_eq!(b.load(), 109);
        // To a closed limit (an interval of 2^62 ticks): full for ever, never retired.
        let closed = crate::Limit::closed().params().unwrap();
        b.charge(1000, P, closed);
        assert!(!b.is_retired());
        assert_eq!(tokens(&b, 1 << 50, 1, 1, 0, P), None);
    }

    #[test]
    fn a_roomy_bucket_grants_the_larger_take_and_a_short_one_the_rate_s() {
        // A burst of 100: room for 8 takes of 12, not of 13.
        let p = Params {
            interval: 10,
            tau: 1000,
        };
        let b = Bucket::new();
        assert_eq!(b.take(0, 1, 1, 12, None, p), Some((12, 120)));
        // 88 left: too little for 8 takes of 12, so the rate's single token.
        assert_eq!(b.take(0, 1, 1, 12, None, p), Some((1, 130)));
        assert_eq!(b.tat(), 130);
        assert_eq!(fit(0, 0, 1, 1, 13, p), Some((1, 10)));
        assert_eq!(fit(0, 0, 1, 2, 13, p), Some((2, 20)), "never below `want`");
        assert_eq!(fit(0, 0, 5, 5, 5, p), Some((5, 50)));
        // A lease handed back comes off the TAT before the room is measured.
        assert_eq!(b.take(0, 1, 1, 12, Some((0, 130)), p), Some((12, 120)));
        assert_eq!(b.tat(), 120);
    }

    #[test]
    fn a_lease_goes_back_only_from_the_top_and_only_what_the_clock_has_not_passed() {
        assert_eq!(returned(100, 0, Some((60, 100))), 60);
        assert_eq!(
            returned(100, 80, Some((60, 100))),
            80,
            "the clock passed 60..80"
        );
        assert_eq!(returned(100, 200, Some((60, 100))), 100, "and all of it");
        assert_eq!(
            returned(130, 0, Some((60, 100))),
            130,
            "taken after it: stays"
        );
        assert_eq!(returned(100, 0, None), 100);
        let b = Bucket::new();
        assert_eq!(tokens(&b, 0, 5, 5, 0, P), Some(5));
        b.give_back(20, 30, 50);
        assert_eq!(b.tat(), 30, "two tokens back, at 20 ticks");
    }

    proptest! {
        #[test]
        fn fit_never_exceeds_the_tolerance(
            tat in any::<u64>(), now in 0u64..(1 << 62), need in 1u64..1000, want in 1u64..1000,
            most in 1u64..1000, interval in 1u64..(1 << 40), burst in 1u64..1000,
        ) {
            let tau = interval * burst;
            let p = Params { interval, tau };
            let (want, most) = (want.max(need), most.max(want.max(need)));
            if let Some((taken, new_tat)) = fit(tat, now, need, want, most, p) {
                prop_assert!(taken >= need && taken <= most);
                let share = u128::from(ROOM_SHARE * most) * u128::from(interval);
                prop_assert!(taken <= want || u128::from(tat.max(now)) + share <= u128::from(now + tau),
                    "more than `want` only with room for {} such takes", ROOM_SHARE);
                prop_assert!(new_tat <= now + tau);
                prop_assert_eq!(new_tat, tat.max(now) + taken * interval);
            } else {
                // Refused only when `need` does not fit.
                prop_assert!(tat.max(now) as u128 + need as u128 * interval as u128 > now as u128 + tau as u128);
            }
        }

        #[test]
        fn carrying_over_never_makes_more_tokens_available(
            used in 0u64..100, old_rate in 1u64..crate::MAX_RATE, new_rate in 1u64..crate::MAX_RATE,
            old_burst in 1u64..1000, new_burst in 1u64..1000, now in 0u64..(1 << 50),
        ) {
            let old = crate::Limit::new(old_rate, old_burst, crate::Policy::Hard).unwrap().params().unwrap();
            let new = crate::Limit::new(new_rate, new_burst, crate::Policy::Hard).unwrap().params().unwrap();
            let b = Bucket::new();
            let used = used.min(old_burst);
            if used > 0 {
                prop_assert_eq!(tokens(&b, now, used, used, 0, old), Some(used));
            }
            let b = Bucket::starting_at(carried(b.load(), now, Some(old), new));
            let after = tokens(&b, now, 1, u64::MAX, 0, new).unwrap_or(0);
            prop_assert!(after <= new_burst);
            prop_assert!(after <= old_burst - used, "tokens left before the swap: {}", old_burst - used);
            prop_assert!(after + 1 >= (old_burst - used).min(new_burst), "and the same tokens stay available");
        }
    }
}
