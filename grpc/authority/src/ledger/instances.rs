//! Product instances: registration with a token, ID certificate renewal, authorisation
//! (the grants a pool can cover, with what the catalogue says each unit is worth),
//! deregistration, the listing of instances, and keeping pools honest: a device silent past
//! its deadline and the release grace gives its licences back ([`expire_overdue`]), the
//! operator frees a dead one at once ([`remove_instance`]), and a registration in contact
//! is replaced only with proof from its key or the operator's leave ([`allow_replace`]).

use super::*;

/// A registration's inputs, already checked for form and proof of key possession.
pub struct Registration<'a> {
    /// The ID token as the operator typed it.
    pub token: &'a str,
    /// The device's UDI.
    pub udi: &'a pb::Udi,
    /// The device's public key.
    pub device_key: &'a [u8],
    /// The signature of the key of the registration this one replaces, or empty (see
    /// `RegisterReplacingRequest`).
    pub previous_key_proof: &'a [u8],
}

/// Registers a device with an ID token: checks the token, uses it once, and records the
/// product instance. Returns the certificate to sign.
pub fn register(
    conn: &Db,
    now: i64,
    periods: &Periods,
    r: &Registration<'_>,
) -> Result<pb::IdCertificate> {
    let (id, secret) =
        entitle_codes::token::parse_token(r.token).map_err(|e| invalid(e.to_string()))?;
    expire_overdue(conn, now, periods)?;
    type TokenRow = (Vec<u8>, i64, i64, u32, u32, bool, bool);
    let token: Option<TokenRow> = conn
        .prepare_cached(
            "SELECT secret_hash, virtual_account_id, expires_at, max_uses, uses, export_controlled, revoked FROM tokens WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .optional()?;
    let Some((secret_hash, va_id, expires_at, max_uses, uses, export_controlled, revoked)) = token
    else {
        return Err(Error::Unauthenticated(
            "the ID token is not known to this authority".into(),
        ));
    };
    if !constant_time_eq(&secret_hash, &hash(secret.as_bytes())) {
        return Err(Error::Unauthenticated(
            "the ID token is not known to this authority".into(),
        ));
    }
    if revoked {
        return Err(Error::PermissionDenied("the ID token was revoked".into()));
    }
    if now >= expires_at {
        return Err(Error::PermissionDenied("the ID token has expired".into()));
    }
    if let Some(satellite) = serving_satellite(conn, va_id, now)? {
        return Err(Error::FailedPrecondition(format!(
            "this virtual account is served by satellite {satellite:?}: register with it"
        )));
    }
    if uses >= max_uses {
        return Err(Error::PermissionDenied(format!(
            "the ID token was used up ({max_uses} of {max_uses} uses)"
        )));
    }
    // One active instance per UDI: a re-registration in the same virtual account replaces
    // it; one in another account must deregister first. While the old one is in contact
    // (its deadline not passed), a token alone does not replace it: a stolen token must not
    // evict a working device. The same key, a proof from the old key, or the operator's
    // `instance allow-replace` will.
    type Existing = (String, i64, Vec<u8>, i64, i64, bool);
    let existing: Option<Existing> = conn
        .prepare_cached("SELECT id, virtual_account_id, device_key, deadline_at, expired_at, replaceable FROM instances WHERE product_id = ?1 AND serial = ?2 AND deregistered = 0 AND satellite = ''")?
        .query_row(params![r.udi.product_id, r.udi.serial], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?)))
        .optional()?;
    if let Some((old, old_va, old_key, deadline_at, expired_at, replaceable)) = existing {
        if old_va != va_id {
            return Err(Error::FailedPrecondition(format!(
                "device {}/{} is registered in another virtual account (instance {old}); deregister it first",
                r.udi.product_id, r.udi.serial
            )));
        }
        let in_contact = expired_at == 0 && now < deadline_at;
        let same_key = old_key.as_slice() == r.device_key;
        let proven = !r.previous_key_proof.is_empty()
            && signing::verifying_key(&old_key).is_ok_and(|key| {
                signing::verify_raw(
                    &key,
                    &signing::replacement_proof_bytes(r.token, r.udi, r.device_key),
                    r.previous_key_proof,
                )
                .is_ok()
            });
        let how = if same_key {
            "re-registered with the same key"
        } else if proven {
            "re-registered with a new key, proven by the old one"
        } else if replaceable {
            "replaced, as the operator allowed"
        } else if !in_contact {
            "re-registered with a new key after its deadline passed"
        } else {
            return Err(Error::PermissionDenied(format!(
                "device {}/{} is registered (instance {old}) and in contact with another key; \
                 re-registering needs proof from that key, or the operator's \
                 `instance allow-replace` or `instance remove` first",
                r.udi.product_id, r.udi.serial
            )));
        };
        release_instance(conn, &old)?;
        audit(
            conn,
            now,
            &format!("device:{old}"),
            "instance.replaced",
            how,
        )?;
    }
    conn.prepare_cached("UPDATE tokens SET uses = uses + 1 WHERE id = ?1")?
        .execute([id])?;
    let instance = hex(&signing::random_bytes::<16>().map_err(|e| Error::Internal(e.to_string()))?);
    let serial_number: i64 = conn.query_row(
        "SELECT COALESCE(MAX(cert_serial), 0) + 1 FROM instances",
        [],
        |r| r.get(0),
    )?;
    conn.prepare_cached(
        "INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key, export_controlled, registered_at,
                                last_contact, cert_serial, cert_expires_at, deadline_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        instance,
        va_id,
        r.udi.product_id,
        r.udi.serial,
        r.device_key,
        export_controlled,
        now,
        serial_number,
        now + periods.certificate,
        now + periods.deadline
    ])?;
    audit(
        conn,
        now,
        &format!("device:{instance}"),
        "instance.register",
        &format!("{}/{} with token {id}", r.udi.product_id, r.udi.serial),
    )?;
    certificate(conn, &instance, now)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn release_instance(conn: &Db, instance: &str) -> Result<()> {
    conn.prepare_cached("UPDATE instances SET deregistered = 1 WHERE id = ?1")?
        .execute([instance])?;
    conn.prepare_cached("DELETE FROM grants WHERE instance_id = ?1")?
        .execute([instance])?;
    Ok(())
}

