//! A worker's slot: one record per entitlement, each on a cache line of its own, holding
//! everything a check of that entitlement reads or writes in the worker's memory: the
//! lease, the last refusal, and the admitted and rejected counters. A check touches one
//! line through one pointer.
//!
//! The lease and the refusal are the worker's, with one exception: when a limit changes
//! (`apply`) or a throttle turns on or off (`sample`), the gate *voids* the records of the
//! entitlements concerned in every worker's slot, so that their next check finds nothing
//! to answer from and takes the slow path, which sees the new generation and reloads. The
//! fast path therefore does not look at the generation. The counters have one writer, the
//! worker, and one reader, the meter (under the gate's cold-path lock). So the records are
//! shared (`Arc`) and every field is an atomic: on x86-64 and AArch64 a `Relaxed` load or
//! store is a plain `mov`, and the worker pays nothing for it.
//!
//! An entitlement that admits everything (unlimited, monitor, steady-state while not
//! throttled) holds a lease that never runs out or expires, so the hot path does not ask
//! which kind of entitlement it checks.
//!
//! # Orderings
//! - The fields the gate voids (`lease_interval`, `refused_at`, `refused_many_at`): the
//!   gate voids them with `Release` swaps, after it moved the generation. The worker writes
//!   them only in the slow path; a write the fast path could answer from (a lease that
//!   covers a token, a refusal, an endless lease) is an `Acquire` swap, after which the
//!   worker loads the generation again and reloads if it moved (other writes, which let
//!   the fast path answer nothing, are plain stores). Two swaps of one field are ordered:
//!   if the worker's comes second, it reads the void, synchronises with it, and so sees
//!   the new generation; if it comes first, the void overwrites it, and a check that starts
//!   after `apply()` (or the throttling `sample()`) returned reads the void or a later
//!   write of the worker's own, which comes from a swap that saw the new generation. So no
//!   such check answers from a record written under the old limit (loom models `swap` and
//!   `throttle`). The fast path's loads are `Relaxed`.
//! - The other lease fields are the worker's alone: `Relaxed`, and plain `std` atomics
//!   even under loom (nothing to model: one thread). The fast path writes only those
//!   (`lease_front`) and the counters, so it never overwrites a void.
//! - Counter loads and stores are `Relaxed`: each counter has one writer, and coherence of
//!   a single atomic means a later read never sees an older value.
//! - `retired` is stored with `Release` after the worker's last count and loaded with
//!   `Acquire` by the meter, so the counts it then reads are final (loom model `meter`).

use std::sync::Arc;
// The worker's own fields: one thread, nothing for loom to explore.
use std::sync::atomic::AtomicU64 as OwnU64;

use crate::gcra::TICK_SHIFT;
use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// A clock reading that never comes: no refusal remembered.
const NEVER: u64 = u64::MAX;

/// The `lease_end` of the endless lease of an entitlement that admits everything: far
/// beyond any clock, yet a void's cost (`VOID`) never fits below it.
const ENDLESS: u64 = 1 << 62;

/// The `lease_interval` of a voided record: no lease covers a token that costs this much.
const VOID: u64 = u64::MAX;

/// What a worker counted for one entitlement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) admitted: u64,
    pub(crate) rejected: u64,
}

/// A lease to hand back: the bucket's time from `front` (or the clock, if later) to `end`,
/// in ticks. The bucket takes it back only while nothing was taken after it (see
/// `gcra::Bucket::take`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) front: u64,
    pub(crate) end: u64,
}

/// One worker's record of one entitlement. Aligned so that it fills one cache line and
/// shares it with nothing else.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Record {
    /// The lease: the bucket's time from `lease_front` to `lease_end` (ticks), which the
    /// bucket set aside for this worker. A token costs `lease_interval` of it, taken at
    /// the front, which the clock pushes along as it passes, as GCRA places a token at the
    /// later of the TAT and the clock. [`ENDLESS`] for the endless lease, 0 for none.
    lease_front: OwnU64,
    lease_end: OwnU64,
    /// Ticks of the lease a token costs: the bucket's interval (0 for the endless lease;
    /// [`VOID`] when voided or without a lease, so that nothing is admitted for free).
    lease_interval: AtomicU64,
    /// The clock reading at which the bucket refused a single token: until the clock
    /// moves, every request is refused without asking again.
    refused_at: AtomicU64,
    /// The clock reading at which the bucket refused a request of several tokens, and the
    /// smallest such request: until the clock moves, requests that large are refused.
    refused_many_at: AtomicU64,
    refused_many_n: OwnU64,
    admitted: AtomicU64,
    rejected: AtomicU64,
}

