//! The packet-path gate of entitle: lock-free TPS buckets per entitlement, exact metering,
//! and limits that change while traffic flows.
//!
//! A packet server registers its entitlements once, keeps a [`Worker`] per packet thread,
//! and asks it about every transaction:
//!
//! ```
//! use entitle_engine::{CoarseClock, Gate, Limit, Policy};
//!
//! let mut builder = Gate::builder(CoarseClock::new()?);
//! let par_tps = builder.register("PAR-TPS", Limit::new(100, 100, Policy::Hard)?)?;
//! let gate = builder.build();
//!
//! let mut worker = gate.worker(); // one per packet thread
//! if worker.check(par_tps).is_admit() {
//!     // handle the RADIUS request
//! } // else drop it silently, as FreeRADIUS max_pps does
//!
//! // Off the hot path: a licence change, and a usage report.
//! gate.set_limit(par_tps, Limit::hard(300)?)?;
//! let usage = gate.snapshot();
//! assert_eq!(usage.usage("PAR-TPS").map(|u| u.admitted), Some(1));
//! # Ok::<(), entitle_engine::Error>(())
//! ```
//!
//! Modules, one idea each: [`clock`] (time), [`limit`] (what is allowed), `gcra` (the bucket
//! arithmetic and its atomic), [`table`] (handles and the swapped table), [`worker`] (the
//! hot path), `slot` (a worker's record of each entitlement: lease, last refusal and
//! counters on one cache line), [`gate`] (the cold paths), [`meter`](crate::snapshot) and
//! [`snapshot`] (usage), [`policy`] (levels, warnings, steady-state throttling). The
//! licence agent that decides the limits lives apart, in `entitle-licensing`: this crate
//! holds only what runs per packet.
//! How fast, and why it is correct: [`performance`].
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod clock;
mod error;
pub mod gate;
mod gcra;
pub mod limit;
mod meter;
pub mod performance;
pub mod policy;
mod slot;
pub mod snapshot;
mod sync;
pub mod table;
pub mod worker;

pub use clock::{Clock, CoarseClock, FakeClock, PreciseClock};
pub use error::{Error, Result};
pub use gate::{Gate, GateBuilder, Sampler};
pub use limit::{Limit, MAX_LEASE, MAX_RATE, Policy};
pub use policy::{Event, EventKind, SteadyStateConfig};
pub use snapshot::{Snapshot, TpsHistogram, Usage};
pub use table::{Entitlement, LimitTable};
pub use worker::{Decision, Worker};

/// Internals exposed for the loom models in `loom-tests/`; not part of the API.
///
/// `gcra::Bucket` and `gcra::Params` are crate-private, so they cannot be re-exported;
/// these thin wrappers forward to them unchanged.
#[cfg(entitle_loom)]
#[doc(hidden)]
pub mod model {
    /// Bucket parameters in ticks (see `gcra::Params`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Params(crate::gcra::Params);

    /// Bucket parameters: `interval` ticks per token, a tolerance of `tau` ticks
    /// (`burst * interval`).
    pub fn params(interval: u64, tau: u64) -> Params {
        Params(crate::gcra::Params { interval, tau })
    }

    /// The GCRA bucket of one entitlement (see `gcra::Bucket`).
    #[derive(Debug)]
    pub struct Bucket(crate::gcra::Bucket);

    impl Bucket {
        /// A full bucket (TAT 0).
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            Self(crate::gcra::Bucket::new())
        }

        /// Takes between `need` and `want` tokens at `now`, handing back in the same CAS
        /// what is left of a lease of the bucket's time from `front` to `end` (`returning`:
        /// taken back only while it is the top); `None` (writing nothing) when fewer than
        /// `need` fit.
        pub fn take(
            &self,
            now: u64,
            need: u64,
            want: u64,
            returning: Option<(u64, u64)>,
            p: Params,
        ) -> Option<u64> {
            self.0
                .take(now, need, want, want, returning, p.0)
                .map(|(taken, _)| taken)
        }

        /// As [`Bucket::take`], also returning the TAT the take left, where its tokens end.
        pub fn take_ending(
            &self,
            now: u64,
            need: u64,
            want: u64,
            returning: Option<(u64, u64)>,
            p: Params,
        ) -> Option<(u64, u64)> {
            self.0.take(now, need, want, want, returning, p.0)
        }

        /// Hands back what is left at `now` of a lease from `front` to `end`.
        pub fn give_back(&self, now: u64, front: u64, end: u64) {
            self.0.give_back(now, front, end)
        }

        /// The current TAT.
        pub fn tat(&self) -> u64 {
            self.0.tat()
        }
    }
}
