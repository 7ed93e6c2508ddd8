//! Unit tests of [`super`].

#![allow(clippy::unwrap_used)]
use super::*;

fn report(admitted: u64) -> pb::UsageReport {
    pb::UsageReport {
        usage: vec![pb::EntitlementUsage {
            tag: "PAR-TPS".into(),
            admitted,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn engine_sequences_are_stored_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("s.db")).unwrap();
    assert_eq!(
        store.spool(&report(1), Some(("e", 1)), 10).unwrap(),
        Spooled::Stored
    );
    assert_eq!(
        store.spool(&report(1), Some(("e", 1)), 10).unwrap(),
        Spooled::Duplicate
    );
    assert_eq!(
        store.spool(&report(3), Some(("e", 3)), 10).unwrap(),
        Spooled::OutOfOrder { expected: 2 }
    );
    store.seal().unwrap();
    assert_eq!(store.spool(&report(2), None, 1).unwrap(), Spooled::Full);
    assert_eq!(store.depth().unwrap(), 1);
}

fn admitted(store: &LocalStore, instance: &str) -> Vec<(u64, u64)> {
    store
        .pending(instance, 100)
        .unwrap()
        .iter()
        .map(|p| (p.report.sequence, p.report.usage[0].admitted))
        .collect()
}

#[test]
fn snapshots_sum_into_the_open_row_until_it_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("s.db")).unwrap();
    store.set_instance(Some("i1")).unwrap();
    for n in 1..=3 {
        assert_eq!(store.spool(&report(n), None, 1).unwrap(), Spooled::Stored);
    }
    assert_eq!(
        store.spool(&report(4), Some(("e", 1)), 1).unwrap(),
        Spooled::Stored,
        "an open row takes more even at capacity: it adds no row"
    );
    assert_eq!(store.depth().unwrap(), 1);
    assert_eq!(store.waiting().unwrap(), 0, "no report is closed yet");
    assert!(
        admitted(&store, "i1").is_empty(),
        "the open row is not sent"
    );
    assert!(store.seal().unwrap());
    assert!(!store.seal().unwrap(), "nothing more to seal");
    assert!(!store.has_room(1).unwrap());
    assert_eq!(store.spool(&report(5), None, 1).unwrap(), Spooled::Full);
    assert_eq!(
        store.spool(&report(5), Some(("e", 2)), 1).unwrap(),
        Spooled::Full
    );
    assert_eq!(admitted(&store, "i1"), [(1, 10)]);
    assert!(store.has_room(2).unwrap());
    store.spool(&report(5), Some(("e", 2)), 2).unwrap();
    assert_eq!(
        store.spool(&report(5), Some(("e", 2)), 2).unwrap(),
        Spooled::Duplicate,
        "an engine's summed snapshot is still recognised when resent"
    );
    store.seal().unwrap();
    assert_eq!(admitted(&store, "i1"), [(1, 10), (2, 5)]);
    let history = store.history(10).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.usage[0].admitted)
            .collect::<Vec<_>>(),
        [5, 10],
        "the history shows reports"
    );
}

