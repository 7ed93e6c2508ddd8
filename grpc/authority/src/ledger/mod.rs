//! The authority's records and rules, as plain SQL on one connection, one module per
//! aggregate: [`accounts`], [`pools`], [`tokens`], [`instances`] (registration, renewals,
//! authorisation and their grants), [`usage`] (reports and totals), and here the checks
//! they share and the audit log.
//!
//! Each function runs inside one savepoint of the store's writer (see [`super::store`]):
//! it either does all it says or returns an error and leaves nothing behind. Values are
//! always bound as parameters, never spliced into SQL.

pub mod accounts;
pub mod instances;
pub mod pools;
pub mod tokens;
pub mod usage;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use entitle_proto::pb;
use rusqlite::{Connection, OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use entitle_proto::signing;

pub use accounts::*;
pub use instances::*;
pub use pools::*;
pub use tokens::*;
pub use usage::*;

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
