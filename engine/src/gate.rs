//! The gate: the entitlements of one packet server, their buckets, their limit table, and
//! the cold-path operations on them (workers, `apply`, sampling, snapshots).
//!
//! ```
//! use entitle_engine::{FakeClock, Gate, Limit, Policy};
//! use std::time::Duration;
//!
//! let clock = FakeClock::new();
//! let mut builder = Gate::builder(clock.clone());
//! let tps = builder.register("PAR-TPS", Limit::new(100, 10, Policy::Hard)?)?;
//! let events = builder.event_channel();
//! let gate = builder.build();
//!
//! let mut worker = gate.worker();
//! let admitted = (0..200).filter(|_| worker.check(tps).is_admit()).count();
//! assert_eq!(admitted, 10, "a burst of 10");
//! clock.advance(Duration::from_secs(1));
//! gate.sample();
//! assert!(events.try_iter().any(|e| e.tag == "PAR-TPS"), "offered 200% of the licence");
//! # Ok::<(), entitle_engine::Error>(())
//! ```
//!
//! # Hot swap
//! [`Gate::apply`] installs a new table while checks run. Each table holds a bucket per
//! entitlement; where a limit changes, the new table gets a new bucket that starts with
//! the tokens the old one had available, capped at the new burst, and refills at the new
//! rate. So raising a limit makes more tokens arrive per second but hands out no burst at
//! once, and lowering it takes effect at once. Tokens that workers held in leases under the
//! old limit are dropped (at most one lease per worker and entitlement, counted as used).
//!
//! A check that *races* `apply` (it loaded the table before the swap) takes from the old
//! bucket with the old parameters, as it would have before the swap. After publishing the
//! table, `apply` retires the old bucket, so that a take from it fails and the worker
//! reloads and asks the new one, and charges the new bucket with what was taken from the
//! old one since it was carried over. A lease handed back to a retired bucket is lost. So
//! no take is ever decided by one limit's parameters against another's bucket (loom models
//! `swap::a_check_racing_a_lowered_limit_*` and `swap::a_lease_returned_during_a_rate_raise_*`).
//!
//! # Orderings
//! `apply` stores the table and then increments the generation with `Release`; workers load
//! the generation with `Acquire` in their slow path (see [`crate::worker`]). `apply` calls
//! are serialised by a mutex so the generation and the table move together. `sample` also
//! increments the generation (`Release`) after it stores the `throttled` flags it changed,
//! so that workers reload and copy the flags into their records; an increment that comes
//! with no new table only makes workers reload the same one. After either increment, and
//! under the meter's lock (so that a worker registered meanwhile is either among the slots
//! or reads the new generation when it is made), the gate voids every worker's record of
//! each entitlement whose limit or throttle changed, with `Release` swaps; the worker's
//! side of that is in the crate's `slot` module. Only then does `apply` retire the old
//! buckets (`Release`), so a worker that finds one retired (`Acquire`) sees the new
//! generation and reloads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::clock::{Clock, CoarseClock};
use crate::gcra::{self, Bucket, ticks};
use crate::limit::Limit;
use crate::meter::Meter;
use crate::policy::{Event, SteadyStateConfig};
use crate::slot::WorkerSlot;
use crate::snapshot::Snapshot;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, SwapCell};
use crate::table::{Entitlement, LimitTable};
use crate::worker::Worker;
use crate::{Error, Result};

type EventSink = Box<dyn Fn(Event) + Send + Sync>;

/// Registers entitlements and their first limits, then builds the [`Gate`].
pub struct GateBuilder<C: Clock> {
    clock: C,
    tags: Vec<Arc<str>>,
    index: HashMap<Box<str>, Entitlement>,
    limits: Vec<Limit>,
    steady_state: SteadyStateConfig,
    events: Option<EventSink>,
}

impl<C: Clock> GateBuilder<C> {
    /// Registers an entitlement such as `PAR-TPS` with its first limit, returning the handle
    /// that checks use.
    pub fn register(&mut self, tag: &str, limit: Limit) -> Result<Entitlement> {
        if !crate::table::is_valid_tag(tag) {
            return Err(Error::InvalidTag(tag.to_owned()));
        }
        if self.index.contains_key(tag) {
            return Err(Error::DuplicateTag(tag.to_owned()));
        }
        let index = u32::try_from(self.tags.len()).map_err(|_| Error::TooManyEntitlements {
            max: u32::MAX as usize,
        })?;
        let entitlement = Entitlement { index };
        self.tags.push(tag.into());
        self.index.insert(tag.into(), entitlement);
        self.limits.push(limit);
        Ok(entitlement)
    }

