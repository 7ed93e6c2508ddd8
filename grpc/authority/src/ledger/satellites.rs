//! Satellites as the cloud sees them: the delegations it signs (each naming a satellite's
//! key and the virtual accounts it serves), their revocation, and each sync a satellite
//! sends: the instances it serves and its devices' signed reports in, the delegated
//! accounts' pools, tokens and catalogue out.
//!
//! A delegated virtual account is served by its satellite alone: the cloud refuses
//! registrations in it and calls from the satellite's instances, and counts their grants
//! (as the last sync reported them) in its pools.

use ed25519_dalek::{SigningKey, VerifyingKey};
use entitle_codes::CodeSigningKey;
use entitle_proto::delegation::{self, Revocations};
use entitle_proto::signing::SignatureError;

use super::*;

/// The most days a delegation is valid.
const MAX_DELEGATION_DAYS: u32 = 3650;

/// The satellite serving virtual account `va_id` now, if one does.
pub fn serving_satellite(conn: &Db, va_id: i64, now: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT s.name FROM satellites s JOIN delegated_accounts d ON d.serial = s.serial
             WHERE d.virtual_account_id = ?1 AND s.revoked_at = 0 AND s.expires_at > ?2
             ORDER BY s.serial DESC LIMIT 1",
        )?
        .query_row(params![va_id, now], |r| r.get(0))
        .optional()?)
}

/// Signs a delegation of `r.accounts` to the satellite key `r.satellite_public_key`. A new
/// delegation for a satellite of the same name and another key revokes the old one (a
/// replaced satellite); one with the same key renews it.
pub fn delegate(
    conn: &Db,
    now: i64,
    key: &SigningKey,
    r: &pb::DelegateSatelliteRequest,
) -> Result<pb::Signed> {
    check_name("satellite", &r.name)?;
    signing::verifying_key(&r.satellite_public_key)
        .map_err(|_| invalid("the satellite's public key is not a valid Ed25519 key (32 bytes, as its authority.pub)"))?;
    if r.satellite_public_key == key.verifying_key().as_bytes() {
        return Err(invalid("that is the cloud's own key, not a satellite's"));
    }
    let days = if r.validity_days == 0 {
        365
    } else {
        r.validity_days
    };
    if days > MAX_DELEGATION_DAYS {
        return Err(invalid(format!(
            "a delegation is valid for 1 to {MAX_DELEGATION_DAYS} days"
        )));
    }
    let validity = match r.validity_secs {
        0 => i64::from(days) * DAY,
        secs => i64::from(secs),
    };
    if r.accounts.is_empty() {
        return Err(invalid("a delegation names at least one virtual account"));
    }
    let mut va_ids = Vec::with_capacity(r.accounts.len());
    for a in &r.accounts {
        let va_id = virtual_account_id(conn, &a.smart_account, &a.virtual_account)?;
        if let Some(other) = serving_satellite(conn, va_id, now)?
            && other != r.name
        {
            return Err(Error::FailedPrecondition(format!(
                "virtual account {}/{} is served by satellite {other:?}; revoke that first",
                a.smart_account, a.virtual_account
            )));
        }
        if !va_ids.contains(&va_id) {
            va_ids.push(va_id);
        }
    }
    let replaced = conn
        .prepare_cached(
            "UPDATE satellites SET revoked_at = ?1 WHERE name = ?2 AND public_key != ?3 AND revoked_at = 0",
        )?
        .execute(params![now, r.name, r.satellite_public_key])?;
    let serial: i64 = conn.query_row(
        "SELECT COALESCE(MAX(serial), 0) + 1 FROM satellites",
        [],
        |row| row.get(0),
    )?;
    let delegation = pb::Delegation {
        serial: serial as u64,
        satellite: r.name.clone(),
        satellite_public_key: r.satellite_public_key.clone(),
        accounts: r.accounts.clone(),
        issued_at: now,
        expires_at: now + validity,
    };
    let signed = signing::sign(key, "Delegation", &delegation);
    conn.prepare_cached(
        "INSERT INTO satellites (serial, name, public_key, issued_at, expires_at, delegation) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        serial,
        r.name,
        r.satellite_public_key,
        now,
        delegation.expires_at,
        prost::Message::encode_to_vec(&signed)
    ])?;
    for va_id in va_ids {
        conn.prepare_cached(
            "INSERT INTO delegated_accounts (serial, virtual_account_id) VALUES (?1, ?2)",
        )?
        .execute(params![serial, va_id])?;
    }
    let accounts: Vec<String> = r
        .accounts
        .iter()
        .map(|a| format!("{:?}/{:?}", a.smart_account, a.virtual_account))
        .collect();
    audit(
        conn,
        now,
        "admin",
        "satellite.delegate",
        &format!(
            "{:?} serial {serial}, key {}, {} s, {}{}",
            r.name,
            crate::fingerprint(&r.satellite_public_key),
            validity,
            accounts.join(", "),
            if replaced > 0 {
                " (replaces its earlier key)"
            } else {
                ""
            }
        ),
    )?;
    Ok(signed)
}

