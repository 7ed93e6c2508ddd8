//! The satellite's side of a sync, as plain SQL on its store: the device reports waiting
//! for the cloud (the outbox, written in the same transaction that stores each report),
//! the request that carries them and the state of every instance, and the cloud's answer
//! applied: accounts, pools, tokens and catalogue replaced by the cloud's, acknowledged
//! reports dropped from the outbox.

use crate::store::{Db, OptionalExtension as _, params};
use entitle_proto::pb;

use crate::error::{Error, Result};

/// The most reports one request carries; the rest wait for the next (and the network sync
/// sends the next at once).
pub const REPORTS_PER_SYNC: usize = 5_000;

/// A number of the `meta_numbers` table (0 when absent).
pub(crate) fn meta_i64(conn: &Db, key: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta_numbers WHERE key = ?1")?
        .query_row([key], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0))
}

/// Sets a number of the `meta_numbers` table.
pub(crate) fn set_meta_i64(conn: &Db, key: &str, value: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta_numbers (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Sets bytes of the `meta` table.
pub(crate) fn set_meta(conn: &Db, key: &str, value: &[u8]) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

pub(crate) fn meta_blob(conn: &Db, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Keeps a device report the satellite just stored for the cloud.
pub fn keep_for_cloud(conn: &Db, report: &pb::UsageReport, signed: &pb::Signed) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sync_outbox (instance_id, sequence, body, signature) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (instance_id, sequence) DO NOTHING",
    )?
    .execute(params![
        report.instance_id,
        report.sequence as i64,
        signed.body,
        signed.signature
    ])?;
    Ok(())
}

/// [`keep_for_cloud`] for many reports: on PostgreSQL in one statement.
pub fn keep_all_for_cloud(conn: &Db, kept: &[(&pb::UsageReport, &pb::Signed)]) -> Result<()> {
    if !conn.is_postgres() {
        for (report, signed) in kept {
            keep_for_cloud(conn, report, signed)?;
        }
        return Ok(());
    }
    if kept.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = kept.iter().map(|(r, _)| r.instance_id.as_str()).collect();
    let sequences: Vec<i64> = kept.iter().map(|(r, _)| r.sequence as i64).collect();
    let bodies: Vec<&[u8]> = kept.iter().map(|(_, s)| s.body.as_slice()).collect();
    let signatures: Vec<&[u8]> = kept.iter().map(|(_, s)| s.signature.as_slice()).collect();
    conn.execute(
        "INSERT INTO sync_outbox (instance_id, sequence, body, signature)
         SELECT * FROM unnest(?1::text[], ?2::bigint[], ?3::bytea[], ?4::bytea[])
         ON CONFLICT (instance_id, sequence) DO NOTHING",
        params![ids, sequences, bodies, signatures],
    )?;
    Ok(())
}

/// Queues a reservation operation for the cloud.
pub fn queue_reservation(conn: &Db, now: i64, operation: &pb::QueuedReservation) -> Result<()> {
    conn.prepare_cached("INSERT INTO sync_reservations (operation, created_at) VALUES (?1, ?2)")?
        .execute(params![prost::Message::encode_to_vec(operation), now])?;
    crate::ledger::audit(
        conn,
        now,
        "admin",
        "reservation.queue",
        if operation.authorize.is_some() {
            "an authorisation, for the cloud at the next sync"
        } else {
            "a return, for the cloud at the next sync"
        },
    )?;
    Ok(())
}

/// Reports waiting for the cloud.
pub fn waiting(conn: &Db) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM sync_outbox")?
        .query_row([], |r| r.get::<_, i64>(0))? as u64)
}

