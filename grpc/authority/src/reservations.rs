//! Licence reservation on the authority: what a PLR or SLR authorisation takes from the
//! pool, and what a return gives back. The codes themselves are made and checked in
//! [`crate::codes`]; these functions take their parsed content and run in one savepoint of
//! the store's writer like every ledger operation.
//!
//! - **PLR**: the smart account must be authorised for PLR; the virtual account must hold
//!   an unconsumed perpetual, PLR-capable licence, which the reservation consumes (one
//!   unit, the first such tag in name order). The code names the smart account by its
//!   number and carries its export-control status.
//! - **SLR**: the virtual account must hold enough unconsumed perpetual licences of every
//!   listed tag; they leave the pool (counted in use) until returned.
//! - One reservation holds per device (UDI) at a time: a device returns one before it is
//!   given another. Authorising the same request again answers the same code.
//! - A return marks the reservation returned (the product instance removed) and its
//!   licences go back to the pool; a second return of it changes nothing.

use crate::store::{Db, OptionalExtension as _, params};
use entitle_codes::{self as codes, CodeSigningKey};
use entitle_proto::pb;

use super::ledger::{audit, check_tag, invalid, pool_counts, smart_account_id, virtual_account_id};
use crate::error::{Error, Result};

/// Authorises the reservation `r` asks for: parses its request code, reserves, and makes
/// the authorisation code with `key` (SLR codes carry what the catalogue says each licence
/// is worth).
pub fn authorize_request(
    conn: &Db,
    now: i64,
    key: &CodeSigningKey,
    r: &pb::AuthorizeReservationRequest,
) -> Result<pb::Reservation> {
    let parsed = codes::parse_request(&r.request_code).map_err(code_error)?;
    let udi = pb::Udi {
        product_id: parsed.udi.product_id().to_owned(),
        serial: parsed.udi.serial().to_owned(),
    };
    authorize(conn, now, r, &udi, parsed.sequence, |grant| {
        let mut worth = codes::Catalogue::new();
        for (tag, _) in &grant.licences {
            let (tps_per_unit, policy) = crate::ledger::worth(conn, tag)?;
            worth.insert(
                tag.clone(),
                codes::Worth {
                    tps_per_unit,
                    policy: crate::ledger::engine_policy(policy),
                },
            );
        }
        reservation_code(key, &parsed, grant, worth, now)
    })
}

/// Takes a device's return code: answers the reservation and whether it was returned
/// before.
pub fn return_code(conn: &Db, now: i64, code: &str) -> Result<(pb::Reservation, bool)> {
    let returned = codes::parse_return(code).map_err(code_error)?;
    let udi = pb::Udi {
        product_id: returned.udi.product_id().to_owned(),
        serial: returned.udi.serial().to_owned(),
    };
    take_return(conn, now, &udi, returned.sequence, |authorization| {
        codes::return_tag_matches(&returned, authorization)
    })
}

/// A code that does not parse is the caller's mistake: its sentence as INVALID_ARGUMENT.
pub(crate) fn code_error(e: codes::CodeError) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// The authorisation code (PLR or SLR) for a grant, and its confirmation code.
fn reservation_code(
    key: &CodeSigningKey,
    request: &codes::Request,
    grant: &Grant,
    worth: codes::Catalogue,
    now: i64,
) -> Result<(String, String)> {
    let code = match grant.kind {
        pb::ReservationKind::Permanent => codes::make_plr(
            key,
            request,
            &codes::PlrGrant {
                smart_account_ref: grant.account_number,
                export_controlled: grant.export_controlled,
            },
        ),
        _ => codes::make_slr(
            key,
            request,
            &codes::SlrGrant {
                licences: grant.licences.iter().cloned().collect(),
                smart_account: grant.smart_account.clone(),
                virtual_account: grant.virtual_account.clone(),
                export_controlled: grant.export_controlled,
                issued_at: now,
                worth,
            },
        ),
    }
    .map_err(code_error)?;
    let confirmation = codes::confirmation(&code, &request.udi);
    Ok((code, confirmation))
}

