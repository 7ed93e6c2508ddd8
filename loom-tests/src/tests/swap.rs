//! Model `swap`: hot-swapped limits. A thread changes a limit with `set_limit` or `apply`
//! and then raises a flag (`Release`); a checking thread that sees the flag (`Acquire`)
//! started its next check after the change returned, so that check must enforce the new
//! limit: no stale table, and no lease taken under the old limit. The checking thread also
//! makes one check before it looks at the flag, which may land anywhere in the change: a
//! table or generation published in the wrong order would leave that check's worker on the
//! old table for good. One model races the worker writing a lease it took with the gate
//! voiding its record. Another races a check with the carry-over of the bucket to a
//! raised limit, and one runs two `set_limit` calls at once: both survive. Others race a
//! check or a hand-back with the retirement of the bucket a swap replaced.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

use entitle_engine::Limit;

use super::{admit_count, gate, hard, model};

/// Unlimited to a hard limit with a burst of one. The changer spends the one token (or
/// finds it spent by the checker), so a check after the flag must reject.
#[test]
fn a_new_hard_limit_holds_once_set_limit_returned() {
    model("a_new_hard_limit_holds_once_set_limit_returned", || {
        let (gate, e) = gate(&[Limit::Unlimited]);
        let e = e[0];
        let changed = Arc::new(AtomicBool::new(false));
        let (mut changer_worker, mut checker_worker) = (gate.worker(), gate.worker());
        let changer = {
            let (gate, changed) = (gate.clone(), changed.clone());
            thread::spawn(move || {
                gate.set_limit(e, hard(1, 1)).expect("a table of this gate");
                // After the change: takes the new burst's only token unless the checker did.
                let _ = changer_worker.check(e);
                changed.store(true, Ordering::Release);
            })
        };
        let checker = thread::spawn(move || {
            // Anywhere in the change: admitted (unlimited, or the new token) or rejected.
            let _ = checker_worker.check(e);
            if changed.load(Ordering::Acquire) {
                assert!(
                    !checker_worker.check(e).is_admit(),
                    "a check after set_limit returned admitted past the new burst"
                );
            }
        });
        changer.join().expect("no panic");
        checker.join().expect("no panic");
        assert_eq!(gate.limits().limit(e), hard(1, 1));
        assert_eq!(
            admit_count(&mut gate.worker(), e, 1),
            0,
            "the new burst was spent after the swap"
        );
    });
}

/// A hard limit whose burst of one is spent, to unlimited: a check after the flag admits.
#[test]
fn unlimited_holds_once_apply_returned() {
    model("unlimited_holds_once_apply_returned", || {
        let (gate, e) = gate(&[hard(1, 1)]);
        let e = e[0];
        let changed = Arc::new(AtomicBool::new(false));
        let mut checker_worker = gate.worker();
        assert!(checker_worker.check(e).is_admit(), "the burst of one");
        let changer = {
            let (gate, changed) = (gate.clone(), changed.clone());
            thread::spawn(move || {
                gate.apply(gate.limits().with(e, Limit::Unlimited))
                    .expect("a table of this gate");
                changed.store(true, Ordering::Release);
            })
        };
        let checker = thread::spawn(move || {
            // Rejected before the swap (the bucket is empty), admitted after it.
            let _ = checker_worker.check(e);
            if changed.load(Ordering::Acquire) {
                assert!(
                    checker_worker.check(e).is_admit(),
                    "a check after apply returned still enforced the old limit"
                );
            }
        });
        changer.join().expect("no panic");
        checker.join().expect("no panic");
        assert_eq!(gate.limits().limit(e), Limit::Unlimited);
    });
}

/// Lowering a limit voids the leases taken under the old one. The checker holds a lease of
/// four tokens with three unused, and the bucket is empty; the limit drops to a burst of
/// one, carried over with nothing available. A check after the flag must not spend the old
/// lease, nor give it back when dropped.
#[test]
fn a_lowered_limit_voids_old_leases_once_set_limit_returned() {
    model(
        "a_lowered_limit_voids_old_leases_once_set_limit_returned",
        || {
            let (gate, e) = gate(&[hard(40_000, 4)]);
            let e = e[0];
            let changed = Arc::new(AtomicBool::new(false));
            let mut checker_worker = gate.worker();
            assert!(
                checker_worker.check(e).is_admit(),
                "takes a lease of 4, the whole burst"
            );
            let changer = {
                let (gate, changed) = (gate.clone(), changed.clone());
                thread::spawn(move || {
                    gate.set_limit(e, hard(40_000, 1))
                        .expect("a table of this gate");
                    changed.store(true, Ordering::Release);
                })
            };
            let checker = thread::spawn(move || {
                // From the old lease before the swap; rejected after it.
                let _ = checker_worker.check(e);
                if changed.load(Ordering::Acquire) {
                    assert!(
                        !checker_worker.check(e).is_admit(),
                        "a check after set_limit returned spent a lease of the old limit"
                    );
                }
                // Kept alive: dropped before the swap, it would rightly return its unused tokens.
                checker_worker
            });
            changer.join().expect("no panic");
            let checker_worker = checker.join().expect("no panic");
            assert_eq!(
                admit_count(&mut gate.worker(), e, 2),
                0,
                "nothing was available when the limit was lowered"
            );
            drop(checker_worker);
            assert_eq!(
                admit_count(&mut gate.worker(), e, 2),
                0,
                "dropping a worker returned a void lease"
            );
        },
    );
}

