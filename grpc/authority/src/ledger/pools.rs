//! Licence pools: what is bought, what is in use, and transfers between virtual accounts;
//! and the catalogue of what each licence tag is worth (TPS per unit and policy), which
//! every authorisation signs into its grants.

use super::*;

/// What a tag is worth when the catalogue does not name it: today's `PAR-TPS` and
/// `PAR-ADD-TPS`, 100 TPS per unit, hard.
pub const DEFAULT_TPS_PER_UNIT: u64 = 100;

/// The most TPS one unit may be worth.
pub const MAX_TPS_PER_UNIT: u64 = 1_000_000_000;

/// A tag's worth: TPS per unit and policy, from the catalogue or the default.
pub fn worth(conn: &Db, tag: &str) -> Result<(u64, pb::GrantPolicy)> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT tps_per_unit, policy FROM catalogue WHERE tag = ?1")?
        .query_row([tag], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((tps, policy)) => (tps as u64, policy_from_name(&policy)),
        None => (DEFAULT_TPS_PER_UNIT, pb::GrantPolicy::Hard),
    })
}

fn policy_from_name(name: &str) -> pb::GrantPolicy {
    match name {
        "steady-state" => pb::GrantPolicy::SteadyState,
        "monitor" => pb::GrantPolicy::Monitor,
        _ => pb::GrantPolicy::Hard,
    }
}

/// The engine's policy for a signed one.
pub fn engine_policy(policy: pb::GrantPolicy) -> entitle_engine::Policy {
    match policy {
        pb::GrantPolicy::SteadyState => entitle_engine::Policy::SteadyState,
        pb::GrantPolicy::Monitor => entitle_engine::Policy::Monitor,
        pb::GrantPolicy::Hard | pb::GrantPolicy::Unspecified => entitle_engine::Policy::Hard,
    }
}

/// The catalogue's name of a policy.
pub fn policy_name(policy: pb::GrantPolicy) -> &'static str {
    match policy {
        pb::GrantPolicy::SteadyState => "steady-state",
        pb::GrantPolicy::Monitor => "monitor",
        pb::GrantPolicy::Hard | pb::GrantPolicy::Unspecified => "hard",
    }
}

/// Sets what `e.tag` is worth: `tps_per_unit` (0 keeps it) and `policy` (unspecified keeps
/// it), for every account, from each device's next authorisation on. Audited when it
/// changes.
pub fn set_catalogue(conn: &Db, now: i64, e: &pb::CatalogueEntry) -> Result<pb::CatalogueEntry> {
    check_tag(&e.tag)?;
    let (tag, tps_per_unit) = (e.tag.as_str(), e.tps_per_unit);
    let policy = pb::GrantPolicy::try_from(e.policy).map_err(|_| {
        invalid(format!(
            "policy {} is not one this authority knows",
            e.policy
        ))
    })?;
    if tps_per_unit > MAX_TPS_PER_UNIT {
        return Err(invalid(format!(
            "TPS per unit must be 1 to {MAX_TPS_PER_UNIT}"
        )));
    }
    let (old_tps, old_policy) = worth(conn, tag)?;
    let tps = if tps_per_unit == 0 {
        old_tps
    } else {
        tps_per_unit
    };
    let policy = if policy == pb::GrantPolicy::Unspecified {
        old_policy
    } else {
        policy
    };
    conn.prepare_cached(
        "INSERT INTO catalogue (tag, tps_per_unit, policy) VALUES (?1, ?2, ?3)
         ON CONFLICT (tag) DO UPDATE SET tps_per_unit = excluded.tps_per_unit, policy = excluded.policy",
    )?
    .execute(params![tag, tps as i64, policy_name(policy)])?;
    if (tps, policy) != (old_tps, old_policy) {
        audit(
            conn,
            now,
            "admin",
            "catalogue.set",
            &format!(
                "{tag}: {tps} TPS per unit, {} (was {old_tps}, {})",
                policy_name(policy),
                policy_name(old_policy)
            ),
        )?;
    }
    Ok(pb::CatalogueEntry {
        tag: tag.to_owned(),
        tps_per_unit: tps,
        policy: policy as i32,
    })
}

