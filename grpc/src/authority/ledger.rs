//! The authority's records and rules, as plain SQL on one connection: accounts, pools,
//! tokens, product instances, grants, usage and the audit log.
//!
//! Each function runs inside one savepoint of the store's writer (see [`super::store`]):
//! it either does all it says or returns an error and leaves nothing behind. Values are
//! always bound as parameters, never spliced into SQL.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use entitle_proto::pb;
use rusqlite::{Connection, OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};

use crate::crypto;
use crate::error::{Error, Result};

const DAY: i64 = 86_400;

/// The authority's periods, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Periods {
    /// How long an ID certificate is valid.
    pub certificate: i64,
    /// How often a device renews its authorisation.
    pub renewal: i64,
    /// How long after an authorisation the device may go without contact.
    pub deadline: i64,
}

impl Default for Periods {
    fn default() -> Self {
        Self {
            certificate: 365 * DAY,
            renewal: 30 * DAY,
            deadline: 90 * DAY,
        }
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// Account, pool and product names: 1 to 64 letters, digits, spaces and `- _ . @`.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.trim() == name
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" -_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{kind} {name:?} is invalid: use 1 to 64 letters, digits, spaces and - _ . @"
        )))
    }
}

/// Licence tags such as `PAR-TPS`: 1 to 64 letters, digits and `- _ . :`.
pub fn check_tag(tag: &str) -> Result<()> {
    if entitle_engine::table::is_valid_tag(tag) {
        Ok(())
    } else {
        Err(invalid(format!(
            "licence tag {tag:?} is invalid: use 1 to 64 letters, digits and - _ . :"
        )))
    }
}