/// The current certificate of an instance.
fn certificate(conn: &Db, instance: &str, now: i64) -> Result<pb::IdCertificate> {
    Ok(conn
        .prepare_cached(
            "SELECT i.product_id, i.serial, i.device_key, s.name, v.name, i.export_controlled, i.cert_expires_at, i.cert_serial
             FROM instances i JOIN virtual_accounts v ON v.id = i.virtual_account_id JOIN smart_accounts s ON s.id = v.smart_account_id
             WHERE i.id = ?1",
        )?
        .query_row([instance], |r| {
            let expires_at: i64 = r.get(6)?;
            Ok(pb::IdCertificate {
                instance_id: instance.to_owned(),
                udi: Some(pb::Udi { product_id: r.get(0)?, serial: r.get(1)? }),
                device_public_key: r.get(2)?,
                smart_account: r.get(3)?,
                virtual_account: r.get(4)?,
                export_controlled: r.get(5)?,
                issued_at: now,
                expires_at,
                serial_number: r.get::<_, i64>(7)? as u64,
            })
        })?)
}

/// The public key and state of an instance, for checking its signatures.
pub fn device_key(conn: &Db, instance: &str) -> Result<(Vec<u8>, bool)> {
    conn.prepare_cached("SELECT device_key, deregistered FROM instances WHERE id = ?1")?
        .query_row([instance], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no product instance {instance:?} is registered here"
            ))
        })
}