/// Revokes every delegation of satellite `name`.
pub fn revoke(conn: &Db, now: i64, name: &str) -> Result<pb::SatelliteInfo> {
    let changed = conn
        .prepare_cached("UPDATE satellites SET revoked_at = ?1 WHERE name = ?2 AND revoked_at = 0")?
        .execute(params![now, name])?;
    if changed == 0 {
        let known: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM satellites WHERE name = ?1)")?
            .query_row([name], |r| r.get(0))?;
        if !known {
            return Err(Error::NotFound(format!("no satellite is named {name:?}")));
        }
    } else {
        audit(conn, now, "admin", "satellite.revoke", &format!("{name:?}"))?;
    }
    list(conn)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::Internal("the satellite vanished".into()))
}

/// Every satellite, by its newest delegation, with how far its sync got.
pub fn list(conn: &Db) -> Result<Vec<pb::SatelliteInfo>> {
    let mut statement = conn.prepare_cached(
        "SELECT s.serial, s.name, s.issued_at, s.expires_at, s.revoked_at,
                COALESCE(y.last_sequence, 0), COALESCE(y.last_sync_at, 0)
         FROM satellites s LEFT JOIN sync_state y ON y.public_key = s.public_key
         WHERE s.serial = (SELECT MAX(serial) FROM satellites o WHERE o.name = s.name)
         ORDER BY s.name",
    )?;
    let rows: Vec<(i64, pb::SatelliteInfo)> = statement
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                pb::SatelliteInfo {
                    serial: r.get::<_, i64>(0)? as u64,
                    name: r.get(1)?,
                    issued_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    revoked_at: r.get(4)?,
                    last_sequence: r.get::<_, i64>(5)? as u64,
                    last_sync_at: r.get(6)?,
                    ..Default::default()
                },
            ))
        })?
        .collect::<crate::store::db::Result<_>>()?;
    rows.into_iter()
        .map(|(serial, mut info)| {
            info.accounts = delegated(conn, serial)?
                .into_iter()
                .map(|(_, name)| name)
                .collect();
            Ok(info)
        })
        .collect()
}

/// The virtual accounts of delegation `serial`: their ids and names.
fn delegated(conn: &Db, serial: i64) -> Result<Vec<(i64, pb::AccountName)>> {
    let mut statement = conn.prepare_cached(
        "SELECT v.id, s.name, v.name FROM delegated_accounts d
         JOIN virtual_accounts v ON v.id = d.virtual_account_id
         JOIN smart_accounts s ON s.id = v.smart_account_id
         WHERE d.serial = ?1 ORDER BY s.name, v.name",
    )?;
    Ok(statement
        .query_map([serial], |r| {
            Ok((
                r.get(0)?,
                pb::AccountName {
                    smart_account: r.get(1)?,
                    virtual_account: r.get(2)?,
                },
            ))
        })?
        .collect::<crate::store::db::Result<_>>()?)
}

/// The revocation list to sign: every revoked serial; revocations never end, so their
/// number is the list's version.
pub fn revocation_list(conn: &Db, now: i64) -> Result<pb::RevocationList> {
    let serials: Vec<u64> = conn
        .prepare_cached("SELECT serial FROM satellites WHERE revoked_at != 0 ORDER BY serial")?
        .query_map([], |r| r.get::<_, i64>(0).map(|s| s as u64))?
        .collect::<crate::store::db::Result<_>>()?;
    Ok(pb::RevocationList {
        version: serials.len() as u64,
        serials,
        issued_at: now,
    })
}

