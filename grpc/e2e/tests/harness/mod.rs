//! Real processes for the sidecar tests: an `entitle-authority` on 127.0.0.1 and an
//! `entitled` on its Unix socket (and 127.0.0.1 when asked), each killable with SIGKILL and
//! restartable on the same address and data.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use entitle_engine::{CoarseClock, Gate, Limit};
use entitle_proto::local::{CREDENTIAL_FILE, Credential, LocalEndpoint, SidecarChannel};
use entitle_proto::pb;
use entitle_proto::pb::sidecar_client::SidecarClient;
use entitle_sidecar::{AttachOptions, Attachment};

use crate::common::{Admin, admin_client_tls};

const AUTHORITY: &str = env!("CARGO_BIN_EXE_e2e-entitle-authority");
const ENTITLED: &str = env!("CARGO_BIN_EXE_e2e-entitled");

/// Starts `program args`, logs to `log`, and reads one address per prefix from the first
/// stdout lines, in order (each line must start with its prefix).
fn spawn(program: &str, args: &[&str], log: &Path, prefixes: &[&str]) -> (Child, Vec<String>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut addresses = Vec::new();
    for prefix in prefixes {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{program} said {line:?}, not {prefix:?}..."))
            .to_owned();
        addresses.push(address);
    }
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, addresses)
}

/// Copies the directory `from` to `to`, file modes kept (keys stay 0600).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill(); // SIGKILL
        let _ = c.wait();
    }
}

/// An `entitle-authority serve` process: devices at `url`, admins at `admin_url`, both
/// over TLS from the private CA `init` made.
pub struct Authority {
    child: Option<Child>,
    /// More arguments of `serve` (such as `--renewal-secs 2`).
    serve_args: Vec<String>,
    /// A command the server runs under (`ip netns exec NS`), or none.
    wrapper: Vec<String>,
    pub data: PathBuf,
    /// What devices of this authority trust: its key, or the cloud's for a satellite.
    pub device_key: PathBuf,
    /// The CA file devices check its TLS certificate with.
    pub device_ca: PathBuf,
    pub address: String,
    pub url: String,
    pub admin_address: String,
    pub admin_url: String,
    /// The portal's `https://` URL, when served with `--portal-listen`.
    pub portal_url: String,
}

impl Authority {
    /// Initialises an authority in `dir/authority` and serves it on a free port.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// As [`Authority::start`], serving with more arguments (kept across restarts).
    pub fn start_with(dir: &Path, serve_args: &[&str]) -> Self {
        let mut authority = Self::init(dir.join("authority"), &[]);
        authority.serve_args = serve_args.iter().map(|a| (*a).to_owned()).collect();
        authority.restart();
        authority
    }

    /// Initialises an authority in `data` (its private CA also naming `tls_names`),
    /// without serving it.
    pub fn init(data: PathBuf, tls_names: &[&str]) -> Self {
        Self::init_on(data, tls_names, true)
    }

    /// As [`Authority::init`]; with `test_store` false, always on SQLite (for an
    /// authority in a network namespace of its own, which cannot reach the test's
    /// PostgreSQL on the host's loopback).
    pub fn init_on(data: PathBuf, tls_names: &[&str], test_store: bool) -> Self {
        let mut init = Command::new(AUTHORITY);
        init.arg("init").arg("--data").arg(&data);
        for name in tls_names {
            init.arg("--tls-name").arg(name);
        }
        // ENTITLE_TEST_STORE=postgres runs the suite on PostgreSQL.
        if test_store
            && let Some(url) = entitle_pgtest::database_for_tests().expect("the test store")
        {
            init.arg("--database").arg(url);
        }
        let status = init.stdout(Stdio::null()).status().unwrap();
        assert!(status.success());
        Self::at(data)
    }

    /// The authority initialised in `data`, not served.
    fn at(data: PathBuf) -> Self {
        Self {
            child: None,
            serve_args: Vec::new(),
            wrapper: Vec::new(),
            device_key: data.join("authority.pub"),
            device_ca: data.join("tls/ca.pem"),
            data,
            address: "127.0.0.1:0".into(),
            url: String::new(),
            admin_address: "127.0.0.1:0".into(),
            admin_url: String::new(),
            portal_url: String::new(),
        }
    }

