//! A counting global allocator shows that the hot path allocates nothing: admits, rejects,
//! lease renewals, every policy, and the table reload after a swap.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose
#![allow(unsafe_code)] // a global allocator is an unsafe impl

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use entitle_engine::{FakeClock, Gate, Limit, Policy};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts allocations made by the current thread while `COUNTING` is set.
struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; the thread-locals are const-initialised Cells, so touching them
// neither allocates nor re-enters the allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's obligations for `realloc` are passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocations made by this thread while running `f`.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_an_allocation() {
    assert_eq!(allocations_in(|| drop(black_box(Box::new(7u64)))), 1);
}

#[test]
fn checks_allocate_nothing() {
    let clock = FakeClock::new();
    let mut builder = Gate::builder(clock.clone());
    let hard = builder
        .register(
            "PAR-TPS",
            Limit::new(1_000_000, 1_000, Policy::Hard).unwrap(),
        )
        .unwrap();
    let slow = builder
        .register("PAR-ADD-TPS", Limit::new(100, 5, Policy::Hard).unwrap())
        .unwrap();
    let steady = builder
        .register("STEADY", Limit::new(100, 100, Policy::SteadyState).unwrap())
        .unwrap();
    let monitor = builder
        .register("MONITOR", Limit::new(10, 10, Policy::Monitor).unwrap())
        .unwrap();
    let unlimited = builder.register("PLR", Limit::Unlimited).unwrap();
    let gate = builder.build();
    let mut worker = gate.worker();
    let (mut admitted, mut rejected) = (0u64, 0u64);
    let mut run = |worker: &mut entitle_engine::Worker<FakeClock>| {
        for round in 0..20_000u32 {
            for e in [hard, slow, steady, monitor, unlimited] {
                match worker.check(e).is_admit() {
                    true => admitted += 1,
                    false => rejected += 1,
                }
            }
            let _ = black_box(worker.check_n(hard, round % 7));
            clock.advance(Duration::from_micros(50));
        }
    };
    assert_eq!(allocations_in(|| run(&mut worker)), 0);
    // A swap makes the next check reload the table: still nothing allocated on this thread.
    gate.set_limit(hard, Limit::new(10, 1, Policy::Hard).unwrap())
        .unwrap();
    assert_eq!(allocations_in(|| run(&mut worker)), 0);
    assert!(
        admitted > 0 && rejected > 0,
        "both paths ran: {admitted} admitted, {rejected} rejected"
    );
}
