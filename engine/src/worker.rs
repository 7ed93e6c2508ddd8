//! The hot path: a worker handle per packet thread.
//!
//! A check loads the table generation (one shared, rarely written cache line), and only
//! when it changed reloads the table. Then, for a counted entitlement, it spends a token of
//! the worker's lease, or takes a new lease from the shared bucket in one CAS. It counts
//! the outcome in the worker's own slot. No lookup, hashing, allocation, syscall or lock.
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
//! A worker may take up to `max(1, rate / 10,000)` tokens (at most 64) in one CAS and spend
//! them without touching the shared bucket. A lease expires once the bucket would have
//! earned it back (`tokens x interval` after it was taken), so tokens are never spent long
//! after they were granted; its unused tokens go back to the bucket in the next CAS the
//! worker makes, or when the worker is dropped. The bucket never grants more than its rate
//! and burst allow, and workers admit no more than the bucket granted.
//!
//! # Orderings
//! The generation is loaded with `Acquire`, pairing with the `Release` increment in
//! [`crate::Gate::apply`], after the new table is stored: a check that starts after
//! `apply()` returns sees the new generation and so loads the new table (loom model `swap`).

use std::sync::Arc;

use crate::Gate;
use crate::clock::Clock;
use crate::gcra::ticks;
use crate::meter::WorkerSlot;
use crate::sync::Ordering;
use crate::table::{Entitlement, Entry, LimitTable, Mode};

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
    /// Whether the transaction was admitted.
    #[inline(always)]
    pub fn is_admit(self) -> bool {
        self == Decision::Admit
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Lease {
    left: u64,
    /// Ticks after which the tokens left may no longer be spent.
    expires: u64,
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
    table: Arc<LimitTable>,
    generation: u64,
    leases: Box<[Lease]>,
    slot: Arc<WorkerSlot>,
}

impl<C: Clock> Worker<C> {
    pub(crate) fn new(gate: Arc<Gate<C>>, slot: Arc<WorkerSlot>) -> Self {
        let generation = gate.generation.load(Ordering::Acquire);
        let table = gate.table.load_full();
        Self {
            clock: gate.clock.clone(),
            leases: vec![Lease::default(); table.len()].into_boxed_slice(),
            table,
            generation,
            gate,
            slot,
        }
    }

    /// Admits or rejects one transaction of `entitlement`.
    ///
    /// # Panics
    /// If `entitlement` belongs to another gate with fewer entitlements.
    #[inline]
    pub fn check(&mut self, entitlement: Entitlement) -> Decision {
        self.check_n(entitlement, 1)
    }

    /// Admits or rejects `n` transactions of `entitlement` at once: all or none. More than
    /// the burst is always rejected.
    ///
    /// # Panics
    /// If `entitlement` belongs to another gate with fewer entitlements.
    #[inline]
    pub fn check_n(&mut self, entitlement: Entitlement, n: u32) -> Decision {
        let generation = self.gate.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.reload(generation);
        }
        let index = entitlement.index();
        let n = u64::from(n);
        let entry = &self.table.entries[index];
        let admit = match entry.mode {
            Mode::Open => true,
            Mode::SteadyState if !self.gate.buckets[index].throttled.load(Ordering::Relaxed) => {
                true
            }
            Mode::SteadyState | Mode::Bucket => {
                let now = ticks(self.clock.now());
                let lease = &mut self.leases[index];
                if lease.left >= n && now <= lease.expires {
                    lease.left -= n;
                    true
                } else {
                    let entry = *entry;
                    self.take(index, &entry, n, now)
                }
            }
        };
        self.slot.count(index, admit, n);
        if admit {
            Decision::Admit
        } else {
            Decision::Reject
        }
    }

    /// Takes a new lease, returning what is left of the old one in the same CAS. Writes
    /// nothing when it rejects.
    #[inline]
    fn take(&mut self, index: usize, entry: &Entry, n: u64, now: u64) -> bool {
        let lease = &mut self.leases[index];
        let want = entry.lease.max(n);
        match self.gate.buckets[index].take(now, n, want, lease.left, entry.params) {
            Some(taken) => {
                lease.left = taken - n;
                lease.expires = now.saturating_add(taken * entry.params.interval);
                true
            }
            None => false,
        }
    }

    /// The table changed: drop the leases, which were taken under the old parameters (and
    /// which `apply` already counted when it carried the buckets over), and load the table.
    #[cold]
    fn reload(&mut self, generation: u64) {
        self.leases.fill(Lease::default());
        self.table = self.gate.table.load_full();
        self.generation = generation;
    }

    /// Gives every unused leased token back to the buckets, for a thread about to idle.
    pub fn release(&mut self) {
        if self.gate.generation.load(Ordering::Acquire) != self.generation {
            self.leases.fill(Lease::default());
            return;
        }
        for (index, lease) in self.leases.iter_mut().enumerate() {
            if lease.left > 0 {
                self.gate.buckets[index].give_back(lease.left, self.table.entries[index].params);
                lease.left = 0;
            }
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