/// What a sync did.
#[derive(Debug)]
pub struct SyncOutcome {
    /// The signed answer for the satellite.
    pub answer: pb::Signed,
    /// One line for the operator.
    pub summary: String,
    /// Whether anything was stored.
    pub changed: bool,
}

/// The cloud's keys a sync needs: the signing key (answers) and the codes key (the
/// reservations satellites queue).
pub struct CloudKeys<'a> {
    /// Signs the answer.
    pub signing: &'a SigningKey,
    /// Signs reservation codes.
    pub codes: &'a CodeSigningKey,
}

/// Takes a satellite's sync request (from the network or a file): checks its delegation
/// and signature, stores the state of its instances and its devices' reports (each once),
/// and answers the delegated accounts' state, signed with `key`, with `revocations`.
///
/// A request older than the last one taken is refused; the same one again stores nothing
/// new and gets the same acknowledgements.
pub fn take_sync(
    conn: &Db,
    now: i64,
    keys: &CloudKeys<'_>,
    revocations: Option<&pb::Signed>,
    signed: &pb::Signed,
) -> Result<SyncOutcome> {
    let key = keys.signing;
    let root = key.verifying_key();
    let mut revoked = Revocations::default();
    revoked.learn(&root, revocations);
    let presented = signed.delegation.as_deref().ok_or_else(|| {
        Error::Unauthenticated("a sync request must carry the satellite's delegation".into())
    })?;
    let (delegation, satellite_key) = delegation::check_delegation(&root, presented, now, &revoked)
        .map_err(|e| match e {
            SignatureError::UntrustedDelegation => Error::PermissionDenied(
                "the sync request's delegation was not signed by this cloud: it is for another cloud".into(),
            ),
            SignatureError::DelegationRevoked { satellite, .. } => Error::PermissionDenied(format!(
                "the delegation of satellite {satellite:?} was revoked: it may no longer sync"
            )),
            SignatureError::DelegationExpired { satellite, .. } => Error::PermissionDenied(format!(
                "the delegation of satellite {satellite:?} has expired: the cloud's operator must delegate to it again"
            )),
            e => Error::PermissionDenied(e.to_string()),
        })?;
    let request: pb::SyncRequest =
        signing::open(&satellite_key, "SyncRequest", signed).map_err(|_| {
            Error::Unauthenticated(format!(
                "the sync request does not verify with satellite {:?}'s key: it was altered",
                delegation.satellite
            ))
        })?;
    let name = delegation.satellite.clone();
    if request.satellite != name || request.delegation_serial != delegation.serial {
        return Err(invalid(
            "the sync request names another satellite than its delegation",
        ));
    }
    let serial = delegation.serial as i64;
    let row_revoked: Option<i64> = conn
        .prepare_cached("SELECT revoked_at FROM satellites WHERE serial = ?1 AND public_key = ?2")?
        .query_row(params![serial, delegation.satellite_public_key], |r| {
            r.get(0)
        })
        .optional()?;
    match row_revoked {
        None => {
            return Err(Error::PermissionDenied(format!(
                "delegation {serial} of satellite {name:?} is not one this cloud issued"
            )));
        }
        Some(at) if at != 0 => {
            return Err(Error::PermissionDenied(format!(
                "the delegation of satellite {name:?} was revoked"
            )));
        }
        Some(_) => {}
    }
    let last: i64 = conn
        .prepare_cached("SELECT last_sequence FROM sync_state WHERE public_key = ?1")?
        .query_row([&delegation.satellite_public_key], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let sequence = i64::try_from(request.sequence)
        .map_err(|_| invalid("the sync sequence is out of range"))?;
    if sequence < last {
        return Err(Error::FailedPrecondition(format!(
            "out of order: sync {sequence} of satellite {name:?} is older than sync {last}, which was imported already"
        )));
    }
    let accounts = delegated(conn, serial)?;

    // Instances first (still active, so that reports made before a deregistration are
    // stored), then reports, then each instance's final state.
    for instance in &request.instances {
        let account = instance
            .account
            .as_ref()
            .ok_or_else(|| invalid("a synced instance has no account"))?;
        let va_id = accounts
            .iter()
            .find(|(_, a)| a == account)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                Error::PermissionDenied(format!(
                    "satellite {name:?} synced instance {} of {}/{}, which it is not delegated",
                    instance.instance_id, account.smart_account, account.virtual_account
                ))
            })?;
        upsert_instance(conn, &name, va_id, instance)?;
    }
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    let mut stored = 0usize;
    // Every signature first, in batches (about half the cost of one by one), then each
    // report stored in order.
    let opened: Vec<_> = request
        .reports
        .iter()
        .map(|signed| open_report(conn, &name, signed))
        .collect();
    let keyed: Vec<_> = opened
        .iter()
        .zip(&request.reports)
        .filter_map(|(opened, signed)| opened.as_ref().ok().map(|(_, key)| (*key, signed)))
        .collect();
    let keyed = screen_keys(keyed);
    let mut checks = signing::verify_all("UsageReport", &keyed).into_iter();
    for (opened, signed) in opened.into_iter().zip(&request.reports) {
        let taken = opened.and_then(|(report, _)| {
            let check = checks.next().unwrap_or(Err(SignatureError::Invalid));
            match check {
                Ok(()) => take_report(conn, now, &report, signed),
                Err(e) => Err((report.instance_id, report.sequence, e.to_string())),
            }
        });
        match taken {
            Ok(ack) => {
                stored += usize::from(!ack.duplicate && !ack.retired);
                acknowledged.push(ack);
            }
            Err((instance_id, sequence, reason)) => refused.push(pb::ReportRefusal {
                instance_id,
                sequence,
                reason,
            }),
        }
    }
    for instance in &request.instances {
        conn.prepare_cached("UPDATE instances SET deregistered = ?1 WHERE id = ?2")?
            .execute(params![instance.deregistered, instance.instance_id])?;
    }
    let reservations: Vec<pb::ReservationResult> = request
        .reservations
        .iter()
        .map(|queued| take_reservation(conn, now, keys.codes, &accounts, queued))
        .collect();
    conn.prepare_cached(
        "INSERT INTO sync_state (public_key, name, last_sequence, last_sync_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (public_key) DO UPDATE SET last_sequence = excluded.last_sequence, last_sync_at = excluded.last_sync_at",
    )?
    .execute(params![delegation.satellite_public_key, name, sequence, now])?;
    let repeat = sequence == last;
    let summary = format!(
        "sync {sequence} of satellite {name:?}: {} instances, {stored} reports stored, {} already stored, {} refused{}",
        request.instances.len(),
        acknowledged.len() - stored,
        refused.len(),
        if repeat { " (imported before)" } else { "" }
    );
    if !repeat || stored > 0 {
        audit(
            conn,
            now,
            &format!("satellite:{name}"),
            "satellite.sync",
            &summary,
        )?;
    }
    let answer = answer(conn, now, &name, serial, &delegation, &accounts, presented)?;
    let answer = pb::SyncAnswer {
        sequence: request.sequence,
        acknowledged,
        refused,
        revocations: revocations.cloned(),
        reservations,
        ..answer
    };
    Ok(SyncOutcome {
        answer: signing::sign(key, "SyncAnswer", &answer),
        summary,
        changed: !repeat || stored > 0,
    })
}

