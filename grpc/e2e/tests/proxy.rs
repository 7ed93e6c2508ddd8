//! Call home through a real HTTP CONNECT proxy (Debian's tinyproxy, started by the test on
//! loopback): registration, renewals and usage go through it with TLS end to end; refused
//! credentials, a refused CONNECT and the proxy down each fail with a sentence naming the
//! cause, are retried, and lose nothing.
#![allow(clippy::unwrap_used)] // tests

mod common;
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use entitle_proto::pb;
use harness::{Authority, Entitled, attached_gate, authorization, traffic_for};

const TINYPROXY: &str = "/usr/sbin/tinyproxy";
const SELECT: &str = "[agent]\nselection = { \"PAR-TPS\" = 1 }\n";

/// A tinyproxy on a free loopback port, killed on drop.
struct Tinyproxy {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    /// Serves with Basic credentials `user:secret`; CONNECT allowed to `connect_ports`
    /// only (every port when empty).
    fn start(dir: &Path, name: &str, connect_ports: &[u16]) -> Self {
        let path = Path::new(TINYPROXY);
        let found = path.exists() || Path::new("/usr/bin/tinyproxy").exists();
        assert!(
            found,
            "tinyproxy is missing: install Debian's tinyproxy (.ci/install-peers does)"
        );
        let program = if path.exists() {
            TINYPROXY
        } else {
            "/usr/bin/tinyproxy"
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("{name}.log"));
        let mut config = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile {log:?}\nLogLevel Connect\n\
             MaxClients 20\nAllow 127.0.0.1\nBasicAuth user secret\n"
        );
        for p in connect_ports {
            config.push_str(&format!("ConnectPort {p}\n"));
        }
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(&conf, config).unwrap();
        let child = Command::new(program)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proxy = Self {
            child: Some(child),
            port,
            log,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "tinyproxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn url(&self, credentials: &str) -> String {
        format!("http://{credentials}@127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn renew(sidecar: &Entitled) -> Result<String, tonic::Status> {
    sidecar
        .client()
        .await
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await
        .map(|r| r.into_inner().message)
}

async fn set_proxy(sidecar: &Entitled, url: &str) {
    sidecar
        .client()
        .await
        .set_call_home_proxy(pb::SetCallHomeProxyCommand { url: url.into() })
        .await
        .unwrap();
}

fn spool(status: &pb::LicenseStatus) -> pb::SpoolInfo {
    status.spool.clone().unwrap()
}

fn authority_port(authority: &Authority) -> u16 {
    authority
        .address
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_renewals_and_usage_go_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let proxy = Tinyproxy::start(dir.path(), "proxy", &[]);
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "PX1",
        &format!("callhome_proxy = {:?}\n{SELECT}", proxy.url("user:secret")),
    );
    let status = sidecar.status().await;
    assert_eq!(
        status.callhome_proxy,
        format!("http://***@127.0.0.1:{}", proxy.port),
        "credentials never shown"
    );
    sidecar.register(token).await;
    sidecar
        .wait_for("authorised", Duration::from_secs(20), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    let (gate, attachment) = attached_gate(&sidecar).await;
    traffic_for(&gate, Duration::from_millis(1500)).await;
    assert!(renew(&sidecar).await.is_ok());
    attachment.flush(Duration::from_secs(20)).await.unwrap();
    sidecar
        .wait_for("delivered", Duration::from_secs(30), |s| {
            spool(s).depth == 0
        })
        .await;
    let admitted = attachment.admitted("PAR-TPS");
    assert!(admitted > 0);
    assert_eq!(authority.admitted("PAR-TPS").await, admitted);
    let log = proxy.log();
    let port = authority_port(&authority).to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("CONNECT") && l.contains(&port)),
        "the proxy saw no CONNECT to the authority:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_failures_are_named_retried_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let mut good = Tinyproxy::start(dir.path(), "good", &[]);
    let refusing = Tinyproxy::start(dir.path(), "refusing", &[1]);
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "PX2",
        &format!("callhome_proxy = {:?}\n{SELECT}", good.url("user:secret")),
    );
    sidecar.register(token).await;
    sidecar
        .wait_for("authorised", Duration::from_secs(20), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    let (gate, attachment) = attached_gate(&sidecar).await;

    let cases = [
        (good.url("user:wrong"), "refused its credentials"),
        (refusing.url("user:secret"), "refused to CONNECT"),
    ];
    for (url, cause) in &cases {
        set_proxy(&sidecar, url).await;
        traffic_for(&gate, Duration::from_millis(1000)).await;
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
    // The proxy down.
    let good_url = good.url("user:secret");
    set_proxy(&sidecar, &good_url).await;
    good.kill();
    traffic_for(&gate, Duration::from_millis(1000)).await;
    let refused = renew(&sidecar).await.unwrap_err();
    assert!(
        refused.message().contains("Connection refused"),
        "{}",
        refused.message()
    );

    // A working proxy again: everything arrives, once.
    let again = Tinyproxy::start(dir.path(), "again", &[]);
    set_proxy(&sidecar, &again.url("user:secret")).await;
    attachment.flush(Duration::from_secs(20)).await.unwrap();
    sidecar
        .wait_for("delivered", Duration::from_secs(60), |s| {
            spool(s).depth == 0 && spool(s).last_failure.is_none()
        })
        .await;
    assert!(renew(&sidecar).await.is_ok());
    let admitted = attachment.admitted("PAR-TPS");
    assert_eq!(authority.admitted("PAR-TPS").await, admitted);
    // Bad input: not a proxy URL.
    let bad = sidecar
        .client()
        .await
        .set_call_home_proxy(pb::SetCallHomeProxyCommand {
            url: "https://127.0.0.1:1".into(),
        })
        .await
        .unwrap_err();
    assert!(
        bad.message().contains("not an HTTP proxy URL"),
        "{}",
        bad.message()
    );
}
