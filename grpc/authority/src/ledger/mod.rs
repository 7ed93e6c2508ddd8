//! The authority's records and rules, as plain SQL on one connection, one module per
//! aggregate: [`accounts`], [`pools`], [`tokens`], [`instances`] (registration, renewals,
//! authorisation and their grants), [`usage`] (reports and totals), [`satellites`] (the
//! cloud's delegations and the syncs it takes), and here the checks
//! they share and the audit log.
//!
//! Each function runs inside one savepoint of the store's writer (see [`super::store`]):
//! it either does all it says or returns an error and leaves nothing behind. Values are
//! always bound as parameters, never spliced into SQL.

pub mod accounts;
pub mod instances;
pub mod pools;
pub mod satellites;
pub mod series;
pub mod tokens;
pub mod usage;

#[cfg(test)]
mod audit_tests;

use crate::store::{Db, OptionalExtension as _, params};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use entitle_proto::pb;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use entitle_proto::signing;

pub use accounts::*;
pub use instances::*;
pub use pools::*;
pub use satellites::serving_satellite;
pub use series::*;
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
    /// How long past its deadline a silent device keeps its licences before they go back
    /// to the pool (its instance EXPIRED).
    pub release_grace: i64,
}

impl Default for Periods {
    fn default() -> Self {
        Self {
            certificate: 365 * DAY,
            renewal: 30 * DAY,
            deadline: 90 * DAY,
            release_grace: 30 * DAY,
        }
    }
}

impl Periods {
    /// Refuses periods that make no sense: each longer than zero, the renewal shorter than
    /// the deadline, the grace not negative, none above 100 years.
    pub fn validate(&self) -> Result<()> {
        let max = 100 * 365 * DAY;
        for (name, v) in [
            ("certificate", self.certificate),
            ("renewal", self.renewal),
            ("deadline", self.deadline),
        ] {
            if !(1..=max).contains(&v) {
                return Err(invalid(format!(
                    "the {name} period must be 1 second to 100 years"
                )));
            }
        }
        if !(0..=max).contains(&self.release_grace) {
            return Err(invalid("the release grace must be 0 to 100 years"));
        }
        if self.renewal >= self.deadline {
            return Err(invalid(
                "the renewal period must be shorter than the communication deadline",
            ));
        }
        Ok(())
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
pub fn audit(conn: &Db, now: i64, actor: &str, action: &str, detail: &str) -> Result<()> {
    conn.prepare_cached("INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![now, actor, action, detail])?;
    Ok(())
}

/// Audit entries after `r.after_id` that match its filters, oldest first, at most
/// `r.limit` (100 when 0).
///
/// The log names accounts as the admin's entries write them (the smart account's name in
/// quotes, as `{:?}` does, never after a `/`, which precedes a virtual account) and
/// devices by their actor `device:<instance>`; a device's entries belong to the smart
/// account of its virtual account, a token's revocation to the token's.
pub fn list_audit(conn: &Db, r: &pb::ListAuditRequest) -> Result<Vec<pb::AuditEntry>> {
    let limit = if r.limit == 0 {
        100
    } else {
        r.limit.min(10_000)
    } as usize;
    let quoted = format!("{:?}", r.smart_account);
    let mut statement = conn.prepare_cached(
        "SELECT a.id, a.at, a.actor, a.action, a.detail, COALESCE(si.name, st.name)
         FROM audit a
         LEFT JOIN instances i ON a.actor LIKE 'device:%' AND i.id = substr(a.actor, 8)
         LEFT JOIN virtual_accounts vi ON vi.id = i.virtual_account_id
         LEFT JOIN smart_accounts si ON si.id = vi.smart_account_id
         LEFT JOIN tokens t ON a.action = 'token.revoke' AND t.id = a.detail
         LEFT JOIN virtual_accounts vt ON vt.id = t.virtual_account_id
         LEFT JOIN smart_accounts st ON st.id = vt.smart_account_id
         WHERE a.id > ?1
           AND (?2 = '' OR a.actor = 'device:' || ?2 OR instr(a.detail, ?2) > 0)
           AND (?3 = '' OR a.action = ?3 OR substr(a.action, 1, length(?3) + 1) = ?3 || '.')
           AND (?4 = '' OR si.name = ?4 OR st.name = ?4 OR instr(a.detail, ?5) > 0)
         ORDER BY a.id LIMIT ?6",
    )?;
    // A page at a time: the smart-account filter finishes in Rust, after the page.
    let mut entries = Vec::new();
    let mut after = r.after_id as i64;
    while entries.len() < limit {
        let page = statement
            .query_map(
                params![
                    after,
                    r.instance_id,
                    r.kind,
                    r.smart_account,
                    quoted,
                    limit as i64
                ],
                |row| {
                    let entry = pb::AuditEntry {
                        id: row.get::<_, i64>(0)? as u64,
                        at: row.get(1)?,
                        actor: row.get(2)?,
                        action: row.get(3)?,
                        detail: row.get(4)?,
                    };
                    Ok((entry, row.get::<_, Option<String>>(5)?))
                },
            )?
            .collect::<crate::store::db::Result<Vec<_>>>()?;
        let Some((last, _)) = page.last() else { break };
        after = last.id as i64;
        let full = page.len() == limit;
        for (entry, owner) in page {
            if entries.len() < limit
                && (r.smart_account.is_empty()
                    || owner.as_deref() == Some(r.smart_account.as_str())
                    || names_account(&entry.detail, &quoted))
            {
                entries.push(entry);
            }
        }
        if !full {
            break;
        }
    }
    Ok(entries)
}

/// Whether an admin entry's `detail` names the smart account written as `quoted`: the
/// quoted name not right after a `/` (there it is a virtual account's).
fn names_account(detail: &str, quoted: &str) -> bool {
    detail
        .match_indices(quoted)
        .any(|(at, _)| !detail[..at].ends_with('/'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
