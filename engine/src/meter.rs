//! Metering: the sampler and snapshots that read the workers' counters off the hot path.
//!
//! Each worker counts in its own slot ([`crate::slot`]): an admitted/rejected pair per
//! entitlement, written only by that worker (a load and a store, no lock prefix). Counters
//! only grow; readers never reset them. A snapshot remembers the totals it reported last
//! and reports the difference, so every transaction lands in exactly one snapshot. A
//! dropped worker's slot is folded into a running total once the meter sees it retired.
//!
//! # Orderings
//! The meter reads counters `Relaxed` and a slot's `retired` flag `Acquire`; see
//! [`crate::slot`] for what they pair with.

use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::gcra::NANOS_PER_SECOND;
use crate::policy::{EventKind, PolicyState, SteadyStateConfig};
use crate::slot::{Counts, WorkerSlot};
use crate::snapshot::{Snapshot, TpsHistogram, Usage};
use crate::table::{LimitTable, Mode};

/// What one entitlement did since the last snapshot, beyond its counts.
#[derive(Debug, Default)]
struct Window {
    peak_tps: u64,
    peak_offered_tps: u64,
    seconds: u64,
    /// Allocated at the first busy second; the idle seconds before it are recorded then.
    histogram: Option<Box<TpsHistogram>>,
}

impl Window {
    fn record(&mut self, tps: u64, offered_tps: u64) {
        self.seconds += 1;
        self.peak_tps = self.peak_tps.max(tps);
        self.peak_offered_tps = self.peak_offered_tps.max(offered_tps);
        if self.histogram.is_none() && tps == 0 {
            return;
        }
        let idle_before = self.seconds - 1;
        let histogram = &mut self
            .histogram
            .get_or_insert_with(|| {
                let mut h = Histogram::new(2).expect("2 significant figures are in range");
                // An auto-resizing histogram records any value, zero included.
                h.record_n(0, idle_before).expect("0 is recordable");
                Box::new(TpsHistogram(h))
            })
            .0;
        // Auto-resizing: `record` grows the histogram (`saturating_record` would clamp).
        if histogram.record(tps).is_err() {
            histogram.saturating_record(tps);
        }
    }
}

/// The meter's state; lives behind the gate's cold-path mutex.
pub(crate) struct Meter {
    slots: Vec<Arc<WorkerSlot>>,
    /// Totals of slots whose workers are gone.
    retired: Vec<Counts>,
    totals: Vec<Counts>,
    snapshot_base: Vec<Counts>,
    snapshot_sequence: u64,
    snapshot_at: u64,
    sample_base: Vec<Counts>,
    sample_at: u64,
    windows: Vec<Window>,
    policy: Vec<PolicyState>,
}

/// A throttle decision for the gate to publish to the hot path.
pub(crate) struct Throttle {
    pub(crate) index: usize,
    pub(crate) on: bool,
}

impl Meter {
    pub(crate) fn new(entitlements: usize, now: u64) -> Self {
        let zeros = vec![Counts::default(); entitlements];
        Self {
            slots: Vec::new(),
            retired: zeros.clone(),
            totals: zeros.clone(),
            snapshot_base: zeros.clone(),
            snapshot_sequence: 0,
            snapshot_at: now,
            sample_base: zeros,
            sample_at: now,
            windows: (0..entitlements).map(|_| Window::default()).collect(),
            policy: (0..entitlements).map(|_| PolicyState::default()).collect(),
        }
    }

    pub(crate) fn add_slot(&mut self, slot: Arc<WorkerSlot>) {
        self.slots.push(slot);
    }

    /// Voids every live worker's record of each entitlement in `indices`, so that their
    /// next checks of it reload (see the Orderings of the `slot` module).
    pub(crate) fn void(&self, indices: impl Iterator<Item = usize>) {
        for index in indices {
            for slot in &self.slots {
                slot.void(index);
            }
        }
    }

