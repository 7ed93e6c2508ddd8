//! Migrations keep what the store held: usage stored under instance ids before the usage
//! tables were keyed by instance number (and on SQLite, through the next migration too,
//! which stores reports in arrival order and their lines under each report's row). On
//! SQLite, or PostgreSQL by `ENTITLE_TEST_STORE`.

use entitle_proto::pb;

use super::*;

/// The schema versions before the usage tables were keyed by instance number.
const SQLITE_BEFORE: usize = 5;
const POSTGRES_BEFORE: usize = 2;

/// Two instances, `i-a` with reports 1 and 2 and `i-b` with report 1, each with lines, in
/// the schema before the migration; `blob` is the backend's literal of one byte.
fn old_usage(blob: &str) -> String {
    format!(
        "INSERT INTO smart_accounts (id, name, plr_authorized, export_controlled, created_at)
             VALUES (1, 'Acme', 0, 0, 0);
         INSERT INTO virtual_accounts (id, smart_account_id, name, created_at)
             VALUES (1, 1, 'Lab', 0);
         INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key,
                 export_controlled, registered_at, last_contact, cert_serial, cert_expires_at)
             VALUES ('i-a', 1, 'CPAR', 'A', {blob}, 0, 0, 0, 1, 0),
                    ('i-b', 1, 'CPAR', 'B', {blob}, 0, 0, 0, 2, 0);
         INSERT INTO usage_reports (instance_id, sequence, received_at, window_start, window_end,
                 body_hash, gap, out_of_order)
             VALUES ('i-a', 1, 10, 0, 60, {blob}, 0, 0), ('i-a', 2, 20, 60, 120, {blob}, 0, 0),
                    ('i-b', 1, 30, 0, 60, {blob}, 0, 0);
         INSERT INTO usage_lines (instance_id, sequence, tag, admitted, rejected, peak_tps, histogram)
             VALUES ('i-a', 1, 'TPS', 5, 1, 3, {blob}), ('i-a', 2, 'TPS', 7, 0, 4, {blob}),
                    ('i-a', 2, 'BASE', 1, 0, 1, {blob}), ('i-b', 1, 'TPS', 11, 2, 9, {blob});"
    )
}

/// A database at the schema before the migration, holding [`old_usage`].
fn old_database(dir: &std::path::Path) -> Location {
    match entitle_pgtest::database_for_tests().unwrap() {
        Some(url) => {
            let conn = postgres::PgConn::connect(&url).unwrap();
            conn.batch(
                "CREATE TABLE schema_version (version BIGINT NOT NULL);
                 INSERT INTO schema_version VALUES (0)",
            )
            .unwrap();
            for (version, sql) in postgres::MIGRATIONS[..POSTGRES_BEFORE].iter().enumerate() {
                conn.batch(sql).unwrap();
                conn.batch(&format!(
                    "UPDATE schema_version SET version = {}",
                    version + 1
                ))
                .unwrap();
            }
            conn.batch(&old_usage("'\\x01'::bytea")).unwrap();
            Location::Postgres(url)
        }
        None => {
            let path = dir.join("authority.db");
            let conn = rusqlite::Connection::open(&path).unwrap();
            for sql in &sqlite::MIGRATIONS[..SQLITE_BEFORE] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", SQLITE_BEFORE)
                .unwrap();
            conn.execute_batch(&old_usage("x'01'")).unwrap();
            Location::Sqlite(path)
        }
    }
}

/// Every total of the account, as `instance tag admitted rejected reports last peak`.
fn totals(db: &Db) -> crate::error::Result<Vec<String>> {
    let request = pb::GetUsageRequest {
        smart_account: "Acme".into(),
        virtual_account: "Lab".into(),
        instance_id: String::new(),
    };
    Ok(crate::ledger::usage(db, &request)?
        .into_iter()
        .map(|t| {
            format!(
                "{} {} {} {} {} {} {}",
                t.instance_id,
                t.tag,
                t.admitted,
                t.rejected,
                t.reports,
                t.last_sequence,
                t.peak_tps
            )
        })
        .collect())
}

#[test]
fn usage_stored_under_instance_ids_is_kept_when_the_tables_are_keyed_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_at(&old_database(dir.path())).unwrap();
    let (before, resent, new_number, after) = store
        .run_blocking(|db| {
            let before = totals(db)?;
            // The migrated sequences still refuse a report counted twice...
            let resent = pb::UsageReport {
                instance_id: "i-a".into(),
                sequence: 2,
                ..Default::default()
            };
            let resent =
                crate::ledger::store_report(db, 40, &resent, &[1]).map(|ack| ack.duplicate);
            // ...and a new instance is numbered after the migrated ones, and stores usage.
            db.execute(
                "INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key,
                     export_controlled, registered_at, last_contact, cert_serial, cert_expires_at)
                 VALUES ('i-c', 1, 'CPAR', 'C', ?1, 0, 0, 0, 3, 0)",
                params![vec![1u8]],
            )?;
            let new_number: i64 = db
                .prepare_cached("SELECT number FROM instances WHERE id = 'i-c'")?
                .query_row(params![], |r| r.get(0))?;
            let report = pb::UsageReport {
                instance_id: "i-c".into(),
                sequence: 1,
                usage: vec![pb::EntitlementUsage {
                    tag: "TPS".into(),
                    admitted: 2,
                    ..Default::default()
                }],
                ..Default::default()
            };
            crate::ledger::store_report(db, 50, &report, &[2])?;
            Ok((before, resent, new_number, totals(db)?))
        })
        .unwrap();
    assert_eq!(
        before,
        [
            "i-a BASE 1 0 1 2 1",
            "i-a TPS 12 1 2 2 4",
            "i-b TPS 11 2 1 1 9"
        ]
    );
    assert!(matches!(resent, Ok(true)), "{resent:?}");
    assert_eq!(new_number, 3);
    assert_eq!(after[..3], before[..]);
    assert_eq!(after[3], "i-c TPS 2 0 1 1 0");
}
