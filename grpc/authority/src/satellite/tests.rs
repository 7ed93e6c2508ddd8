//! Syncs as outside input: garbage and altered files are refused and change nothing, a
//! report that does not verify is refused alone, and an instance of an account the
//! satellite was not delegated refuses the whole sync.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use entitle_proto::pb;
use entitle_proto::signing;
use prost::Message as _;

use crate::{AuthorityState, DataDir, Periods, Role, ledger};

struct Pair {
    _dir: tempfile::TempDir,
    cloud: Arc<AuthorityState>,
    satellite: Arc<AuthorityState>,
}

/// A cloud with Acme/Radius (delegated) and Acme/Lab (not), and its satellite, synced once.
async fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (cloud_dir, satellite_dir) = (dir.path().join("cloud"), dir.path().join("satellite"));
    crate::init(&cloud_dir).unwrap();
    crate::init(&satellite_dir).unwrap();
    let cloud =
        AuthorityState::open(&cloud_dir, Periods::default(), crate::system_clock()).unwrap();
    let key = cloud.key.clone();
    let satellite_key = std::fs::read(DataDir::new(&satellite_dir).public_key()).unwrap();
    let delegation = cloud
        .store
        .run(move |conn| {
            ledger::create_smart_account(
                conn,
                0,
                &pb::CreateSmartAccountRequest {
                    name: "Acme".into(),
                    ..Default::default()
                },
            )?;
            for va in ["Radius", "Lab"] {
                ledger::create_virtual_account(
                    conn,
                    0,
                    &pb::CreateVirtualAccountRequest {
                        smart_account: "Acme".into(),
                        name: va.into(),
                    },
                )?;
            }
            ledger::satellites::delegate(
                conn,
                crate::system_clock()(),
                &key,
                &pb::DelegateSatelliteRequest {
                    name: "s".into(),
                    satellite_public_key: satellite_key.clone(),
                    accounts: vec![pb::AccountName {
                        smart_account: "Acme".into(),
                        virtual_account: "Radius".into(),
                    }],
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    let file = dir.path().join("d");
    std::fs::write(&file, delegation.encode_to_vec()).unwrap();
    super::install(
        &satellite_dir,
        &file,
        &DataDir::new(&cloud_dir).public_key(),
    )
    .unwrap();
    let satellite = AuthorityState::open_as(
        &satellite_dir,
        Periods::default(),
        crate::system_clock(),
        Role::Satellite {
            sync_deadline: 3600,
        },
    )
    .unwrap();
    let request = satellite.export_sync().await.unwrap();
    let outcome = cloud.take_sync(request).await.unwrap();
    satellite.import_answer(&outcome.answer).await.unwrap();
    Pair {
        _dir: dir,
        cloud,
        satellite,
    }
}

/// Deterministic noise (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

async fn last_sequences(pair: &Pair) -> (i64, i64) {
    let cloud = pair
        .cloud
        .store
        .run(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(last_sequence), 0) FROM sync_state",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    let satellite = pair
        .satellite
        .store
        .run(|conn| super::sync::meta_i64(conn, "answer_sequence"))
        .await
        .unwrap();
    (cloud, satellite)
}

#[tokio::test]
async fn garbage_and_altered_sync_files_are_refused_and_change_nothing() {
    let pair = pair().await;
    let before = last_sequences(&pair).await;
    assert_eq!(before, (1, 1));
    let request = pair.satellite.export_sync().await.unwrap();
    let answer = pair.cloud.take_sync(request.clone()).await.unwrap().answer;
    let after_real = last_sequences(&pair).await;

    for seed in 0..300u64 {
        let len = (seed as usize * 7) % 600;
        // Random bytes as an envelope, and a real envelope with one byte flipped.
        let random = pb::Signed::decode(noise(seed, len).as_slice()).unwrap_or_default();
        let mut bytes = request.encode_to_vec();
        let at = (seed as usize * 131) % bytes.len();
        bytes[at] ^= 1 << (seed % 8);
        let altered = pb::Signed::decode(bytes.as_slice());
        let mut answer_bytes = answer.encode_to_vec();
        let at = (seed as usize * 97) % answer_bytes.len();
        answer_bytes[at] ^= 1 << (seed % 8);
        let altered_answer = pb::Signed::decode(answer_bytes.as_slice());

        assert!(pair.cloud.take_sync(random.clone()).await.is_err());
        assert!(pair.satellite.import_answer(&random).await.is_err());
        if let Ok(altered) = altered {
            // The same request again is accepted (and changes nothing); any other is not.
            if altered != request {
                assert!(pair.cloud.take_sync(altered).await.is_err(), "seed {seed}");
            }
        }
        if let Ok(altered) = altered_answer
            && altered.body != answer.body
        {
            assert!(
                pair.satellite.import_answer(&altered).await.is_err(),
                "seed {seed}"
            );
        }
    }
    assert_eq!(last_sequences(&pair).await, after_real, "nothing moved");
}

#[tokio::test]
async fn a_report_that_does_not_verify_is_refused_alone_and_a_foreign_account_refuses_the_sync() {
    let pair = pair().await;
    // An instance the satellite serves, with its device key.
    let device = signing::generate_key().unwrap();
    let device_key = device.verifying_key().to_bytes().to_vec();
    let instance = |id: &str, va: &str| pb::SatelliteInstance {
        instance_id: id.into(),
        udi: Some(pb::Udi {
            product_id: "CPAR".into(),
            serial: id.into(),
        }),
        account: Some(pb::AccountName {
            smart_account: "Acme".into(),
            virtual_account: va.into(),
        }),
        device_public_key: device_key.clone(),
        registered_at: 1,
        last_contact: 1,
        ..Default::default()
    };
    let report = |id: &str, sequence: u64| pb::UsageReport {
        instance_id: id.into(),
        sequence,
        window_start: 0,
        window_end: 1000,
        usage: vec![pb::EntitlementUsage {
            tag: "PAR-TPS".into(),
            admitted: 10,
            ..Default::default()
        }],
    };
    let stranger = signing::generate_key().unwrap();
    let satellite = pair.satellite.as_satellite().unwrap();
    let request =
        |sequence: u64, instances: Vec<pb::SatelliteInstance>, reports: Vec<pb::Signed>| {
            pair.satellite.sign(
                "SyncRequest",
                &pb::SyncRequest {
                    satellite: satellite.name.clone(),
                    delegation_serial: satellite.delegation().serial,
                    sequence,
                    created_at: 1,
                    instances,
                    reports,
                    reservations: Vec::new(),
                },
            )
        };
    let outcome = pair
        .cloud
        .take_sync(request(
            2,
            vec![instance("i1", "Radius")],
            vec![
                signing::sign(&device, "UsageReport", &report("i1", 1)),
                signing::sign(&stranger, "UsageReport", &report("i1", 2)),
                signing::sign(&device, "UsageReport", &report("i1", 3)),
                signing::sign(&device, "UsageReport", &report("nobody", 1)),
            ],
        ))
        .await
        .unwrap();
    let answer: pb::SyncAnswer =
        signing::open(&pair.cloud.public_key(), "SyncAnswer", &outcome.answer).unwrap();
    let acked: Vec<u64> = answer.acknowledged.iter().map(|a| a.sequence).collect();
    assert_eq!(acked, [1, 3]);
    assert_eq!(answer.refused.len(), 2);
    assert!(
        answer.refused[0].reason.contains("does not verify"),
        "{:?}",
        answer.refused
    );
    assert!(
        answer.refused[1].reason.contains("not known"),
        "{:?}",
        answer.refused
    );
    let totals = pair
        .cloud
        .store
        .run(|conn| {
            ledger::usage(
                conn,
                &pb::GetUsageRequest {
                    instance_id: "i1".into(),
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(totals[0].admitted, 20, "reports 1 and 3, once each");

    // An instance in an account not delegated: the whole sync is refused, nothing kept.
    let refused = pair
        .cloud
        .take_sync(request(
            3,
            vec![instance("i2", "Radius"), instance("i3", "Lab")],
            vec![signing::sign(&device, "UsageReport", &report("i2", 1))],
        ))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not delegated"), "{refused}");
    let known: i64 = pair
        .cloud
        .store
        .run(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM instances WHERE id IN ('i2', 'i3')",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(known, 0);
    assert_eq!(last_sequences(&pair).await.0, 2);
}
