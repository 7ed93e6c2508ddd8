//! The `entitle-authority` binary as an operator uses it: `init`, `serve` in a real process,
//! and the admin commands as clients of it (beside a device client where licences must be in
//! use); killed with SIGKILL at the end.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use entitle_authority as authority;
use entitle_proto::pb;
use entitle_proto::signing;
use entitle_sidecar::device::DeviceClient;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-entitle-authority");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` on free ports and returns it with its admin URL and its devices' URL
/// (both TLS), read from its first two lines.
fn serve(data: &Path) -> (Server, String, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut urls = Vec::new();
    for prefix in [
        "entitle-authority listening on ",
        "entitle-authority admin on ",
    ] {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line}"));
        urls.push(format!("https://{address}"));
    }
    let devices = urls.remove(0);
    (Server(child), urls.remove(0), devices)
}

/// Runs an admin command; returns (success, stdout, stderr).
fn admin(url: &str, data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["--authority", url, "--data"])
        .arg(data)
        .args(args)
        .env_remove("ENTITLE_ADMIN_CREDENTIAL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_operator_sets_up_accounts_pools_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("authority");
    let init = Command::new(BIN)
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let again = Command::new(BIN)
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds an authority"));

    let (_server, url, _) = serve(&data);
    let ok = |args: &[&str]| {
        let (success, out, err) = admin(&url, &data, args);
        assert!(success, "{args:?}: {err}");
        out
    };
    ok(&["account", "create", "Acme", "--plr"]);
    ok(&["virtual-account", "create", "Acme", "Radius"]);
    ok(&["virtual-account", "create", "Acme", "Lab"]);
    ok(&["pool", "add", "Acme", "Radius", "PAR-TPS", "1"]);
    let pools = ok(&[
        "pool",
        "add",
        "Acme",
        "Radius",
        "PAR-ADD-TPS",
        "2",
        "--term-days",
        "365",
    ]);
    assert!(
        pools.contains("PAR-ADD-TPS") && pools.contains("term ends"),
        "{pools}"
    );
    let moved = ok(&[
        "pool",
        "transfer",
        "Acme",
        "Radius",
        "Lab",
        "PAR-ADD-TPS",
        "1",
    ]);
    assert!(moved.contains("transferred 1 x PAR-ADD-TPS"), "{moved}");
    let token = ok(&[
        "token", "create", "Acme", "Radius", "--days", "7", "--uses", "3",
    ]);
    let id = token.trim().split('.').next().unwrap().to_owned();
    assert!(ok(&["token", "list", "Acme", "Radius"]).contains(&format!("{id}  active")));
    ok(&["token", "revoke", &id]);
    assert!(ok(&["token", "list", "Acme", "Radius"]).contains("revoked"));
    let audit = ok(&["audit", "list"]);
    for action in [
        "smart-account.create",
        "pool.add",
        "pool.transfer",
        "token.create",
        "token.revoke",
    ] {
        assert!(audit.contains(action), "{action} missing from\n{audit}");
    }
    assert!(
        !audit.contains(token.trim()),
        "the token's secret is never in the audit log"
    );

    // Bad input: one clear sentence on stderr and a non-zero status.
    for (args, words) in [
        (
            &["pool", "transfer", "Acme", "Radius", "Lab", "PAR-TPS", "5"][..],
            "unconsumed",
        ),
        (
            &["account", "create", "Robert'); DROP TABLE x;--"][..],
            "invalid",
        ),
        (
            &["virtual-account", "list", "Nobody"][..],
            "no smart account",
        ),
        (
            &["token", "create", "Acme", "Radius", "--days", "400"][..],
            "1 to 365 days",
        ),
    ] {
        let (success, _, err) = admin(&url, &data, args);
        assert!(!success, "{args:?}");
        assert!(
            err.starts_with("error: ") && err.contains(words),
            "{args:?}: {err}"
        );
    }
    let wrong = Command::new(BIN)
        .args(["--authority", &url, "account", "list", "--ca"])
        .arg(authority::DataDir::new(&data).tls_ca())
        .env("ENTITLE_ADMIN_CREDENTIAL", "not-the-credential")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("credential is wrong"));
}

#[tokio::test]
async fn pool_transfer_force_moves_licences_a_device_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("authority");
    assert!(
        Command::new(BIN)
            .arg("init")
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
            .status
            .success()
    );
    let (_server, url, devices) = serve(&data);
    let ok = |args: &[&str]| {
        let (success, out, err) = admin(&url, &data, args);
        assert!(success, "{args:?}: {err}");
        out
    };
    ok(&["account", "create", "Acme"]);
    ok(&["virtual-account", "create", "Acme", "Radius"]);
    ok(&["virtual-account", "create", "Acme", "Lab"]);
    ok(&["pool", "add", "Acme", "Radius", "PAR-ADD-TPS", "5"]);
    let token = ok(&["token", "create", "Acme", "Radius"]);

    // A device holding all five.
    let public = std::fs::read(authority::DataDir::new(&data).public_key()).unwrap();
    let ca = authority::DataDir::new(&data).tls_ca();
    let channel = entitle_proto::tls::endpoint(
        &devices,
        Some(&ca),
        false,
        std::time::Duration::from_secs(10),
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    let mut device = DeviceClient::new(
        channel,
        signing::generate_key().unwrap(),
        signing::verifying_key(&public).unwrap(),
    );
    let udi = pb::Udi {
        product_id: "CPAR".into(),
        serial: "A1".into(),
    };
    device.register(token.trim(), udi).await.unwrap();
    let five = || {
        vec![pb::LicenseCount {
            tag: "PAR-ADD-TPS".into(),
            count: 5,
        }]
    };
    assert_eq!(device.authorize(five()).await.unwrap().grants[0].granted, 5);

    let transfer = [
        "pool",
        "transfer",
        "Acme",
        "Radius",
        "Lab",
        "PAR-ADD-TPS",
        "3",
    ];
    let (success, _, err) = admin(&url, &data, &transfer);
    assert!(!success && err.contains("0 unconsumed"), "{err}");
    let moved = ok(&[&transfer[..], &["--force"]].concat());
    assert!(
        moved.contains("transferred 3 x PAR-ADD-TPS")
            && moved.contains("3 PAR-ADD-TPS in use beyond the pool"),
        "{moved}"
    );
    let audit = ok(&["audit", "list"]);
    assert!(audit.contains("forced, 3 of them in use"), "{audit}");

    let grant = device.authorize(five()).await.unwrap().grants[0].clone();
    assert_eq!(
        (grant.granted, grant.status()),
        (2, pb::GrantStatus::OutOfCompliance)
    );
}

#[test]
fn serve_refuses_a_directory_without_an_authority() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error:") && err.contains("signing key"),
        "{err}"
    );
}