/// The next sync request (unsigned): a new sequence, every instance, and the oldest
/// waiting reports.
pub fn request(conn: &Db, now: i64, name: &str, serial: u64) -> Result<pb::SyncRequest> {
    let sequence = meta_i64(conn, "sync_sequence")? + 1;
    set_meta_i64(conn, "sync_sequence", sequence)?;
    let mut instances = Vec::new();
    let mut statement = conn.prepare_cached(
        "SELECT i.id, i.product_id, i.serial, s.name, v.name, i.device_key, i.export_controlled,
                i.registered_at, i.last_contact, i.deregistered, i.deadline_at, i.expired_at,
                i.removed, i.cert_serial, i.cert_expires_at
         FROM instances i JOIN virtual_accounts v ON v.id = i.virtual_account_id
         JOIN smart_accounts s ON s.id = v.smart_account_id ORDER BY i.registered_at, i.id",
    )?;
    let rows = statement.query_map([], |r| {
        Ok(pb::SatelliteInstance {
            instance_id: r.get(0)?,
            udi: Some(pb::Udi {
                product_id: r.get(1)?,
                serial: r.get(2)?,
            }),
            account: Some(pb::AccountName {
                smart_account: r.get(3)?,
                virtual_account: r.get(4)?,
            }),
            device_public_key: r.get(5)?,
            export_controlled: r.get(6)?,
            registered_at: r.get(7)?,
            last_contact: r.get(8)?,
            deregistered: r.get(9)?,
            deadline_at: r.get(10)?,
            expired_at: r.get(11)?,
            removed: r.get(12)?,
            cert_serial: r.get::<_, i64>(13)? as u64,
            cert_expires_at: r.get(14)?,
            granted: Vec::new(),
        })
    })?;
    for row in rows {
        instances.push(row?);
    }
    let mut grants = conn.prepare_cached(
        "SELECT tag, granted FROM grants WHERE instance_id = ?1 AND granted > 0 ORDER BY tag",
    )?;
    for instance in &mut instances {
        for grant in grants.query_map([&instance.instance_id], |r| {
            Ok(pb::LicenseCount {
                tag: r.get(0)?,
                count: r.get::<_, i64>(1)? as u64,
            })
        })? {
            instance.granted.push(grant?);
        }
    }
    let mut reports = Vec::new();
    let mut outbox = conn.prepare_cached(
        "SELECT body, signature FROM sync_outbox ORDER BY instance_id, sequence LIMIT ?1",
    )?;
    for row in outbox.query_map([REPORTS_PER_SYNC as i64], |r| {
        Ok(pb::Signed {
            body: r.get(0)?,
            signature: r.get(1)?,
            ..Default::default()
        })
    })? {
        reports.push(row?);
    }
    let mut reservations = Vec::new();
    let mut queued =
        conn.prepare_cached("SELECT id, operation FROM sync_reservations ORDER BY id")?;
    for row in queued.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))? {
        let (id, bytes) = row?;
        let mut operation = <pb::QueuedReservation as prost::Message>::decode(bytes.as_slice())
            .map_err(|_| Error::Internal("a queued reservation does not decode".into()))?;
        operation.id = id as u64;
        reservations.push(operation);
    }
    Ok(pb::SyncRequest {
        satellite: name.to_owned(),
        delegation_serial: serial,
        sequence: sequence as u64,
        created_at: now,
        instances,
        reports,
        reservations,
    })
}

/// What applying an answer did.
#[derive(Debug)]
pub struct Applied {
    /// One line for the operator.
    pub summary: String,
    /// Whether anything changed (an answer imported before changes nothing).
    pub changed: bool,
}