/// Accepts a signed device request's counter once: it must exceed the last one accepted.
fn accept_request(conn: &Db, now: i64, instance: &str, counter: u64) -> Result<i64> {
    let (last, deregistered, va_id, removed, satellite): (i64, bool, i64, bool, String) = conn
        .prepare_cached(
            "SELECT last_counter, deregistered, virtual_account_id, removed, satellite FROM instances WHERE id = ?1",
        )?
        .query_row([instance], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no product instance {instance:?} is registered here"
            ))
        })?;
    if !satellite.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "product instance {instance} is served by satellite {satellite:?}; call it, or register here"
        )));
    }
    if removed {
        return Err(Error::FailedPrecondition(format!(
            "product instance {instance} was removed by the authority's operator; register again"
        )));
    }
    if deregistered {
        return Err(Error::FailedPrecondition(format!(
            "product instance {instance} was deregistered; register again"
        )));
    }
    let counter =
        i64::try_from(counter).map_err(|_| invalid("the request counter is out of range"))?;
    if counter <= last {
        return Err(Error::PermissionDenied(format!(
            "replayed request: counter {counter} is not above {last}"
        )));
    }
    conn.prepare_cached("UPDATE instances SET last_counter = ?1, last_contact = ?2 WHERE id = ?3")?
        .execute(params![counter, now, instance])?;
    Ok(va_id)
}

/// Renews an instance's ID certificate.
pub fn renew_id(
    conn: &Db,
    now: i64,
    periods: &Periods,
    body: &pb::RenewIdBody,
) -> Result<pb::IdCertificate> {
    accept_request(conn, now, &body.instance_id, body.counter)?;
    let serial_number: i64 = conn.query_row(
        "SELECT COALESCE(MAX(cert_serial), 0) + 1 FROM instances",
        [],
        |r| r.get(0),
    )?;
    conn.prepare_cached(
        "UPDATE instances SET cert_serial = ?1, cert_expires_at = ?2 WHERE id = ?3",
    )?
    .execute(params![
        serial_number,
        now + periods.certificate,
        body.instance_id
    ])?;
    audit(
        conn,
        now,
        &format!("device:{}", body.instance_id),
        "instance.renew-id",
        "",
    )?;
    certificate(conn, &body.instance_id, now)
}

/// Authorises the counts an instance asks for, as far as its virtual account's pools go.
pub fn authorize(
    conn: &Db,
    now: i64,
    periods: &Periods,
    body: &pb::AuthorizeBody,
) -> Result<pb::Authorization> {
    if body.requested.len() > 256 {
        return Err(invalid("at most 256 licence tags per request"));
    }
    for (i, r) in body.requested.iter().enumerate() {
        check_tag(&r.tag)?;
        if body.requested[..i].iter().any(|o| o.tag == r.tag) {
            return Err(invalid(format!("licence tag {} is requested twice", r.tag)));
        }
        if r.count > 1_000_000_000 {
            return Err(invalid(format!(
                "count {} of {} is out of range",
                r.count, r.tag
            )));
        }
    }
    expire_overdue(conn, now, periods)?;
    let va_id = accept_request(conn, now, &body.instance_id, body.counter)?;
    conn.prepare_cached("DELETE FROM grants WHERE instance_id = ?1")?
        .execute([&body.instance_id])?;
    // A device back after its licences were released asks the pool again, like any other.
    conn.prepare_cached("UPDATE instances SET deadline_at = ?1, expired_at = 0 WHERE id = ?2")?
        .execute(params![now + periods.deadline, body.instance_id])?;
    let mut grants = Vec::with_capacity(body.requested.len());
    for r in &body.requested {
        let (total, in_use_by_others) = pool_counts(conn, va_id, &r.tag, now, &body.instance_id)?;
        let granted = r.count.min(total.saturating_sub(in_use_by_others));
        conn.prepare_cached(
            "INSERT INTO grants (instance_id, tag, requested, granted) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            body.instance_id,
            r.tag,
            r.count as i64,
            granted as i64
        ])?;
        let status = if granted == r.count {
            pb::GrantStatus::Authorized
        } else {
            pb::GrantStatus::OutOfCompliance
        };
        let (tps_per_unit, policy) = worth(conn, &r.tag)?;
        grants.push(pb::Grant {
            tag: r.tag.clone(),
            requested: r.count,
            granted,
            status: status as i32,
            tps_per_unit,
            policy: policy as i32,
        });
    }
    let summary: Vec<String> = grants
        .iter()
        .map(|g| format!("{} {}/{}", g.tag, g.granted, g.requested))
        .collect();
    audit(
        conn,
        now,
        &format!("device:{}", body.instance_id),
        "instance.authorize",
        &summary.join(", "),
    )?;
    Ok(pb::Authorization {
        instance_id: body.instance_id.clone(),
        grants,
        issued_at: now,
        next_renewal_at: now + periods.renewal,
        deadline_at: now + periods.deadline,
        counter: body.counter,
    })
}

