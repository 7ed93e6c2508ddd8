//! The device's own state survives what happens to machines: its request counter is kept
//! (a restart after the wall clock ran ahead is not taken for a replay), and a device key
//! left empty or cut short by a crash is made anew if the device never registered, or
//! stops start-up with what to do if it had.
#![allow(clippy::unwrap_used)] // tests

mod common;
mod harness;

use std::time::Duration;

use entitle_proto::pb;
use entitle_sidecar::device::DeviceClient;
use harness::{Authority, Entitled, authorization};

const ENTITLED: &str = env!("CARGO_BIN_EXE_e2e-entitled");

async fn instance_id(authority: &Authority) -> String {
    let instances = authority
        .admin()
        .await
        .list_instances(pb::ListInstancesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .instances;
    let active: Vec<_> = instances.into_iter().filter(|i| !i.deregistered).collect();
    assert_eq!(active.len(), 1, "{active:?}");
    active[0].instance_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_clock_ran_ahead_is_not_taken_for_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let mut sidecar = Entitled::start(
        dir.path(),
        &authority,
        "SNCLOCK",
        "[agent]\nselection = { \"PAR-TPS\" = 1 }\n",
    );
    sidecar.register(token).await;
    sidecar
        .wait_for("authorised", Duration::from_secs(15), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    sidecar.kill();

    // While its wall clock was a year ahead, the device sent a request: the authority now
    // holds a counter far above today's time in microseconds. (The device's own key and
    // counter file, as the sidecar would have.)
    let data = sidecar.dir.join("data");
    let key = entitle_proto::signing::signing_key(&std::fs::read(data.join("device.key")).unwrap())
        .unwrap();
    let anchor =
        entitle_proto::signing::verifying_key(&std::fs::read(authority.public_key()).unwrap())
            .unwrap();
    let channel = authority.device_channel();
    let mut ahead = DeviceClient::new(channel, key, anchor);
    ahead
        .persist_counter(data.join("request.counter"))
        .expect("the sidecar's counter file reads");
    let year_ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
        + 365 * 86_400 * 1_000_000;
    ahead.resume(instance_id(&authority).await, year_ahead);
    ahead
        .authorize(vec![pb::LicenseCount {
            tag: "PAR-TPS".into(),
            count: 1,
        }])
        .await
        .expect("accepted");

    // The clock is right again and the sidecar restarts: it goes on above that counter.
    sidecar.restart();
    // A busy machine may time a call out; a replay refusal is final. At most 5 tries.
    let mut renewed = Err(tonic::Status::unknown("not tried"));
    for _ in 0..5 {
        renewed = sidecar
            .client()
            .await
            .renew_authorization(pb::RenewAuthorizationCommand {})
            .await;
        match &renewed {
            Err(status) if status.code() == tonic::Code::Unavailable => continue,
            _ => break,
        }
    }
    assert!(
        renewed.is_ok(),
        "renewal after the restart: {renewed:?}\n{}\nauthority:\n{}",
        std::fs::read_to_string(sidecar.dir.join("entitled.log")).unwrap_or_default(),
        std::fs::read_to_string(authority.data.join("../authority.log")).unwrap_or_default()
    );
    let status = sidecar.status().await;
    assert_eq!(authorization(&status), "AUTHORIZED");
    let failure = status
        .authorization
        .unwrap()
        .last_communication_failure
        .unwrap_or_default();
    assert!(!failure.contains("replayed"), "{failure}");
}

/// Starts `entitled` on `config` and answers its exit status and stderr, for a start that
/// must fail (bounded: it must exit within 20 s).
fn failed_start(config: &std::path::Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(ENTITLED)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status.code(), stderr);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("entitled did not stop on a damaged key");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_key_cut_short_by_a_crash_is_remade_unless_the_device_registered() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let mut sidecar = Entitled::start(dir.path(), &authority, "SNKEY", "");
    let key_path = sidecar.dir.join("data").join("device.key");
    let first = std::fs::read(&key_path).unwrap();
    assert_eq!(first.len(), 32);

    // Never registered: an empty key (a crash right after creating it) is made anew.
    sidecar.kill();
    std::fs::write(&key_path, b"").unwrap();
    sidecar.restart();
    let remade = std::fs::read(&key_path).unwrap();
    assert_eq!(remade.len(), 32, "a new key");
    assert_ne!(remade, first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(sidecar.dir.join("data"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Registered: a key cut short stops start-up, saying why and what to do; the file is
    // left as it was.
    sidecar.register(token).await;
    sidecar
        .wait_for("authorised", Duration::from_secs(15), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    sidecar.kill();
    std::fs::write(&key_path, &remade[..10]).unwrap();
    let (code, stderr) = failed_start(&sidecar.dir.join("entitled.toml"));
    assert!(code.is_some_and(|c| c != 0), "{code:?} {stderr}");
    assert!(
        stderr.contains("10 bytes long") && stderr.contains("registered"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&key_path).unwrap(), &remade[..10]);
    // Gone altogether: the same.
    std::fs::remove_file(&key_path).unwrap();
    let (code, stderr) = failed_start(&sidecar.dir.join("entitled.toml"));
    assert!(code.is_some_and(|c| c != 0), "{code:?} {stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
    assert!(!key_path.exists());
}
