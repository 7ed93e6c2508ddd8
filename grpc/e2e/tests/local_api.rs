//! The sidecar's local API as an operator and a packet server meet it (issue 13): the Unix
//! socket (mode 0660, the configured group; no one else gets in), TCP only with the bearer
//! credential, a stale socket replaced after a crash, a live one refused, and the socket
//! gone after a clean stop. Real `entitled` and `entitle` processes throughout.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use entitle_proto::local::{Credential, LocalEndpoint};
use entitle_proto::pb;
use entitle_sidecar::{AttachOptions, Attachment};
use harness::{Authority, Entitled, packet_gate, sidecar_client};
use tonic::Code;

const ENTITLE: &str = env!("CARGO_BIN_EXE_e2e-entitle");
const ENTITLED: &str = env!("CARGO_BIN_EXE_e2e-entitled");

/// The gid of `group`, as the system's group database has it.
fn gid_of(group: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .unwrap();
    assert!(out.status.success(), "this test needs the group {group}");
    let line = String::from_utf8(out.stdout).unwrap();
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

/// The CLI copied where any user can run it (the build's directory may not be).
fn public_cli(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli = bin.join("entitle");
    std::fs::copy(ENTITLE, &cli).unwrap();
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
    cli
}

/// Runs `program args` with no sidecar settings from this environment.
fn run(program: &mut Command) -> Output {
    program
        .env_remove("ENTITLE_SIDECAR")
        .env_remove("ENTITLE_SIDECAR_CREDENTIAL_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_0660_of_its_group_and_keeps_everyone_else_out() {
    let dir = tempfile::tempdir().unwrap();
    // Every directory on the way may be searched, so only the socket's mode decides.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let authority = Authority::start(dir.path());
    let sidecar = Entitled::start(dir.path(), &authority, "U1", "socket_group = \"daemon\"");
    let socket = sidecar.socket();
    assert_eq!(socket, dir.path().join("entitled-U1/data/entitled.sock"));
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid_of("daemon"));

    let cli = public_cli(dir.path());
    let show = |user: &[&str]| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup"])
            .args(user)
            .arg(&cli)
            .args(["--sidecar", &sidecar.url, "show", "license", "status"]);
        run(&mut command)
    };
    // Outside the group: refused by the socket's permissions, in one line.
    let outsider = show(&["--clear-groups"]);
    assert_eq!(outsider.status.code(), Some(1), "{}", stderr(&outsider));
    assert_eq!(
        stderr(&outsider),
        format!(
            "permission denied on {}: the operator must be in the socket's group\n",
            socket.display()
        )
    );
    assert_eq!(stdout(&outsider), "");
    // The same user in the group gets in.
    let member = show(&["--groups=daemon"]);
    assert!(member.status.success(), "{}", stderr(&member));
    assert!(
        stdout(&member).contains("Smart Licensing is ENABLED"),
        "{}",
        stdout(&member)
    );
    // And root, the socket's owner.
    let root =
        run(Command::new(&cli).args(["--sidecar", &sidecar.url, "show", "license", "status"]));
    assert!(root.status.success(), "{}", stderr(&root));

    // Without --sidecar the CLI looks at the documented default socket, absent here.
    let default = run(Command::new(&cli).args(["show", "license", "status"]));
    assert_eq!(default.status.code(), Some(1));
    assert_eq!(
        stderr(&default),
        "no sidecar at unix:/var/lib/entitled/entitled.sock (is entitled running?)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_serves_only_calls_with_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let sidecar = Entitled::start_tcp(dir.path(), &authority, "T1", "");
    let file = sidecar.credential_file();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let credential = sidecar.credential();
    assert!(
        !std::fs::read_to_string(sidecar.dir.join("entitled.log"))
            .unwrap()
            .contains(credential.expose()),
        "the credential is never logged"
    );
    let tcp = sidecar.tcp_url();

    // No credential, and a wrong one: UNAUTHENTICATED, for the service and health alike.
    for (presented, says) in [
        (None, "need `authorization: Bearer <credential>`"),
        (
            Some(Credential::new("wrong")),
            "the sidecar credential is wrong",
        ),
    ] {
        let refused = sidecar_client(&tcp, presented.as_ref())
            .await
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains(says), "{}", refused.message());
        assert!(!refused.message().contains(credential.expose()));
        let channel = LocalEndpoint::new(&tcp, presented.as_ref())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "entitle.v1.Sidecar".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(health.code(), Code::Unauthenticated);
    }
    // The right one works, health included; the socket needs none.
    let status = sidecar_client(&tcp, Some(&credential))
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(harness::registration(&status), "UNREGISTERED");
    for (address, presented) in [(&tcp, Some(&credential)), (&sidecar.url, None)] {
        let channel = LocalEndpoint::new(address, presented)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "entitle.v1.Sidecar".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{address}"
        );
    }

    // The CLI: refused without the credential file, served with it (flag or environment).
    let show = ["show", "license", "status"];
    let without = run(Command::new(ENTITLE).args(["--sidecar", &tcp]).args(show));
    assert_eq!(without.status.code(), Some(1));
    assert!(
        stderr(&without).contains("need `authorization: Bearer <credential>`"),
        "{}",
        stderr(&without)
    );
    assert_eq!(stderr(&without).lines().count(), 1, "{}", stderr(&without));
    let with = run(Command::new(ENTITLE)
        .args(["--sidecar", &tcp, "--credential-file"])
        .arg(&file)
        .args(show));
    assert!(with.status.success(), "{}", stderr(&with));
    assert!(stdout(&with).contains("Smart Licensing is ENABLED"));
    let from_env = Command::new(ENTITLE)
        .args(show)
        .env("ENTITLE_SIDECAR", &tcp)
        .env("ENTITLE_SIDECAR_CREDENTIAL_FILE", &file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    // A copy others can read is refused before anything is sent.
    let open = dir.path().join("open.credential");
    std::fs::write(&open, credential.expose()).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = run(Command::new(ENTITLE)
        .args(["--sidecar", &tcp, "--credential-file"])
        .arg(&open)
        .args(show));
    assert_eq!(loose.status.code(), Some(1));
    assert!(
        stderr(&loose).contains("readable by others"),
        "{}",
        stderr(&loose)
    );

    // A packet server attaches over TCP with the credential, and its snapshots are
    // acknowledged; with a wrong one it is refused and says why.
    let gate = packet_gate();
    let options = AttachOptions {
        snapshot_interval: Duration::from_millis(50),
        credential: Some(credential.clone()),
        ..AttachOptions::default()
    };
    let attached = Attachment::start(Arc::clone(&gate), &tcp, options).unwrap();
    // Something to deliver, so that a flush waits for the sidecar's acknowledgement.
    check_once(&gate);
    attached.flush(Duration::from_secs(10)).await.unwrap();
    assert!(attached.is_connected());
    assert!(attached.acked() >= 1);
    let wrong = packet_gate();
    let options = AttachOptions {
        credential: Some(Credential::new("wrong")),
        ..AttachOptions::default()
    };
    let refused = Attachment::start(Arc::clone(&wrong), &tcp, options).unwrap();
    check_once(&wrong);
    let mut why = None;
    for _ in 0..100 {
        why = refused.last_error();
        if why.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let why = why.expect("the attachment says why it is not attached");
    assert!(why.contains("the sidecar credential is wrong"), "{why}");
    assert!(!refused.is_connected());
    assert_eq!((refused.limit_tables(), refused.acked()), (0, 0));
}

/// One check on the gate's PAR-TPS.
fn check_once(gate: &Arc<entitle_engine::Gate<entitle_engine::CoarseClock>>) {
    let tag = gate.entitlement("PAR-TPS").unwrap();
    let _ = gate.worker().check(tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_a_live_one_refused_and_a_clean_stop_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let mut sidecar = Entitled::start(dir.path(), &authority, "S1", "");
    let socket = sidecar.socket();

    // A second entitled on the same socket stops at once and says why.
    let second = run(Command::new(ENTITLED)
        .arg("--config")
        .arg(sidecar.dir.join("entitled.toml")));
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert_eq!(
        stderr(&second).lines().last().unwrap(),
        format!(
            "error: another entitled is listening on {}",
            socket.display()
        )
    );
    assert_eq!(stdout(&second), "");
    // The first one is untouched.
    assert_eq!(
        harness::registration(&sidecar.status().await),
        "UNREGISTERED"
    );

    // A SIGKILL leaves the socket file behind; the next start replaces it.
    sidecar.kill();
    assert!(socket.exists(), "a crash leaves the socket file");
    let stale = LocalEndpoint::new(&sidecar.url, None)
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert_eq!(
        stale.to_string(),
        format!("no sidecar at {} (is entitled running?)", sidecar.url)
    );
    sidecar.restart();
    assert_eq!(
        harness::registration(&sidecar.status().await),
        "UNREGISTERED"
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);

    // SIGTERM: a clean stop, and the socket is gone.
    let status = sidecar.stop();
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "a clean stop removes the socket");
}