    /// Initialises an authority in `data` on the PostgreSQL database at `url`, without
    /// serving it.
    pub fn init_database(data: PathBuf, url: &str) -> Self {
        let out = Command::new(AUTHORITY)
            .arg("init")
            .arg("--data")
            .arg(&data)
            .arg("--database")
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::at(data)
    }

    /// A second process of this authority, from a copy of its data directory in `data`
    /// (the same keys, credential and database), as on another machine; not yet served.
    pub fn another_process(&self, data: PathBuf) -> Self {
        copy_dir(&self.data, &data);
        let mut another = Self::at(data);
        another.serve_args = self.serve_args.clone();
        another
    }

    /// A satellite of `cloud` in `dir/name`, delegated `accounts` (`SMART/VIRTUAL`) and
    /// installed, not yet served. Its devices trust the cloud's key, and both CAs.
    pub fn satellite(
        dir: &Path,
        cloud: &Authority,
        name: &str,
        accounts: &[&str],
        tls_names: &[&str],
    ) -> Self {
        Self::satellite_on(dir, cloud, name, accounts, tls_names, true)
    }

    /// As [`Authority::satellite`], on the test store or (`test_store` false) on SQLite.
    pub fn satellite_on(
        dir: &Path,
        cloud: &Authority,
        name: &str,
        accounts: &[&str],
        tls_names: &[&str],
        test_store: bool,
    ) -> Self {
        let mut satellite = Self::init_on(dir.join(name), tls_names, test_store);
        let delegation = dir.join(format!("{name}.delegation"));
        let mut add = vec![
            "satellite".to_owned(),
            "add".to_owned(),
            name.to_owned(),
            "--key".to_owned(),
            satellite
                .data
                .join("authority.pub")
                .to_string_lossy()
                .into_owned(),
            "--out".to_owned(),
            delegation.to_string_lossy().into_owned(),
        ];
        for account in accounts {
            add.push("--account".into());
            add.push((*account).into());
        }
        let added = cloud.cli(&add.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        satellite.install(&delegation, &cloud.public_key());
        satellite.device_key = cloud.public_key();
        let bundle = dir.join(format!("{name}-trust.pem"));
        let mut pem = std::fs::read(cloud.ca()).unwrap();
        pem.extend(std::fs::read(satellite.ca()).unwrap());
        std::fs::write(&bundle, pem).unwrap();
        satellite.device_ca = bundle;
        satellite
    }

    /// `satellite install` of `delegation` (signed by the cloud key in `cloud_key`).
    pub fn install(&self, delegation: &Path, cloud_key: &Path) {
        let out = Command::new(AUTHORITY)
            .arg("--data")
            .arg(&self.data)
            .args(["satellite", "install", "--delegation"])
            .arg(delegation)
            .arg("--cloud-key")
            .arg(cloud_key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Serves with `serve_args` (kept across restarts) under `wrapper` (such as
    /// `ip netns exec NS`), devices and admins on `address` and `admin_address`.
    pub fn serve(
        &mut self,
        serve_args: &[&str],
        wrapper: &[&str],
        address: &str,
        admin_address: &str,
    ) {
        self.serve_args = serve_args.iter().map(|a| (*a).to_owned()).collect();
        self.wrapper = wrapper.iter().map(|a| (*a).to_owned()).collect();
        self.address = address.to_owned();
        self.admin_address = admin_address.to_owned();
        self.restart();
    }

    /// Runs an admin command of `entitle-authority` against this authority's admin
    /// service, with its credential and CA.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(AUTHORITY)
            .arg("--authority")
            .arg(&self.admin_url)
            .arg("--ca")
            .arg(self.ca())
            .arg("--data")
            .arg(&self.data)
            .args(args)
            .output()
            .unwrap()
    }

    /// Serves again on the same address and data.
    pub fn restart(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let log = self.data.with_extension("log");
        let mut args: Vec<&str> = self.wrapper.iter().skip(1).map(String::as_str).collect();
        if !self.wrapper.is_empty() {
            args.push(AUTHORITY);
        }
        args.extend([
            "serve",
            "--listen",
            &self.address,
            "--admin-listen",
            &self.admin_address,
            "--data",
            &data,
        ]);
        args.extend(self.serve_args.iter().map(String::as_str));
        let program = self.wrapper.first().map_or(AUTHORITY, String::as_str);
        let mut prefixes = vec![
            "entitle-authority listening on ",
            "entitle-authority admin on ",
        ];
        if self.serve_args.iter().any(|a| a == "--portal-listen") {
            prefixes.push("entitle-authority portal on ");
        }
        let (child, addresses) = spawn(program, &args, &log, &prefixes);
        if let Some(portal) = addresses.get(2) {
            self.portal_url = portal.clone();
        }
        self.child = Some(child);
        self.url = format!("https://{}", addresses[0]);
        self.address = addresses[0].clone();
        self.admin_url = format!("https://{}", addresses[1]);
        self.admin_address = addresses[1].clone();
    }

    /// The private CA devices and admins trust.
    pub fn ca(&self) -> PathBuf {
        self.data.join("tls/ca.pem")
    }

    /// A device's channel to the authority, over TLS.
    pub fn device_channel(&self) -> tonic::transport::Channel {
        entitle_proto::tls::endpoint(&self.url, Some(&self.ca()), false, Duration::from_secs(10))
            .unwrap()
            .connect_lazy()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Whether the served process is still running (it neither exited nor was killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn public_key(&self) -> PathBuf {
        self.data.join("authority.pub")
    }

    pub async fn admin(&self) -> Admin {
        let credential = std::fs::read_to_string(self.data.join("admin.credential")).unwrap();
        admin_client_tls(&self.admin_url, &self.ca(), Some(&credential)).await
    }

    /// Smart account Acme, virtual account Radius with `licences`, and a token for it.
    pub async fn acme(&self, licences: &[(&str, u64)]) -> String {
        let mut admin = self.admin().await;
        admin
            .create_smart_account(pb::CreateSmartAccountRequest {
                name: "Acme".into(),
                plr_authorized: true,
                export_controlled: false,
            })
            .await
            .unwrap();
        for va in ["Radius", "Lab"] {
            admin
                .create_virtual_account(pb::CreateVirtualAccountRequest {
                    smart_account: "Acme".into(),
                    name: va.into(),
                })
                .await
                .unwrap();
        }
        for (tag, quantity) in licences {
            admin
                .add_licenses(pb::AddLicensesRequest {
                    smart_account: "Acme".into(),
                    virtual_account: "Radius".into(),
                    tag: (*tag).into(),
                    quantity: *quantity,
                    term_end: 0,
                    plr_capable: false,
                })
                .await
                .unwrap();
        }
        admin
            .create_token(pb::CreateTokenRequest {
                smart_account: "Acme".into(),
                virtual_account: "Radius".into(),
                validity_days: 30,
                max_uses: 10,
                export_controlled: false,
                description: "test".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// The ledger's admitted total for `tag` over every instance of Acme/Radius.
    pub async fn admitted(&self, tag: &str) -> u64 {
        let usage = self
            .admin()
            .await
            .get_usage(pb::GetUsageRequest {
                smart_account: "Acme".into(),
                virtual_account: "Radius".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        usage
            .totals
            .iter()
            .filter(|t| t.tag == tag)
            .map(|t| t.admitted)
            .sum()
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An `entitled` process, its local API on its Unix socket (`url`, `unix:PATH`) and, when
/// started with [`Entitled::start_tcp`], on TCP too (`tcp_url`, with its credential).
pub struct Entitled {
    child: Option<Child>,
    pub dir: PathBuf,
    /// `unix:PATH` of its socket.
    pub url: String,
    /// Its TCP address, when the configuration has `listen`.
    pub address: Option<String>,
    /// The metrics endpoint's address, when the configuration has `metrics_listen`.
    pub metrics: Option<String>,
}

impl Entitled {
    /// Writes `dir/entitled.toml` (the device CPAR/`serial`, trusting `authority`, calling
    /// it home, plus `extra` TOML) and starts the sidecar on its socket.
    pub fn start(dir: &Path, authority: &Authority, serial: &str, extra: &str) -> Self {
        Self::start_with(dir, authority, serial, extra, false)
    }

    /// As [`Entitled::start`], listening on a free TCP port as well (`listen`).
    pub fn start_tcp(dir: &Path, authority: &Authority, serial: &str, extra: &str) -> Self {
        Self::start_with(dir, authority, serial, extra, true)
    }

    fn start_with(dir: &Path, authority: &Authority, serial: &str, extra: &str, tcp: bool) -> Self {
        let dir = dir.join(format!("entitled-{serial}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "data_dir = {data:?}\n{listen}authority_public_key = {key:?}\n\
             callhome_url = {url:?}\nauthority_ca = {ca:?}\nsnapshot_interval_secs = 1\n\
             call_timeout_secs = 2\n{extra}\n\
             [udi]\nproduct_id = \"CPAR\"\nserial = {serial:?}\n",
            data = dir.join("data"),
            listen = if tcp {
                "listen = \"127.0.0.1:0\"\n"
            } else {
                ""
            },
            key = authority.device_key,
            url = authority.url,
            ca = authority.device_ca,
        );
        std::fs::write(dir.join("entitled.toml"), config).unwrap();
        let mut entitled = Self {
            child: None,
            dir,
            url: String::new(),
            address: None,
            metrics: None,
        };
        entitled.restart();
        entitled
    }

    /// Starts again on the same data (and, after the first start, the same ports).
    pub fn restart(&mut self) {
        let config = self.dir.join("entitled.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        if let Some(address) = &self.address {
            text = text.replace(
                "\nlisten = \"127.0.0.1:0\"",
                &format!("\nlisten = {address:?}"),
            );
        }
        if let Some(metrics) = &self.metrics {
            text = text.replace(
                "metrics_listen = \"127.0.0.1:0\"",
                &format!("metrics_listen = {metrics:?}"),
            );
        }
        std::fs::write(&config, &text).unwrap();
        let tcp = text.contains("\nlisten = ");
        let mut prefixes = vec!["entitled listening on unix:"];
        if tcp {
            prefixes.push("entitled listening on ");
        }
        if text.contains("metrics_listen") {
            prefixes.push("entitled metrics on ");
        }
        let (child, mut addresses) = spawn(
            ENTITLED,
            &["--config", &config.to_string_lossy()],
            &self.dir.join("entitled.log"),
            &prefixes,
        );
        self.child = Some(child);
        self.url = format!("unix:{}", addresses.remove(0));
        if tcp {
            self.address = Some(addresses.remove(0));
        }
        self.metrics = addresses.first().cloned();
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.url.strip_prefix("unix:").unwrap())
    }

    /// `http://ADDRESS` of the TCP listener.
    pub fn tcp_url(&self) -> String {
        format!(
            "http://{}",
            self.address.as_ref().expect("started with TCP")
        )
    }

    /// The file of the TCP credential.
    pub fn credential_file(&self) -> PathBuf {
        self.dir.join("data").join(CREDENTIAL_FILE)
    }

    /// The TCP credential.
    pub fn credential(&self) -> Credential {
        Credential::read(&self.credential_file()).unwrap()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// SIGTERM, and waits for the exit; answers its status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap()
    }

    pub async fn client(&self) -> SidecarClient<SidecarChannel> {
        sidecar_client(&self.url, None).await
    }

    /// `license smart register <token>`; answers the sidecar's reply.
    pub async fn register(&self, token: String) -> String {
        self.client()
            .await
            .register(pb::RegisterCommand { id_token: token })
            .await
            .unwrap()
            .into_inner()
            .message
    }

    pub async fn status(&self) -> pb::LicenseStatus {
        self.client()
            .await
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Polls the status every 50 ms, for at most `limit`, until `ready` holds.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        ready: impl Fn(&pb::LicenseStatus) -> bool,
    ) -> pb::LicenseStatus {
        let start = Instant::now();
        loop {
            let status = self.status().await;
            if ready(&status) {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}; status {status:#?}\nlog:\n{}",
                std::fs::read_to_string(self.dir.join("entitled.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Entitled {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client of the sidecar at `address` (`unix:PATH` or `http://...`), with `credential`.
pub async fn sidecar_client(
    address: &str,
    credential: Option<&Credential>,
) -> SidecarClient<SidecarChannel> {
    SidecarClient::new(
        LocalEndpoint::new(address, credential)
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
}

pub fn registration(status: &pb::LicenseStatus) -> &str {
    &status.registration.as_ref().unwrap().status
}

pub fn authorization(status: &pb::LicenseStatus) -> &str {
    &status.authorization.as_ref().unwrap().status
}

/// The rate the sidecar enforces for `tag` (`None`: unlimited).
pub fn rate(status: &pb::LicenseStatus, tag: &str) -> Option<u64> {
    let limit = status
        .entitlements
        .iter()
        .find(|e| e.tag == tag)
        .and_then(|e| e.limit)
        .unwrap();
    (!limit.unlimited).then_some(limit.rate)
}

// ----- A packet server's gate attached to a sidecar, and traffic through it -----

/// A packet server's gate: PAR-TPS at 10 TPS until the sidecar says otherwise.
pub fn packet_gate() -> Arc<Gate<CoarseClock>> {
    let mut builder = Gate::builder(CoarseClock::new().unwrap());
    builder
        .register("PAR-TPS", Limit::hard(10).unwrap())
        .unwrap();
    builder.build()
}

/// A packet server's gate attached to `sidecar`, sending a snapshot every 50 ms.
pub async fn attached_gate(sidecar: &Entitled) -> (Arc<Gate<CoarseClock>>, Attachment) {
    let gate = packet_gate();
    let options = AttachOptions {
        snapshot_interval: Duration::from_millis(50),
        ..AttachOptions::default()
    };
    let attachment = Attachment::start(Arc::clone(&gate), &sidecar.url, options).unwrap();
    (gate, attachment)
}

pub fn gate_rate(gate: &Gate<CoarseClock>) -> Option<u64> {
    let limits = gate.limits();
    limits
        .limit(limits.entitlement("PAR-TPS").unwrap())
        .per_second()
}

pub async fn wait_gate(gate: &Gate<CoarseClock>, rate: u64) {
    for _ in 0..400 {
        if gate_rate(gate) == Some(rate) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the attached gate never got {rate} TPS: {:?}",
        gate_rate(gate)
    );
}

/// What a traffic thread saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub admitted: u64,
    pub rejected: u64,
}

/// Drives `gate` from a thread at about 5,000 offered TPS until `stop`.
pub fn traffic(
    gate: Arc<Gate<CoarseClock>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut worker = gate.worker();
        let tps = gate.entitlement("PAR-TPS").unwrap();
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..5 {
                if worker.check(tps).is_admit() {
                    seen.admitted += 1;
                } else {
                    seen.rejected += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        seen
    })
}

/// Runs traffic through `gate` for `how_long`.
pub async fn traffic_for(gate: &Arc<Gate<CoarseClock>>, how_long: Duration) -> Seen {
    let stop = Arc::new(AtomicBool::new(false));
    let driver = traffic(Arc::clone(gate), Arc::clone(&stop));
    tokio::time::sleep(how_long).await;
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap()
}

// ----- A stand-in packet server in its own process (e2e-packet-server) -----

const PACKET_SERVER: &str = env!("CARGO_BIN_EXE_e2e-packet-server");

/// An `e2e-packet-server` process: what it prints comes line by line, its log goes to a
/// file, and it can be killed with SIGKILL.
pub struct PacketServer {
    child: Option<Child>,
    lines: std::sync::mpsc::Receiver<String>,
    pub log: PathBuf,
}

impl PacketServer {
    /// Starts `e2e-packet-server args`, logging to `log`.
    pub fn start(args: &[&str], log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(PACKET_SERVER)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(std::result::Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child: Some(child),
            lines,
            log: log.to_owned(),
        }
    }

    /// The next line it prints, waiting at most `limit`.
    pub fn line(&self, limit: Duration) -> String {
        self.lines.recv_timeout(limit).unwrap_or_else(|e| {
            panic!(
                "e2e-packet-server printed nothing within {limit:?} ({e}); log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }

    /// Reads its per-second `admitted N` lines until `count` show traffic; answers those
    /// counts, the last one just printed.
    pub fn admitted(&self, count: usize) -> Vec<u64> {
        let mut counts = Vec::new();
        for _ in 0..count + 60 {
            let line = self.line(Duration::from_secs(10));
            let n: u64 = line
                .strip_prefix("admitted ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a count: {line:?}"));
            if n > 0 {
                counts.push(n);
            }
            if counts.len() == count {
                return counts;
            }
        }
        panic!("no traffic counted: {counts:?}");
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for PacketServer {
    fn drop(&mut self) {
        self.kill();
    }
}
