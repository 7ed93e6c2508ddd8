//! Call home over TLS, through the real binaries: the device trusts the CA its
//! configuration names; a certificate from another CA, an expired one, or one for another
//! host name each fail with a sentence naming the cause, are retried, and lose nothing
//! from the usage spool; plaintext goes only to this machine unless allowed.
#![allow(clippy::unwrap_used)] // tests

mod common;
mod harness;

use std::path::Path;
use std::time::Duration;

use entitle_proto::pb;
use harness::{Authority, Entitled, attached_gate, authorization, traffic_for};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const SELECT: &str = "[agent]\nselection = { \"PAR-TPS\" = 1 }\n";

/// A CA of the test's own, and server certificates it issues.
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { params, key, pem }
    }

    /// A server certificate and key for `names`, valid from `days_from` to `days_to`
    /// (days from now).
    fn issue(&self, names: &[&str], days_from: i64, days_to: i64) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days_from);
        params.not_after = now + time::Duration::days(days_to);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Puts `identity` in the authority's TLS files and serves again on the same ports.
fn serve_with(authority: &mut Authority, (cert, key): &(String, String)) {
    authority.kill();
    std::fs::write(authority.data.join("tls/server.pem"), cert).unwrap();
    std::fs::write(authority.data.join("tls/server.key"), key).unwrap();
    authority.restart();
}

async fn renew(sidecar: &Entitled) -> Result<String, tonic::Status> {
    sidecar
        .client()
        .await
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await
        .map(|r| r.into_inner().message)
}

fn spool(status: &pb::LicenseStatus) -> pb::SpoolInfo {
    status.spool.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_is_named_retried_and_loses_no_usage() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start(dir.path());
    let ours = TestCa::new("our CA");
    let good = ours.issue(&["localhost", "127.0.0.1"], -1, 30);
    serve_with(&mut authority, &good);
    // Devices and admins trust our CA from now on.
    std::fs::write(authority.ca(), &ours.pem).unwrap();

    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "TLS1", SELECT);
    sidecar.register(token).await;
    sidecar
        .wait_for("authorised", Duration::from_secs(15), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    let (gate, attachment) = attached_gate(&sidecar).await;

    let other = TestCa::new("another CA");
    let bad: [(&str, (String, String)); 3] = [
        (
            "not signed by a CA this side trusts",
            other.issue(&["localhost", "127.0.0.1"], -1, 30),
        ),
        (
            "has expired",
            ours.issue(&["localhost", "127.0.0.1"], -30, -1),
        ),
        (
            "does not name the host called",
            ours.issue(&["authority.example"], -1, 30),
        ),
    ];
    for (cause, identity) in &bad {
        serve_with(&mut authority, identity);
        // Traffic meanwhile: its usage waits in the spool.
        traffic_for(&gate, Duration::from_millis(1500)).await;
        let refused = renew(&sidecar).await.unwrap_err();
        assert!(
            refused.message().contains(cause),
            "{cause}: {}",
            refused.message()
        );
        let status = sidecar
            .wait_for("a failed delivery", Duration::from_secs(20), |s| {
                spool(s)
                    .last_failure
                    .as_deref()
                    .is_some_and(|f| f.contains(cause))
            })
            .await;
        assert!(spool(&status).depth > 0, "{status:#?}");
    }

    // The good certificate back: the retries deliver everything, once.
    serve_with(&mut authority, &good);
    attachment.flush(Duration::from_secs(20)).await.unwrap();
    sidecar
        .wait_for("the spool delivered", Duration::from_secs(60), |s| {
            spool(s).depth == 0 && spool(s).last_failure.is_none()
        })
        .await;
    assert!(renew(&sidecar).await.is_ok());
    let admitted = attachment.admitted("PAR-TPS");
    assert!(admitted > 0);
    assert_eq!(authority.admitted("PAR-TPS").await, admitted);
}

fn entitled_config(
    dir: &Path,
    authority: &Authority,
    url: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("plain.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\nauthority_public_key = {key:?}\n\
             callhome_url = {url:?}\n{extra}\n[udi]\nproduct_id = \"CPAR\"\nserial = \"P1\"\n",
            data = dir.join("plain-data"),
            key = authority.public_key(),
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_goes_only_to_this_machine_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let entitled = env!("CARGO_BIN_EXE_e2e-entitled");

    let remote = "http://192.0.2.10:7171";
    let refused = std::process::Command::new(entitled)
        .arg("--config")
        .arg(entitled_config(dir.path(), &authority, remote, ""))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("allow_plaintext = true"), "{stderr}");

    // Allowed explicitly, it starts (and the operator's CLI may point it anywhere).
    let config = entitled_config(dir.path(), &authority, remote, "allow_plaintext = true");
    let allowed = std::process::Command::new(entitled)
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut allowed = KillOnDrop(allowed);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(allowed.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("entitled listening on "), "{line}");

    // A sidecar that may not: the CLI's destination is refused with the reason.
    let sidecar = Entitled::start(dir.path(), &authority, "P2", "");
    let reply = sidecar
        .client()
        .await
        .set_call_home(pb::SetCallHomeCommand { url: remote.into() })
        .await
        .unwrap_err();
    assert!(reply.message().contains("plaintext"), "{}", reply.message());
    assert_eq!(sidecar.status().await.callhome_url, authority.url);
    // Loopback plaintext is fine.
    assert!(
        sidecar
            .client()
            .await
            .set_call_home(pb::SetCallHomeCommand {
                url: "http://127.0.0.1:1".into(),
            })
            .await
            .is_ok()
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
