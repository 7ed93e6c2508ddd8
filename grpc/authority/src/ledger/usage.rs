//! Usage: signed reports stored once per (instance, sequence), and the totals.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::store::DbError;
use crate::store::db::{Kind, Value};

/// Stores a verified usage report once per (instance, sequence): a [`ReportBatch`] of one.
pub fn store_report(
    conn: &Db,
    now: i64,
    report: &pb::UsageReport,
    body_hash: &[u8],
) -> Result<pb::UsageAck> {
    let mut batch = ReportBatch::read(conn, &[report])?;
    let ack = batch.add(now, report, body_hash)?;
    batch.write(conn)?;
    Ok(ack)
}

/// Verified usage reports stored set-wise, each as if stored alone after those before it:
/// once per (instance, sequence); a resend of the same body answered `duplicate`, of
/// another body refused; nothing stored for a deregistered instance, whose reports never
/// stored are answered `retired`; gaps and reports that went back flagged and audited.
///
/// [`read`](Self::read) takes what the store holds for the reports' instances,
/// [`add`](Self::add) decides each report in memory, in order, and
/// [`write`](Self::write) stores the new ones. On PostgreSQL each statement is a round trip,
/// so the read there is one query for the whole batch (lists bound as arrays; a second only
/// when a report is at or below its instance's last sequence) and the write one `COPY` per
/// table: a handful of round trips however many reports the batch holds, where storing
/// them one by one took nine each (a savepoint, seven statements, its release). SQLite, in process, runs one cached statement per
/// instance and per row.
pub struct ReportBatch<'a> {
    /// The reports' instances that are registered here.
    instances: HashMap<&'a str, InstanceState>,
    /// Body hashes stored by (instance number, sequence), before this batch or in it: only
    /// those at or below their instance's last sequence, as no other can be stored.
    stored: HashMap<(i64, i64), Vec<u8>>,
    new: Vec<NewReport<'a>>,
    /// Gaps and reports that went back: (at, instance, detail).
    audits: Vec<(i64, &'a str, String)>,
}

struct InstanceState {
    /// The key of its usage rows.
    number: i64,
    deregistered: bool,
    /// The highest sequence stored, 0 for none.
    last: i64,
}

struct NewReport<'a> {
    report: &'a pb::UsageReport,
    instance_number: i64,
    sequence: i64,
    received_at: i64,
    body_hash: &'a [u8],
    gap: bool,
    out_of_order: bool,
}

const INSTANCE_STATE: &str = "SELECT i.number, i.deregistered, COALESCE((SELECT MAX(u.sequence) FROM usage_reports u WHERE u.instance_number = i.number), 0)
     FROM instances i WHERE i.id = ?1";
const INSTANCE_STATES: &str = "SELECT i.id, i.number, i.deregistered, COALESCE((SELECT MAX(u.sequence) FROM usage_reports u WHERE u.instance_number = i.number), 0)
     FROM instances i WHERE i.id = ANY(?1)";
const STORED_HASH: &str =
    "SELECT body_hash FROM usage_reports WHERE instance_number = ?1 AND sequence = ?2";
const STORED_HASHES: &str = "SELECT u.instance_number, u.sequence, u.body_hash
     FROM usage_reports u JOIN unnest(?1::bigint[], ?2::bigint[]) AS k(instance_number, sequence)
     ON u.instance_number = k.instance_number AND u.sequence = k.sequence";
// Without ON CONFLICT: the batch read which sequences are stored, and on PostgreSQL the
// upsert's speculative insertion made the insert of a batch's reports a third dearer
// (1.35 ms against 1.02 ms for about 60 reports). A report another process stored since
// the read breaks the key (see `write`).
const INSERT_REPORT: &str = "INSERT INTO usage_reports (instance_number, sequence, received_at, window_start, window_end, body_hash, gap, out_of_order)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
// SQLite: a report's lines are stored under its row number (see migration 7 there); an
// insert into a table WITHOUT ROWID leaves `last_insert_rowid()` at the report's.
const INSERT_REPORT_LINE: &str =
    "INSERT INTO usage_report_lines (report_id, tag, admitted, rejected, peak_tps, histogram)
     VALUES (last_insert_rowid(), ?1, ?2, ?3, ?4, ?5)";