/// A lease taken while the limit is lowered is void once `set_limit` returned. Rate
/// 40,000/s with a burst of 4 (leases of 4), lowered to a burst of 1. The checker's first
/// check takes a lease before, during or after the swap; whichever it was, a check after
/// the flag must not spend what is left of it, and the carried-over bucket has nothing.
/// (The gate voids the worker's record after the swap; this races the worker writing the
/// lease it just took into that record.)
#[test]
fn a_lease_taken_during_set_limit_is_void_once_it_returned() {
    model(
        "a_lease_taken_during_set_limit_is_void_once_it_returned",
        || {
            let (gate, e) = gate(&[hard(40_000, 4)]);
            let e = e[0];
            let changed = Arc::new(AtomicBool::new(false));
            let mut checker_worker = gate.worker();
            let changer = {
                let (gate, changed) = (gate.clone(), changed.clone());
                thread::spawn(move || {
                    gate.set_limit(e, hard(40_000, 1))
                        .expect("a table of this gate");
                    changed.store(true, Ordering::Release);
                })
            };
            let checker = thread::spawn(move || {
                assert!(
                    checker_worker.check(e).is_admit(),
                    "a lease of 4 under the old limit or of 1 under the new one"
                );
                if changed.load(Ordering::Acquire) {
                    assert!(
                        !checker_worker.check(e).is_admit(),
                        "a check after set_limit returned spent a lease taken under the old limit"
                    );
                }
                checker_worker
            });
            changer.join().expect("no panic");
            drop(checker.join().expect("no panic"));
        },
    );
}

/// A worker made while a limit changes from unlimited to a burst of one: whether it was
/// registered before the gate voided the records or loaded the table after, once
/// `set_limit` returned it admits at most the one token.
#[test]
fn a_worker_made_during_set_limit_enforces_it_once_it_returned() {
    model(
        "a_worker_made_during_set_limit_enforces_it_once_it_returned",
        || {
            let (gate, e) = gate(&[Limit::Unlimited]);
            let e = e[0];
            let changed = Arc::new(AtomicBool::new(false));
            let changer = {
                let (gate, changed) = (gate.clone(), changed.clone());
                thread::spawn(move || {
                    gate.set_limit(e, hard(1, 1)).expect("a table of this gate");
                    changed.store(true, Ordering::Release);
                })
            };
            let maker = {
                let gate = gate.clone();
                thread::spawn(move || {
                    let mut worker = gate.worker();
                    if changed.load(Ordering::Acquire) {
                        let admitted = admit_count(&mut worker, e, 2);
                        assert!(
                            admitted <= 1,
                            "{admitted} of two checks admitted after set_limit returned, with a burst of one"
                        );
                    }
                })
            };
            changer.join().expect("no panic");
            maker.join().expect("no panic");
        },
    );
}

/// Raising a limit hands out no burst at once, even while a check races the carry-over.
/// Burst 2 at 1/s with one token spent, raised to a burst of 4: one token was available,
/// so the racing check and a fresh worker afterwards admit exactly one between them.
#[test]
fn a_raised_limit_carries_over_exactly_the_tokens_left() {
    model(
        "a_raised_limit_carries_over_exactly_the_tokens_left",
        || {
            let (gate, e) = gate(&[hard(1, 2)]);
            let e = e[0];
            assert_eq!(
                admit_count(&mut gate.worker(), e, 1),
                1,
                "one of the burst of two"
            );
            let mut checker_worker = gate.worker();
            let changer = {
                let gate = gate.clone();
                thread::spawn(move || gate.set_limit(e, hard(1, 4)).expect("a table of this gate"))
            };
            let checker = thread::spawn(move || admit_count(&mut checker_worker, e, 1));
            changer.join().expect("no panic");
            let during = checker.join().expect("no panic");
            let after = admit_count(&mut gate.worker(), e, 4);
            assert_eq!(
                during + after,
                1,
                "one token was left: {during} admitted during the swap, {after} after"
            );
        },
    );
}