/// Appends to the audit log.
pub fn audit(conn: &Connection, now: i64, actor: &str, action: &str, detail: &str) -> Result<()> {
    conn.prepare_cached("INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![now, actor, action, detail])?;
    Ok(())
}

// --- accounts ---------------------------------------------------------------------------

/// Creates a smart account.
pub fn create_smart_account(
    conn: &Connection,
    now: i64,
    r: &pb::CreateSmartAccountRequest,
) -> Result<pb::SmartAccount> {
    check_name("smart account", &r.name)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO smart_accounts (name, plr_authorized, export_controlled, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
        )?
        .execute(params![r.name, r.plr_authorized, r.export_controlled, now])?;
    if inserted == 0 {
        return Err(Error::AlreadyExists(format!(
            "smart account {:?} exists already",
            r.name
        )));
    }
    audit(
        conn,
        now,
        "admin",
        "smart-account.create",
        &format!(
            "{:?} plr={} export-controlled={}",
            r.name, r.plr_authorized, r.export_controlled
        ),
    )?;
    Ok(pb::SmartAccount {
        name: r.name.clone(),
        plr_authorized: r.plr_authorized,
        export_controlled: r.export_controlled,
        created_at: now,
    })
}

/// Every smart account.
pub fn list_smart_accounts(conn: &Connection) -> Result<Vec<pb::SmartAccount>> {
    let mut stmt = conn.prepare_cached("SELECT name, plr_authorized, export_controlled, created_at FROM smart_accounts ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(pb::SmartAccount {
            name: r.get(0)?,
            plr_authorized: r.get(1)?,
            export_controlled: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn smart_account_id(conn: &Connection, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM smart_accounts WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no smart account is named {name:?}")))
}

/// The id of virtual account `va` of smart account `sa`.
pub fn virtual_account_id(conn: &Connection, sa: &str, va: &str) -> Result<i64> {
    let sa_id = smart_account_id(conn, sa)?;
    conn.prepare_cached(
        "SELECT id FROM virtual_accounts WHERE smart_account_id = ?1 AND name = ?2",
    )?
    .query_row(params![sa_id, va], |r| r.get(0))
    .optional()?
    .ok_or_else(|| {
        Error::NotFound(format!(
            "smart account {sa:?} has no virtual account {va:?}"
        ))
    })
}

/// Creates a virtual account.
pub fn create_virtual_account(
    conn: &Connection,
    now: i64,
    r: &pb::CreateVirtualAccountRequest,
) -> Result<pb::VirtualAccount> {
    check_name("virtual account", &r.name)?;
    let sa_id = smart_account_id(conn, &r.smart_account)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO virtual_accounts (smart_account_id, name, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (smart_account_id, name) DO NOTHING",
        )?
        .execute(params![sa_id, r.name, now])?;
    if inserted == 0 {
        return Err(Error::AlreadyExists(format!(
            "virtual account {:?} exists already in {:?}",
            r.name, r.smart_account
        )));
    }
    audit(
        conn,
        now,
        "admin",
        "virtual-account.create",
        &format!("{:?}/{:?}", r.smart_account, r.name),
    )?;
    Ok(pb::VirtualAccount {
        smart_account: r.smart_account.clone(),
        name: r.name.clone(),
        created_at: now,
    })
}

/// The virtual accounts of a smart account.
pub fn list_virtual_accounts(conn: &Connection, sa: &str) -> Result<Vec<pb::VirtualAccount>> {
    let sa_id = smart_account_id(conn, sa)?;
    let mut stmt = conn.prepare_cached(
        "SELECT name, created_at FROM virtual_accounts WHERE smart_account_id = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([sa_id], |r| {
        Ok(pb::VirtualAccount {
            smart_account: sa.to_owned(),
            name: r.get(0)?,
            created_at: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// --- pools ------------------------------------------------------------------------------

/// Licences of `tag` in a virtual account that have not ended, and how many of them
/// instances other than `except` hold.
pub(crate) fn pool_counts(
    conn: &Connection,
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

fn pool(
    conn: &Connection,
    sa: &str,
    va: &str,
    va_id: i64,
    tag: &str,
    now: i64,
) -> Result<pb::Pool> {
    let (quantity, in_use) = pool_counts(conn, va_id, tag, now, "")?;
    let (term_end, plr_capable): (i64, bool) = conn
        .prepare_cached(
            "SELECT COALESCE(MIN(NULLIF(term_end, 0)), 0), COALESCE(MAX(plr_capable), 0) FROM pools
             WHERE virtual_account_id = ?1 AND tag = ?2 AND (term_end = 0 OR term_end > ?3)",
        )?
        .query_row(params![va_id, tag, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(pb::Pool {
        smart_account: sa.to_owned(),
        virtual_account: va.to_owned(),
        tag: tag.to_owned(),
        quantity,
        in_use,
        term_end,
        plr_capable,
    })
}

/// Adds licences to a virtual account's pool of `tag`.
pub fn add_licenses(conn: &Connection, now: i64, r: &pb::AddLicensesRequest) -> Result<pb::Pool> {
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
         DO UPDATE SET quantity = quantity + excluded.quantity, plr_capable = plr_capable OR excluded.plr_capable",
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
pub fn list_pools(conn: &Connection, now: i64, sa: &str, va: &str) -> Result<Vec<pb::Pool>> {
    let va_id = virtual_account_id(conn, sa, va)?;
    let tags: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT tag FROM pools WHERE virtual_account_id = ?1 ORDER BY tag",
        )?
        .query_map([va_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tags.iter()
        .map(|tag| pool(conn, sa, va, va_id, tag, now))
        .collect()
}

/// Moves unconsumed licences between two virtual accounts of one smart account; with
/// `force`, licences in use as well (never more than the pool holds), and the devices
/// holding them are granted less at their next authorisation (OUT_OF_COMPLIANCE).
pub fn transfer(
    conn: &Connection,
    now: i64,
    r: &pb::TransferRequest,
) -> Result<pb::TransferResponse> {
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
        .collect::<rusqlite::Result<_>>()?;
    let mut left = r.quantity as i64;
    for (term_end, quantity, plr_capable) in rows {
        let moved = left.min(quantity);
        conn.prepare_cached("UPDATE pools SET quantity = quantity - ?1 WHERE virtual_account_id = ?2 AND tag = ?3 AND term_end = ?4")?
            .execute(params![moved, from, r.tag, term_end])?;
        conn.prepare_cached(
            "INSERT INTO pools (virtual_account_id, tag, term_end, quantity, plr_capable) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (virtual_account_id, tag, term_end)
             DO UPDATE SET quantity = quantity + excluded.quantity, plr_capable = plr_capable OR excluded.plr_capable",
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

// --- tokens -----------------------------------------------------------------------------

fn hash(secret: &[u8]) -> Vec<u8> {
    Sha256::digest(secret).to_vec()
}

/// Creates an ID token; its secret is in the answer and nowhere else.
pub fn create_token(conn: &Connection, now: i64, r: &pb::CreateTokenRequest) -> Result<pb::Token> {
    if !(1..=365).contains(&r.validity_days) {
        return Err(invalid("a token is valid for 1 to 365 days"));
    }
    if r.max_uses == 0 {
        return Err(invalid("a token must allow at least one use"));
    }
    if r.description.len() > 200 || r.description.chars().any(char::is_control) {
        return Err(invalid(
            "a description is at most 200 characters, none of them control characters",
        ));
    }
    let va_id = virtual_account_id(conn, &r.smart_account, &r.virtual_account)?;
    let id = hex(&crypto::random_bytes::<6>().map_err(|e| Error::Internal(e.to_string()))?);
    let secret =
        B64.encode(crypto::random_bytes::<24>().map_err(|e| Error::Internal(e.to_string()))?);
    let expires_at = now + i64::from(r.validity_days) * DAY;
    conn.prepare_cached(
        "INSERT INTO tokens (id, secret_hash, virtual_account_id, created_at, expires_at, max_uses, export_controlled, description)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![id, hash(secret.as_bytes()), va_id, now, expires_at, r.max_uses, r.export_controlled, r.description])?;
    audit(
        conn,
        now,
        "admin",
        "token.create",
        &format!(
            "{id} for {:?}/{:?}, {} days, {} uses",
            r.smart_account, r.virtual_account, r.validity_days, r.max_uses
        ),
    )?;
    Ok(pb::Token {
        id: id.clone(),
        smart_account: r.smart_account.clone(),
        virtual_account: r.virtual_account.clone(),
        created_at: now,
        expires_at,
        max_uses: r.max_uses,
        uses: 0,
        export_controlled: r.export_controlled,
        revoked: false,
        description: r.description.clone(),
        secret: format!("{id}.{secret}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TOKEN_COLUMNS: &str = "t.id, s.name, v.name, t.created_at, t.expires_at, t.max_uses, t.uses, t.export_controlled, t.revoked, t.description";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<pb::Token> {
    Ok(pb::Token {
        id: r.get(0)?,
        smart_account: r.get(1)?,
        virtual_account: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        max_uses: r.get(5)?,
        uses: r.get(6)?,
        export_controlled: r.get(7)?,
        revoked: r.get(8)?,
        description: r.get(9)?,
        secret: String::new(),
    })
}

/// The tokens of a virtual account, without their secrets.
pub fn list_tokens(conn: &Connection, sa: &str, va: &str) -> Result<Vec<pb::Token>> {
    let va_id = virtual_account_id(conn, sa, va)?;
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN virtual_accounts v ON v.id = t.virtual_account_id
         JOIN smart_accounts s ON s.id = v.smart_account_id WHERE t.virtual_account_id = ?1 ORDER BY t.created_at, t.id"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map([va_id], token_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Revokes a token by its public id.
pub fn revoke_token(conn: &Connection, now: i64, id: &str) -> Result<pb::Token> {
    let changed = conn
        .prepare_cached("UPDATE tokens SET revoked = 1 WHERE id = ?1")?
        .execute([id])?;
    if changed == 0 {
        return Err(Error::NotFound(format!("no token has id {id:?}")));
    }
    audit(conn, now, "admin", "token.revoke", id)?;
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN virtual_accounts v ON v.id = t.virtual_account_id
         JOIN smart_accounts s ON s.id = v.smart_account_id WHERE t.id = ?1"
    );
    Ok(conn.prepare_cached(&sql)?.query_row([id], token_row)?)
}

// --- devices ----------------------------------------------------------------------------

/// A registration's inputs, already checked for form and proof of key possession.
pub struct Registration<'a> {
    /// The ID token as the operator typed it.
    pub token: &'a str,
    /// The device's UDI.
    pub udi: &'a pb::Udi,
    /// The device's public key.
    pub device_key: &'a [u8],
}

/// Registers a device with an ID token: checks the token, uses it once, and records the
/// product instance. Returns the certificate to sign.
pub fn register(
    conn: &Connection,
    now: i64,
    periods: &Periods,
    r: &Registration<'_>,
) -> Result<pb::IdCertificate> {
    let (id, secret) = super::token::parse_token(r.token).map_err(|e| invalid(e.to_string()))?;
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
    if uses >= max_uses {
        return Err(Error::PermissionDenied(format!(
            "the ID token was used up ({max_uses} of {max_uses} uses)"
        )));
    }
    // One active instance per UDI: a re-registration in the same virtual account replaces
    // it; one in another account must deregister first.
    let existing: Option<(String, i64)> = conn
        .prepare_cached("SELECT id, virtual_account_id FROM instances WHERE product_id = ?1 AND serial = ?2 AND deregistered = 0")?
        .query_row(params![r.udi.product_id, r.udi.serial], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if let Some((old, old_va)) = existing {
        if old_va != va_id {
            return Err(Error::FailedPrecondition(format!(
                "device {}/{} is registered in another virtual account (instance {old}); deregister it first",
                r.udi.product_id, r.udi.serial
            )));
        }
        release_instance(conn, &old)?;
        audit(
            conn,
            now,
            &format!("device:{old}"),
            "instance.replaced",
            "re-registered with a new key",
        )?;
    }
    conn.prepare_cached("UPDATE tokens SET uses = uses + 1 WHERE id = ?1")?
        .execute([id])?;
    let instance = hex(&crypto::random_bytes::<16>().map_err(|e| Error::Internal(e.to_string()))?);
    let serial_number: i64 = conn.query_row(
        "SELECT COALESCE(MAX(cert_serial), 0) + 1 FROM instances",
        [],
        |r| r.get(0),
    )?;
    conn.prepare_cached(
        "INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key, export_controlled, registered_at,
                                last_contact, cert_serial, cert_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)",
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
        now + periods.certificate
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

fn release_instance(conn: &Connection, instance: &str) -> Result<()> {
    conn.prepare_cached("UPDATE instances SET deregistered = 1 WHERE id = ?1")?
        .execute([instance])?;
    conn.prepare_cached("DELETE FROM grants WHERE instance_id = ?1")?
        .execute([instance])?;
    Ok(())
}

/// The current certificate of an instance.
fn certificate(conn: &Connection, instance: &str, now: i64) -> Result<pb::IdCertificate> {
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
pub fn device_key(conn: &Connection, instance: &str) -> Result<(Vec<u8>, bool)> {
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
fn accept_request(conn: &Connection, now: i64, instance: &str, counter: u64) -> Result<i64> {
    let (last, deregistered, va_id): (i64, bool, i64) = conn
        .prepare_cached(
            "SELECT last_counter, deregistered, virtual_account_id FROM instances WHERE id = ?1",
        )?
        .query_row([instance], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no product instance {instance:?} is registered here"
            ))
        })?;
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
    conn: &Connection,
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
    conn: &Connection,
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
    let va_id = accept_request(conn, now, &body.instance_id, body.counter)?;
    conn.prepare_cached("DELETE FROM grants WHERE instance_id = ?1")?
        .execute([&body.instance_id])?;
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
        grants.push(pb::Grant {
            tag: r.tag.clone(),
            requested: r.count,
            granted,
            status: status as i32,
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
pub fn deregister(conn: &Connection, now: i64, body: &pb::DeregisterBody) -> Result<()> {
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

/// Stores a verified usage report once per (instance, sequence).
pub fn store_report(
    conn: &Connection,
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
    // deregistered instance stores nothing new but still has its resends acknowledged.
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
            None => Err(Error::FailedPrecondition(format!(
                "product instance {instance} was deregistered; its reports are closed"
            ))),
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
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                invalid(format!(
                    "entitlement {} appears twice in report {sequence}",
                    u.tag
                ))
            }
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

// --- queries ----------------------------------------------------------------------------

/// The product instances of a virtual account, with their grants.
pub fn list_instances(conn: &Connection, sa: &str, va: &str) -> Result<Vec<pb::Instance>> {
    let va_id = virtual_account_id(conn, sa, va)?;
    let mut instances: Vec<pb::Instance> = conn
        .prepare_cached(
            "SELECT id, product_id, serial, registered_at,
                    MAX(last_contact, COALESCE((SELECT MAX(received_at) FROM usage_reports WHERE instance_id = id), 0)),
                    deregistered FROM instances
             WHERE virtual_account_id = ?1 ORDER BY registered_at, id",
        )?
        .query_map([va_id], |r| {
            Ok(pb::Instance {
                instance_id: r.get(0)?,
                udi: Some(pb::Udi { product_id: r.get(1)?, serial: r.get(2)? }),
                smart_account: sa.to_owned(),
                virtual_account: va.to_owned(),
                registered_at: r.get(3)?,
                last_contact: r.get(4)?,
                deregistered: r.get(5)?,
                grants: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
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
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(instances)
}

/// The usage ledger: totals per instance and tag, for one instance or a virtual account.
pub fn usage(conn: &Connection, r: &pb::GetUsageRequest) -> Result<Vec<pb::UsageTotal>> {
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
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Audit entries after `after_id`, oldest first.
pub fn list_audit(conn: &Connection, after_id: u64, limit: u32) -> Result<Vec<pb::AuditEntry>> {
    let limit = if limit == 0 { 100 } else { limit.min(10_000) };
    let rows = conn
        .prepare_cached(
            "SELECT id, at, actor, action, detail FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![after_id as i64, limit], |r| {
            Ok(pb::AuditEntry {
                id: r.get::<_, i64>(0)? as u64,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                detail: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}
