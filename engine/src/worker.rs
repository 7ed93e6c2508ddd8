//! The hot path: a worker handle per packet thread.
//!
//! A check looks at the worker's record of the entitlement, one cache line of the
//! worker's own: a token of the lease, or a refusal the bucket made at this same clock
//! reading, answers at once, and is counted in the same record. That is the inlined fast
//! path. The rest is a cold call: it reloads the table if the generation moved, and takes
//! a new lease from the shared bucket in one CAS, or is refused without writing anything
//! shared. When a limit or a throttle changes, the gate voids the records concerned in
//! every worker, so the fast path need not look at the generation. Entitlements that admit
//! everything (unlimited, monitor, steady-state while not throttled) hold an endless
//! lease, so they take the same path. No lookup, hashing, allocation, syscall or lock.
//!
//! ```
//! use entitle_engine::{FakeClock, Gate, Limit};
//!
//! let mut builder = Gate::builder(FakeClock::new());
//! let tps = builder.register("PAR-TPS", Limit::hard(100)?)?;
//! let gate = builder.build();
//! let mut worker = gate.worker();
//! let admitted = (0..1000).filter(|_| worker.check(tps).is_admit()).count();
//! assert_eq!(admitted, 100, "the burst of one second, then the clock stands still");
//! # Ok::<(), entitle_engine::Error>(())
//! ```
//!
//! # Leases
//! A worker takes a lease from the shared bucket in one CAS and spends it without
//! touching the bucket again: `max(1, rate / 10,000)` tokens (at most 64), or 64 at any
//! rate while the bucket has room for eight such leases, so that at licence-sized rates
//! too (1,000/s, where the rate alone gives one token) an admit is usually a token of the
//! lease. A lease is the bucket's time the take set aside (`tokens x interval`, after the
//! tokens the take admitted at once). Each token spent costs one interval of it, taken at
//! its front, which the clock pushes along as it passes: a token is placed as GCRA places
//! it, at the later of the clock and the previous one, and the lease holds only its time
//! still ahead of the clock. So the workers' leases and the bucket together never admit
//! more than the bucket alone would in any window (the test `leases`, and the proptests'
//! window bound), whatever the lease's size. What is left of a lease goes back to the
//! bucket with the worker's next take or [`Worker::release`], if nothing was taken after
//! it; otherwise it stays taken and its time passes unused (handing it back from under
//! another lease would move that lease's time back into the past).
//!
//! # Refusals
//! When the bucket refuses `n` tokens at a clock reading, the worker refuses requests of
//! `n` or more on its own until the clock moves (with the coarse clock, one 100 us tick:
//! the clock's own resolution). So a reject under overload reads nothing shared; tokens
//! another worker gives back meanwhile are seen at the next reading.
//!
//! # Orderings
//! The slow path loads the generation with `Acquire`, pairing with the `Release`
//! increments in [`crate::Gate::apply`], after the new table is stored, and in
//! [`crate::Gate::sample`], after a throttle flag is stored: a check that starts after
//! `apply()` or the throttling `sample()` returned finds its record voided, takes the slow
//! path, sees a new generation, and so reloads the table and the flags (loom models `swap`
//! and `throttle`). How a void and the worker's own writes to a record are ordered is in
//! the Orderings of the crate's `slot` module.

use std::sync::Arc;

use crate::Gate;
use crate::clock::Clock;
use crate::gcra::ticks;
use crate::limit::MAX_LEASE;
use crate::slot::{Record, WorkerSlot};
use crate::sync::Ordering;
use crate::table::{Entitlement, LimitTable, Mode};

/// The answer of the gate for one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a check that is not acted on enforces nothing"]
pub enum Decision {
    /// Go ahead.
    Admit,
    /// Over the licensed rate: the packet path drops or rejects the transaction.
    Reject,
}

impl Decision {
    #[inline(always)]
    fn from_admit(admit: bool) -> Self {
        if admit {
            Decision::Admit
        } else {
            Decision::Reject
        }
    }

    /// Whether the transaction was admitted.
    #[inline(always)]
    pub fn is_admit(self) -> bool {
        self == Decision::Admit
    }
}