// PostgreSQL stores a batch's rows by COPY: several rows a WAL record and no statement
// per row, about half an INSERT's cost per row.
const REPORTS_TABLE: &str = "usage_reports (instance_number, sequence, received_at, window_start, window_end, body_hash, gap, out_of_order)";
const REPORTS_KINDS: [Kind; 8] = [
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Blob,
    Kind::Int,
    Kind::Int,
];
const LINES_TABLE: &str =
    "usage_lines (instance_number, sequence, tag, admitted, rejected, peak_tps, histogram)";
const LINES_KINDS: [Kind; 7] = [
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Blob,
];

impl<'a> ReportBatch<'a> {
    /// Reads the state of the instances of `reports` and the body hashes stored under
    /// their sequences (those at or below their instance's last only: usually none).
    pub fn read(conn: &Db, reports: &[&'a pb::UsageReport]) -> Result<Self> {
        let mut ids: Vec<&'a str> = reports.iter().map(|r| r.instance_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut instances = HashMap::with_capacity(ids.len());
        if conn.is_postgres() {
            let rows = conn
                .prepare_cached(INSTANCE_STATES)?
                .query_map([&ids], |r| {
                    let id: String = r.get(0)?;
                    let state = InstanceState {
                        number: r.get(1)?,
                        deregistered: r.get(2)?,
                        last: r.get(3)?,
                    };
                    Ok((id, state))
                })?;
            for row in rows {
                let (id, state) = row?;
                if let Ok(at) = ids.binary_search(&id.as_str()) {
                    instances.insert(ids[at], state);
                }
            }
        } else {
            let mut statement = conn.prepare_cached(INSTANCE_STATE)?;
            for &id in &ids {
                let state = statement
                    .query_row([id], |r| {
                        Ok(InstanceState {
                            number: r.get(0)?,
                            deregistered: r.get(1)?,
                            last: r.get(2)?,
                        })
                    })
                    .optional()?;
                if let Some(state) = state {
                    instances.insert(id, state);
                }
            }
        }
        // Only a resend or a report that went back can find its sequence stored.
        let mut maybe_stored: Vec<(i64, i64)> = reports
            .iter()
            .filter_map(|r| {
                let sequence = i64::try_from(r.sequence).ok()?;
                let state = instances.get(r.instance_id.as_str())?;
                (sequence >= 1 && sequence <= state.last).then_some((state.number, sequence))
            })
            .collect();
        maybe_stored.sort_unstable();
        maybe_stored.dedup();
        let mut stored = HashMap::with_capacity(maybe_stored.len());
        if !maybe_stored.is_empty() && conn.is_postgres() {
            let (numbers, sequences): (Vec<i64>, Vec<i64>) = maybe_stored.iter().copied().unzip();
            let rows = conn.prepare_cached(STORED_HASHES)?.query_map(
                params![numbers, sequences],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )?;
            for row in rows {
                let (number, sequence, hash) = row?;
                stored.insert((number, sequence), hash);
            }
        } else if !maybe_stored.is_empty() {
            let mut statement = conn.prepare_cached(STORED_HASH)?;
            for (number, sequence) in maybe_stored {
                if let Some(hash) = statement
                    .query_row(params![number, sequence], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                {
                    stored.insert((number, sequence), hash);
                }
            }
        }
        Ok(Self {
            instances,
            stored,
            new: Vec::new(),
            audits: Vec::new(),
        })
    }

    /// Decides `report` after those added before it: its acknowledgement, or why it is
    /// refused (then it changes nothing). Read `report`'s instance first with
    /// [`read`](Self::read).
    pub fn add(
        &mut self,
        now: i64,
        report: &'a pb::UsageReport,
        body_hash: &'a [u8],
    ) -> Result<pb::UsageAck> {
        let instance = report.instance_id.as_str();
        let state = self.instances.get_mut(instance).ok_or_else(|| {
            Error::NotFound(format!(
                "no product instance {instance:?} is registered here"
            ))
        })?;
        let sequence = i64::try_from(report.sequence)
            .map_err(|_| invalid("the report sequence is out of range"))?;
        if sequence == 0 {
            return Err(invalid("report sequences start at 1"));
        }
        let mut ack = pb::UsageAck {
            instance_id: report.instance_id.clone(),
            sequence: report.sequence,
            ..Default::default()
        };
        if report.usage.len() > 1024 {
            return Err(invalid("at most 1024 entitlements per report"));
        }
        let last = state.last;
        ack.gap = sequence > last + 1;
        ack.out_of_order = sequence < last;
        // A deregistered (or replaced) instance stores nothing new but still has its
        // resends acknowledged as duplicates; a report it never stored is answered
        // `retired`.
        let stored = self.stored.get(&(state.number, sequence));
        if state.deregistered || stored.is_some() {
            return match stored {
                Some(stored) if stored.as_slice() == body_hash => Ok(pb::UsageAck {
                    duplicate: true,
                    gap: false,
                    out_of_order: false,
                    ..ack
                }),
                Some(_) => Err(Error::AlreadyExists(format!(
                    "report {sequence} of {instance} was stored before with different content; refusing to count it twice"
                ))),
                // Final: a retired instance never stores again, so the device may count
                // this usage under its current instance without counting it twice.
                None => Ok(pb::UsageAck {
                    retired: true,
                    gap: false,
                    out_of_order: false,
                    ..ack
                }),
            };
        }
        let mut tags = HashSet::with_capacity(report.usage.len());
        for u in &report.usage {
            check_tag(&u.tag)?;
            for n in [u.admitted, u.rejected, u.peak_tps] {
                count(&u.tag, n)?;
            }
            if !tags.insert(u.tag.as_str()) {
                return Err(invalid(format!(
                    "entitlement {} appears twice in report {sequence}",
                    u.tag
                )));
            }
        }
        state.last = last.max(sequence);
        self.stored
            .insert((state.number, sequence), body_hash.to_vec());
        self.new.push(NewReport {
            report,
            instance_number: state.number,
            sequence,
            received_at: now,
            body_hash,
            gap: ack.gap,
            out_of_order: ack.out_of_order,
        });
        if ack.gap || ack.out_of_order {
            let what = if ack.gap {
                "skipped ahead"
            } else {
                "went back"
            };
            self.audits.push((
                now,
                instance,
                format!("report {sequence} {what} (last was {last})"),
            ));
        }
        Ok(ack)
    }

    /// Stores the reports [`add`](Self::add) accepted, their lines and their audit
    /// entries. A conflict (run again: the next read finds the report stored) when
    /// another process stored one of them since [`read`](Self::read).
    pub fn write(&self, conn: &Db) -> Result<()> {
        // In key order, so that two processes storing the same reports lock their rows in
        // one order and never deadlock.
        let mut new: Vec<&NewReport<'_>> = self.new.iter().collect();
        new.sort_unstable_by_key(|n| (n.instance_number, n.sequence));
        // Every report's instance exists (it was read, and instances are never deleted),
        // so the only constraint the insert can break is the key.
        let stored_first = |e: DbError| match e {
            DbError::Constraint(_) => {
                DbError::Conflict("another process stored one of these usage reports first".into())
            }
            e => e,
        };
        if conn.is_postgres() && !new.is_empty() {
            let rows: Vec<Vec<Value<'_>>> = new
                .iter()
                .map(|n| {
                    vec![
                        Value::Int(n.instance_number),
                        Value::Int(n.sequence),
                        Value::Int(n.received_at),
                        Value::Int(n.report.window_start),
                        Value::Int(n.report.window_end),
                        Value::Blob(n.body_hash),
                        Value::Int(i64::from(n.gap)),
                        Value::Int(i64::from(n.out_of_order)),
                    ]
                })
                .collect();
            conn.copy_in(REPORTS_TABLE, &REPORTS_KINDS, &rows)
                .map_err(stored_first)?;
            let mut rows: Vec<Vec<Value<'_>>> = Vec::new();
            for n in &new {
                for u in &n.report.usage {
                    rows.push(vec![
                        Value::Int(n.instance_number),
                        Value::Int(n.sequence),
                        Value::Text(&u.tag),
                        Value::Int(count(&u.tag, u.admitted)?),
                        Value::Int(count(&u.tag, u.rejected)?),
                        Value::Int(count(&u.tag, u.peak_tps)?),
                        Value::Blob(&u.tps_histogram),
                    ]);
                }
            }
            if !rows.is_empty() {
                conn.copy_in(LINES_TABLE, &LINES_KINDS, &rows)?;
            }
        } else if !conn.is_postgres() {
            // Each report's lines go under the row number its insert just took.
            let mut report = conn.prepare_cached(INSERT_REPORT)?;
            let mut line = conn.prepare_cached(INSERT_REPORT_LINE)?;
            for n in &new {
                report
                    .execute(params![
                        n.instance_number,
                        n.sequence,
                        n.received_at,
                        n.report.window_start,
                        n.report.window_end,
                        n.body_hash,
                        n.gap,
                        n.out_of_order
                    ])
                    .map_err(stored_first)?;
                for u in &n.report.usage {
                    line.execute(params![
                        u.tag,
                        count(&u.tag, u.admitted)?,
                        count(&u.tag, u.rejected)?,
                        count(&u.tag, u.peak_tps)?,
                        u.tps_histogram
                    ])?;
                }
            }
        }
        for (at, instance, detail) in &self.audits {
            audit(
                conn,
                *at,
                &format!("device:{instance}"),
                "usage.sequence",
                detail,
            )?;
        }
        Ok(())
    }
}

/// A usage count as stored, refused when it does not fit.
fn count(tag: &str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| invalid(format!("a count of {tag} is out of range")))
}

/// The usage ledger: totals per instance and tag, for one instance or a virtual account.
pub fn usage(conn: &Db, r: &pb::GetUsageRequest) -> Result<Vec<pb::UsageTotal>> {
    let sql = "SELECT i.id, l.tag, SUM(l.admitted), SUM(l.rejected), COUNT(*), MAX(l.sequence), MAX(l.peak_tps)
               FROM usage_lines l JOIN instances i ON i.number = l.instance_number
               WHERE (?1 = '' OR i.id = ?1) AND (?2 = 0 OR i.virtual_account_id = ?2)
               GROUP BY i.id, l.tag ORDER BY i.id, l.tag";
    let va_id = if r.virtual_account.is_empty() {
        0
    } else {
        virtual_account_id(conn, &r.smart_account, &r.virtual_account)?
    };
    if r.instance_id.is_empty() && va_id == 0 {
        return Err(invalid("name an instance or a smart and virtual account"));
    }
    let rows = conn
        .prepare_cached(sql)?
        .query_map(params![r.instance_id, va_id], |row| {
            Ok(pb::UsageTotal {
                instance_id: row.get(0)?,
                tag: row.get(1)?,
                admitted: row.get::<_, i64>(2)? as u64,
                rejected: row.get::<_, i64>(3)? as u64,
                reports: row.get::<_, i64>(4)? as u64,
                last_sequence: row.get::<_, i64>(5)? as u64,
                peak_tps: row.get::<_, i64>(6)? as u64,
            })
        })?
        .collect::<crate::store::db::Result<_>>()?;
    Ok(rows)
}