/// Every tag the catalogue names, by tag.
pub fn list_catalogue(conn: &Db) -> Result<Vec<pb::CatalogueEntry>> {
    let rows: Vec<(String, i64, String)> = conn
        .prepare_cached("SELECT tag, tps_per_unit, policy FROM catalogue ORDER BY tag")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    Ok(rows
        .into_iter()
        .map(|(tag, tps, policy)| pb::CatalogueEntry {
            tag,
            tps_per_unit: tps as u64,
            policy: policy_from_name(&policy) as i32,
        })
        .collect())
}

/// Licences of `tag` in a virtual account that have not ended, and how many of them
/// instances other than `except` hold.
pub(crate) fn pool_counts(
    conn: &Db,
    va_id: i64,
    tag: &str,
    now: i64,
    except: &str,
) -> Result<(u64, u64)> {
    let total: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(quantity), 0) FROM pools
             WHERE virtual_account_id = ?1 AND tag = ?2 AND (term_end = 0 OR term_end > ?3)",
        )?
        .query_row(params![va_id, tag, now], |r| r.get(0))?;
    let in_use: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(g.granted), 0) FROM grants g JOIN instances i ON i.id = g.instance_id
             WHERE i.virtual_account_id = ?1 AND g.tag = ?2 AND i.deregistered = 0 AND i.id != ?3",
        )?
        .query_row(params![va_id, tag, except], |r| r.get(0))?;
    // Reserved licences (PLR and SLR) are in use until their reservation is returned.
    let reserved: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(l.quantity), 0) FROM reserved_licences l
             JOIN reservations r ON r.id = l.reservation_id
             WHERE r.virtual_account_id = ?1 AND l.tag = ?2 AND r.returned_at = 0",
        )?
        .query_row(params![va_id, tag], |r| r.get(0))?;
    Ok((total as u64, (in_use + reserved) as u64))
}