/// What a reservation grants, for the code to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// PLR or SLR.
    pub kind: pb::ReservationKind,
    /// The smart account's number (what a PLR code carries).
    pub account_number: u32,
    /// The smart account's name.
    pub smart_account: String,
    /// The virtual account's name.
    pub virtual_account: String,
    /// The device.
    pub udi: pb::Udi,
    /// The request's sequence number.
    pub sequence: u32,
    /// The smart account's export-control status.
    pub export_controlled: bool,
    /// The licences reserved, by tag (SLR: those asked for; PLR: the one consumed).
    pub licences: Vec<(String, u64)>,
}

/// The largest quantity of one tag an SLR may reserve.
const MAX_QUANTITY: u64 = 1_000_000;

/// Authorises a reservation for the device and sequence of a parsed request code. `code`
/// makes the authorisation code and its confirmation code from the grant.
pub fn authorize(
    conn: &Db,
    now: i64,
    r: &pb::AuthorizeReservationRequest,
    udi: &pb::Udi,
    sequence: u32,
    code: impl FnOnce(&Grant) -> Result<(String, String)>,
) -> Result<pb::Reservation> {
    let kind = pb::ReservationKind::try_from(r.kind)
        .ok()
        .filter(|k| *k != pb::ReservationKind::Unspecified)
        .ok_or_else(|| {
            invalid("say which kind of reservation: permanent (PLR) or specific (SLR)")
        })?;
    let sa_id = smart_account_id(conn, &r.smart_account)?;
    let va_id = virtual_account_id(conn, &r.smart_account, &r.virtual_account)?;
    let (plr_authorized, export_controlled): (bool, bool) = conn
        .prepare_cached(
            "SELECT plr_authorized, export_controlled FROM smart_accounts WHERE id = ?1",
        )?
        .query_row([sa_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let account_number = u32::try_from(sa_id)
        .map_err(|_| Error::Internal("the smart account number is out of range".into()))?;

    // The same request again: the same answer, if it asks for the same.
    if let Some(existing) = find(conn, udi, sequence)? {
        if existing.returned_at != 0 {
            return Err(Error::FailedPrecondition(format!(
                "request {sequence} of {} was authorised and returned already; ask the device for a new request code",
                udi_text(udi)
            )));
        }
        let same_kind = existing.kind == kind as i32;
        let same_licences = kind == pb::ReservationKind::Permanent
            || sorted(&existing.licenses) == sorted(&normalised(&r.licenses)?);
        if same_kind && same_licences && existing.smart_account == r.smart_account {
            return Ok(existing);
        }
        return Err(Error::AlreadyExists(format!(
            "request {sequence} of {} is authorised already, differently; return that reservation first",
            udi_text(udi)
        )));
    }
    let holding: Option<(i64, u32)> = conn
        .prepare_cached(
            "SELECT id, request_sequence FROM reservations
             WHERE product_id = ?1 AND serial = ?2 AND returned_at = 0",
        )?
        .query_row(params![udi.product_id, udi.serial], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    if let Some((id, held)) = holding {
        return Err(Error::FailedPrecondition(format!(
            "{} holds reservation {id} (request {held}); the device must return it first",
            udi_text(udi)
        )));
    }

    let licences = match kind {
        pb::ReservationKind::Permanent => {
            if !plr_authorized {
                return Err(Error::FailedPrecondition(format!(
                    "smart account {:?} is not authorised for permanent licence reservation",
                    r.smart_account
                )));
            }
            if !r.licenses.is_empty() {
                return Err(invalid(
                    "a permanent reservation reserves everything: list no licences",
                ));
            }
            vec![(plr_licence(conn, va_id, now, &r.virtual_account)?, 1)]
        }
        _ => {
            let wanted = normalised(&r.licenses)?;
            if wanted.is_empty() {
                return Err(invalid(
                    "a specific reservation lists the licences it reserves",
                ));
            }
            let mut missing = Vec::new();
            for (tag, quantity) in &wanted {
                let (total, in_use) = perpetual_counts(conn, va_id, tag, now)?;
                let free = total.saturating_sub(in_use);
                if free < *quantity {
                    missing.push(format!("{tag}: {quantity} asked, {free} available"));
                }
            }
            if !missing.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "virtual account {:?} has not enough perpetual licences: {}",
                    r.virtual_account,
                    missing.join("; ")
                )));
            }
            wanted
        }
    };

    let grant = Grant {
        kind,
        account_number,
        smart_account: r.smart_account.clone(),
        virtual_account: r.virtual_account.clone(),
        udi: udi.clone(),
        sequence,
        export_controlled,
        licences,
    };
    let (authorization_code, confirmation_code) = code(&grant)?;
    let id: i64 = conn.prepare_cached(
        "INSERT INTO reservations (kind, virtual_account_id, product_id, serial, request_sequence,
             export_controlled, authorization_code, confirmation_code, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
    )?
    .query_row(params![
        kind_text(kind),
        va_id,
        udi.product_id,
        udi.serial,
        sequence,
        export_controlled,
        authorization_code,
        confirmation_code,
        now
    ], |row| row.get(0))?;
    for (tag, quantity) in &grant.licences {
        conn.prepare_cached(
            "INSERT INTO reserved_licences (reservation_id, tag, quantity) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, tag, *quantity as i64])?;
    }
    let listed: Vec<String> = grant
        .licences
        .iter()
        .map(|(tag, n)| format!("{tag} x {n}"))
        .collect();
    audit(
        conn,
        now,
        "admin",
        &format!("reservation.{}", kind_text(kind)),
        &format!(
            "reservation {id} for {} request {sequence} in {:?}/{:?}: {}",
            udi_text(udi),
            r.smart_account,
            r.virtual_account,
            listed.join(", ")
        ),
    )?;
    find(conn, udi, sequence)?.ok_or_else(|| Error::Internal("the reservation vanished".into()))
}

