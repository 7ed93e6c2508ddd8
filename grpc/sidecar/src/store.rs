//! The sidecar's local store: SQLite in WAL mode with `synchronous=FULL`, so whatever a
//! call returns from is on disk. It holds the agent's saved state, the call-home
//! destination, the registered instance, the usage spool, the last sequence stored per
//! attached engine, recent snapshots for `show license usage`, and the agent's events.
//!
//! # The spool and exactly once
//! A snapshot enters the spool in one transaction with its engine's sequence, so an engine
//! that resends after a crash on either side is recognised (`Duplicate`). Snapshots come
//! every second or so; they are summed into the one *open* row (the report being made)
//! until [`LocalStore::seal`] closes it at the end of the report interval, so a row is one
//! report and the capacity counts reports. A sealed row gets its report sequence when it is
//! first bound to a registered instance, in id order, in one transaction, and keeps that
//! (instance, sequence) for every resend; the authority stores each (instance, sequence)
//! once. A row is deleted only after the authority acknowledged it. So a crash anywhere
//! loses nothing and counts nothing twice.
//!
//! A row bound to an instance that has since retired (the device registered again) is sent
//! under that instance: the authority acknowledges it as a duplicate if it stored it before,
//! or answers `retired` (never stored, never will be), and then [`LocalStore::rebind`]
//! moves it to the current instance under a new sequence.
//!
//! The store is used from async code directly: its writes are a few small rows a second,
//! each one fsync. On a worker of a multi-thread runtime each call first hands the
//! worker's other tasks to another thread (`block_in_place`), so that a store slow to
//! lock or to sync (a long write of another task's, a disk that stalls) never holds up the
//! tasks that keep attached engines' leases.

use std::path::Path;

use entitle_engine::TpsHistogram;
use entitle_proto::pb;
use parking_lot::Mutex;
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Result, SidecarError};

/// The schema, one migration per entry; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    report BLOB NOT NULL,
    instance_id TEXT,
    sequence INTEGER
);
CREATE TABLE engines (engine_id TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL);
CREATE TABLE history (
    spool_id INTEGER PRIMARY KEY,
    report BLOB NOT NULL,
    sequence INTEGER,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at_unix INTEGER NOT NULL, event TEXT NOT NULL);
"#,
    // Snapshots are summed into one open row per report; rows from before were reports.
    "ALTER TABLE spool ADD COLUMN open INTEGER NOT NULL DEFAULT 0;",
];

/// How many snapshots `show license usage` can look back on.
const HISTORY: i64 = 200;
/// How many events are kept.
const EVENTS: i64 = 10_000;

/// What became of a snapshot offered to the spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spooled {
    /// Durable in the spool.
    Stored,
    /// This engine's snapshot was stored before (a resend).
    Duplicate,
    /// The spool is at capacity: keep the snapshot and offer it again later.
    Full,
    /// The engine skipped a sequence: it must resend from `expected`.
    OutOfOrder {
        /// The sequence the spool expects next from this engine.
        expected: u64,
    },
}

/// A spooled report bound to an instance, ready to sign and send.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The spool row.
    pub id: i64,
    /// The report, with its instance and sequence.
    pub report: pb::UsageReport,
}

/// The local store.
pub struct LocalStore {
    conn: Mutex<Connection>,
    /// Tests: how many of the next spool writes fail as if the disk refused them.
    #[cfg(test)]
    pub(crate) fail_spools: std::sync::atomic::AtomicU32,
}