/// A per-thread handle on a [`Gate`]: checks, leases and counters. Make one per packet
/// thread with [`Gate::worker`].
///
/// A worker moves to its thread, and the gate is shared by all of them:
///
/// ```
/// use entitle_engine::{CoarseClock, Gate, Worker};
/// fn send<T: Send>() {}
/// fn send_sync<T: Send + Sync>() {}
/// send::<Worker<CoarseClock>>();
/// send_sync::<Gate<CoarseClock>>();
/// ```
///
/// but one worker is never shared, since its counters have a single writer:
///
/// ```compile_fail,E0499
/// use entitle_engine::{FakeClock, Gate, Limit};
/// let mut builder = Gate::builder(FakeClock::new());
/// let tps = builder.register("PAR-TPS", Limit::hard(100).unwrap()).unwrap();
/// let mut worker = builder.build().worker();
/// std::thread::scope(|s| {
///     s.spawn(|| worker.check(tps));
///     s.spawn(|| worker.check(tps));
/// });
/// ```
pub struct Worker<C: Clock> {
    gate: Arc<Gate<C>>,
    clock: C,
    generation: u64,
    /// This worker's record of each entitlement, in handle order.
    records: Arc<[Record]>,
    table: Arc<LimitTable>,
    slot: Arc<WorkerSlot>,
}

impl<C: Clock> Worker<C> {
    pub(crate) fn new(gate: Arc<Gate<C>>, slot: Arc<WorkerSlot>, records: Arc<[Record]>) -> Self {
        let generation = gate.generation.load(Ordering::Acquire);
        let table = gate.table.load_full();
        assert_eq!(
            records.len(),
            table.len(),
            "a record for each entitlement of the gate"
        );
        let mut worker = Self {
            clock: gate.clock.clone(),
            generation,
            records,
            table,
            gate,
            slot,
        };
        worker.reload(generation);
        worker
    }

    /// Admits or rejects one transaction of `entitlement`.
    ///
    /// # Panics
    /// If `entitlement` is beyond this gate's entitlements (a handle of another gate).
    #[inline(always)]
    pub fn check(&mut self, entitlement: Entitlement) -> Decision {
        self.check_n(entitlement, 1)
    }

    /// Admits or rejects `n` transactions of `entitlement` at once: all or none. More than
    /// the burst is always rejected.
    ///
    /// # Panics
    /// If `entitlement` is beyond this gate's entitlements (a handle of another gate).
    #[inline(always)]
    pub fn check_n(&mut self, entitlement: Entitlement, n: u32) -> Decision {
        // The fast path: the answer is in the worker's record (which the gate voids when the
        // entitlement's limit or throttle changes).
        let index = entitlement.index();
        let n = u64::from(n);
        if let Some(record) = self.records.get(index)
            && let Some(admit) = record.decide(self.clock.now(), n)
        {
            record.count(admit, n);
            return Decision::from_admit(admit);
        }
        self.check_slow(index, n)
    }

    /// Reloads a changed table, re-arms a voided endless lease, or asks the shared bucket.
    #[cold]
    #[inline(never)]
    fn check_slow(&mut self, index: usize, n: u64) -> Decision {
        let now = self.clock.now();
        loop {
            let generation = self.gate.generation.load(Ordering::Acquire);
            if generation != self.generation {
                self.reload(generation);
            }
            // Panics here, not in the fast path, for an entitlement of another gate.
            let record = &self.records[index];
            if record.is_open() {
                // Under the table this worker now has, the entitlement admits everything.
                // Its endless lease is fresh from the reload, or was voided by a change whose
                // table the worker had already loaded: re-arm it.
                record.reset(true);
                record.count(true, n);
                self.settle();
                return Decision::Admit;
            }
            let entry = &self.table.entries[index];
            let (want, most) = (entry.lease.max(n), MAX_LEASE.max(n));
            let (now_ticks, interval) = (ticks(now), entry.params.interval);
            let held = record.held().map(|h| (h.front, h.end));
            let bucket = &self.table.buckets[index];
            let (admit, answers) = match bucket.take(now_ticks, n, want, most, held, entry.params) {
                Some((taken, end)) => {
                    // The lease is the top `taken - n` tokens of the bucket's time just
                    // taken: the `n` admitted now come first, as GCRA would place them.
                    let front = end.saturating_sub((taken - n).saturating_mul(interval));
                    (true, record.lease(front, end, interval))
                }
                // A swap replaced the bucket after this worker loaded its table: the new
                // table is visible now (a new generation, see the module docs of `gate`);
                // ask its bucket.
                None if bucket.is_retired()
                    && self.gate.generation.load(Ordering::Acquire) != self.generation =>
                {
                    continue;
                }
                None => {
                    record.refused(now, n);
                    (false, true)
                }
            };
            record.count(admit, n);
            if answers {
                self.settle();
            }
            return Decision::from_admit(admit);
        }
    }

