//! Usage over time: the ledger's reports by their windows, for the portal's charts and CSV.

use super::*;

/// One report window's usage of one tag, summed over the instances asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageWindow {
    /// Where the window starts, in unix milliseconds, as the devices report it.
    pub window_start: i64,
    /// Where it ends.
    pub window_end: i64,
    /// The licence.
    pub tag: String,
    /// Transactions admitted in the window.
    pub admitted: u64,
    /// Transactions rejected in the window.
    pub rejected: u64,
    /// The highest TPS a device saw in the window.
    pub peak_tps: u64,
}

/// The usage of a virtual account (or of one of its instances, when `instance` is not
/// empty) window by window, oldest first, at most `limit` windows of each tag's newest.
pub fn usage_windows(
    conn: &Db,
    smart: &str,
    va: &str,
    instance: &str,
    limit: u32,
) -> Result<Vec<UsageWindow>> {
    let va_id = virtual_account_id(conn, smart, va)?;
    let rows = conn
        .prepare_cached(
            "SELECT r.window_start, r.window_end, l.tag, SUM(l.admitted), SUM(l.rejected), MAX(l.peak_tps)
             FROM usage_lines l
             JOIN usage_reports r ON r.instance_number = l.instance_number AND r.sequence = l.sequence
             JOIN instances i ON i.number = l.instance_number
             WHERE i.virtual_account_id = ?1 AND (?2 = '' OR i.id = ?2)
             GROUP BY r.window_start, r.window_end, l.tag
             ORDER BY r.window_start DESC, l.tag
             LIMIT ?3",
        )?
        .query_map(params![va_id, instance, i64::from(limit)], |row| {
            Ok(UsageWindow {
                window_start: row.get(0)?,
                window_end: row.get(1)?,
                tag: row.get(2)?,
                admitted: row.get::<_, i64>(3)? as u64,
                rejected: row.get::<_, i64>(4)? as u64,
                peak_tps: row.get::<_, i64>(5)? as u64,
            })
        })?
        .collect::<crate::store::db::Result<Vec<_>>>()?;
    Ok(rows.into_iter().rev().collect())
}
