//! # Performance and memory model
//!
//! What a check costs, and why the gate stays exact: metering exactly, enforcement exactly
//! but for one bounded race with a limit change (at most one lease per racing worker and
//! swap; see [`gate`](crate::gate)'s "Hot swap").
//!
//! ## The hot path
//! [`Worker::check`](crate::Worker::check) is an inlined fast path that does, in order:
//! 1. a bounds check of the handle against the worker's array of records (one per
//!    entitlement, each on a cache line of its own; no lookup, no hashing);
//! 2. one `Relaxed` load of the clock: with [`CoarseClock`] an atomic the ticker thread
//!    updates every 100 us, instead of the TSC (about 9 ns) or `Instant::now()` (about
//!    22 ns);
//! 3. in the entitlement's record: a refusal the bucket made at this same clock reading
//!    (one comparison), or a token from the worker's lease (the lease's front pushed to
//!    the clock, one interval taken off it, one comparison with its end): no shared write,
//!    and no shared read but the clock. Entitlements that admit everything hold a lease that
//!    never runs out, so there is no branch on the kind of entitlement;
//! 4. a plain load and store on the counter in the same record (no `lock` prefix).
//!
//! That is 13 instructions for a remembered refusal and 21 for an admit from the lease
//! (x86-64, read off `objdump`; callgrind's counts per check, loop and amortised slow
//! path included, are in `BENCHMARKS.md`). Anything else (an empty or expired lease, a
//! refusal at an older clock reading, a voided record) is a cold call that reloads the
//! table if the generation moved, then takes a new lease from the bucket in one CAS, or
//! reads the bucket and refuses without writing.
//!
//! The fast path does not read the table generation. Instead, when `apply` changes a limit
//! (or the sampler a throttle) it moves the generation and then *voids* the records of
//! that entitlement in every worker's slot, so that their next check of it takes the cold
//! path, sees the new generation and reloads. The worker writes a record its fast path
//! can answer from with a swap and then looks at the generation again, so a record it
//! wrote under the old limit cannot outlive the void (the Orderings of the `slot` module;
//! loom models `swap` and `throttle`). This costs `apply` one pass over the workers, and
//! takes the generation's load and comparison (about a fifth of a reject) off every check.
//!
//! Nothing on that path allocates, hashes, locks or makes a syscall; the test
//! `engine/tests/no_alloc.rs` checks the allocation part with a counting allocator.
//!
//! ## Why leases
//! With one CAS per admit, two cores admitting on one entitlement fight over one cache line,
//! and even one core pays a locked instruction per admit. A lease takes up to 64 tokens in
//! one CAS (the size follows the rate, `rate / 10,000`, or is 64 while the bucket has room
//! for eight such leases, so licence-sized rates of 1,000 or 10,000 TPS lease 64 too), so
//! most admits touch only the worker's own memory. A lease is the bucket's time the take
//! set aside, spent token by token at the clock and eaten by the clock as it passes, so
//! the bucket and the leases together admit no more in any window than the bucket alone;
//! what is left goes back with the next take when nothing was taken after it.
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
