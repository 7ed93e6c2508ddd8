//! The SQLite backend: one file in WAL mode with `synchronous=FULL`, its [`Checkpointer`],
//! and its migrations, counted by `PRAGMA user_version`.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::OpenFlags;

use super::db::{DbError, Result, from_sqlite};

/// The schema, one migration per entry; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE smart_accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    plr_authorized INTEGER NOT NULL,
    export_controlled INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE virtual_accounts (
    id INTEGER PRIMARY KEY,
    smart_account_id INTEGER NOT NULL REFERENCES smart_accounts(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (smart_account_id, name)
);
CREATE TABLE pools (
    virtual_account_id INTEGER NOT NULL REFERENCES virtual_accounts(id),
    tag TEXT NOT NULL,
    term_end INTEGER NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity >= 0),
    plr_capable INTEGER NOT NULL,
    PRIMARY KEY (virtual_account_id, tag, term_end)
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    virtual_account_id INTEGER NOT NULL REFERENCES virtual_accounts(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    max_uses INTEGER NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    export_controlled INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    virtual_account_id INTEGER NOT NULL REFERENCES virtual_accounts(id),
    product_id TEXT NOT NULL,
    serial TEXT NOT NULL,
    device_key BLOB NOT NULL,
    export_controlled INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    last_contact INTEGER NOT NULL,
    deregistered INTEGER NOT NULL DEFAULT 0,
    last_counter INTEGER NOT NULL DEFAULT 0,
    cert_serial INTEGER NOT NULL,
    cert_expires_at INTEGER NOT NULL
);
CREATE INDEX instances_by_udi ON instances (product_id, serial);
CREATE TABLE grants (
    instance_id TEXT NOT NULL REFERENCES instances(id),
    tag TEXT NOT NULL,
    requested INTEGER NOT NULL,
    granted INTEGER NOT NULL,
    PRIMARY KEY (instance_id, tag)
);
CREATE TABLE usage_reports (
    instance_id TEXT NOT NULL REFERENCES instances(id),
    sequence INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    body_hash BLOB NOT NULL,
    gap INTEGER NOT NULL,
    out_of_order INTEGER NOT NULL,
    PRIMARY KEY (instance_id, sequence)
) WITHOUT ROWID;
CREATE TABLE usage_lines (
    instance_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    tag TEXT NOT NULL,
    admitted INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    peak_tps INTEGER NOT NULL,
    histogram BLOB NOT NULL,
    PRIMARY KEY (instance_id, sequence, tag)
) WITHOUT ROWID;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE reservations (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('permanent', 'specific')),
    virtual_account_id INTEGER NOT NULL REFERENCES virtual_accounts(id),
    product_id TEXT NOT NULL,
    serial TEXT NOT NULL,
    request_sequence INTEGER NOT NULL,
    export_controlled INTEGER NOT NULL,
    authorization_code TEXT NOT NULL,
    confirmation_code TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    returned_at INTEGER NOT NULL DEFAULT 0,
    UNIQUE (product_id, serial, request_sequence)
);
CREATE TABLE reserved_licences (
    reservation_id INTEGER NOT NULL REFERENCES reservations(id),
    tag TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, tag)
) WITHOUT ROWID;
"#,
    // Pools kept honest: each instance's communication deadline, when it expired (its
    // licences released) or was removed, and whether the operator let a registration
    // replace it while in contact; the catalogue of what each licence tag is worth.
    r#"
ALTER TABLE instances ADD COLUMN deadline_at INTEGER NOT NULL DEFAULT 0;
UPDATE instances SET deadline_at = last_contact + 90 * 86400;
ALTER TABLE instances ADD COLUMN expired_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX instances_by_deadline ON instances (deadline_at) WHERE deregistered = 0 AND expired_at = 0;
ALTER TABLE instances ADD COLUMN replaceable INTEGER NOT NULL DEFAULT 0;
CREATE TABLE catalogue (
    tag TEXT PRIMARY KEY,
    tps_per_unit INTEGER NOT NULL CHECK (tps_per_unit > 0),
    policy TEXT NOT NULL CHECK (policy IN ('hard', 'steady-state', 'monitor'))
);
"#,
    // Satellites. On the cloud: the delegations it issued (with the virtual accounts each
    // names), how far each satellite's sync got, and which instances a satellite serves.
    // On a satellite: the device reports the cloud has not acknowledged yet, and the
    // reservation operations waiting for it.
    r#"
