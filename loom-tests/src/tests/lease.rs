//! Model `lease`: leases taken and returned through the public API, at a fixed time.
//!
//! `Limit::new(40_000, 4, Hard)` gives a lease of 4 tokens (`40_000 / 10_000`, at most the
//! burst of 4), so the first check of a worker may take the whole bucket and leave the other
//! worker nothing until it is dropped. Two workers race; each is dropped in its thread, which
//! returns its unused leased tokens. The models check that the workers together admit no
//! more than the burst, and that afterwards exactly the tokens they did not spend are
//! available to a third worker: none lost, none made.

use loom::thread;

use super::{admit_count, gate, hard, model};

const BURST: u64 = 4;

/// Two workers make three checks each (six in all, more than the burst) and are dropped.
#[test]
fn workers_admit_at_most_the_burst_and_return_what_they_did_not_use() {
    model(
        "workers_admit_at_most_the_burst_and_return_what_they_did_not_use",
        || {
            let (gate, e) = gate(&[hard(40_000, BURST)]);
            let e = e[0];
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let mut worker = gate.worker();
                    thread::spawn(move || {
                        let admitted = admit_count(&mut worker, e, 3);
                        drop(worker);
                        admitted
                    })
                })
                .collect();
            let per_worker: Vec<u64> = threads
                .into_iter()
                .map(|t| t.join().expect("no panic"))
                .collect();
            let admitted: u64 = per_worker.iter().sum();
            assert!(
                admitted <= BURST,
                "workers admitted {per_worker:?} with a burst of {BURST}"
            );
            // The first lease is the whole bucket; at least that worker's three checks pass.
            assert!(admitted >= 3, "workers admitted only {per_worker:?}");
            let mut third = gate.worker();
            let after = admit_count(&mut third, e, BURST + 1);
            assert_eq!(
                after,
                BURST - admitted,
                "workers admitted {per_worker:?}, then a fresh worker {after}"
            );
        },
    );
}

/// A worker that needs more than its lease has left takes a new lease and returns the old
/// one's unused tokens in the same CAS (`check_n`), while another worker takes leases.
#[test]
fn a_lease_renewal_returns_its_unused_tokens() {
    const BURST: u64 = 6;
    model("a_lease_renewal_returns_its_unused_tokens", || {
        // Lease 4 of a burst of 6.
        let (gate, e) = gate(&[hard(40_000, BURST)]);
        let e = e[0];
        let (mut first, mut second) = (gate.worker(), gate.worker());
        // Each thread drops its worker when it returns.
        let renewer = thread::spawn(move || {
            let mut admitted = admit_count(&mut first, e, 1);
            // Three tokens left at most, four needed: a new lease, returning the three.
            if first.check_n(e, 4).is_admit() {
                admitted += 4;
            }
            admitted
        });
        let other = thread::spawn(move || admit_count(&mut second, e, 3));
        let (r, o) = (
            renewer.join().expect("no panic"),
            other.join().expect("no panic"),
        );
        assert!(
            r + o <= BURST,
            "renewer admitted {r}, other {o}, with a burst of {BURST}"
        );
        let mut third = gate.worker();
        let after = admit_count(&mut third, e, BURST + 1);
        assert_eq!(
            after,
            BURST - r - o,
            "renewer admitted {r}, other {o}, then a fresh worker {after}"
        );
    });
}