/// Takes a return of the reservation of `udi` and `sequence`, once `proves` accepts its
/// authorisation code. Answers the reservation and whether it had been returned before.
pub fn take_return(
    conn: &Db,
    now: i64,
    udi: &pb::Udi,
    sequence: u32,
    proves: impl FnOnce(&str) -> bool,
) -> Result<(pb::Reservation, bool)> {
    let reservation = find(conn, udi, sequence)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no reservation was authorised for {} request {sequence}",
            udi_text(udi)
        ))
    })?;
    if !proves(&reservation.authorization_code) {
        return Err(Error::PermissionDenied(
            "the return code does not match the reservation's authorisation code".into(),
        ));
    }
    if reservation.returned_at != 0 {
        return Ok((reservation, true));
    }
    conn.prepare_cached("UPDATE reservations SET returned_at = ?1 WHERE id = ?2")?
        .execute(params![now, reservation.id as i64])?;
    audit(
        conn,
        now,
        "admin",
        "reservation.return",
        &format!(
            "reservation {} of {} returned; its licences are back in {:?}/{:?}",
            reservation.id,
            udi_text(udi),
            reservation.smart_account,
            reservation.virtual_account
        ),
    )?;
    let returned = find(conn, udi, sequence)?
        .ok_or_else(|| Error::Internal("the reservation vanished".into()))?;
    Ok((returned, false))
}

