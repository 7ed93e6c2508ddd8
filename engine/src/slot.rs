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
//! - The fields the gate voids (`lease_until`, `refused_at`, `refused_many_at`): the
//!   gate voids them with `Release` swaps, after it moved the generation. The worker writes
//!   them only in the slow path; a write the fast path could answer from (a lease with
//!   tokens left, a refusal, an endless lease) is an `Acquire` swap, after which the
//!   worker loads the generation again and reloads if it moved (other writes, which let
//!   the fast path answer nothing, are plain stores). Two swaps of one field are ordered:
//!   if the worker's comes second, it reads the void, synchronises with it, and so sees
//!   the new generation; if it comes first, the void overwrites it, and a check that starts
//!   after `apply()` (or the throttling `sample()`) returned reads the void or a later
//!   write of the worker's own, which comes from a swap that saw the new generation. So no
//!   such check answers from a record written under the old limit (loom models `swap` and
//!   `throttle`). The fast path's loads are `Relaxed`.
//! - The other lease fields are the worker's alone: `Relaxed`, and plain `std` atomics
//!   even under loom (nothing to model: one thread).
//! - Counter loads and stores are `Relaxed`: each counter has one writer, and coherence of
//!   a single atomic means a later read never sees an older value.
//! - `retired` is stored with `Release` after the worker's last count and loaded with
//!   `Acquire` by the meter, so the counts it then reads are final (loom model `meter`).

use std::sync::Arc;
// The worker's own fields: one thread, nothing for loom to explore.
use std::sync::atomic::{AtomicBool as OwnBool, AtomicU64 as OwnU64};

use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// A clock reading that never comes: no refusal remembered.
const NEVER: u64 = u64::MAX;

/// What a worker counted for one entitlement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) admitted: u64,
    pub(crate) rejected: u64,
}

/// One worker's record of one entitlement. Aligned so that it fills one cache line and
/// shares it with nothing else.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Record {
    /// Tokens of the lease not yet spent.
    lease_left: OwnU64,
    /// The tokens left may be spent at clock readings below this one (0: void).
    lease_until: AtomicU64,
    /// The clock reading at which the bucket refused a single token: until the clock
    /// moves, every request is refused without asking again.
    refused_at: AtomicU64,
    /// The clock reading at which the bucket refused a request of several tokens, and the
    /// smallest such request: until the clock moves, requests that large are refused.
    refused_many_at: AtomicU64,
    refused_many_n: OwnU64,
    /// The lease is the endless one of an entitlement that admits everything.
    open: OwnBool,
    admitted: AtomicU64,
    rejected: AtomicU64,
}

impl Record {
    fn new() -> Self {
        Self {
            lease_left: OwnU64::new(0),
            lease_until: AtomicU64::new(0),
            refused_at: AtomicU64::new(NEVER),
            refused_many_at: AtomicU64::new(NEVER),
            refused_many_n: OwnU64::new(u64::MAX),
            open: OwnBool::new(false),
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
        let left = self.lease_left.load(Ordering::Relaxed);
        if left >= n && now < self.lease_until.load(Ordering::Relaxed) {
            self.lease_left.store(left - n, Ordering::Relaxed);
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
        self.open.load(Ordering::Relaxed)
    }

    /// The tokens left in the lease, to be handed back with the next take; 0 for an
    /// endless lease.
    #[inline]
    pub(crate) fn lease_left(&self) -> u64 {
        if self.open.load(Ordering::Relaxed) {
            0
        } else {
            self.lease_left.load(Ordering::Relaxed)
        }
    }

    /// Starts a lease of `left` tokens that may be spent until clock reading `expires`
    /// (included), and forgets the last refusal. Returns whether the fast path can now
    /// admit from the record (tokens are left).
    #[inline]
    #[must_use = "a record the fast path answers from must be settled"]
    pub(crate) fn lease(&self, left: u64, expires: u64) -> bool {
        self.lease_left.store(left, Ordering::Relaxed);
        self.refused_at.store(NEVER, Ordering::Relaxed);
        self.refused_many_at.store(NEVER, Ordering::Relaxed);
        let until = expires.saturating_add(1);
        if left == 0 {
            // Nothing to admit from: a plain store, which no void needs to see.
            self.lease_until.store(until, Ordering::Relaxed);
            return false;
        }
        self.lease_until.swap(until, Ordering::Acquire);
        true
    }

    /// Drops what is left of the lease, which the worker gave back or voided.
    #[inline]
    pub(crate) fn drop_lease(&self) {
        self.lease_left.store(0, Ordering::Relaxed);
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
    /// the worker settles it. Returns the tokens the dropped lease had left (0 if it was
    /// endless).
    pub(crate) fn reset(&self, open: bool) -> u64 {
        let left = self.lease_left();
        self.open.store(open, Ordering::Relaxed);
        self.refused_at.store(NEVER, Ordering::Relaxed);
        self.refused_many_at.store(NEVER, Ordering::Relaxed);
        if open {
            self.lease_left.store(u64::MAX, Ordering::Relaxed);
            self.lease_until.swap(u64::MAX, Ordering::Acquire);
        } else {
            self.lease_left.store(0, Ordering::Relaxed);
            self.lease_until.store(0, Ordering::Relaxed);
        }
        left
    }

    /// Voids the lease and the refusal, so that the worker's next check takes the slow
    /// path. Called by the gate after it moved the generation (see the module's
    /// Orderings).
    pub(crate) fn void(&self) {
        self.lease_until.swap(0, Ordering::Release);
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

    #[test]
    fn a_lease_admits_until_it_runs_out_or_expires() {
        let r = Record::new();
        assert_eq!(r.decide(0, 1), None, "no lease yet");
        assert!(r.lease(3, 100));
        assert_eq!(r.decide(50, 2), Some(true));
        assert_eq!(r.decide(50, 2), None, "one token left");
        assert_eq!(
            r.decide(100, 1),
            Some(true),
            "the last token, at the expiry"
        );
        assert!(r.lease(3, 100));
        assert_eq!(r.decide(101, 1), None, "expired");
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
        assert_eq!(r.decide(10, 0), None, "nothing asked, nothing refused");
        assert_eq!(r.decide(11, 1), None, "the clock moved");
        assert_eq!(r.decide(11, 9), None, "the clock moved");
        r.refused(11, 5);
        assert_eq!(r.decide(11, 5), Some(false));
        assert_eq!(r.decide(11, 1), None, "the refusal of one was at 10");
        assert!(r.lease(1, 20));
        assert_eq!(r.decide(11, 5), None, "a new lease forgets refusals");
        assert_eq!(r.decide(11, 1), Some(true));
    }

    #[test]
    fn an_open_record_admits_everything_and_has_nothing_to_give_back() {
        let r = Record::new();
        assert!(r.lease(5, 10));
        assert_eq!(r.reset(true), 5, "the dropped lease had five tokens");
        assert_eq!(r.lease_left(), 0);
        for now in [0, 1 << 40, u64::MAX - 1] {
            assert_eq!(r.decide(now, u32::MAX.into()), Some(true));
        }
        assert_eq!(r.reset(false), 0, "an endless lease is not given back");
        assert_eq!(r.decide(0, 1), None);
    }

    #[test]
    fn a_voided_record_answers_nothing_until_written_again() {
        let r = Record::new();
        assert!(r.lease(5, 100));
        r.refused(10, 9);
        r.void();
        assert_eq!(r.decide(10, 1), None, "the lease is void");
        assert_eq!(r.decide(10, 9), None, "the refusal is void");
        assert_eq!(r.lease_left(), 5, "the tokens are still there to hand back");
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
