//! Usage reports taken set-wise (a store batch's run of reports at once) answer and store
//! exactly what they would one at a time: on SQLite, and on PostgreSQL with
//! `ENTITLE_TEST_STORE=postgres`.

#![allow(clippy::unwrap_used)]

use entitle_proto::pb;

use super::device::StreamReport;
use crate::store::{Chain, Db, Grouped, Location, Store};

/// Instances `i-a` and `i-b` registered, `i-gone` deregistered; `i-a` and `i-gone` each
/// stored report 1 with body hash `[1]`.
fn seed(conn: &Db) -> crate::error::Result<()> {
    conn.execute_batch(
        "INSERT INTO smart_accounts (id, name, plr_authorized, export_controlled, created_at)
             VALUES (1, 'Acme', 0, 0, 0);
         INSERT INTO virtual_accounts (id, smart_account_id, name, created_at)
             VALUES (1, 1, 'Lab', 0);
         INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key,
                 export_controlled, registered_at, last_contact, cert_serial, cert_expires_at,
                 deregistered)
             VALUES ('i-a', 1, 'CPAR', 'A', 'x', 0, 0, 0, 1, 0, 0),
                    ('i-b', 1, 'CPAR', 'B', 'x', 0, 0, 0, 2, 0, 0),
                    ('i-gone', 1, 'CPAR', 'G', 'x', 0, 0, 0, 3, 0, 1);",
    )?;
    for instance in ["i-a", "i-gone"] {
        conn.execute(
            "INSERT INTO usage_reports (instance_number, sequence, received_at, window_start, window_end, body_hash, gap, out_of_order)
             VALUES ((SELECT number FROM instances WHERE id = ?1), 1, 0, 0, 0, ?2, 0, 0)",
            crate::params![instance, vec![1u8]],
        )?;
    }
    Ok(())
}

/// The reports of one batch, from streams 0 to 4, with what each must answer.
fn batch(streams: &[Chain]) -> Vec<(StreamReport, &'static str)> {
    let report =
        |stream: usize, instance: &str, sequence: u64, hash: u8, admitted: u64| StreamReport {
            now: 100,
            report: pb::UsageReport {
                instance_id: instance.into(),
                sequence,
                window_start: 0,
                window_end: 60_000,
                usage: ["PAR-TPS", "EAP"]
                    .iter()
                    .map(|tag| pb::EntitlementUsage {
                        tag: (*tag).into(),
                        admitted,
                        rejected: 1,
                        peak_tps: 2,
                        tps_histogram: vec![],
                    })
                    .collect(),
            },
            body_hash: vec![hash],
            signed: pb::Signed::default(),
            satellite: false,
            chain: streams[stream].clone(),
        };
    let mut twice = report(0, "i-a", 4, 9, 1000);
    twice.report.usage[1].tag = "PAR-TPS".into();
    vec![
        (report(0, "i-a", 1, 1, 1000), "duplicate"),
        (report(0, "i-a", 2, 2, 10), "stored"),
        // The same body again in the same batch, from another stream.
        (report(1, "i-a", 2, 2, 10), "duplicate"),
        (report(2, "i-b", 1, 3, 20), "stored"),
        (report(2, "i-b", 3, 4, 30), "stored gap"),
        // Another body under a sequence stored earlier in this batch: refused, and the
        // rest of its stream with it.
        (report(3, "i-b", 3, 5, 1000), "AlreadyExists"),
        (report(3, "i-b", 4, 6, 1000), "FailedPrecondition"),
        (report(1, "i-b", 2, 7, 40), "stored out_of_order"),
        (report(1, "i-gone", 1, 1, 1000), "duplicate"),
        (report(1, "i-gone", 2, 8, 1000), "retired"),
        // A failing report writes nothing; its stream stops, the others go on.
        (twice, "InvalidArgument"),
        (report(0, "i-a", 5, 10, 1000), "FailedPrecondition"),
        (report(4, "i-a", 4, 11, 50), "stored gap"),
        (report(4, "i-nobody", 1, 12, 1000), "NotFound"),
    ]
}

