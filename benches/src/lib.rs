//! Benchmarks of entitle against its peers: governor's direct rate limiter and a token
//! bucket behind a `parking_lot` mutex (the floor any lock-free gate has to beat).
//!
//! - [`floor`]: the mutex token bucket.
//! - [`measure`]: timing one thread over a large batch of checks, or several threads for a
//!   fixed time, and medians.
//!
//! The criterion benches are in `benches/gate.rs` (`cargo bench -p entitle-benches`); the
//! same-process comparison that `BENCHMARKS.md` reports is the `compare` binary
//! (`cargo run --release -p entitle-benches --bin compare`).
//!
//! ```
//! use entitle_benches::floor::MutexBucket;
//! use entitle_benches::measure::time_checks;
//! use entitle_engine::FakeClock;
//!
//! let bucket = MutexBucket::new(FakeClock::new(), 100, 10);
//! let run = time_checks(1_000, || bucket.check());
//! assert_eq!((run.admitted, run.rejected()), (10, 990));
//! ```
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod floor;
pub mod measure;
pub mod radius_load;
pub mod radius_overhead;