ALTER TABLE instances ADD COLUMN satellite TEXT NOT NULL DEFAULT '';
CREATE TABLE satellites (
    serial INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    public_key BLOB NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL DEFAULT 0,
    delegation BLOB NOT NULL
);
CREATE TABLE delegated_accounts (
    serial INTEGER NOT NULL REFERENCES satellites(serial),
    virtual_account_id INTEGER NOT NULL REFERENCES virtual_accounts(id),
    PRIMARY KEY (serial, virtual_account_id)
) WITHOUT ROWID;
CREATE TABLE sync_state (
    public_key BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    last_sequence INTEGER NOT NULL,
    last_sync_at INTEGER NOT NULL
);
CREATE TABLE sync_outbox (
    instance_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    body BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (instance_id, sequence)
) WITHOUT ROWID;
CREATE TABLE sync_reservations (
    id INTEGER PRIMARY KEY,
    operation BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
"#,
    // Numbers of the satellite's sync state apart from the bytes in `meta`, so that each
    // column has one type (as PostgreSQL needs).
    r#"
CREATE TABLE meta_numbers (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta_numbers SELECT key, value FROM meta WHERE typeof(value) = 'integer';
DELETE FROM meta WHERE typeof(value) = 'integer';
"#,
    // Usage keyed by the instance's number instead of its 32-character id: each row a
    // third smaller, and a fifth less of the writer's time a report. No reference from a
    // report to its instance (as on PostgreSQL): a report is stored only for an instance
    // its batch read, and instances are never deleted. A new instance is numbered by the
    // trigger, so that registration and sync insert instances as before.
    r#"
ALTER TABLE instances ADD COLUMN number INTEGER;
UPDATE instances SET number = rowid;
CREATE UNIQUE INDEX instances_by_number ON instances (number);
CREATE TRIGGER instances_numbered AFTER INSERT ON instances WHEN NEW.number IS NULL
BEGIN
    UPDATE instances SET number = (SELECT COALESCE(MAX(number), 0) + 1 FROM instances)
    WHERE id = NEW.id;
END;
CREATE TABLE usage_reports_numbered (
    instance_number INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    body_hash BLOB NOT NULL,
    gap INTEGER NOT NULL,
    out_of_order INTEGER NOT NULL,
    PRIMARY KEY (instance_number, sequence)
) WITHOUT ROWID;
INSERT INTO usage_reports_numbered
    SELECT i.number, u.sequence, u.received_at, u.window_start, u.window_end, u.body_hash, u.gap, u.out_of_order
    FROM usage_reports u JOIN instances i ON i.id = u.instance_id;
DROP TABLE usage_reports;
ALTER TABLE usage_reports_numbered RENAME TO usage_reports;
CREATE TABLE usage_lines_numbered (
    instance_number INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    tag TEXT NOT NULL,
    admitted INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    peak_tps INTEGER NOT NULL,
    histogram BLOB NOT NULL,
    PRIMARY KEY (instance_number, sequence, tag)
) WITHOUT ROWID;
INSERT INTO usage_lines_numbered
    SELECT i.number, l.sequence, l.tag, l.admitted, l.rejected, l.peak_tps, l.histogram
    FROM usage_lines l JOIN instances i ON i.id = l.instance_id;
DROP TABLE usage_lines;
ALTER TABLE usage_lines_numbered RENAME TO usage_lines;
"#,
    // Reports in the order they arrive, their lines under each report's row number: a
    // commit appends to both tables, and only the reports' key index takes a row at each
    // instance's place. Keyed by instance, each table dirtied a page for every instance of
    // a commit: about 50 WAL frames a commit of 48 reports from 16 devices. The view keeps
    // `usage_lines` as PostgreSQL has it, for every query that reads it.
    r#"
CREATE TABLE usage_reports_arrived (
    id INTEGER PRIMARY KEY,
    instance_number INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    body_hash BLOB NOT NULL,
    gap INTEGER NOT NULL,
    out_of_order INTEGER NOT NULL,
    UNIQUE (instance_number, sequence)
);
INSERT INTO usage_reports_arrived (instance_number, sequence, received_at, window_start,
        window_end, body_hash, gap, out_of_order)
    SELECT instance_number, sequence, received_at, window_start, window_end, body_hash, gap,
        out_of_order
    FROM usage_reports ORDER BY received_at, instance_number, sequence;
CREATE TABLE usage_report_lines (
    report_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    admitted INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    peak_tps INTEGER NOT NULL,
    histogram BLOB NOT NULL,
    PRIMARY KEY (report_id, tag)
) WITHOUT ROWID;
INSERT INTO usage_report_lines
    SELECT r.id, l.tag, l.admitted, l.rejected, l.peak_tps, l.histogram
    FROM usage_lines l JOIN usage_reports_arrived r
        ON r.instance_number = l.instance_number AND r.sequence = l.sequence;
DROP TABLE usage_lines;
DROP TABLE usage_reports;
ALTER TABLE usage_reports_arrived RENAME TO usage_reports;
CREATE VIEW usage_lines AS
    SELECT r.instance_number, r.sequence, l.tag, l.admitted, l.rejected, l.peak_tps, l.histogram
    FROM usage_report_lines l JOIN usage_reports r ON r.id = l.report_id;
"#,
];

/// Opens (creating if needed) the database at `path` and migrates it.
pub(super) fn open(path: &Path) -> Result<rusqlite::Connection> {
    let mut conn = rusqlite::Connection::open(path).map_err(from_sqlite)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(from_sqlite)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(from_sqlite)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(from_sqlite)?;
    // Each operation runs in a savepoint, whose journal would otherwise go to a temporary
    // file; and the default page cache (2 MiB) made the writer re-read its indexes with
    // `pread`, a quarter of its time under ingest. 64 MiB (negative: KiB).
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(from_sqlite)?;
    conn.pragma_update(None, "cache_size", -65536)
        .map_err(from_sqlite)?;
    // The [`Checkpointer`] copies the WAL into the database file; the writer itself does
    // only once the WAL has grown this far (SQLite's default is 1,000 pages), which it
    // does not while the checkpointer keeps up. A WAL starts again from its beginning
    // only once all of it was copied, which under steady load takes the writer's own
    // checkpoint, at this size.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
        .map_err(from_sqlite)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// WAL pages (4 KiB) at which the writer checkpoints at the end of a commit.
const WRITER_CHECKPOINT_PAGES: i64 = 10_000;

/// How long the checkpointer waits after a checkpoint before the next one: its copies
/// then cover many commits each, as a page that every commit changes is copied once.
const CHECKPOINT_PERIOD: Duration = Duration::from_millis(100);

/// Copies the WAL of the store's database into the database file (a passive checkpoint,
/// which never blocks the writer) on a thread and connection of its own, at most every
/// [`CHECKPOINT_PERIOD`] and only after a commit. In the writer's commits, as SQLite does
/// by default, checkpoints took 8% of its CPU under usage load and stalled the commit that
/// ran one (two flushes, and a thousand pages copied). It ends when its handle is dropped.
pub(super) struct Checkpointer {
    committed: mpsc::SyncSender<()>,
}

impl Checkpointer {
    /// Starts the checkpointer of the database at `path`, which [`open`] has migrated.
    pub(super) fn start(path: &Path) -> Result<Self> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(from_sqlite)?;
        // A checkpoint flushes the WAL before copying it, and the database file after.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(from_sqlite)?;
        let (committed, commits) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("entitle-store-checkpoint".into())
            .spawn(move || {
                while commits.recv().is_ok() {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        // The writer's own checkpoint remains.
                        tracing::warn!(error = %e, "a checkpoint of the store failed");
                    }
                    std::thread::sleep(CHECKPOINT_PERIOD);
                }
            })
            .map_err(|e| DbError::Other(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { committed })
    }

    /// Tells the checkpointer that a commit added to the WAL.
    pub(super) fn committed(&self) {
        // Full: a checkpoint is due already.
        let _ = self.committed.try_send(());
    }
}

fn migrate(conn: &mut rusqlite::Connection) -> Result<()> {
    let applied: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(from_sqlite)?;
    if applied > MIGRATIONS.len() {
        return Err(DbError::Other(format!(
            "the store has schema version {applied}, newer than this authority knows ({})",
            MIGRATIONS.len()
        )));
    }
    if applied > 0 && applied < MIGRATIONS.len() {
        // An existing ledger is rewritten by some migrations: say why the start waits.
        tracing::info!(
            from = applied,
            to = MIGRATIONS.len(),
            "migrating the store's schema"
        );
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(from_sqlite)?;
        tx.execute_batch(sql).map_err(from_sqlite)?;
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(from_sqlite)?;
        tx.commit().map_err(from_sqlite)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_checkpointer_copies_commits_into_the_database_file_while_the_store_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authority.db");
        let store = crate::store::Store::open(&path).unwrap();
        store
            .run(|db| {
                db.execute(
                    "INSERT INTO meta_numbers (key, value) VALUES ('checkpointed', 7)",
                    crate::params![],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        // Far below the writer's own checkpoint: only the checkpointer copies the commit
        // into the file, which alone (without its WAL) then holds it.
        let alone = dir.path().join("alone.db");
        let read = || -> Option<i64> {
            std::fs::copy(&path, &alone).ok()?;
            let conn = rusqlite::Connection::open(&alone).ok()?;
            conn.query_row(
                "SELECT value FROM meta_numbers WHERE key = 'checkpointed'",
                [],
                |r| r.get(0),
            )
            .ok()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut found = read();
        while found.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            found = read();
        }
        assert_eq!(found, Some(7), "the database file alone holds the commit");
        // The store's WAL is still there: the copy came from a checkpoint, not a close.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        assert!(Path::new(&wal).exists());
        drop(store);
    }

    #[test]
    fn a_database_of_a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authority.db");
        drop(open(&path).unwrap());
        let newer = MIGRATIONS.len() + 1;
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let e = open(&path).unwrap_err();
        assert!(
            e.to_string().contains("newer than this authority knows"),
            "{e}"
        );
        let version: usize = rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, newer);
    }
}
