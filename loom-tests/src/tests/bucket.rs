//! Model `bucket`: the GCRA bucket's compare-and-swap under concurrency, at a fixed `now`.
//!
//! The bucket holds a burst of 3 tokens (`tau = 3 * interval`). Threads take, give back,
//! and take while returning tokens of an old lease; after they join, the main thread takes
//! whatever is left. Every model checks that tokens are conserved: what the threads still
//! hold plus what is left equals the burst, but for a lease handed back after another take
//! (the bucket takes back only the top of its time; the rest passes unused with the
//! clock). A grant out of a stale TAT (a lost update) breaks that equality upwards, a lost
//! give-back downwards.

use std::sync::Arc;

use loom::thread;

use entitle_engine::model::{Bucket, Params, params};

use super::model;

const INTERVAL: u64 = 10;
const BURST: u64 = 3;
/// Far from zero, so that a TAT below `now` (a full bucket) is a real case.
const NOW: u64 = 1_000;

fn p() -> Params {
    params(INTERVAL, BURST * INTERVAL)
}

/// Takes everything left at `NOW`.
fn drain(bucket: &Bucket) -> u64 {
    bucket.take(NOW, 1, u64::MAX, None, p()).unwrap_or(0)
}

/// Three threads each want two tokens (six in all, twice the burst) and accept one: the
/// bucket grants exactly its burst, never more.
#[test]
fn concurrent_takes_grant_exactly_the_burst() {
    model("concurrent_takes_grant_exactly_the_burst", || {
        let bucket = Arc::new(Bucket::new());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let bucket = bucket.clone();
                thread::spawn(move || bucket.take(NOW, 1, 2, None, p()).unwrap_or(0))
            })
            .collect();
        let granted: Vec<u64> = threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .collect();
        let total: u64 = granted.iter().sum();
        assert_eq!(
            total, BURST,
            "granted {granted:?} out of a burst of {BURST}"
        );
        assert_eq!(
            bucket.tat(),
            NOW + BURST * INTERVAL,
            "the TAT records every grant"
        );
        assert_eq!(drain(&bucket), 0, "nothing left");
    });
}

/// One thread takes two tokens and gives one back; the other takes one token at a time
/// until the bucket refuses. Holdings plus what is left is the burst when the give-back
/// came before the other's next take, and one less when it came after (the token passes
/// unused); never more.
#[test]
fn give_back_races_with_takes() {
    model("give_back_races_with_takes", || {
        let bucket = Arc::new(Bucket::new());
        let giver = {
            let bucket = bucket.clone();
            thread::spawn(move || match bucket.take_ending(NOW, 2, 2, None, p()) {
                Some((taken, end)) => {
                    assert_eq!(taken, 2, "need = want = 2");
                    // The second of the two: the last interval of the time taken.
                    bucket.give_back(NOW, end - INTERVAL, end);
                    1
                }
                None => 0,
            })
        };
        let taker = {
            let bucket = bucket.clone();
            thread::spawn(move || {
                let mut held = 0;
                while bucket.take(NOW, 1, 1, None, p()).is_some() {
                    held += 1;
                    assert!(held <= BURST, "the bucket granted more than its burst");
                }
                held
            })
        };
        let giver_holds = giver.join().expect("no panic");
        let taker_holds = taker.join().expect("no panic");
        let left = drain(&bucket);
        let accounted = giver_holds + taker_holds + left;
        assert!(
            accounted == BURST || accounted == BURST - 1,
            "giver holds {giver_holds}, taker {taker_holds}, bucket had {left} left"
        );
    });
}

/// A worker holding two leased tokens, one of them unused, takes a new lease and returns
/// the unused token in the same CAS, while another thread takes. Only one token was free
/// plus the one returned, so the two threads together get at most two; conservation holds
/// but for the unused token when the other took first (it then passes unused).
#[test]
fn take_with_return_races_with_take() {
    model("take_with_return_races_with_take", || {
        let bucket = Arc::new(Bucket::new());
        let first = bucket.take_ending(NOW, 2, 2, None, p());
        assert_eq!(first, Some((2, NOW + 2 * INTERVAL)), "the first lease");
        let renewer = {
            let bucket = bucket.clone();
            // Holds 1 used + 1 unused token; returns the unused one and wants two more.
            let unused = (NOW + INTERVAL, NOW + 2 * INTERVAL);
            thread::spawn(move || bucket.take(NOW, 1, 2, Some(unused), p()))
        };
        let taker = {
            let bucket = bucket.clone();
            thread::spawn(move || bucket.take(NOW, 1, 2, None, p()).unwrap_or(0))
        };
        let renewed = renewer.join().expect("no panic");
        let taken = taker.join().expect("no panic");
        // Without a new lease the renewer still holds both of its tokens.
        let renewer_holds = renewed.map_or(2, |new| 1 + new);
        assert!(
            renewed.unwrap_or(0) + taken <= 2,
            "renewed {renewed:?}, taken {taken}: only 2 were free"
        );
        let left = drain(&bucket);
        let accounted = renewer_holds + taken + left;
        assert!(
            accounted == BURST || accounted == BURST - 1 && renewed.is_some() && taken > 0,
            "renewer {renewer_holds}, taker {taken}, left {left}"
        );
    });
}
