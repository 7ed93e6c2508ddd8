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
        // The renewer's old lease goes back only if nothing was taken after it; else its
        // three tokens pass unused with the clock (which stands still here).
        let mut third = gate.worker();
        let after = admit_count(&mut third, e, BURST + 1);
        assert!(
            after <= BURST - r - o && after + 3 >= BURST - r - o,
            "renewer admitted {r}, other {o}, then a fresh worker {after}"
        );
    });
}

/// At a licence-sized rate a roomy bucket leases 64 tokens at once (the rate alone gives
/// one): `Limit::new(1_000, 1_000, Hard)`, room for eight such leases. Two workers take
/// leases and spend two tokens each while racing, and are dropped. Together they admit
/// no more than the bucket granted, nothing is made, and what the one whose lease is on
/// top did not use goes back.
#[test]
fn roomy_leases_at_a_low_rate_make_nothing() {
    const BURST: u64 = 1_000;
    model("roomy_leases_at_a_low_rate_make_nothing", || {
        let (gate, e) = gate(&[hard(1_000, BURST)]);
        let e = e[0];
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut worker = gate.worker();
                thread::spawn(move || {
                    let admitted = admit_count(&mut worker, e, 2);
                    drop(worker);
                    admitted
                })
            })
            .collect();
        let admitted: u64 = threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .sum();
        assert_eq!(admitted, 4, "two leases of 64 out of 1,000");
        // The lower lease's 62 unused tokens may pass unused; the top one's come back. (One
        // request each, all or nothing: a check at a time would take loom too long.)
        let left = u32::try_from(BURST - admitted).expect("small");
        assert!(
            gate.worker().check_n(e, left - 62).is_admit(),
            "no more than one lease lost"
        );
        assert!(!gate.worker().check_n(e, 63).is_admit(), "nothing made");
    });
}
