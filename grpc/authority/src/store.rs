//! The authority's store: SQLite in WAL mode, one writer thread with group commit.
//!
//! Every operation is a closure run on the writer thread inside a savepoint of the current
//! batch transaction. Operations queued while a batch commits form the next batch, so one
//! fsync covers many of them; a closure that fails is rolled back to its savepoint and
//! nothing it wrote survives. Results are handed back only after the batch's commit is
//! durable (`synchronous=FULL`), so nothing is acknowledged that a crash could lose.

use std::any::Any;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// The schema, one migration per entry; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
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
];

/// Most operations in one commit.
const MAX_BATCH: usize = 4096;

type Work = Box<dyn FnOnce(&Connection) -> Result<Box<dyn Any + Send>> + Send>;

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Box<dyn Any + Send>>>,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates it, and starts the
    /// writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("entitle-store".into())
            .spawn(move || write_loop(conn, queue))
            .map_err(|e| Error::Internal(format!("cannot start the store thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `work` in the next batch and returns its result once the batch is durable.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(work).await
    }

    /// Queues `work` now (so that queued operations keep their order) and returns a future
    /// of its result, ready once the batch is durable.
    pub fn submit<T, W>(
        &self,
        work: W,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T, W>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Work =
            Box::new(move |conn| work(conn).map(|v| Box::new(v) as Box<dyn Any + Send>));
        let queued = self.jobs.send(Job { work, reply }).is_ok();
        async move {
            if !queued {
                return Err(Error::Internal("the store has stopped".into()));
            }
            let value = answer
                .await
                .map_err(|_| Error::Internal("the store has stopped".into()))??;
            value
                .downcast::<T>()
                .map(|v| *v)
                .map_err(|_| Error::Internal("store result of the wrong type".into()))
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(Error::FailedPrecondition(format!(
            "the store has schema version {applied}, newer than this authority knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn write_loop(conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut done = Vec::with_capacity(batch.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let message = e.to_string();
            for job in batch {
                let _ = job.reply.send(Err(Error::Internal(format!(
                    "cannot begin a transaction: {message}"
                ))));
            }
            continue;
        }
        for job in batch {
            let result = run_in_savepoint(&conn, job.work);
            done.push((job.reply, result));
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                for (reply, result) in done {
                    // The caller may have gone away; its write is durable all the same.
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let message = e.to_string();
                for (reply, _) in done {
                    let _ = reply.send(Err(Error::Internal(format!(
                        "commit failed, nothing was stored: {message}"
                    ))));
                }
            }
        }
    }
}

fn run_in_savepoint(conn: &Connection, work: Work) -> Result<Box<dyn Any + Send>> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = work(conn);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}