/// Deregisters an instance and frees its licences.
pub fn deregister(conn: &Db, now: i64, body: &pb::DeregisterBody) -> Result<()> {
    accept_request(conn, now, &body.instance_id, body.counter)?;
    release_instance(conn, &body.instance_id)?;
    audit(
        conn,
        now,
        &format!("device:{}", body.instance_id),
        "instance.deregister",
        "",
    )?;
    Ok(())
}

/// The product instances of a virtual account, with their grants.
pub fn list_instances(conn: &Db, sa: &str, va: &str) -> Result<Vec<pb::Instance>> {
    let va_id = virtual_account_id(conn, sa, va)?;
    // When the last usage report arrived. SQLite stores reports in arrival order, and the
    // index of their keys holds each one's row number: the last one is found from the index
    // alone, where reading every report of the instance took ten times as long. The same
    // time unless the wall clock stepped back.
    let last_report = if conn.is_postgres() {
        "SELECT MAX(received_at) FROM usage_reports WHERE instance_number = instances.number"
    } else {
        "SELECT received_at FROM usage_reports
         WHERE id = (SELECT MAX(id) FROM usage_reports WHERE instance_number = instances.number)"
    };
    let mut instances: Vec<pb::Instance> = conn
        .prepare_cached(&format!(
            "SELECT id, product_id, serial, registered_at,
                    MAX(last_contact, COALESCE(({last_report}), 0)),
                    deregistered, expired_at, deadline_at, removed, replaceable FROM instances
             WHERE virtual_account_id = ?1 ORDER BY registered_at, id"
        ))?
        .query_map([va_id], |r| {
            Ok(pb::Instance {
                instance_id: r.get(0)?,
                udi: Some(pb::Udi {
                    product_id: r.get(1)?,
                    serial: r.get(2)?,
                }),
                smart_account: sa.to_owned(),
                virtual_account: va.to_owned(),
                registered_at: r.get(3)?,
                last_contact: r.get(4)?,
                deregistered: r.get(5)?,
                grants: Vec::new(),
                expired_at: r.get(6)?,
                deadline_at: r.get(7)?,
                removed: r.get(8)?,
                replaceable: r.get(9)?,
            })
        })?
        .collect::<crate::store::db::Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT tag, requested, granted FROM grants WHERE instance_id = ?1 ORDER BY tag",
    )?;
    for instance in &mut instances {
        instance.grants = stmt
            .query_map([&instance.instance_id], |r| {
                let (requested, granted): (i64, i64) = (r.get(1)?, r.get(2)?);
                let status = if granted == requested {
                    pb::GrantStatus::Authorized
                } else {
                    pb::GrantStatus::OutOfCompliance
                };
                Ok(pb::Grant {
                    tag: r.get(0)?,
                    requested: requested as u64,
                    granted: granted as u64,
                    status: status as i32,
                    ..Default::default()
                })
            })?
            .collect::<crate::store::db::Result<Vec<_>>>()?;
        for grant in &mut instance.grants {
            let (tps_per_unit, policy) = worth(conn, &grant.tag)?;
            grant.tps_per_unit = tps_per_unit;
            grant.policy = policy as i32;
        }
    }
    Ok(instances)
}