/// Each report's key screened for the batch once per key, not once per report: a satellite
/// syncs many reports of few devices.
fn screen_keys(keyed: Vec<(VerifyingKey, &pb::Signed)>) -> Vec<(signing::BatchKey, &pb::Signed)> {
    let mut screened: Vec<signing::BatchKey> = Vec::new();
    keyed
        .into_iter()
        .map(|(key, signed)| {
            let batch_key = match screened.iter().find(|k| *k.key() == key) {
                Some(k) => *k,
                None => {
                    let k = signing::BatchKey::new(key);
                    screened.push(k);
                    k
                }
            };
            (batch_key, signed)
        })
        .collect()
}

fn upsert_instance(
    conn: &Db,
    satellite: &str,
    va_id: i64,
    i: &pb::SatelliteInstance,
) -> Result<()> {
    let udi = i
        .udi
        .as_ref()
        .ok_or_else(|| invalid("a synced instance has no UDI"))?;
    signing::verifying_key(&i.device_public_key)
        .map_err(|_| invalid("a synced instance's device key is not a valid key"))?;
    let owner: Option<String> = conn
        .prepare_cached("SELECT satellite FROM instances WHERE id = ?1")?
        .query_row([&i.instance_id], |r| r.get(0))
        .optional()?;
    if owner.is_some_and(|owner| owner != satellite) {
        return Err(Error::PermissionDenied(format!(
            "instance {} belongs to another authority; satellite {satellite:?} cannot sync it",
            i.instance_id
        )));
    }
    let count = |n: u64| i64::try_from(n).map_err(|_| invalid("a synced count is out of range"));
    conn.prepare_cached(
        "INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key, export_controlled,
                                registered_at, last_contact, deregistered, cert_serial, cert_expires_at,
                                deadline_at, expired_at, removed, satellite)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (id) DO UPDATE SET last_contact = excluded.last_contact, deregistered = 0,
             cert_serial = excluded.cert_serial, cert_expires_at = excluded.cert_expires_at,
             deadline_at = excluded.deadline_at, expired_at = excluded.expired_at, removed = excluded.removed",
    )?
    .execute(params![
        i.instance_id,
        va_id,
        udi.product_id,
        udi.serial,
        i.device_public_key,
        i.export_controlled,
        i.registered_at,
        i.last_contact,
        count(i.cert_serial)?,
        i.cert_expires_at,
        i.deadline_at,
        i.expired_at,
        i.removed,
        satellite
    ])?;
    conn.prepare_cached("DELETE FROM grants WHERE instance_id = ?1")?
        .execute([&i.instance_id])?;
    for g in &i.granted {
        check_tag(&g.tag)?;
        conn.prepare_cached(
            "INSERT INTO grants (instance_id, tag, requested, granted) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (instance_id, tag) DO UPDATE SET granted = excluded.granted",
        )?
        .execute(params![i.instance_id, g.tag, count(g.count)?])?;
    }
    Ok(())
}