impl Record {
    fn new() -> Self {
        Self {
            lease_front: OwnU64::new(0),
            lease_end: OwnU64::new(0),
            lease_interval: AtomicU64::new(VOID),
            refused_at: AtomicU64::new(NEVER),
            refused_many_at: AtomicU64::new(NEVER),
            refused_many_n: OwnU64::new(u64::MAX),
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// The answer the worker can give on its own at clock reading `now`: repeat a refusal
    /// made at this same reading, or admit from the lease; `None` when only the bucket can
    /// tell. Spends the tokens it admits.
    ///
    /// The refusal is looked at first, which makes the reject path as short as the admit
    /// path; the order changes no answer, because a request the bucket refused could not
    /// be served from the lease at that reading, and the lease only shrinks until the next
    /// take, which forgets the refusal. For a single token (`check`, `n` a constant 1) the
    /// refusal is one comparison.
    #[inline(always)]
    pub(crate) fn decide(&self, now: u64, n: u64) -> Option<bool> {
        if n > 0 && now == self.refused_at.load(Ordering::Relaxed)
            || n > 1
                && now == self.refused_many_at.load(Ordering::Relaxed)
                && n >= self.refused_many_n.load(Ordering::Relaxed)
        {
            return Some(false);
        }
        let cost = n.saturating_mul(self.lease_interval.load(Ordering::Relaxed));
        // The clock's ticks (a `u64` of them lasts 36 years, see `gcra`).
        let front = self
            .lease_front
            .load(Ordering::Relaxed)
            .max(now << TICK_SHIFT);
        if self.lease_end.load(Ordering::Relaxed).saturating_sub(front) >= cost {
            self.lease_front.store(front + cost, Ordering::Relaxed);
            Some(true)
        } else {
            None
        }
    }

    /// Counts `n` transactions, admitted or rejected.
    #[inline(always)]
    pub(crate) fn count(&self, admitted: bool, n: u64) {
        let counter = if admitted {
            &self.admitted
        } else {
            &self.rejected
        };
        // Single writer: a plain load and store, no read-modify-write.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Whether the record holds the endless lease of an entitlement that admits
    /// everything (perhaps voided since).
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.lease_end.load(Ordering::Relaxed) == ENDLESS
    }

    /// The lease to hand back with the next take, if any (never the endless one).
    #[inline]
    pub(crate) fn held(&self) -> Option<Held> {
        let (front, end) = (
            self.lease_front.load(Ordering::Relaxed),
            self.lease_end.load(Ordering::Relaxed),
        );
        (front < end && end != ENDLESS).then_some(Held { front, end })
    }

    /// Starts a lease of the bucket's time from `front` to `end` (ticks), a token costing
    /// `interval` of it, and forgets the last refusal. Returns whether the fast path can
    /// now admit from the record (a token is held).
    #[inline]
    #[must_use = "a record the fast path answers from must be settled"]
    pub(crate) fn lease(&self, front: u64, end: u64, interval: u64) -> bool {
        self.lease_front.store(front, Ordering::Relaxed);
        // A TAT never comes near `ENDLESS` (9 years of ticks) but for a broken clock.
        self.lease_end
            .store(end.min(ENDLESS - 1), Ordering::Relaxed);
        self.refused_at.store(NEVER, Ordering::Relaxed);
        self.refused_many_at.store(NEVER, Ordering::Relaxed);
        if end.saturating_sub(front) < interval {
            // Nothing to admit from: a plain store, which no void needs to see.
            self.lease_interval.store(interval, Ordering::Relaxed);
            return false;
        }
        self.lease_interval.swap(interval, Ordering::Acquire);
        true
    }

    /// Drops what is left of the lease, which the worker gave back or voided.
    #[inline]
    pub(crate) fn drop_lease(&self) {
        self.lease_front.store(0, Ordering::Relaxed);
        self.lease_end.store(0, Ordering::Relaxed);
    }

    /// Remembers that the bucket refused `n` tokens at clock reading `now`. The fast path
    /// can then reject from the record, so the worker settles it.
    #[inline]
    pub(crate) fn refused(&self, now: u64, n: u64) {
        if n <= 1 {
            // Nothing fits: not even a single token (a refusal of none is one of all).
            self.refused_at.swap(now, Ordering::Acquire);
            return;
        }
        let smallest = if self.refused_many_at.load(Ordering::Relaxed) == now {
            self.refused_many_n.load(Ordering::Relaxed).min(n)
        } else {
            n
        };
        self.refused_many_n.store(smallest, Ordering::Relaxed);
        self.refused_many_at.swap(now, Ordering::Acquire);
    }

    /// Drops the lease and the refusal; an `open` record gets the endless lease, and then
    /// the worker settles it.
    pub(crate) fn reset(&self, open: bool) {
        self.refused_at.store(NEVER, Ordering::Relaxed);
        self.refused_many_at.store(NEVER, Ordering::Relaxed);
        self.lease_front.store(0, Ordering::Relaxed);
        if open {
            self.lease_end.store(ENDLESS, Ordering::Relaxed);
            self.lease_interval.swap(0, Ordering::Acquire);
        } else {
            self.lease_end.store(0, Ordering::Relaxed);
            self.lease_interval.store(VOID, Ordering::Relaxed);
        }
    }

    /// Voids the lease and the refusal, so that the worker's next check takes the slow
    /// path. Called by the gate after it moved the generation (see the module's
    /// Orderings).
    pub(crate) fn void(&self) {
        self.lease_interval.swap(VOID, Ordering::Release);
        self.refused_at.swap(NEVER, Ordering::Release);
        self.refused_many_at.swap(NEVER, Ordering::Release);
    }

    fn read(&self) -> Counts {
        Counts {
            admitted: self.admitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// One worker's records, as the meter sees them.
#[derive(Debug)]
pub(crate) struct WorkerSlot {
    records: Arc<[Record]>,
    retired: AtomicBool,
}

impl WorkerSlot {
    /// A slot of `entitlements` records, and the records for the worker's hot path.
    pub(crate) fn new(entitlements: usize) -> (Arc<Self>, Arc<[Record]>) {
        let records: Arc<[Record]> = (0..entitlements).map(|_| Record::new()).collect();
        let slot = Arc::new(Self {
            records: Arc::clone(&records),
            retired: AtomicBool::new(false),
        });
        (slot, records)
    }

    /// Marks the slot final; the owner counts nothing after this.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether the owner is gone and the counts are final.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The counts of entitlement `index`.
    pub(crate) fn read(&self, index: usize) -> Counts {
        self.records[index].read()
    }

    /// Voids the worker's record of entitlement `index` (see [`Record::void`]).
    pub(crate) fn void(&self, index: usize) {
        self.records[index].void();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token's cost in the tests: 10 ns.
    const I: u64 = 160;

    /// The tick of clock reading `nanos`.
    fn at(nanos: u64) -> u64 {
        nanos << TICK_SHIFT
    }

    #[test]
    fn a_lease_admits_while_its_time_ahead_of_the_clock_covers_a_token() {
        let r = Record::new();
        assert_eq!(r.decide(0, 1), None, "no lease yet");
        // Three tokens of 10 ns set aside from 100 ns to 130 ns.
        assert!(r.lease(at(100), at(130), I));
        assert_eq!(r.decide(100, 2), Some(true));
        assert_eq!(r.decide(100, 2), None, "one token left");
        assert_eq!(r.decide(121, 1), None, "the clock passed part of it");
        assert_eq!(r.decide(120, 1), Some(true), "the last one");
        assert!(r.lease(at(100), at(130), I));
        assert_eq!(r.decide(105, 3), None, "the clock ate half a token");
        assert_eq!(r.decide(105, 2), Some(true));
        assert_eq!(r.decide(110, 1), None, "and the clock the rest");
        // A lease set aside ahead of the clock (the bucket's TAT was ahead) keeps it all.
        assert!(r.lease(at(500), at(530), I));
        assert_eq!(r.decide(100, 3), Some(true));
        assert_eq!(r.decide(100, 1), None);
        assert!(!r.lease(at(100), at(110) - 1, I), "less than a token");
        assert_eq!(r.decide(100, 1), None);
        assert!(r.lease(at(100), at(110), I));
        assert_eq!(r.decide(100, 0), Some(true), "nothing asked");
        assert_eq!(r.decide(1 << 59, 1), None, "long gone");
    }

    #[test]
    fn the_lease_to_hand_back_is_what_is_left_of_it() {
        let r = Record::new();
        assert_eq!(r.held(), None);
        assert!(r.lease(at(100), at(140), I));
        assert_eq!(r.decide(110, 1), Some(true));
        assert_eq!(
            r.held(),
            Some(Held {
                front: at(120),
                end: at(140)
            }),
            "the token is placed at the clock"
        );
        r.drop_lease();
        assert_eq!(r.held(), None, "nothing left");
        r.reset(true);
        assert_eq!(r.held(), None, "an endless lease is not given back");
    }

    #[test]
    fn a_refusal_holds_until_the_clock_moves_for_requests_as_large() {
        let r = Record::new();
        r.refused(10, 4);
        assert_eq!(r.decide(10, 4), Some(false));
        assert_eq!(r.decide(10, 9), Some(false));
        assert_eq!(r.decide(10, 3), None, "a smaller request may fit");
        r.refused(10, 2);
        assert_eq!(r.decide(10, 3), Some(false), "the smallest refusal counts");
        assert_eq!(r.decide(10, 1), None);
        r.refused(10, 1);
        assert_eq!(r.decide(10, 1), Some(false), "not even one token fits");
        assert_eq!(
            r.decide(10, 0),
            Some(true),
            "nothing asked, nothing refused"
        );
        assert_eq!(r.decide(11, 1), None, "the clock moved");
        assert_eq!(r.decide(11, 9), None, "the clock moved");
        r.refused(11, 5);
        assert_eq!(r.decide(11, 5), Some(false));
        assert_eq!(r.decide(11, 1), None, "the refusal of one was at 10");
        assert!(r.lease(at(11), at(21), I));
        assert_eq!(r.decide(11, 5), None, "a new lease forgets refusals");
        assert_eq!(r.decide(11, 1), Some(true));
    }

    #[test]
    fn an_open_record_admits_everything_and_has_nothing_to_give_back() {
        let r = Record::new();
        assert!(r.lease(0, at(50), I));
        r.reset(true);
        assert_eq!(r.held(), None, "the lease is dropped, not given back");
        // Even beyond any clock: the endless lease costs nothing.
        for now in [0, 1 << 40, 1 << 59, u64::MAX - 1] {
            assert_eq!(r.decide(now, u32::MAX.into()), Some(true));
        }
        assert!(r.is_open());
        r.reset(false);
        assert!(!r.is_open());
        assert_eq!(r.decide(0, 1), None);
    }

    #[test]
    fn a_voided_record_answers_nothing_until_written_again() {
        let r = Record::new();
        assert!(r.lease(at(10), at(60), I));
        r.refused(10, 9);
        r.void();
        assert_eq!(r.decide(10, 1), None, "the lease is void");
        assert_eq!(r.decide(10, 9), None, "the refusal is void");
        assert_eq!(
            r.held(),
            Some(Held {
                front: at(10),
                end: at(60)
            }),
            "the time is still there to hand back"
        );
        r.refused(10, 1);
        assert_eq!(r.decide(10, 1), Some(false));
        r.reset(true);
        r.void();
        assert!(
            r.is_open(),
            "voided, but still open under the worker's table"
        );
        assert_eq!(r.decide(10, 1), None);
        r.reset(true);
        assert_eq!(r.decide(10, 1), Some(true), "re-armed");
    }

    #[test]
    fn counts_land_in_the_record() {
        let (slot, records) = WorkerSlot::new(2);
        records[1].count(true, 3);
        records[1].count(false, 2);
        records[1].count(true, 1);
        assert_eq!(slot.read(0), Counts::default());
        assert_eq!(
            slot.read(1),
            Counts {
                admitted: 4,
                rejected: 2
            }
        );
        assert!(!slot.is_retired());
        slot.retire();
        assert!(slot.is_retired());
    }
}
