//! The audit log's filters: by smart account, instance and kind.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::store::Store;

/// Two accounts, each with a device, and the admin's and the devices' entries.
fn seed(conn: &Db) -> Result<()> {
    conn.execute_batch(
        "INSERT INTO smart_accounts (id, name, plr_authorized, export_controlled, created_at)
             VALUES (1, 'Acme', 0, 0, 0), (2, 'Radius', 0, 0, 0);
         INSERT INTO virtual_accounts (id, smart_account_id, name, created_at)
             VALUES (1, 1, 'Radius', 0), (2, 2, 'Lab', 0);
         INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key,
                 export_controlled, registered_at, last_contact, cert_serial, cert_expires_at)
             VALUES ('i-acme', 1, 'CPAR', 'A1', x'00', 0, 0, 0, 1, 0),
                    ('i-other', 2, 'CPAR', 'B2', x'00', 0, 0, 0, 2, 0);
         INSERT INTO tokens (id, secret_hash, virtual_account_id, created_at, expires_at,
                 max_uses, export_controlled, description)
             VALUES ('t-acme', x'00', 1, 0, 0, 1, 0, '');",
    )?;
    audit(
        conn,
        1,
        "admin",
        "smart-account.create",
        "\"Acme\" plr=false",
    )?;
    audit(
        conn,
        2,
        "admin",
        "virtual-account.create",
        "\"Acme\"/\"Radius\"",
    )?;
    audit(
        conn,
        3,
        "admin",
        "virtual-account.create",
        "\"Radius\"/\"Lab\"",
    )?;
    audit(
        conn,
        4,
        "device:i-acme",
        "instance.register",
        "CPAR/A1 with token t-acme",
    )?;
    audit(
        conn,
        5,
        "device:i-other",
        "instance.register",
        "CPAR/B2 with token t-x",
    )?;
    audit(
        conn,
        6,
        "device:i-acme",
        "instance.authorize",
        "PAR-TPS 1 of 1",
    )?;
    audit(conn, 7, "admin", "token.revoke", "t-acme")?;
    audit(conn, 8, "admin", "instances.purge", "none")?;
    Ok(())
}

async fn list(r: pb::ListAuditRequest) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    store
        .run(move |conn| {
            seed(conn)?;
            list_audit(conn, &r)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.at, e.action))
        .collect()
}

fn request(account: &str, instance: &str, kind: &str) -> pb::ListAuditRequest {
    pb::ListAuditRequest {
        smart_account: account.into(),
        instance_id: instance.into(),
        kind: kind.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn no_filter_lists_everything_in_order() {
    assert_eq!(list(request("", "", "")).await.len(), 8);
    let after = pb::ListAuditRequest {
        after_id: 6,
        limit: 1,
        ..Default::default()
    };
    assert_eq!(list(after).await, ["7 token.revoke"]);
}

#[tokio::test]
async fn an_account_has_its_admin_entries_its_devices_and_its_tokens() {
    assert_eq!(
        list(request("Acme", "", "")).await,
        [
            "1 smart-account.create",
            "2 virtual-account.create",
            "4 instance.register",
            "6 instance.authorize",
            "7 token.revoke",
        ]
    );
    // "Radius" is also Acme's virtual account: that entry is not the smart account's.
    assert_eq!(
        list(request("Radius", "", "")).await,
        ["3 virtual-account.create", "5 instance.register"]
    );
    assert!(list(request("Nobody", "", "")).await.is_empty());
}

#[tokio::test]
async fn an_instance_and_a_kind_filter_and_combine() {
    assert_eq!(
        list(request("", "i-acme", "")).await,
        ["4 instance.register", "6 instance.authorize"]
    );
    assert_eq!(
        list(request("", "", "instance")).await,
        [
            "4 instance.register",
            "5 instance.register",
            "6 instance.authorize"
        ]
    );
    // A family is a whole first word: "instance" is not "instances".
    assert_eq!(
        list(request("", "", "instances")).await,
        ["8 instances.purge"]
    );
    assert_eq!(
        list(request("", "", "instance.register")).await,
        ["4 instance.register", "5 instance.register"]
    );
    assert_eq!(
        list(request("Acme", "i-acme", "instance.authorize")).await,
        ["6 instance.authorize"]
    );
    assert!(list(request("Radius", "i-acme", "")).await.is_empty());
}

#[tokio::test]
async fn filters_are_values_not_patterns() {
    assert!(list(request("%", "", "")).await.is_empty());
    assert!(list(request("", "", "%")).await.is_empty());
    assert!(list(request("", "", "instance.%")).await.is_empty());
}