/// The reservations of a smart account, newest first.
pub fn list(conn: &Db, sa: &str) -> Result<Vec<pb::Reservation>> {
    let sa_id = smart_account_id(conn, sa)?;
    let keys: Vec<(String, String, u32)> = conn
        .prepare_cached(
            "SELECT r.product_id, r.serial, r.request_sequence FROM reservations r
             JOIN virtual_accounts v ON v.id = r.virtual_account_id
             WHERE v.smart_account_id = ?1 ORDER BY r.id DESC",
        )?
        .query_map([sa_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    keys.into_iter()
        .filter_map(|(product_id, serial, sequence)| {
            find(conn, &pb::Udi { product_id, serial }, sequence).transpose()
        })
        .collect()
}

fn find(conn: &Db, udi: &pb::Udi, sequence: u32) -> Result<Option<pb::Reservation>> {
    let row = conn
        .prepare_cached(
            "SELECT r.id, r.kind, s.name, v.name, r.export_controlled, r.authorization_code,
                    r.confirmation_code, r.created_at, r.returned_at
             FROM reservations r JOIN virtual_accounts v ON v.id = r.virtual_account_id
             JOIN smart_accounts s ON s.id = v.smart_account_id
             WHERE r.product_id = ?1 AND r.serial = ?2 AND r.request_sequence = ?3",
        )?
        .query_row(params![udi.product_id, udi.serial, sequence], |row| {
            let kind: String = row.get(1)?;
            Ok(pb::Reservation {
                id: row.get::<_, i64>(0)? as u64,
                kind: if kind == "permanent" {
                    pb::ReservationKind::Permanent
                } else {
                    pb::ReservationKind::Specific
                } as i32,
                smart_account: row.get(2)?,
                virtual_account: row.get(3)?,
                udi: Some(udi.clone()),
                request_sequence: sequence,
                export_controlled: row.get(4)?,
                licenses: Vec::new(),
                authorization_code: row.get(5)?,
                confirmation_code: row.get(6)?,
                created_at: row.get(7)?,
                returned_at: row.get(8)?,
            })
        })
        .optional()?;
    let Some(mut reservation) = row else {
        return Ok(None);
    };
    reservation.licenses = conn
        .prepare_cached(
            "SELECT tag, quantity FROM reserved_licences WHERE reservation_id = ?1 ORDER BY tag",
        )?
        .query_map([reservation.id as i64], |row| {
            Ok(pb::LicenseCount {
                tag: row.get(0)?,
                count: row.get::<_, i64>(1)? as u64,
            })
        })?
        .collect::<crate::store::db::Result<_>>()?;
    Ok(Some(reservation))
}

/// Perpetual licences of `tag` in a virtual account, and how many are in use (held by
/// devices or reserved). Term licences cannot be reserved: a reservation never expires.
fn perpetual_counts(conn: &Db, va_id: i64, tag: &str, now: i64) -> Result<(u64, u64)> {
    let perpetual: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(quantity), 0) FROM pools
             WHERE virtual_account_id = ?1 AND tag = ?2 AND term_end = 0",
        )?
        .query_row(params![va_id, tag], |row| row.get(0))?;
    let (total, in_use) = pool_counts(conn, va_id, tag, now, "")?;
    // In use draws on term licences first: they are the ones that end.
    let term = total.saturating_sub(perpetual as u64);
    Ok((perpetual as u64, in_use.saturating_sub(term)))
}

/// The first PLR-capable perpetual licence tag with one unconsumed.
fn plr_licence(conn: &Db, va_id: i64, now: i64, va: &str) -> Result<String> {
    let tags: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT tag FROM pools
             WHERE virtual_account_id = ?1 AND plr_capable = 1 AND term_end = 0 ORDER BY tag",
        )?
        .query_map([va_id], |row| row.get(0))?
        .collect::<crate::store::db::Result<_>>()?;
    for tag in tags {
        let (total, in_use) = perpetual_counts(conn, va_id, &tag, now)?;
        if total > in_use {
            return Ok(tag);
        }
    }
    Err(Error::FailedPrecondition(format!(
        "virtual account {va:?} has no unconsumed perpetual PLR-capable licence for a permanent reservation"
    )))
}

fn normalised(licences: &[pb::LicenseCount]) -> Result<Vec<(String, u64)>> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for l in licences {
        check_tag(&l.tag)?;
        if l.count == 0 || l.count > MAX_QUANTITY {
            return Err(invalid(format!(
                "reserve 1 to {MAX_QUANTITY} of {}, not {}",
                l.tag, l.count
            )));
        }
        if out.iter().any(|(t, _)| *t == l.tag) {
            return Err(invalid(format!("{} is listed twice", l.tag)));
        }
        out.push((l.tag.clone(), l.count));
    }
    Ok(out)
}

fn sorted(licences: &[impl AsCount]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = licences.iter().map(AsCount::pair).collect();
    v.sort();
    v
}

trait AsCount {
    fn pair(&self) -> (String, u64);
}

impl AsCount for pb::LicenseCount {
    fn pair(&self) -> (String, u64) {
        (self.tag.clone(), self.count)
    }
}

impl AsCount for (String, u64) {
    fn pair(&self) -> (String, u64) {
        self.clone()
    }
}

fn kind_text(kind: pb::ReservationKind) -> &'static str {
    match kind {
        pb::ReservationKind::Permanent => "permanent",
        _ => "specific",
    }
}

fn udi_text(udi: &pb::Udi) -> String {
    format!("{}/{}", udi.product_id, udi.serial)
}
