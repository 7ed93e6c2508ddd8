//! # Performance and memory model
//!
//! What a check costs, and why the gate is still exact.
//!
//! ## The hot path
//! [`Worker::check`](crate::Worker::check) is an inlined fast path that does, in order:
//! 1. a bounds check of the handle against the worker's array of records (one per
//!    entitlement, each on a cache line of its own, no lookup and no hashing);
//! 2. one `Acquire` load of the table generation, a cache line written only by `apply` and
//!    by a sample that turns a throttle on or off;
//! 3. one `Relaxed` load of the clock: with [`CoarseClock`] an atomic the ticker thread
//!    updates every 100 us, instead of the TSC (about 9 ns) or `Instant::now()` (about
//!    22 ns);
//! 4. in the entitlement's record: a token from the worker's lease, or a refusal the bucket
//!    made at this same clock reading: no shared write, and under overload no shared read
//!    either. Entitlements that admit everything hold a lease that never runs out, so
//!    there is no branch on the kind of entitlement;
//! 5. a plain load and store on the counter in the same record (no `lock` prefix).
//!
//! That is about 20 instructions, and every load but the generation and the clock is in
//! the worker's own memory (counted with callgrind; see `BENCHMARKS.md`). Anything else (a
//! changed table, an empty lease) is a cold call that takes a new lease from the bucket in
//! one CAS, or reads the bucket and refuses without writing.
//!
//! Nothing on that path allocates, hashes, locks or makes a syscall; the test
//! `engine/tests/no_alloc.rs` checks the allocation part with a counting allocator.
//!
//! ## Why leases
//! With one CAS per admit, two cores admitting on one entitlement fight over one cache line.
//! A lease takes up to 64 tokens in one CAS (the size follows the rate: 1 below 20,000 TPS),
//! so at high rates most admits touch only the worker's own memory. Leases expire once the
//! bucket would have earned them back and their unused tokens return to the bucket, so the
//! bucket is never exceeded and admission is not lost.
//!
//! ## Exactness of usage
//! Counters are single-writer and only grow; a snapshot reports the difference from the
//! totals it reported last, under the meter's lock, so each transaction is in exactly one
//! snapshot. A dropped worker's final counts are folded in once (`Release`/`Acquire` on its
//! `retired` flag).
//!
//! ## The proofs
//! - loom models in `loom-tests/`: the bucket CAS, lease take and return, the counter drain
//!   and the swap (`RUSTFLAGS="--cfg entitle_loom" cargo test -p loom-tests --release`).
//! - accuracy tests on the fake clock (`engine/tests/accuracy.rs`).
//! - the benchmark against governor: `cargo run --release -p entitle-benches --bin compare`,
//!   figures in `BENCHMARKS.md`.
//!
//! [`CoarseClock`]: crate::CoarseClock