fn pool(conn: &Db, sa: &str, va: &str, va_id: i64, tag: &str, now: i64) -> Result<pb::Pool> {
    let (quantity, in_use) = pool_counts(conn, va_id, tag, now, "")?;
    let (term_end, plr_capable): (i64, bool) = conn
        .prepare_cached(
            "SELECT COALESCE(MIN(NULLIF(term_end, 0)), 0), COALESCE(MAX(plr_capable), 0) FROM pools
             WHERE virtual_account_id = ?1 AND tag = ?2 AND (term_end = 0 OR term_end > ?3)",
        )?
        .query_row(params![va_id, tag, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (tps_per_unit, policy) = worth(conn, tag)?;
    Ok(pb::Pool {
        smart_account: sa.to_owned(),
        virtual_account: va.to_owned(),
        tag: tag.to_owned(),
        quantity,
        in_use,
        term_end,
        plr_capable,
        tps_per_unit,
        policy: policy as i32,
    })
}

/// Adds licences to a virtual account's pool of `tag`.
pub fn add_licenses(conn: &Db, now: i64, r: &pb::AddLicensesRequest) -> Result<pb::Pool> {
    check_tag(&r.tag)?;
    if r.quantity == 0 || r.quantity > 1_000_000_000 {
        return Err(invalid("quantity must be between 1 and 1,000,000,000"));
    }
    if r.term_end != 0 && r.term_end <= now {
        return Err(invalid(
            "the term must end in the future (or be 0 for perpetual licences)",
        ));
    }
    let va_id = virtual_account_id(conn, &r.smart_account, &r.virtual_account)?;
    conn.prepare_cached(
        "INSERT INTO pools (virtual_account_id, tag, term_end, quantity, plr_capable) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (virtual_account_id, tag, term_end)
         DO UPDATE SET quantity = pools.quantity + excluded.quantity,
             plr_capable = CASE WHEN pools.plr_capable <> 0 OR excluded.plr_capable <> 0 THEN 1 ELSE 0 END",
    )?
    .execute(params![va_id, r.tag, r.term_end, r.quantity as i64, r.plr_capable])?;
    audit(
        conn,
        now,
        "admin",
        "pool.add",
        &format!(
            "{:?}/{:?} {} x {} term_end={} plr_capable={}",
            r.smart_account, r.virtual_account, r.tag, r.quantity, r.term_end, r.plr_capable
        ),
    )?;
    pool(
        conn,
        &r.smart_account,
        &r.virtual_account,
        va_id,
        &r.tag,
        now,
    )
}

/// The pools of a virtual account, one per tag.
pub fn list_pools(conn: &Db, now: i64, sa: &str, va: &str) -> Result<Vec<pb::Pool>> {
    let va_id = virtual_account_id(conn, sa, va)?;
    let tags: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT tag FROM pools WHERE virtual_account_id = ?1 ORDER BY tag",
        )?
        .query_map([va_id], |r| r.get(0))?
        .collect::<crate::store::db::Result<_>>()?;
    tags.iter()
        .map(|tag| pool(conn, sa, va, va_id, tag, now))
        .collect()
}

/// Moves unconsumed licences between two virtual accounts of one smart account; with
/// `force`, licences in use as well (never more than the pool holds), and the devices
/// holding them are granted less at their next authorisation (OUT_OF_COMPLIANCE).
pub fn transfer(conn: &Db, now: i64, r: &pb::TransferRequest) -> Result<pb::TransferResponse> {
    check_tag(&r.tag)?;
    if r.quantity == 0 {
        return Err(invalid("transfer at least one licence"));
    }
    if r.from_virtual_account == r.to_virtual_account {
        return Err(invalid(
            "source and destination are the same virtual account",
        ));
    }
    let from = virtual_account_id(conn, &r.smart_account, &r.from_virtual_account)?;
    let to = virtual_account_id(conn, &r.smart_account, &r.to_virtual_account)?;
    let (total, in_use) = pool_counts(conn, from, &r.tag, now, "")?;
    let unconsumed = total.saturating_sub(in_use);
    if r.force && total < r.quantity {
        return Err(Error::FailedPrecondition(format!(
            "{:?} has {total} {} licences in the pool ({in_use} in use); cannot transfer {}, even with force",
            r.from_virtual_account, r.tag, r.quantity
        )));
    }
    if !r.force && unconsumed < r.quantity {
        return Err(Error::FailedPrecondition(format!(
            "{:?} has {unconsumed} unconsumed {} licences ({total} in the pool, {in_use} in use); cannot transfer {} without force",
            r.from_virtual_account, r.tag, r.quantity
        )));
    }
    // Grants are left as they are: a device keeps what it holds until its next
    // authorisation, which is then measured against the smaller pool.
    let moved_in_use = r.quantity.saturating_sub(unconsumed);
    // Perpetual licences first, then the terms that end last.
    let rows: Vec<(i64, i64, bool)> = conn
        .prepare_cached(
            "SELECT term_end, quantity, plr_capable FROM pools
             WHERE virtual_account_id = ?1 AND tag = ?2 AND quantity > 0 AND (term_end = 0 OR term_end > ?3)
             ORDER BY term_end = 0 DESC, term_end DESC",
        )?
        .query_map(params![from, r.tag, now], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    let mut left = r.quantity as i64;
    for (term_end, quantity, plr_capable) in rows {
        let moved = left.min(quantity);
        conn.prepare_cached("UPDATE pools SET quantity = quantity - ?1 WHERE virtual_account_id = ?2 AND tag = ?3 AND term_end = ?4")?
            .execute(params![moved, from, r.tag, term_end])?;
        conn.prepare_cached(
            "INSERT INTO pools (virtual_account_id, tag, term_end, quantity, plr_capable) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (virtual_account_id, tag, term_end)
             DO UPDATE SET quantity = pools.quantity + excluded.quantity,
             plr_capable = CASE WHEN pools.plr_capable <> 0 OR excluded.plr_capable <> 0 THEN 1 ELSE 0 END",
        )?
        .execute(params![to, r.tag, term_end, moved, plr_capable])?;
        left -= moved;
        if left == 0 {
            break;
        }
    }
    audit(
        conn,
        now,
        "admin",
        "pool.transfer",
        &format!(
            "{:?}: {} x {} from {:?} to {:?}{}",
            r.smart_account,
            r.quantity,
            r.tag,
            r.from_virtual_account,
            r.to_virtual_account,
            if r.force {
                format!(" forced, {moved_in_use} of them in use")
            } else {
                String::new()
            }
        ),
    )?;
    Ok(pb::TransferResponse {
        from: Some(pool(
            conn,
            &r.smart_account,
            &r.from_virtual_account,
            from,
            &r.tag,
            now,
        )?),
        to: Some(pool(
            conn,
            &r.smart_account,
            &r.to_virtual_account,
            to,
            &r.tag,
            now,
        )?),
    })
}
