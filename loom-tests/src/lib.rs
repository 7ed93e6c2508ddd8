//! loom models of the engine's atomic protocols. Run them with
//! `RUSTFLAGS="--cfg entitle_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`
//! (in a target directory of their own, for instance `CARGO_TARGET_DIR=target/loom`, so
//! that the loom build does not evict the normal one).
//!
//! Under `--cfg entitle_loom` the engine takes its atomics, its mutex and its stand-in for
//! `ArcSwap` from loom (`engine/src/sync.rs`), and every model here runs the engine's own
//! code under every interleaving loom explores. The models, one module each:
//!
//! - `bucket`: the GCRA bucket's CAS never grants more than the burst, and take, give-back
//!   and take-with-return conserve tokens (but for a lease handed back from under a later
//!   take, which passes unused).
//! - `lease`: workers leasing from one bucket admit no more than the burst, and dropping
//!   them hands the tokens they did not use back to the bucket (the lease on top of the
//!   bucket's time; one under another's passes unused); the 64-token leases of a roomy
//!   bucket at a low rate make nothing either.
//! - `meter`: every check lands in exactly one snapshot, while snapshots race with the
//!   worker and with its retirement.
//! - `swap`: a check that starts after `apply`/`set_limit` returned enforces the new limit
//!   (no stale table, no stale lease), and concurrent `set_limit` calls lose no update.
//! - `throttle`: a check that starts after the sample that throttled a steady-state
//!   entitlement returned is enforced (the sampler moves the generation).
//!
//! Without the cfg this crate is empty.

#[cfg(all(test, entitle_loom))]
mod tests;
