//! Smart and virtual accounts.

use super::*;

/// Creates a smart account.
pub fn create_smart_account(
    conn: &Db,
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
pub fn list_smart_accounts(conn: &Db) -> Result<Vec<pb::SmartAccount>> {
    let mut stmt = conn.prepare_cached("SELECT name, plr_authorized, export_controlled, created_at FROM smart_accounts ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(pb::SmartAccount {
            name: r.get(0)?,
            plr_authorized: r.get(1)?,
            export_controlled: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<crate::store::db::Result<_>>()?)
}

pub(crate) fn smart_account_id(conn: &Db, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM smart_accounts WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no smart account is named {name:?}")))
}

/// The id of virtual account `va` of smart account `sa`.
pub fn virtual_account_id(conn: &Db, sa: &str, va: &str) -> Result<i64> {
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
    conn: &Db,
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
pub fn list_virtual_accounts(conn: &Db, sa: &str) -> Result<Vec<pb::VirtualAccount>> {
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
    Ok(rows.collect::<crate::store::db::Result<_>>()?)
}
