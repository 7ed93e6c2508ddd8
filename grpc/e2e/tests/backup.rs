//! Backing up and restoring the authority's store, as the README tells an operator to:
//! SQLite with `sqlite3 .backup` while the authority serves, PostgreSQL with `pg_dump` and
//! `pg_restore` into a new database. The restored authority holds the ledger as it was at
//! the backup (and refuses nothing its devices send again).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::process::Command;

use common::{report, udi};
use entitle_pgtest::Cluster;
use entitle_proto::signing;
use entitle_sidecar::device::DeviceClient;
use harness::Authority;

/// A device of Acme/Radius registered with `authority`.
async fn device(authority: &Authority, token: &str) -> DeviceClient {
    let public = ed25519_dalek::VerifyingKey::from_bytes(
        std::fs::read(authority.public_key()).unwrap()[..]
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let mut device = DeviceClient::new(
        authority.device_channel(),
        signing::generate_key().unwrap(),
        public,
    );
    device.register(token, udi("B1")).await.unwrap();
    device
}

/// Reports `sequences`, each of 10 admitted per tag, all acknowledged as new.
async fn send(device: &mut DeviceClient, sequences: std::ops::RangeInclusive<u64>) {
    let instance = device.instance().unwrap().to_owned();
    let signed = sequences
        .clone()
        .map(|s| device.sign_report(&report(&instance, s, 10)))
        .collect();
    let (acks, refused) = device.report(signed).await;
    assert!(refused.is_none(), "{refused:?}");
    assert_eq!(acks.len(), sequences.count());
    assert!(acks.iter().all(|a| !a.duplicate));
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_sqlite_backup_taken_while_serving_restores_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::init_on(dir.path().join("authority"), &[], false);
    authority.restart();
    let token = authority.acme(&[("PAR-TPS", 2)]).await;
    let mut device = device(&authority, &token).await;
    send(&mut device, 1..=5).await;

    // Online, while the authority serves; then more usage the backup does not hold.
    let backup = dir.path().join("authority-backup.db");
    let database = authority.data.join("authority.db");
    run(Command::new("sqlite3")
        .arg(&database)
        .arg(format!(".backup '{}'", backup.display())));
    send(&mut device, 6..=8).await;
    assert_eq!(authority.admitted("PAR-TPS").await, 80);

    // Restore: stop, put the backup in place (without the old write-ahead log), serve.
    authority.kill();
    for stale in ["authority.db-wal", "authority.db-shm"] {
        let _ = std::fs::remove_file(authority.data.join(stale));
    }
    std::fs::copy(&backup, &database).unwrap();
    authority.restart();
    assert_eq!(authority.admitted("PAR-TPS").await, 50);
    // The device sends again what the restored ledger lacks, and it is counted once.
    send(&mut device, 6..=8).await;
    assert_eq!(authority.admitted("PAR-TPS").await, 80);
}

#[tokio::test]
async fn a_postgres_dump_restored_into_a_new_database_serves_the_same_ledger() {
    let pg = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::init_database(dir.path().join("authority"), &pg.url());
    authority.restart();
    let token = authority.acme(&[("PAR-TPS", 2)]).await;
    let mut device = device(&authority, &token).await;
    send(&mut device, 1..=5).await;

    let dump = dir.path().join("entitle.dump");
    run(Command::new(entitle_pgtest::program("pg_dump").unwrap())
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(pg.url()));
    send(&mut device, 6..=8).await;
    authority.kill();

    // Into a database of its own, which the authority serves with --database.
    pg.psql("CREATE DATABASE restored").unwrap();
    let restored = pg.url().replace("/entitle", "/restored");
    run(Command::new(entitle_pgtest::program("pg_restore").unwrap())
        .args(["--exit-on-error", "--dbname", &restored])
        .arg(&dump));
    let (address, admin) = (authority.address.clone(), authority.admin_address.clone());
    authority.serve(&["--database", &restored], &[], &address, &admin);
    assert_eq!(authority.admitted("PAR-TPS").await, 50);
    send(&mut device, 6..=8).await;
    assert_eq!(authority.admitted("PAR-TPS").await, 80);
}