    /// After writing a record the fast path can answer from: if the gate voided it first,
    /// the write saw the new generation, so look at the generation again (see the
    /// Orderings of the crate's `slot` module).
    fn settle(&mut self) {
        let generation = self.gate.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.reload(generation);
        }
    }

    /// The generation moved: `apply` installed a table, or the sampler turned a
    /// steady-state entitlement's throttle on or off. The leases are dropped: they were
    /// taken under the old parameters, and `apply` already counted them when it carried the
    /// buckets over (after a throttle change, at most one lease per entitlement goes
    /// unused).
    fn reload(&mut self, mut generation: u64) {
        loop {
            self.table = self.gate.table.load_full();
            self.generation = generation;
            self.reset_records();
            // The endless leases just written must not outlive a void that raced them.
            generation = self.gate.generation.load(Ordering::Acquire);
            if generation == self.generation {
                return;
            }
        }
    }

    /// Sets every record from the table: an endless lease where everything is admitted,
    /// an empty one elsewhere.
    fn reset_records(&self) {
        for ((record, entry), throttled) in self
            .records
            .iter()
            .zip(self.table.entries.iter())
            .zip(self.gate.throttled.iter())
        {
            let open = match entry.mode {
                Mode::Open => true,
                Mode::SteadyState => !throttled.load(Ordering::Relaxed),
                Mode::Bucket => false,
            };
            record.reset(open);
        }
    }

    /// Gives every unused leased token back to the buckets, for a thread about to idle.
    pub fn release(&mut self) {
        let current = self.gate.generation.load(Ordering::Acquire) == self.generation;
        let now = ticks(self.clock.now());
        for (index, record) in self.records.iter().enumerate() {
            let Some(held) = record.held() else { continue };
            if current {
                self.table.buckets[index].give_back(now, held.front, held.end);
            }
            record.drop_lease();
        }
    }

    /// The gate this worker checks against.
    pub fn gate(&self) -> &Arc<Gate<C>> {
        &self.gate
    }
}

impl<C: Clock> Drop for Worker<C> {
    fn drop(&mut self) {
        self.release();
        self.slot.retire();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{FakeClock, Gate, Limit, MAX_LEASE, Policy};

    #[test]
    fn a_roomy_bucket_leases_many_tokens_at_a_licence_sized_rate() {
        let clock = FakeClock::new();
        let mut builder = Gate::builder(clock.clone());
        // 1,000/s: the rate alone gives a lease of one token.
        let e = builder
            .register("PAR-TPS", Limit::new(1_000, 1_000, Policy::Hard).unwrap())
            .unwrap();
        let gate = builder.build();
        let interval = gate.table.load_full().entries[0].params.interval;
        let tat = || gate.table.load_full().buckets[0].tat();
        let mut worker = gate.worker();
        assert!(worker.check(e).is_admit());
        assert_eq!(tat(), MAX_LEASE * interval, "one take of 64 tokens");
        // Handed back 10 ms later, what the clock has not passed of it: the bucket is as
        // full as if the one token had been taken alone.
        clock.advance(Duration::from_millis(10));
        worker.release();
        assert_eq!(tat(), 10 * interval);
        for _ in 0..MAX_LEASE {
            assert!(worker.check(e).is_admit());
        }
        assert_eq!(tat(), (10 + MAX_LEASE) * interval, "one take for 64 admits");
        // Leases of 64 until the one that leaves less than 512 tokens.
        while tat() < (10 + 512) * interval {
            assert!(worker.check(e).is_admit());
        }
        // The worker holds 63 of it; a second one finds no room for eight more such
        // leases: a token a take.
        let mut other = gate.worker();
        assert!(other.check(e).is_admit());
        assert!(other.check(e).is_admit());
        assert_eq!(tat(), (10 + 514) * interval);
        // The first worker's lease is no longer the top of the bucket's time: it stays
        // taken, and passes unused.
        worker.release();
        assert_eq!(tat(), (10 + 514) * interval);
    }
}