    /// Sets the thresholds of the usage events and the steady-state policy.
    pub fn steady_state(&mut self, config: SteadyStateConfig) -> Result<&mut Self> {
        config.validate()?;
        self.steady_state = config;
        Ok(self)
    }

    /// Sends events to `sink`, called by whichever thread runs [`Gate::sample`].
    pub fn on_event(&mut self, sink: impl Fn(Event) + Send + Sync + 'static) -> &mut Self {
        self.events = Some(Box::new(sink));
        self
    }

    /// Sends events to a channel and returns its receiving end.
    pub fn event_channel(&mut self) -> crossbeam_channel::Receiver<Event> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.on_event(move |event| {
            // Nobody listening any more is not the gate's problem.
            let _ = tx.send(event);
        });
        rx
    }

    /// Builds the gate.
    pub fn build(self) -> Arc<Gate<C>> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tags: Arc<[Arc<str>]> = self.tags.into();
        let table = LimitTable::new(id, Arc::clone(&tags), &self.limits);
        let now = self.clock.now();
        Arc::new(Gate {
            id,
            throttled: (0..tags.len()).map(|_| AtomicBool::new(false)).collect(),
            meter: Mutex::new(Meter::new(tags.len(), now)),
            index: self.index,
            tags,
            table: SwapCell::new(Arc::new(table)),
            generation: CachePadded::new(AtomicU64::new(0)),
            apply_lock: Mutex::new(()),
            steady_state: self.steady_state,
            events: self.events,
            clock: self.clock,
        })
    }
}

/// The licensing gate of one packet server. Shared as `Arc<Gate>`; the hot path goes
/// through a [`Worker`] per thread.
pub struct Gate<C: Clock = CoarseClock> {
    id: u64,
    pub(crate) clock: C,
    tags: Arc<[Arc<str>]>,
    index: HashMap<Box<str>, Entitlement>,
    pub(crate) table: SwapCell<LimitTable>,
    pub(crate) generation: CachePadded<AtomicU64>,
    /// Set by the sampler while a steady-state entitlement has been over its level for long
    /// enough; read by workers when they reload (see the Orderings above).
    pub(crate) throttled: Box<[AtomicBool]>,
    apply_lock: Mutex<()>,
    meter: Mutex<Meter>,
    steady_state: SteadyStateConfig,
    events: Option<EventSink>,
}

impl<C: Clock> Gate<C> {
    /// Starts registering entitlements on a gate that reads `clock`.
    pub fn builder(clock: C) -> GateBuilder<C> {
        GateBuilder {
            clock,
            tags: Vec::new(),
            index: HashMap::new(),
            limits: Vec::new(),
            steady_state: SteadyStateConfig::default(),
            events: None,
        }
    }

    /// A new worker handle, for one packet thread.
    pub fn worker(self: &Arc<Self>) -> Worker<C> {
        let (slot, records) = WorkerSlot::new(self.tags.len());
        self.meter.lock().add_slot(Arc::clone(&slot));
        Worker::new(Arc::clone(self), slot, records)
    }

    /// The handle of the entitlement registered as `tag`.
    pub fn entitlement(&self, tag: &str) -> Option<Entitlement> {
        self.index.get(tag).copied()
    }

    /// The limits in force. Change a copy and [`Gate::apply`] it.
    pub fn limits(&self) -> Arc<LimitTable> {
        self.table.load_full()
    }

    /// The clock this gate reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Installs a new limit table while checks go on. A check that starts after `apply`
    /// returns enforces the new limits; bucket state is carried over (see the module docs).
    pub fn apply(&self, table: impl Into<Arc<LimitTable>>) -> Result<()> {
        let table = table.into();
        if table.gate_id != self.id || table.len() != self.throttled.len() {
            return Err(Error::ForeignTable);
        }
        let _serialised = self.apply_lock.lock();
        self.install(table);
        Ok(())
    }

    /// Sets one entitlement's limit: a shorthand for changing a copy of the table and
    /// applying it, safe against concurrent `apply` calls.
    pub fn set_limit(&self, entitlement: Entitlement, limit: Limit) -> Result<()> {
        let _serialised = self.apply_lock.lock();
        let mut table = LimitTable::clone(&self.table.load_full());
        table.set(entitlement, limit)?;
        self.install(Arc::new(table));
        Ok(())
    }