impl LocalStore {
    /// Opens (creating and migrating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let applied: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if applied > MIGRATIONS.len() {
            return Err(SidecarError::Config(format!(
                "{} was written by a newer entitled (schema {applied})",
                path.display()
            )));
        }
        for (n, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", n + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            #[cfg(test)]
            fail_spools: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Runs `work` on the connection (see the module's note on async callers).
    fn with_conn<T>(&self, work: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let run = || work(&mut self.conn.lock());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(run)
            }
            // A current-thread runtime (tests) cannot hand its tasks on; a plain thread or
            // a blocking task holds up nothing.
            _ => run(),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
    }

    fn put(&self, key: &str, value: Option<&[u8]>) -> Result<()> {
        self.with_conn(|conn| {
            match value {
                Some(v) => conn.execute(
                    "INSERT INTO kv (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key, v],
                )?,
                None => conn.execute("DELETE FROM kv WHERE key = ?1", [key])?,
            };
            Ok(())
        })
    }

    /// A text value kept under `key`.
    pub fn get_text(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Keeps (or with `None` removes) a text value under `key`.
    pub fn put_text(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.put(key, value.map(str::as_bytes))
    }

    /// The agent's saved state (JSON) and the Unix milliseconds it was saved at.
    pub fn agent_state(&self) -> Result<Option<(Vec<u8>, i64)>> {
        let (Some(state), Some(at)) = (self.get("agent_state")?, self.get("agent_saved_at")?)
        else {
            return Ok(None);
        };
        let at = std::str::from_utf8(&at)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| SidecarError::Internal("the saved agent time is corrupt".into()))?;
        Ok(Some((state, at)))
    }

    /// Saves the agent's state (JSON) as of Unix milliseconds `at`, in one transaction.
    pub fn save_agent_state(&self, state: &[u8], at: i64) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            for (key, value) in [
                ("agent_state", state),
                ("agent_saved_at", at.to_string().as_bytes()),
            ] {
                tx.execute(
                    "INSERT INTO kv (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key, value],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The call-home destination set by the operator, if any.
    pub fn callhome_url(&self) -> Result<Option<String>> {
        Ok(self
            .get("callhome_url")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sets the call-home destination.
    pub fn set_callhome_url(&self, url: &str) -> Result<()> {
        self.put("callhome_url", Some(url.as_bytes()))
    }

    /// A key the device pinned (`"authority"` or `"codes"`; see [`crate::trust`]).
    pub fn pinned_key(&self, which: &str) -> Result<Option<Vec<u8>>> {
        self.get(&format!("pinned_{which}_key"))
    }

    /// Pins a key (`"authority"` or `"codes"`), replacing the one pinned before.
    pub fn pin_key(&self, which: &str, key: &[u8]) -> Result<()> {
        self.put(&format!("pinned_{which}_key"), Some(key))
    }

    /// Whether any attached engine ever stored a snapshot here.
    pub fn knows_engines(&self) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM engines)")?
                .query_row([], |r| r.get(0))?)
        })
    }

    /// The HTTP proxy set by the operator: `Some("")` when the operator chose to call home
    /// directly, `None` when the configuration decides.
    pub fn callhome_proxy(&self) -> Result<Option<String>> {
        self.get_text("callhome_proxy")
    }

    /// Sets the HTTP proxy (`""`: none).
    pub fn set_callhome_proxy(&self, proxy: &str) -> Result<()> {
        self.put_text("callhome_proxy", Some(proxy))
    }

    /// The registered instance id, if any.
    pub fn instance(&self) -> Result<Option<String>> {
        Ok(self
            .get("instance_id")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records the registered instance (or none after a deregistration). A new instance's
    /// reports are numbered from 1.
    pub fn set_instance(&self, instance: Option<&str>) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            match instance {
                Some(id) => {
                    tx.execute(
                        "INSERT INTO kv (key, value) VALUES ('instance_id', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [id.as_bytes()],
                    )?;
                    tx.execute(
                        "INSERT INTO kv (key, value) VALUES ('next_sequence', '1')
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [],
                    )?;
                }
                None => {
                    tx.execute("DELETE FROM kv WHERE key = 'instance_id'", [])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Offers a snapshot to the spool: from an attached engine with its sequence, or from
    /// the sidecar's own gate (`engine` none). It is summed into the open row, or opens one;
    /// with no open row and `capacity` rows spooled, nothing is stored.
    pub fn spool(
        &self,
        report: &pb::UsageReport,
        engine: Option<(&str, u64)>,
        capacity: u64,
    ) -> Result<Spooled> {
        self.with_conn(|conn| {
            #[cfg(test)]
            if self
                .fail_spools
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                return Err(SidecarError::Internal("injected spool failure".into()));
            }
            let tx = conn.transaction()?;
            if let Some((engine_id, sequence)) = engine {
                let last: u64 = tx
                    .prepare_cached("SELECT last_sequence FROM engines WHERE engine_id = ?1")?
                    .query_row([engine_id], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0);
                if sequence <= last {
                    return Ok(Spooled::Duplicate);
                }
                if sequence != last + 1 {
                    return Ok(Spooled::OutOfOrder { expected: last + 1 });
                }
            }
            let open: Option<(i64, Vec<u8>)> = tx
                .prepare_cached(
                    "SELECT id, report FROM spool WHERE open = 1 ORDER BY id DESC LIMIT 1",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match open {
                Some((id, bytes)) => {
                    let mut sum = pb::UsageReport::decode(bytes.as_slice()).map_err(|_| {
                        SidecarError::Internal(format!("spool row {id} does not decode"))
                    })?;
                    merge_report(&mut sum, report);
                    let bytes = sum.encode_to_vec();
                    tx.execute(
                        "UPDATE spool SET report = ?1 WHERE id = ?2",
                        params![bytes, id],
                    )?;
                    tx.execute(
                        "UPDATE history SET report = ?1 WHERE spool_id = ?2",
                        params![bytes, id],
                    )?;
                }
                None => {
                    let depth: u64 =
                        tx.query_row("SELECT COUNT(*) FROM spool", [], |r| r.get(0))?;
                    if depth >= capacity {
                        return Ok(Spooled::Full);
                    }
                    let bytes = report.encode_to_vec();
                    tx.execute("INSERT INTO spool (report, open) VALUES (?1, 1)", [&bytes])?;
                    let id = tx.last_insert_rowid();
                    tx.execute(
                        "INSERT INTO history (spool_id, report) VALUES (?1, ?2)",
                        params![id, bytes],
                    )?;
                    tx.execute(
                        "DELETE FROM history WHERE spool_id <= ?1 - ?2",
                        params![id, HISTORY],
                    )?;
                }
            }
            if let Some((engine_id, sequence)) = engine {
                tx.execute(
                    "INSERT INTO engines (engine_id, last_sequence) VALUES (?1, ?2)
                     ON CONFLICT (engine_id) DO UPDATE SET last_sequence = excluded.last_sequence",
                    params![engine_id, sequence],
                )?;
            }
            tx.commit()?;
            Ok(Spooled::Stored)
        })
    }

    /// Whether a snapshot offered now would be stored: there is an open row to sum it
    /// into, or room for one under `capacity`.
    pub fn has_room(&self, capacity: u64) -> Result<bool> {
        self.with_conn(|conn| {
            Ok(conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM spool WHERE open = 1) OR COUNT(*) < ?1 FROM spool",
                [i64::try_from(capacity).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )?)
        })
    }

    /// Closes the open row: it is a report now, ready to be bound and sent. Answers whether
    /// there was one.
    pub fn seal(&self) -> Result<bool> {
        self.with_conn(|conn| Ok(conn.execute("UPDATE spool SET open = 0 WHERE open = 1", [])? > 0))
    }

    /// How many rows the spool holds: the reports waiting for the authority and the one
    /// being summed, if any.
    pub fn depth(&self) -> Result<u64> {
        self.with_conn(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM spool", [], |r| r.get(0))?))
    }

    /// How many closed reports wait for the authority (the one being summed not counted).
    pub fn waiting(&self) -> Result<u64> {
        self.with_conn(|conn| {
            Ok(
                conn.query_row("SELECT COUNT(*) FROM spool WHERE open = 0", [], |r| {
                    r.get(0)
                })?,
            )
        })
    }

    /// Binds every sealed unbound row to `instance` (numbering them on from its last
    /// sequence, in spool order), then returns up to `limit` rows of `instance` in sequence
    /// order.
    pub fn pending(&self, instance: &str, limit: usize) -> Result<Vec<Pending>> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let unbound: Vec<i64> = tx
                .prepare_cached(
                    "SELECT id FROM spool WHERE instance_id IS NULL AND open = 0 ORDER BY id",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            number(&tx, instance, &unbound)?;
            let rows: Vec<(i64, Vec<u8>, String, i64)> = tx
                .prepare_cached(
                    "SELECT id, report, instance_id, sequence FROM spool WHERE instance_id = ?1
                     ORDER BY sequence LIMIT ?2",
                )?
                .query_map(params![instance, limit as i64], row)?
                .collect::<rusqlite::Result<_>>()?;
            tx.commit()?;
            rows.into_iter().map(decode_pending).collect()
        })
    }

    /// Up to `limit` rows bound to instances other than `current` (retired ones), by
    /// instance and sequence.
    pub fn stale(&self, current: &str, limit: usize) -> Result<Vec<Pending>> {
        self.with_conn(|conn| {
            let rows: Vec<(i64, Vec<u8>, String, i64)> = conn
                .prepare_cached(
                    "SELECT id, report, instance_id, sequence FROM spool
                     WHERE instance_id IS NOT NULL AND instance_id != ?1
                     ORDER BY instance_id, sequence LIMIT ?2",
                )?
                .query_map(params![current, limit as i64], row)?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter().map(decode_pending).collect()
        })
    }

    /// Moves rows `ids` (bound to a retired instance, whose authority answered that it
    /// never stored them) to `instance`, numbering them on after its last sequence in their
    /// old order, in one transaction. Rows already bound to `instance` stay as they are.
    pub fn rebind(&self, ids: &[i64], instance: &str) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let mut moving: Vec<(String, i64, i64)> = Vec::with_capacity(ids.len());
            {
                let mut statement = tx.prepare_cached(
                    "SELECT instance_id, sequence FROM spool WHERE id = ?1 AND instance_id != ?2",
                )?;
                for id in ids {
                    if let Some((old, sequence)) = statement
                        .query_row(params![id, instance], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?
                    {
                        moving.push((old, sequence, *id));
                    }
                }
            }
            moving.sort();
            let ids: Vec<i64> = moving.into_iter().map(|(_, _, id)| id).collect();
            number(&tx, instance, &ids)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Deletes rows the authority acknowledged.
    pub fn delivered(&self, ids: &[i64]) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            for id in ids {
                tx.execute("DELETE FROM spool WHERE id = ?1", [id])?;
                tx.execute("UPDATE history SET delivered = 1 WHERE spool_id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The most recent `limit` snapshots, newest first.
    pub fn history(&self, limit: u32) -> Result<Vec<pb::SpooledSnapshot>> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT report, sequence, delivered FROM history ORDER BY spool_id DESC LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (bytes, sequence, delivered) = row?;
                let report = pb::UsageReport::decode(bytes.as_slice())
                    .map_err(|_| SidecarError::Internal("a history row does not decode".into()))?;
                out.push(pb::SpooledSnapshot {
                    sequence: sequence.unwrap_or(0) as u64,
                    window_start: report.window_start,
                    window_end: report.window_end,
                    usage: report.usage,
                    delivered,
                });
            }
            Ok(out)
        })
    }

    /// Appends events (JSON) to the event log, keeping the newest [`EVENTS`].
    pub fn append_events(&self, at_unix: i64, events: &[String]) -> Result<()> {
        self.with_conn(|conn| {
            if events.is_empty() {
                return Ok(());
            }
            let tx = conn.transaction()?;
            for event in events {
                tx.execute(
                    "INSERT INTO events (at_unix, event) VALUES (?1, ?2)",
                    params![at_unix, event],
                )?;
            }
            tx.execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
                [EVENTS],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The newest `limit` events, newest first: (Unix seconds stored, JSON).
    pub fn events(&self, limit: u32) -> Result<Vec<(i64, String)>> {
        self.with_conn(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT at_unix, event FROM events ORDER BY id DESC LIMIT ?1")?;
            let rows = statement.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

/// Binds rows `ids` to `instance` with its next sequences, in the order given.
fn number(tx: &Transaction<'_>, instance: &str, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let next: i64 = tx
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM kv WHERE key = 'next_sequence'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(1);
    let mut sequence = next;
    for id in ids {
        tx.execute(
            "UPDATE spool SET instance_id = ?1, sequence = ?2 WHERE id = ?3",
            params![instance, sequence, id],
        )?;
        tx.execute(
            "UPDATE history SET sequence = ?1 WHERE spool_id = ?2",
            params![sequence, id],
        )?;
        sequence += 1;
    }
    tx.execute(
        "INSERT INTO kv (key, value) VALUES ('next_sequence', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [sequence.to_string().as_bytes()],
    )?;
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Vec<u8>, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn decode_pending((id, bytes, instance, sequence): (i64, Vec<u8>, String, i64)) -> Result<Pending> {
    let mut report = pb::UsageReport::decode(bytes.as_slice())
        .map_err(|_| SidecarError::Internal(format!("spool row {id} does not decode")))?;
    report.instance_id = instance;
    report.sequence = sequence as u64;
    Ok(Pending { id, report })
}

/// Adds `more` to `sum`: the window spans both, counts add per tag, the peak is the higher
/// and the TPS histograms add (a histogram that does not decode is left out: the counts
/// are what the ledger needs).
pub fn merge_report(sum: &mut pb::UsageReport, more: &pb::UsageReport) {
    sum.window_start = match (sum.window_start, more.window_start) {
        (0, w) | (w, 0) => w,
        (a, b) => a.min(b),
    };
    sum.window_end = sum.window_end.max(more.window_end);
    for u in &more.usage {
        let Some(s) = sum.usage.iter_mut().find(|s| s.tag == u.tag) else {
            sum.usage.push(u.clone());
            continue;
        };
        s.admitted = s.admitted.saturating_add(u.admitted);
        s.rejected = s.rejected.saturating_add(u.rejected);
        s.peak_tps = s.peak_tps.max(u.peak_tps);
        if u.tps_histogram.is_empty() {
            continue;
        }
        if s.tps_histogram.is_empty() {
            s.tps_histogram = u.tps_histogram.clone();
            continue;
        }
        let added = match (
            TpsHistogram::from_v2(&s.tps_histogram),
            TpsHistogram::from_v2(&u.tps_histogram),
        ) {
            (Ok(mut a), Ok(b)) => a.0.add(&b.0).ok().and_then(|()| a.to_v2_deflate().ok()),
            (Err(_), Ok(_)) => Some(u.tps_histogram.clone()),
            (_, Err(_)) => None,
        };
        if let Some(added) = added {
            s.tps_histogram = added;
        }
    }
}

#[cfg(test)]
mod tests;