/// Releases the licences of every instance holding some whose communication deadline
/// passed more than the release grace ago: they go back to the pool, the instance shows
/// EXPIRED, and the audit log says so. Answers how many expired now.
pub fn expire_overdue(conn: &Db, now: i64, periods: &Periods) -> Result<usize> {
    let overdue: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT id, deadline_at FROM instances
             WHERE deregistered = 0 AND expired_at = 0 AND deadline_at <= ?1
               AND EXISTS (SELECT 1 FROM grants g WHERE g.instance_id = instances.id AND g.granted > 0)
             ORDER BY deadline_at, id",
        )?
        .query_map([now.saturating_sub(periods.release_grace)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<crate::store::db::Result<_>>()?;
    for (instance, deadline_at) in &overdue {
        let held: Vec<String> = conn
            .prepare_cached(
                "SELECT tag || ' ' || granted FROM grants WHERE instance_id = ?1 AND granted > 0 ORDER BY tag",
            )?
            .query_map([instance], |r| r.get(0))?
            .collect::<crate::store::db::Result<_>>()?;
        conn.prepare_cached("DELETE FROM grants WHERE instance_id = ?1")?
            .execute([instance])?;
        conn.prepare_cached("UPDATE instances SET expired_at = ?1 WHERE id = ?2")?
            .execute(params![now, instance])?;
        audit(
            conn,
            now,
            "authority",
            "instance.expired",
            &format!(
                "{instance}: no authorisation by its deadline {deadline_at} and a release grace of {} s; released to the pool: {}",
                periods.release_grace,
                held.join(", ")
            ),
        )?;
    }
    Ok(overdue.len())
}

/// `instance remove`: the operator frees a (dead) device's licences at once. Its requests
/// and new reports are refused from now on; its UDI may register again with any token.
pub fn remove_instance(conn: &Db, now: i64, r: &pb::InstanceRequest) -> Result<pb::Instance> {
    active_instance(conn, r)?;
    let held: Vec<String> = conn
        .prepare_cached(
            "SELECT tag || ' ' || granted FROM grants WHERE instance_id = ?1 AND granted > 0 ORDER BY tag",
        )?
        .query_map([&r.instance_id], |row| row.get(0))?
        .collect::<crate::store::db::Result<_>>()?;
    release_instance(conn, &r.instance_id)?;
    conn.prepare_cached("UPDATE instances SET removed = 1 WHERE id = ?1")?
        .execute([&r.instance_id])?;
    audit(
        conn,
        now,
        "admin",
        "instance.remove",
        &format!(
            "{:?}/{:?} {}: released to the pool: {}",
            r.smart_account,
            r.virtual_account,
            r.instance_id,
            if held.is_empty() {
                "nothing".to_owned()
            } else {
                held.join(", ")
            }
        ),
    )?;
    instance_view(conn, r)
}

/// `instance allow-replace`: the next registration of the instance's UDI in its virtual
/// account replaces it, though it is in contact and the new key proves nothing.
pub fn allow_replace(conn: &Db, now: i64, r: &pb::InstanceRequest) -> Result<pb::Instance> {
    active_instance(conn, r)?;
    conn.prepare_cached("UPDATE instances SET replaceable = 1 WHERE id = ?1")?
        .execute([&r.instance_id])?;
    audit(
        conn,
        now,
        "admin",
        "instance.allow-replace",
        &format!(
            "{:?}/{:?} {}: the next registration of its UDI may replace it",
            r.smart_account, r.virtual_account, r.instance_id
        ),
    )?;
    instance_view(conn, r)
}

/// Refuses an instance that is not an active one of the named virtual account.
fn active_instance(conn: &Db, r: &pb::InstanceRequest) -> Result<()> {
    let va_id = virtual_account_id(conn, &r.smart_account, &r.virtual_account)?;
    let found: Option<(i64, bool)> = conn
        .prepare_cached("SELECT virtual_account_id, deregistered FROM instances WHERE id = ?1")?
        .query_row([&r.instance_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match found {
        Some((va, false)) if va == va_id => Ok(()),
        Some((va, true)) if va == va_id => Err(Error::FailedPrecondition(format!(
            "product instance {} is already deregistered or removed; its licences are free",
            r.instance_id
        ))),
        _ => Err(Error::NotFound(format!(
            "no product instance {:?} in {:?}/{:?}",
            r.instance_id, r.smart_account, r.virtual_account
        ))),
    }
}

fn instance_view(conn: &Db, r: &pb::InstanceRequest) -> Result<pb::Instance> {
    list_instances(conn, &r.smart_account, &r.virtual_account)?
        .into_iter()
        .find(|i| i.instance_id == r.instance_id)
        .ok_or_else(|| Error::Internal("the instance vanished".into()))
}