fn outcome(answer: crate::error::Result<pb::UsageAck>) -> String {
    match answer {
        Ok(ack) if ack.duplicate => "duplicate".into(),
        Ok(ack) if ack.retired => "retired".into(),
        Ok(ack) => {
            let mut text = String::from("stored");
            if ack.gap {
                text.push_str(" gap");
            }
            if ack.out_of_order {
                text.push_str(" out_of_order");
            }
            text
        }
        Err(e) => format!("{:?}", tonic::Status::from(e).code()),
    }
}

/// What the ledger holds: every report (with its flags), line and audit entry.
fn ledger(conn: &Db) -> crate::error::Result<Vec<String>> {
    let mut rows: Vec<String> = conn
        .prepare_cached(
            "SELECT i.id, u.sequence, u.received_at, u.gap, u.out_of_order, u.body_hash
             FROM usage_reports u JOIN instances i ON i.number = u.instance_number ORDER BY i.id, u.sequence",
        )?
        .query_map([], |r| {
            Ok(format!(
                "report {} {} at {} gap {} out_of_order {} hash {:?}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Vec<u8>>(5)?
            ))
        })?
        .collect::<crate::store::db::Result<_>>()?;
    let lines = conn
        .prepare_cached(
            "SELECT i.id, l.sequence, l.tag, l.admitted, l.rejected, l.peak_tps
             FROM usage_lines l JOIN instances i ON i.number = l.instance_number ORDER BY i.id, l.sequence, l.tag",
        )?
        .query_map([], |r| {
            Ok(format!(
                "line {} {} {} {} {} {}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?
            ))
        })?
        .collect::<crate::store::db::Result<Vec<_>>>()?;
    let audit = conn
        .prepare_cached("SELECT actor, action, detail FROM audit ORDER BY id")?
        .query_map([], |r| {
            Ok(format!(
                "audit {} {} {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })?
        .collect::<crate::store::db::Result<Vec<_>>>()?;
    rows.extend(lines);
    rows.extend(audit);
    Ok(rows)
}

/// A store seeded as [`seed`] says: on SQLite, or PostgreSQL by `ENTITLE_TEST_STORE`.
fn seeded_store(dir: &std::path::Path, name: &str) -> Store {
    let location = match entitle_pgtest::database_for_tests().unwrap() {
        Some(url) => Location::Postgres(url),
        None => Location::Sqlite(dir.join(name)),
    };
    let store = Store::open_at(&location).unwrap();
    store.run_blocking(seed).unwrap();
    store
}

fn streams() -> Vec<Chain> {
    (0..5)
        .map(|_| Chain::new("an earlier report on this stream was refused"))
        .collect()
}

#[test]
fn a_batch_of_reports_answers_and_stores_what_one_at_a_time_would() {
    let dir = tempfile::tempdir().unwrap();

    // One at a time, each in a savepoint as the store runs it alone.
    let alone = seeded_store(dir.path(), "alone.db");
    let (alone_answers, alone_ledger) = alone
        .run_blocking(|conn| {
            let streams = streams();
            let mut answers = Vec::new();
            for (item, _) in batch(&streams) {
                conn.execute_batch("SAVEPOINT one")?;
                let answer = item.run_one(conn);
                if answer.is_err() {
                    conn.execute_batch("ROLLBACK TO one")?;
                }
                conn.execute_batch("RELEASE one")?;
                answers.push(outcome(answer));
            }
            Ok((answers, ledger(conn)?))
        })
        .unwrap();

    // All at once.
    let together = seeded_store(dir.path(), "together.db");
    let (expected, together_answers, together_ledger) = together
        .run_blocking(|conn| {
            let streams = streams();
            let items = batch(&streams);
            let expected: Vec<String> = items.iter().map(|(_, e)| e.to_string()).collect();
            let refs: Vec<&StreamReport> = items.iter().map(|(item, _)| item).collect();
            let answers = StreamReport::run_all(conn, &refs)?;
            let answers = answers.into_iter().map(outcome).collect::<Vec<_>>();
            Ok((expected, answers, ledger(conn)?))
        })
        .unwrap();

    assert_eq!(alone_answers, expected, "one at a time");
    assert_eq!(together_answers, expected, "all at once");
    assert_eq!(together_ledger, alone_ledger);
    // What the batch stored, besides the two seeded reports: i-a 2 and 4, i-b 1 to 3.
    let has = |row: &str| together_ledger.iter().any(|r| r == row);
    let reports: Vec<&String> = together_ledger
        .iter()
        .filter(|r| r.starts_with("report "))
        .collect();
    assert_eq!(reports.len(), 2 + 5, "{together_ledger:#?}");
    assert!(has("report i-b 3 at 100 gap 1 out_of_order 0 hash [4]"));
    assert!(has("report i-b 2 at 100 gap 0 out_of_order 1 hash [7]"));
    assert!(has("report i-a 4 at 100 gap 1 out_of_order 0 hash [11]"));
    // The report refused for its twice-named tag wrote no line.
    assert!(has("line i-a 4 EAP 50 1 2"));
    assert!(has("line i-a 4 PAR-TPS 50 1 2"));
    assert_eq!(
        together_ledger
            .iter()
            .filter(|r| r.starts_with("line i-a 4 "))
            .count(),
        2
    );
    assert!(has(
        "audit device:i-b usage.sequence report 3 skipped ahead (last was 1)"
    ));
    assert!(has(
        "audit device:i-b usage.sequence report 2 went back (last was 3)"
    ));
}

#[test]
fn a_report_another_process_stored_since_the_read_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded_store(dir.path(), "raced.db");
    let error = store
        .run_blocking(|conn| {
            let report = pb::UsageReport {
                instance_id: "i-b".into(),
                sequence: 1,
                ..Default::default()
            };
            let mut batch = crate::ledger::ReportBatch::read(conn, &[&report])?;
            assert!(!batch.add(100, &report, &[3])?.gap);
            // Another process stores the same report between the read and the write.
            conn.execute(
                "INSERT INTO usage_reports (instance_number, sequence, received_at, window_start, window_end, body_hash, gap, out_of_order)
                 VALUES ((SELECT number FROM instances WHERE id = 'i-b'), 1, 0, 0, 0, ?1, 0, 0)",
                crate::params![vec![3u8]],
            )?;
            // As the store runs a job: what failed is rolled back.
            conn.execute_batch("SAVEPOINT write")?;
            let error = batch.write(conn).err();
            conn.execute_batch("ROLLBACK TO write; RELEASE write")?;
            Ok(error)
        })
        .unwrap();
    assert!(
        matches!(
            error,
            Some(crate::error::Error::Storage(
                crate::store::DbError::Conflict(_)
            ))
        ),
        "{error:?}"
    );
}

#[test]
fn an_instance_was_last_in_contact_when_its_last_report_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded_store(dir.path(), "contact.db");
    let contacts = store
        .run_blocking(|conn| {
            let report = |instance: &str, sequence| pb::UsageReport {
                instance_id: instance.into(),
                sequence,
                ..Default::default()
            };
            // i-a: report 1 arrived at 0 (seeded), 2 at 150, 3 at 300.
            crate::ledger::store_report(conn, 150, &report("i-a", 2), &[2])?;
            crate::ledger::store_report(conn, 300, &report("i-a", 3), &[3])?;
            // i-b: in contact at 500 otherwise, its one report at 400.
            conn.execute(
                "UPDATE instances SET last_contact = 500 WHERE id = 'i-b'",
                crate::params![],
            )?;
            crate::ledger::store_report(conn, 400, &report("i-b", 1), &[4])?;
            Ok(crate::ledger::list_instances(conn, "Acme", "Lab")?
                .into_iter()
                .map(|i| format!("{} {}", i.instance_id, i.last_contact))
                .collect::<Vec<_>>())
        })
        .unwrap();
    assert_eq!(contacts, ["i-a 300", "i-b 500", "i-gone 0"]);
}
