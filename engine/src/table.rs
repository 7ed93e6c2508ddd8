//! The entitlement table: handles, and the immutable table of limits that `apply()` swaps.
//!
//! Tags (such as `PAR-TPS`) are looked up once, at start-up; the hot path works with the
//! [`Entitlement`] handle, which is an index.
//!
//! ```
//! use entitle_engine::{FakeClock, Gate, Limit};
//!
//! let mut builder = Gate::builder(FakeClock::new());
//! let tps = builder.register("PAR-TPS", Limit::hard(100)?)?;
//! let gate = builder.build();
//! let raised = gate.limits().with(tps, Limit::hard(300)?);
//! gate.apply(raised)?;
//! assert_eq!(gate.limits().limit(tps).per_second(), Some(300));
//! # Ok::<(), entitle_engine::Error>(())
//! ```

use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::gcra::{Bucket, Params};
use crate::limit::{Limit, Policy};
use crate::{Error, Result};

/// Whether `tag` is a valid entitlement or licence tag: 1 to 64 letters, digits and
/// `- _ . :` (such as `PAR-TPS`). The gate, the licensing domain and the authority share
/// this one rule.
pub fn is_valid_tag(tag: &str) -> bool {
    (1..=64).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A handle to one registered entitlement: resolve it once, use it on every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entitlement {
    pub(crate) index: u32,
}

impl Entitlement {
    /// The position of this entitlement in its gate's table.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// How the hot path treats an entitlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Admit and meter (unlimited, monitor).
    Open,
    /// Admit and meter until the sampler sets the entitlement's `throttled` flag, then as
    /// `Bucket`.
    SteadyState,
    /// Admit what the bucket grants.
    Bucket,
}

/// One entitlement's limit with everything the hot path derives from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) limit: Limit,
    pub(crate) mode: Mode,
    pub(crate) params: Params,
    pub(crate) lease: u64,
}

impl Entry {
    fn new(limit: Limit) -> Self {
        let mode = match limit.policy() {
            None | Some(Policy::Monitor) => Mode::Open,
            Some(Policy::SteadyState) => Mode::SteadyState,
            Some(Policy::Hard) => Mode::Bucket,
        };
        // Unlimited entries never reach the bucket; any valid parameters will do.
        let params = limit.params().unwrap_or(Params {
            interval: 1,
            tau: 1,
        });
        Self {
            limit,
            mode,
            params,
            lease: limit.lease(),
        }
    }
}

/// The limits of every entitlement of one gate, in handle order. Immutable once applied:
/// change a copy and [`crate::Gate::apply`] it.
#[derive(Clone, Debug)]
pub struct LimitTable {
    pub(crate) gate_id: u64,
    pub(crate) tags: Arc<[Arc<str>]>,
    pub(crate) entries: Box<[Entry]>,
    /// Each entitlement's bucket under its limit in this table. `apply` sets them all from
    /// the table in force (a new bucket where the limit changed), so a copy's are never used.
    pub(crate) buckets: Box<[Arc<CachePadded<Bucket>>]>,
}

impl LimitTable {
    pub(crate) fn new(gate_id: u64, tags: Arc<[Arc<str>]>, limits: &[Limit]) -> Self {
        Self {
            gate_id,
            tags,
            entries: limits.iter().copied().map(Entry::new).collect(),
            buckets: limits
                .iter()
                .map(|_| Arc::new(CachePadded::new(Bucket::new())))
                .collect(),
        }
    }

    /// The number of entitlements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the gate has no entitlements.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The limit of `entitlement`.
    ///
    /// # Panics
    /// If `entitlement` belongs to another gate with more entitlements.
    pub fn limit(&self, entitlement: Entitlement) -> Limit {
        self.entries[entitlement.index()].limit
    }

    /// The tag of `entitlement`.
    pub fn tag(&self, entitlement: Entitlement) -> &str {
        &self.tags[entitlement.index()]
    }

    /// The handle registered for `tag`.
    pub fn entitlement(&self, tag: &str) -> Option<Entitlement> {
        let index = self.tags.iter().position(|t| &**t == tag)?;
        Some(Entitlement {
            index: u32::try_from(index).ok()?,
        })
    }

    /// Every entitlement with its tag and limit, in handle order.
    pub fn iter(&self) -> impl Iterator<Item = (Entitlement, &str, Limit)> + '_ {
        self.entries
            .iter()
            .zip(self.tags.iter())
            .enumerate()
            .map(|(i, (e, tag))| {
                // The builder refuses more than u32::MAX entitlements.
                (Entitlement { index: i as u32 }, &**tag, e.limit)
            })
    }

    /// Sets the limit of `entitlement`.
    pub fn set(&mut self, entitlement: Entitlement, limit: Limit) -> Result<()> {
        let entry = self
            .entries
            .get_mut(entitlement.index())
            .ok_or(Error::ForeignEntitlement)?;
        *entry = Entry::new(limit);
        Ok(())
    }

    /// Sets the limit of the entitlement registered as `tag`.
    pub fn set_tag(&mut self, tag: &str, limit: Limit) -> Result<()> {
        let entitlement = self
            .entitlement(tag)
            .ok_or_else(|| Error::UnknownTag(tag.to_owned()))?;
        self.set(entitlement, limit)
    }

    /// A copy with the limit of `entitlement` changed.
    ///
    /// # Panics
    /// If `entitlement` belongs to another gate with fewer entitlements.
    #[must_use]
    pub fn with(&self, entitlement: Entitlement, limit: Limit) -> Self {
        let mut table = self.clone();
        table.entries[entitlement.index()] = Entry::new(limit);
        table
    }
}