#[test]
fn merged_reports_span_both_windows_and_add_their_histograms() {
    use entitle_engine::{FakeClock, Gate, Limit};
    // A histogram of one second at `tps`, as a gate makes it.
    let histogram = |tps: &[u64]| {
        let clock = FakeClock::new();
        let mut builder = Gate::builder(clock.clone());
        let tag = builder.register("A", Limit::hard(1_000).unwrap()).unwrap();
        let gate = builder.build();
        let mut worker = gate.worker();
        for _ in 0..tps[0] {
            assert!(worker.check(tag).is_admit());
        }
        clock.advance(std::time::Duration::from_secs(1));
        gate.sample();
        gate.snapshot().entitlements[0]
            .tps_histogram
            .as_ref()
            .unwrap()
            .to_v2_deflate()
            .unwrap()
    };
    let usage = |tag: &str, admitted, peak_tps, tps_histogram| pb::EntitlementUsage {
        tag: tag.into(),
        admitted,
        rejected: 1,
        peak_tps,
        tps_histogram,
    };
    let mut sum = pb::UsageReport {
        window_start: 2_000,
        window_end: 3_000,
        usage: vec![usage("A", 10, 10, histogram(&[10]))],
        ..Default::default()
    };
    merge_report(
        &mut sum,
        &pb::UsageReport {
            window_start: 1_000,
            window_end: 2_000,
            usage: vec![
                usage("A", 20, 20, histogram(&[20])),
                usage("B", 7, 7, Vec::new()),
            ],
            ..Default::default()
        },
    );
    merge_report(
        &mut sum,
        &pb::UsageReport {
            window_end: 4_000,
            usage: vec![usage("A", 1, 1, b"not a histogram".to_vec())],
            ..Default::default()
        },
    );
    assert_eq!((sum.window_start, sum.window_end), (1_000, 4_000));
    let a = &sum.usage[0];
    assert_eq!((a.admitted, a.rejected, a.peak_tps), (31, 3, 20));
    let h = TpsHistogram::from_v2(&a.tps_histogram).unwrap().0;
    assert_eq!((h.len(), h.max()), (2, 20), "a bad histogram is left out");
    assert_eq!((sum.usage[1].tag.as_str(), sum.usage[1].admitted), ("B", 7));
}

#[test]
fn rows_of_a_retired_instance_move_to_the_current_one_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("s.db")).unwrap();
    store.set_instance(Some("old")).unwrap();
    for n in 1..=3 {
        store.spool(&report(n), None, 10).unwrap();
        store.seal().unwrap();
    }
    assert_eq!(admitted(&store, "old"), [(1, 1), (2, 2), (3, 3)]);
    store.set_instance(Some("new")).unwrap();
    store.spool(&report(4), None, 10).unwrap();
    store.seal().unwrap();
    assert_eq!(admitted(&store, "new"), [(1, 4)]);
    let stale = store.stale("new", 10).unwrap();
    assert_eq!(
        stale
            .iter()
            .map(|p| (p.report.instance_id.as_str(), p.report.sequence))
            .collect::<Vec<_>>(),
        [("old", 1), ("old", 2), ("old", 3)]
    );
    assert!(store.stale("old", 10).unwrap().len() == 1, "new's row");
    // The authority stored old 2 before (its row is deleted); 3 and 1 it never did.
    store.delivered(&[stale[1].id]).unwrap();
    store.rebind(&[stale[2].id, stale[0].id], "new").unwrap();
    store.rebind(&[stale[2].id], "new").unwrap();
    assert!(store.stale("new", 10).unwrap().is_empty());
    assert_eq!(
        admitted(&store, "new"),
        [(1, 4), (2, 1), (3, 3)],
        "numbered on after the current ones, in their old order, once"
    );
    store.spool(&report(5), None, 10).unwrap();
    store.seal().unwrap();
    assert_eq!(admitted(&store, "new").last(), Some(&(4, 5)));
}

#[test]
fn a_spool_of_the_first_schema_opens_with_its_rows_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO spool (report) VALUES (?1)",
            [report(9).encode_to_vec()],
        )
        .unwrap();
    }
    let store = LocalStore::open(&path).unwrap();
    assert_eq!(admitted(&store, "i1"), [(1, 9)]);
}

#[test]
fn rows_keep_their_sequence_until_delivered_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = LocalStore::open(&path).unwrap();
    for n in 1..=3 {
        store.spool(&report(n), None, 10).unwrap();
        store.seal().unwrap();
    }
    store.set_instance(Some("i1")).unwrap();
    let first = store.pending("i1", 2).unwrap();
    assert_eq!(
        first.iter().map(|p| p.report.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
    store.delivered(&[first[0].id]).unwrap();
    drop(store);
    let store = LocalStore::open(&path).unwrap();
    store.spool(&report(4), None, 10).unwrap();
    store.seal().unwrap();
    let again = store.pending("i1", 10).unwrap();
    assert_eq!(
        again
            .iter()
            .map(|p| (p.report.sequence, p.report.usage[0].admitted))
            .collect::<Vec<_>>(),
        [(2, 2), (3, 3), (4, 4)]
    );
    let history = store.history(10).unwrap();
    assert_eq!(history.len(), 4);
    assert!(history[3].delivered && !history[0].delivered);
}
