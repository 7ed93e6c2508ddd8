//! Model `meter`: counter drain. A worker counts its checks in its own slot while another
//! thread drains snapshots; the worker may be dropped (its slot retired and folded into the
//! meter's running total) between or during those snapshots.
//!
//! Whatever the interleaving, the admitted and rejected counts summed over every snapshot,
//! the final one included, equal the checks made: no count is lost (a retired slot read
//! before its last counts are visible) and none is reported twice (a slot both folded and
//! still read, or a snapshot base not moved on).

use std::time::Duration;

use loom::thread;

use entitle_engine::{Limit, Policy, Snapshot};

use super::{gate, hard, model};

/// (admitted, rejected) of the only entitlement.
fn counts(snapshot: &Snapshot) -> (u64, u64) {
    let usage = &snapshot.entitlements[0];
    (usage.admitted, usage.rejected)
}

fn sum(snapshots: &[Snapshot]) -> (u64, u64) {
    snapshots
        .iter()
        .map(counts)
        .fold((0, 0), |(a, r), (da, dr)| (a + da, r + dr))
}

/// Three checks against a burst of one (one admitted, two rejected) by a worker dropped in
/// its thread, racing two snapshots.
#[test]
fn every_check_lands_in_exactly_one_snapshot_when_the_worker_retires() {
    model(
        "every_check_lands_in_exactly_one_snapshot_when_the_worker_retires",
        || {
            let (gate, e) = gate(&[hard(1, 1)]);
            let e = e[0];
            let mut worker = gate.worker();
            let checker = thread::spawn(move || {
                for _ in 0..3 {
                    let _ = worker.check(e);
                }
                drop(worker);
            });
            let drainer = {
                let gate = gate.clone();
                thread::spawn(move || vec![gate.snapshot(), gate.snapshot()])
            };
            checker.join().expect("no panic");
            let mut snapshots = drainer.join().expect("no panic");
            snapshots.push(gate.snapshot());
            assert_eq!(
                sum(&snapshots),
                (1, 2),
                "per snapshot: {:?}",
                snapshots.iter().map(counts).collect::<Vec<_>>()
            );
        },
    );
}

/// Two monitored (always admitted) checks by a worker that outlives the race, while the
/// other thread samples (which reads the slots too, a second later on the fake clock) and
/// takes a snapshot. The final snapshot reads the live slot; dropping the worker afterwards
/// folds the slot into the retired total, and the next snapshot must report nothing new.
#[test]
fn a_live_slot_and_then_its_retirement_are_counted_once() {
    model(
        "a_live_slot_and_then_its_retirement_are_counted_once",
        || {
            let (gate, e) = gate(&[Limit::new(1, 1, Policy::Monitor).expect("a valid limit")]);
            let e = e[0];
            let mut worker = gate.worker();
            let checker = thread::spawn(move || {
                let admitted = (0..2).filter(|_| worker.check(e).is_admit()).count();
                assert_eq!(admitted, 2, "monitor admits everything");
                worker
            });
            let drainer = {
                let gate = gate.clone();
                thread::spawn(move || {
                    gate.clock().advance(Duration::from_secs(1));
                    gate.sample();
                    gate.snapshot()
                })
            };
            let worker = checker.join().expect("no panic");
            let mut snapshots = vec![drainer.join().expect("no panic"), gate.snapshot()];
            assert_eq!(
                sum(&snapshots),
                (2, 0),
                "per snapshot: {:?}",
                snapshots.iter().map(counts).collect::<Vec<_>>()
            );
            drop(worker);
            snapshots.push(gate.snapshot());
            assert_eq!(
                counts(&snapshots[2]),
                (0, 0),
                "retiring the slot reports nothing new"
            );
        },
    );
}

/// Two workers share a burst of one: one makes two checks and is dropped, the other makes
/// one check and outlives the race, while a third thread takes two snapshots. Exactly one
/// check is admitted in all, and every check is in exactly one snapshot, with a retired
/// slot folded away while a live one stays.
#[test]
fn two_workers_one_retiring_are_each_counted_once() {
    model("two_workers_one_retiring_are_each_counted_once", || {
        let (gate, e) = gate(&[hard(1, 1)]);
        let e = e[0];
        let (mut leaving, mut staying) = (gate.worker(), gate.worker());
        let leaver = thread::spawn(move || {
            for _ in 0..2 {
                let _ = leaving.check(e);
            }
            drop(leaving);
        });
        let stayer = thread::spawn(move || {
            let _ = staying.check(e);
            staying
        });
        let drainer = {
            let gate = gate.clone();
            thread::spawn(move || vec![gate.snapshot(), gate.snapshot()])
        };
        leaver.join().expect("no panic");
        let staying = stayer.join().expect("no panic");
        let mut snapshots = drainer.join().expect("no panic");
        snapshots.push(gate.snapshot());
        let per_snapshot: Vec<_> = snapshots.iter().map(counts).collect();
        assert_eq!(sum(&snapshots), (1, 2), "per snapshot: {per_snapshot:?}");
        drop(staying);
        assert_eq!(
            counts(&gate.snapshot()),
            (0, 0),
            "retiring the second slot reports nothing new"
        );
    });
}