    /// Sums every slot into `self.totals`, folding retired slots into `self.retired`.
    fn collect(&mut self) {
        let retired = &mut self.retired;
        self.slots.retain(|slot| {
            if !slot.is_retired() {
                return true;
            }
            for (i, total) in retired.iter_mut().enumerate() {
                let c = slot.read(i);
                total.admitted += c.admitted;
                total.rejected += c.rejected;
            }
            false
        });
        self.totals.copy_from_slice(&self.retired);
        for slot in &self.slots {
            for (i, total) in self.totals.iter_mut().enumerate() {
                let c = slot.read(i);
                total.admitted += c.admitted;
                total.rejected += c.rejected;
            }
        }
    }

    /// Offered (admitted + rejected) per entitlement since the gate was built; drains nothing.
    pub(crate) fn offered(&mut self) -> Vec<u64> {
        self.collect();
        self.totals
            .iter()
            .map(|c| c.admitted + c.rejected)
            .collect()
    }

    /// Drains everything counted since the previous snapshot into `out`.
    pub(crate) fn snapshot(&mut self, now: u64, table: &LimitTable, out: &mut Snapshot) {
        self.collect();
        self.snapshot_sequence += 1;
        out.entitlements.clear();
        out.entitlements.extend((0..self.totals.len()).map(|i| {
            let (total, base) = (self.totals[i], self.snapshot_base[i]);
            let window = std::mem::take(&mut self.windows[i]);
            Usage {
                tag: Arc::clone(&table.tags[i]),
                admitted: total.admitted - base.admitted,
                rejected: total.rejected - base.rejected,
                peak_tps: window.peak_tps,
                peak_offered_tps: window.peak_offered_tps,
                sampled_seconds: window.seconds,
                tps_histogram: window.histogram,
            }
        }));
        self.snapshot_base.copy_from_slice(&self.totals);
        out.sequence = self.snapshot_sequence;
        out.window_start_nanos = std::mem::replace(&mut self.snapshot_at, now);
        out.window_end_nanos = now;
    }

    /// Turns the counts since the previous sample into TPS, records them, and runs the
    /// policies. Returns the events as `(entitlement index, offered TPS, kind)`.
    pub(crate) fn sample(
        &mut self,
        now: u64,
        table: &LimitTable,
        cfg: &SteadyStateConfig,
        events: &mut Vec<(usize, u64, EventKind)>,
        throttles: &mut Vec<Throttle>,
    ) {
        let elapsed = now.saturating_sub(self.sample_at);
        if elapsed == 0 {
            return;
        }
        self.collect();
        let per_second = |n: u64| {
            let tps = (u128::from(n) * u128::from(NANOS_PER_SECOND) + u128::from(elapsed / 2))
                / u128::from(elapsed);
            u64::try_from(tps).unwrap_or(u64::MAX)
        };
        let mut kinds = Vec::new();
        for (i, entry) in table.entries.iter().enumerate() {
            let (total, base) = (self.totals[i], self.sample_base[i]);
            let admitted = per_second(total.admitted - base.admitted);
            let offered =
                per_second(total.admitted - base.admitted + total.rejected - base.rejected);
            self.windows[i].record(admitted, offered);
            // Unlimited and closed entitlements have no level to cross.
            let Some(licensed) = entry.limit.per_second().filter(|&r| r > 0) else {
                continue;
            };
            let percent =
                u64::try_from(u128::from(offered) * 100 / u128::from(licensed)).unwrap_or(u64::MAX);
            let policy = &mut self.policy[i];
            let was_throttled = policy.throttled;
            policy.step(
                cfg,
                now,
                elapsed,
                percent,
                entry.mode == Mode::SteadyState,
                &mut kinds,
            );
            events.extend(kinds.drain(..).map(|kind| (i, offered, kind)));
            if policy.throttled != was_throttled {
                throttles.push(Throttle {
                    index: i,
                    on: policy.throttled,
                });
            }
        }
        self.sample_base.copy_from_slice(&self.totals);
        self.sample_at = now;
    }
}
