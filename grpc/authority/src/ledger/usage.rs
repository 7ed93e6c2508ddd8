//! Usage: signed reports stored once per (instance, sequence), and the totals.

use super::*;

/// Stores a verified usage report once per (instance, sequence).
pub fn store_report(
    conn: &Db,
    now: i64,
    report: &pb::UsageReport,
    body_hash: &[u8],
) -> Result<pb::UsageAck> {
    let instance = &report.instance_id;
    let (_, deregistered) = device_key(conn, instance)?;
    let sequence = i64::try_from(report.sequence)
        .map_err(|_| invalid("the report sequence is out of range"))?;
    if sequence == 0 {
        return Err(invalid("report sequences start at 1"));
    }
    let mut ack = pb::UsageAck {
        instance_id: instance.clone(),
        sequence: report.sequence,
        ..Default::default()
    };
    if report.usage.len() > 1024 {
        return Err(invalid("at most 1024 entitlements per report"));
    }
    let last: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(sequence), 0) FROM usage_reports WHERE instance_id = ?1",
        )?
        .query_row([instance], |r| r.get(0))?;
    ack.gap = sequence > last + 1;
    ack.out_of_order = sequence < last;
    // Insert first: only a resend (rare) pays for looking up what was stored before. A
    // deregistered (or replaced) instance stores nothing new but still has its resends
    // acknowledged as duplicates; a report it never stored is answered `retired`.
    let inserted = !deregistered
        && conn
            .prepare_cached(
                "INSERT INTO usage_reports (instance_id, sequence, received_at, window_start, window_end, body_hash, gap, out_of_order)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (instance_id, sequence) DO NOTHING",
            )?
            .execute(params![instance, sequence, now, report.window_start, report.window_end, body_hash, ack.gap, ack.out_of_order])?
            == 1;
    if !inserted {
        let stored: Option<Vec<u8>> = conn
            .prepare_cached(
                "SELECT body_hash FROM usage_reports WHERE instance_id = ?1 AND sequence = ?2",
            )?
            .query_row(params![instance, sequence], |r| r.get(0))
            .optional()?;
        return match stored {
            Some(stored) if stored == body_hash => Ok(pb::UsageAck {
                duplicate: true,
                gap: false,
                out_of_order: false,
                ..ack
            }),
            Some(_) => Err(Error::AlreadyExists(format!(
                "report {sequence} of {instance} was stored before with different content; refusing to count it twice"
            ))),
            // Final: a retired instance never stores again, so the device may count this
            // usage under its current instance without counting it twice.
            None => Ok(pb::UsageAck {
                retired: true,
                gap: false,
                out_of_order: false,
                ..ack
            }),
        };
    }
    let mut line = conn.prepare_cached(
        "INSERT INTO usage_lines (instance_id, sequence, tag, admitted, rejected, peak_tps, histogram) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for u in &report.usage {
        check_tag(&u.tag)?;
        let count = |n: u64| {
            i64::try_from(n).map_err(|_| invalid(format!("a count of {} is out of range", u.tag)))
        };
        line.execute(params![
            instance,
            sequence,
            u.tag,
            count(u.admitted)?,
            count(u.rejected)?,
            count(u.peak_tps)?,
            u.tps_histogram
        ])
        .map_err(|e| match e {
            crate::store::DbError::Constraint(_) => invalid(format!(
                "entitlement {} appears twice in report {sequence}",
                u.tag
            )),
            e => e.into(),
        })?;
    }
    if ack.gap || ack.out_of_order {
        let what = if ack.gap {
            "skipped ahead"
        } else {
            "went back"
        };
        audit(
            conn,
            now,
            &format!("device:{instance}"),
            "usage.sequence",
            &format!("report {sequence} {what} (last was {last})"),
        )?;
    }
    Ok(ack)
}

/// The usage ledger: totals per instance and tag, for one instance or a virtual account.
pub fn usage(conn: &Db, r: &pb::GetUsageRequest) -> Result<Vec<pb::UsageTotal>> {
    let sql = "SELECT l.instance_id, l.tag, SUM(l.admitted), SUM(l.rejected), COUNT(*), MAX(l.sequence), MAX(l.peak_tps)
               FROM usage_lines l JOIN instances i ON i.id = l.instance_id
               WHERE (?1 = '' OR l.instance_id = ?1) AND (?2 = 0 OR i.virtual_account_id = ?2)
               GROUP BY l.instance_id, l.tag ORDER BY l.instance_id, l.tag";
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