/// Why a report a satellite passed on is refused: its instance, sequence and the reason.
type Refusal = (String, u64, String);

/// Decodes a report a satellite passed on and finds the key of its instance, which must be
/// one the satellite serves.
fn open_report(
    conn: &Db,
    satellite: &str,
    signed: &pb::Signed,
) -> std::result::Result<(pb::UsageReport, VerifyingKey), Refusal> {
    let report: pb::UsageReport = match signing::peek("UsageReport", signed) {
        Ok(report) => report,
        Err(e) => return Err((String::new(), 0, e.to_string())),
    };
    let refuse = |reason: String| (report.instance_id.clone(), report.sequence, reason);
    let owner: Option<(String, Vec<u8>)> = conn
        .prepare_cached("SELECT satellite, device_key FROM instances WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([&report.instance_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(|e| refuse(e.to_string()))?;
    let Some((owner, device_key)) = owner else {
        return Err(refuse("the instance is not known to the cloud".into()));
    };
    if owner != satellite {
        return Err(refuse(format!(
            "the instance is not served by satellite {satellite:?}"
        )));
    }
    let key = signing::verifying_key(&device_key).map_err(|e| refuse(e.to_string()))?;
    Ok((report, key))
}

/// Stores one verified report in a savepoint of its own: a report refused leaves nothing
/// behind and the others go on.
fn take_report(
    conn: &Db,
    now: i64,
    report: &pb::UsageReport,
    signed: &pb::Signed,
) -> std::result::Result<pb::UsageAck, Refusal> {
    let refuse = |reason: String| (report.instance_id.clone(), report.sequence, reason);
    let hash = Sha256::digest(&signed.body).to_vec();
    conn.execute_batch("SAVEPOINT report")
        .map_err(|e| refuse(e.to_string()))?;
    match store_report(conn, now, report, &hash) {
        Ok(ack) => {
            conn.execute_batch("RELEASE report")
                .map_err(|e| refuse(e.to_string()))?;
            Ok(ack)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO report; RELEASE report");
            Err(refuse(e.to_string()))
        }
    }
}

/// Makes a reservation operation a satellite queued, in a savepoint of its own: one the
/// cloud refuses (or has made before: the same request gets the same code, a second return
/// changes nothing) leaves nothing behind and the sync goes on.
fn take_reservation(
    conn: &Db,
    now: i64,
    key: &CodeSigningKey,
    accounts: &[(i64, pb::AccountName)],
    queued: &pb::QueuedReservation,
) -> pb::ReservationResult {
    let outcome = (|| {
        conn.execute_batch("SAVEPOINT reservation")?;
        let made = match &queued.authorize {
            Some(r) => {
                let named = pb::AccountName {
                    smart_account: r.smart_account.clone(),
                    virtual_account: r.virtual_account.clone(),
                };
                if !accounts.iter().any(|(_, a)| *a == named) {
                    Err(Error::PermissionDenied(format!(
                        "the satellite is not delegated {}/{}",
                        r.smart_account, r.virtual_account
                    )))
                } else {
                    crate::reservations::authorize_request(conn, now, key, r)
                }
            }
            None => crate::reservations::return_code(conn, now, &queued.return_code).and_then(
                |(reservation, _)| {
                    let named = pb::AccountName {
                        smart_account: reservation.smart_account.clone(),
                        virtual_account: reservation.virtual_account.clone(),
                    };
                    if accounts.iter().any(|(_, a)| *a == named) {
                        Ok(reservation)
                    } else {
                        Err(Error::PermissionDenied(
                            "the reservation is of an account the satellite is not delegated"
                                .into(),
                        ))
                    }
                },
            ),
        };
        match made {
            Ok(reservation) => {
                conn.execute_batch("RELEASE reservation")?;
                Ok(reservation)
            }
            Err(e) => {
                conn.execute_batch("ROLLBACK TO reservation; RELEASE reservation")?;
                Err(e)
            }
        }
    })();
    match outcome {
        Ok(reservation) => pb::ReservationResult {
            id: queued.id,
            reservation: Some(reservation),
            refusal: String::new(),
        },
        Err(e) => pb::ReservationResult {
            id: queued.id,
            reservation: None,
            refusal: e.to_string(),
        },
    }
}

/// The state of the delegated accounts, for the satellite.
fn answer(
    conn: &Db,
    now: i64,
    name: &str,
    serial: i64,
    presented: &pb::Delegation,
    accounts: &[(i64, pb::AccountName)],
    presented_signed: &pb::Signed,
) -> Result<pb::SyncAnswer> {
    let mut answer = pb::SyncAnswer {
        satellite: name.to_owned(),
        issued_at: now,
        catalogue: list_catalogue(conn)?,
        ..Default::default()
    };
    for (va_id, account) in accounts {
        let (plr, export, created): (bool, bool, i64) = conn
            .prepare_cached(
                "SELECT s.plr_authorized, s.export_controlled, v.created_at FROM virtual_accounts v
                 JOIN smart_accounts s ON s.id = v.smart_account_id WHERE v.id = ?1",
            )?
            .query_row([va_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        answer.accounts.push(pb::SyncAccount {
            name: Some(account.clone()),
            plr_authorized: plr,
            export_controlled: export,
            created_at: created,
        });
        let mut pools = conn.prepare_cached(
            "SELECT tag, term_end, quantity, plr_capable FROM pools WHERE virtual_account_id = ?1 ORDER BY tag, term_end",
        )?;
        for pool in pools.query_map([va_id], |r| {
            Ok(pb::SyncPool {
                account: Some(account.clone()),
                tag: r.get(0)?,
                term_end: r.get(1)?,
                quantity: r.get::<_, i64>(2)? as u64,
                plr_capable: r.get(3)?,
            })
        })? {
            answer.pools.push(pool?);
        }
        let mut tokens = conn.prepare_cached(
            "SELECT id, secret_hash, created_at, expires_at, max_uses, export_controlled, revoked, description
             FROM tokens WHERE virtual_account_id = ?1 ORDER BY id",
        )?;
        for token in tokens.query_map([va_id], |r| {
            Ok(pb::SyncToken {
                id: r.get(0)?,
                secret_hash: r.get(1)?,
                account: Some(account.clone()),
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
                max_uses: r.get(4)?,
                export_controlled: r.get(5)?,
                revoked: r.get(6)?,
                description: r.get(7)?,
            })
        })? {
            answer.tokens.push(token?);
        }
    }
    // The newest delegation of this satellite's key (a renewal), else the one it showed.
    let newest: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT delegation FROM satellites WHERE name = ?1 AND public_key = ?2 AND revoked_at = 0 AND serial >= ?3
             ORDER BY serial DESC LIMIT 1",
        )?
        .query_row(params![name, presented.satellite_public_key, serial], |r| r.get(0))
        .optional()?;
    answer.delegation = Some(match newest {
        Some(bytes) => prost::Message::decode(bytes.as_slice())
            .map_err(|_| Error::Internal("a stored delegation does not decode".into()))?,
        None => presented_signed.clone(),
    });
    Ok(answer)
}