/// Applies the cloud's answer (already verified, and for this satellite). Refuses one
/// older than the last applied, or answering a request this satellite never made.
pub fn apply(conn: &Db, now: i64, answer: &pb::SyncAnswer) -> Result<Applied> {
    let applied = meta_i64(conn, "answer_sequence")?;
    let made = meta_i64(conn, "sync_sequence")?;
    let sequence = answer.sequence as i64;
    if sequence < applied {
        return Err(Error::FailedPrecondition(format!(
            "out of order: this answers sync {sequence}, older than the answer to sync {applied} imported already"
        )));
    }
    if sequence > made {
        return Err(Error::FailedPrecondition(format!(
            "this answers sync {sequence}, but this satellite has made only {made} syncs: it is for another satellite of the same name"
        )));
    }
    if sequence == applied {
        return Ok(Applied {
            summary: format!("the answer to sync {sequence} was imported before; nothing changed"),
            changed: false,
        });
    }
    for account in &answer.accounts {
        let name = account
            .name
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("an account of the answer has no name".into()))?;
        conn.prepare_cached(
            "INSERT INTO smart_accounts (name, plr_authorized, export_controlled, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET plr_authorized = excluded.plr_authorized, export_controlled = excluded.export_controlled",
        )?
        .execute(params![name.smart_account, account.plr_authorized, account.export_controlled, account.created_at])?;
        conn.prepare_cached(
            "INSERT INTO virtual_accounts (smart_account_id, name, created_at)
             SELECT id, ?2, ?3 FROM smart_accounts WHERE name = ?1
             ON CONFLICT (smart_account_id, name) DO NOTHING",
        )?
        .execute(params![
            name.smart_account,
            name.virtual_account,
            account.created_at
        ])?;
        let va_id =
            crate::ledger::virtual_account_id(conn, &name.smart_account, &name.virtual_account)?;
        conn.prepare_cached("DELETE FROM pools WHERE virtual_account_id = ?1")?
            .execute([va_id])?;
        for pool in answer
            .pools
            .iter()
            .filter(|p| p.account.as_ref() == Some(name))
        {
            crate::ledger::check_tag(&pool.tag)?;
            conn.prepare_cached(
                "INSERT INTO pools (virtual_account_id, tag, term_end, quantity, plr_capable) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![va_id, pool.tag, pool.term_end, pool.quantity as i64, pool.plr_capable])?;
        }
        for token in answer
            .tokens
            .iter()
            .filter(|t| t.account.as_ref() == Some(name))
        {
            // Uses are counted here, where devices register; the rest is the cloud's.
            conn.prepare_cached(
                "INSERT INTO tokens (id, secret_hash, virtual_account_id, created_at, expires_at, max_uses, export_controlled, revoked, description)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, max_uses = excluded.max_uses,
                     revoked = excluded.revoked, description = excluded.description",
            )?
            .execute(params![
                token.id,
                token.secret_hash,
                va_id,
                token.created_at,
                token.expires_at,
                token.max_uses,
                token.export_controlled,
                token.revoked,
                token.description
            ])?;
        }
    }
    conn.execute("DELETE FROM catalogue", [])?;
    for entry in &answer.catalogue {
        let policy = pb::GrantPolicy::try_from(entry.policy).unwrap_or(pb::GrantPolicy::Hard);
        conn.prepare_cached(
            "INSERT INTO catalogue (tag, tps_per_unit, policy) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            entry.tag,
            entry.tps_per_unit as i64,
            crate::ledger::policy_name(policy)
        ])?;
    }
    let mut dropped = 0;
    let mut forget =
        conn.prepare_cached("DELETE FROM sync_outbox WHERE instance_id = ?1 AND sequence = ?2")?;
    for ack in &answer.acknowledged {
        dropped += forget.execute(params![ack.instance_id, ack.sequence as i64])?;
    }
    for refusal in &answer.refused {
        tracing::warn!(instance = %refusal.instance_id, sequence = refusal.sequence, reason = %refusal.reason, "the cloud refused a report for good");
        dropped += forget.execute(params![refusal.instance_id, refusal.sequence as i64])?;
    }
    let mut reservations = 0;
    for result in &answer.reservations {
        conn.prepare_cached("DELETE FROM sync_reservations WHERE id = ?1")?
            .execute([result.id as i64])?;
        match &result.reservation {
            Some(reservation) if result.refusal.is_empty() => {
                keep_reservation(conn, reservation)?;
                reservations += 1;
            }
            _ => {
                tracing::warn!(reason = %result.refusal, "the cloud refused a queued reservation");
                crate::ledger::audit(conn, now, "cloud", "reservation.refused", &result.refusal)?;
            }
        }
    }
    set_meta_i64(conn, "answer_sequence", sequence)?;
    set_meta_i64(conn, "last_sync_at", now)?;
    crate::ledger::audit(
        conn,
        now,
        "cloud",
        "satellite.sync",
        &format!(
            "answer to sync {sequence}: {} accounts, {} pools, {} tokens, {} reports delivered, {} refused, {reservations} reservations",
            answer.accounts.len(),
            answer.pools.len(),
            answer.tokens.len(),
            answer.acknowledged.len(),
            answer.refused.len()
        ),
    )?;
    Ok(Applied {
        summary: format!(
            "applied the answer to sync {sequence}: {} accounts, {} pools, {} tokens, {reservations} reservations; {dropped} reports delivered to the cloud, {} still waiting",
            answer.accounts.len(),
            answer.pools.len(),
            answer.tokens.len(),
            waiting(conn)?
        ),
        changed: true,
    })
}

/// Keeps a reservation the cloud made (or returned), under the cloud's id: its licences
/// count as in use here, as there, until it is returned.
fn keep_reservation(conn: &Db, r: &pb::Reservation) -> Result<()> {
    let udi = r
        .udi
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("a reservation of the answer has no UDI".into()))?;
    let va_id = crate::ledger::virtual_account_id(conn, &r.smart_account, &r.virtual_account)?;
    let kind = match pb::ReservationKind::try_from(r.kind) {
        Ok(pb::ReservationKind::Permanent) => "permanent",
        _ => "specific",
    };
    conn.prepare_cached(
        "INSERT INTO reservations (id, kind, virtual_account_id, product_id, serial, request_sequence,
             export_controlled, authorization_code, confirmation_code, created_at, returned_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET returned_at = excluded.returned_at",
    )?
    .execute(params![
        r.id as i64,
        kind,
        va_id,
        udi.product_id,
        udi.serial,
        r.request_sequence,
        r.export_controlled,
        r.authorization_code,
        r.confirmation_code,
        r.created_at,
        r.returned_at
    ])?;
    for l in &r.licenses {
        conn.prepare_cached(
            "INSERT INTO reserved_licences (reservation_id, tag, quantity) VALUES (?1, ?2, ?3)
             ON CONFLICT (reservation_id, tag) DO NOTHING",
        )?
        .execute(params![r.id as i64, l.tag, l.count as i64])?;
    }
    Ok(())
}