    /// Carries the buckets over, stores the table and publishes it. Callers hold
    /// `apply_lock`.
    fn install(&self, table: Arc<LimitTable>) {
        let old = self.table.load_full();
        let now = ticks(self.clock.now());
        let mut table = LimitTable::clone(&table);
        // A new bucket for each changed limit, starting from what the old one holds now;
        // the others go on in the buckets they have.
        let mut carried = Vec::new();
        for (index, (before, after)) in old.entries.iter().zip(table.entries.iter()).enumerate() {
            table.buckets[index] = if before.limit == after.limit {
                Arc::clone(&old.buckets[index])
            } else {
                let tat = old.buckets[index].load();
                let start = match after.limit.params() {
                    Some(params) => gcra::carried(tat, now, before.limit.params(), params),
                    // Unlimited: a bucket nobody takes from.
                    None => 0,
                };
                carried.push((index, tat.max(now)));
                Arc::new(CachePadded::new(Bucket::starting_at(start)))
            };
        }
        let table = Arc::new(table);
        {
            // Under the meter's lock: a worker registered meanwhile is either voided here or
            // reads the new generation and table when it is made.
            let meter = self.meter.lock();
            self.table.store(Arc::clone(&table));
            self.generation.fetch_add(1, Ordering::Release);
            meter.void(carried.iter().map(|&(index, _)| index));
        }
        // Checks that loaded the old table before the swap may still have taken from the old
        // buckets: retire them, and charge the new ones with what was taken since they were
        // carried over (less what was handed back; more handed back than taken is lost).
        for (index, from) in carried {
            let last = old.buckets[index].retire();
            if let (Some(before), Some(after)) = (
                old.entries[index].limit.params(),
                table.entries[index].limit.params(),
            ) {
                table.buckets[index].charge(last.saturating_sub(from), before, after);
            }
        }
    }

    /// Takes one sample: turns the counts since the previous sample into TPS for the peak
    /// and histogram, runs the policies and sends their events. Call it once a second, or
    /// let [`Gate::start_sampler`] do it. A sample that turns a steady-state throttle on or
    /// off makes every worker reload its records at its next check, as [`Gate::apply`]
    /// does (their leases are dropped).
    pub fn sample(&self) {
        let mut events = Vec::new();
        let mut throttles = Vec::new();
        let table = self.table.load_full();
        let now = self.clock.now();
        {
            let mut meter = self.meter.lock();
            meter.sample(now, &table, &self.steady_state, &mut events, &mut throttles);
            // Under the meter lock, so that two samplers cannot publish out of order.
            for t in &throttles {
                self.throttled[t.index].store(t.on, Ordering::Relaxed);
            }
            // Workers copy the flags into their records when the generation moves, at the
            // next check of a throttled or released entitlement, whose records are voided.
            if !throttles.is_empty() {
                self.generation.fetch_add(1, Ordering::Release);
                meter.void(throttles.iter().map(|t| t.index));
            }
        }
        let Some(sink) = &self.events else { return };
        for (index, offered_tps, kind) in events {
            sink(Event {
                entitlement: Entitlement {
                    index: index as u32,
                },
                tag: String::from(&*self.tags[index]),
                at_nanos: now,
                offered_tps,
                licensed_tps: table.entries[index].limit.per_second().unwrap_or(0),
                kind,
            });
        }
    }

    /// Drains the usage counted since the previous snapshot: every admitted and rejected
    /// transaction is in exactly one snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        self.snapshot_into(&mut snapshot);
        snapshot
    }

    /// As [`Gate::snapshot`], into `out`, reusing its memory: a periodic reporter that keeps
    /// one `Snapshot` allocates nothing per snapshot but the histograms it hands over.
    pub fn snapshot_into(&self, out: &mut Snapshot) {
        let table = self.table.load_full();
        let now = self.clock.now();
        self.meter.lock().snapshot(now, &table, out);
    }

    /// Transactions offered (admitted + rejected) to each entitlement since the gate was
    /// built, in handle order. Drains nothing: two readings make an offered rate, for a
    /// sidecar sharing one licence among gates by demand. Off the hot path (the meter's lock).
    pub fn offered(&self) -> Vec<u64> {
        self.meter.lock().offered()
    }

    /// Starts a thread that calls [`Gate::sample`] every `period` until the returned
    /// [`Sampler`] is dropped.
    pub fn start_sampler(self: &Arc<Self>, period: Duration) -> Result<Sampler> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let gate = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("entitle-sampler".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(period)
                {
                    gate.sample();
                }
            })
            .map_err(|e| Error::SamplerThread(e.to_string()))?;
        Ok(Sampler {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// The sampler thread of [`Gate::start_sampler`]; dropping it stops the thread.
pub struct Sampler {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A sampler that panicked has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
