//! ID tokens: made, listed, revoked; their secrets kept only as hashes.

use super::*;

pub(super) fn hash(secret: &[u8]) -> Vec<u8> {
    Sha256::digest(secret).to_vec()
}

/// Creates an ID token; its secret is in the answer and nowhere else.
pub fn create_token(conn: &Db, now: i64, r: &pb::CreateTokenRequest) -> Result<pb::Token> {
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
    let id = hex(&signing::random_bytes::<6>().map_err(|e| Error::Internal(e.to_string()))?);
    let secret =
        B64.encode(signing::random_bytes::<24>().map_err(|e| Error::Internal(e.to_string()))?);
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

const TOKEN_COLUMNS: &str = "t.id, s.name, v.name, t.created_at, t.expires_at, t.max_uses, t.uses, t.export_controlled, t.revoked, t.description";

fn token_row(r: &crate::store::Row<'_>) -> crate::store::db::Result<pb::Token> {
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
pub fn list_tokens(conn: &Db, sa: &str, va: &str) -> Result<Vec<pb::Token>> {
    let va_id = virtual_account_id(conn, sa, va)?;
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN virtual_accounts v ON v.id = t.virtual_account_id
         JOIN smart_accounts s ON s.id = v.smart_account_id WHERE t.virtual_account_id = ?1 ORDER BY t.created_at, t.id"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map([va_id], token_row)?
        .collect::<crate::store::db::Result<_>>()?;
    Ok(rows)
}

/// Revokes a token by its public id.
pub fn revoke_token(conn: &Db, now: i64, id: &str) -> Result<pb::Token> {
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