/// Two `set_limit` calls on different entitlements at once: both end up in the table.
#[test]
fn concurrent_set_limits_lose_no_update() {
    model("concurrent_set_limits_lose_no_update", || {
        let (gate, e) = gate(&[hard(1, 1), hard(1, 1)]);
        let (e0, e1) = (e[0], e[1]);
        let first = {
            let gate = gate.clone();
            thread::spawn(move || {
                gate.set_limit(e0, hard(2, 2))
                    .expect("a table of this gate")
            })
        };
        let second = {
            let gate = gate.clone();
            thread::spawn(move || {
                gate.set_limit(e1, Limit::Unlimited)
                    .expect("a table of this gate")
            })
        };
        first.join().expect("no panic");
        second.join().expect("no panic");
        let limits = gate.limits();
        assert_eq!(
            (limits.limit(e0), limits.limit(e1)),
            (hard(2, 2), Limit::Unlimited),
            "an update was lost"
        );
        // A worker made now enforces both.
        let mut worker = gate.worker();
        assert_eq!(admit_count(&mut worker, e1, 2), 2, "e1 is unlimited");
    });
}

/// A worker dropped while a limit is raised must not return its unused lease at the old
/// interval into the bucket carried over to the new one (a bug once: the swap rescaled the
/// one bucket in place, so a hand-back that checked the generation before the swap
/// subtracted one *old* interval, two new ones, from the TAT).
///
/// Rate 20,000/s, burst 2 (lease 2); the worker holds one unused token and the bucket is
/// empty. The rate is doubled (burst still 2) while the worker is dropped. Dropped first,
/// the token carries over as one token; dropped after, the lease is void or lost: at most
/// one token is available afterwards.
#[test]
fn a_lease_returned_during_a_rate_raise_hands_out_no_extra_tokens() {
    model(
        "a_lease_returned_during_a_rate_raise_hands_out_no_extra_tokens",
        || {
            let (gate, e) = gate(&[hard(20_000, 2)]);
            let e = e[0];
            let mut worker = gate.worker();
            assert!(worker.check(e).is_admit(), "takes a lease of 2, uses 1");
            let changer = {
                let gate = gate.clone();
                thread::spawn(move || {
                    gate.set_limit(e, hard(40_000, 2))
                        .expect("a table of this gate")
                })
            };
            let dropper = thread::spawn(move || drop(worker));
            changer.join().expect("no panic");
            dropper.join().expect("no panic");
            let after = admit_count(&mut gate.worker(), e, 3);
            assert!(
                after <= 1,
                "one token was left unused, yet {after} are available after the swap"
            );
        },
    );
}

/// A check that read the generation before a swap must not take from the carried-over
/// bucket with the old parameters (a bug once, when the swap rescaled the one bucket in
/// place; now the check takes from the old bucket, or finds it retired and asks the new).
///
/// Burst 4 at 1/s with 3 tokens spent (1 left), lowered to a burst of 1 while a worker asks
/// for 2 at once (`check_n`). Before the swap 2 > 1 available: reject. After it 2 > the
/// burst: reject. With the bucket rescaled in place, in between it held 1 token under the
/// new parameters (TAT = now), and the old tolerance of 4 intervals let the take of 2
/// through: 5 tokens granted at one instant by a bucket whose burst was never above 4.
#[test]
fn a_check_racing_a_lowered_limit_grants_no_more_than_either_limit() {
    model(
        "a_check_racing_a_lowered_limit_grants_no_more_than_either_limit",
        || {
            let (gate, e) = gate(&[hard(1, 4)]);
            let e = e[0];
            let mut spender = gate.worker();
            assert_eq!(
                admit_count(&mut spender, e, 3),
                3,
                "three of the burst of four"
            );
            drop(spender);
            let mut checker_worker = gate.worker();
            let changer = {
                let gate = gate.clone();
                thread::spawn(move || gate.set_limit(e, hard(1, 1)).expect("a table of this gate"))
            };
            let checker = thread::spawn(move || checker_worker.check_n(e, 2).is_admit());
            changer.join().expect("no panic");
            let admitted = checker.join().expect("no panic");
            assert!(
                !admitted,
                "2 admitted at once with 1 token available under either limit"
            );
        },
    );
}

/// A check racing a raise, with tokens under both limits, is admitted wherever it lands:
/// from the old bucket before it is retired, or from the new one after (a take that finds
/// its bucket retired asks again, never refuses). Either way the two tokens are all there
/// is: what the racing check took from the old bucket is charged to the new one.
#[test]
fn a_check_racing_a_raise_is_admitted_and_charged_once() {
    model(
        "a_check_racing_a_raise_is_admitted_and_charged_once",
        || {
            let (gate, e) = gate(&[hard(1, 2)]);
            let e = e[0];
            let mut checker_worker = gate.worker();
            let changer = {
                let gate = gate.clone();
                thread::spawn(move || gate.set_limit(e, hard(1, 4)).expect("a table of this gate"))
            };
            let checker = thread::spawn(move || checker_worker.check(e).is_admit());
            changer.join().expect("no panic");
            assert!(
                checker.join().expect("no panic"),
                "refused with two tokens under either limit"
            );
            assert_eq!(
                admit_count(&mut gate.worker(), e, 4),
                1,
                "one of the two tokens is left"
            );
        },
    );
}
