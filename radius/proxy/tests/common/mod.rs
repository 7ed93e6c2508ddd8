//! What the proxy's tests share: a licence authority on 127.0.0.1:0 with an admin client,
//! the proxy's configuration, a plain UDP RADIUS client, and reading the metrics.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use entitle_authority::{self as authority, AuthorityState, DataDir, Periods};
use entitle_proto::pb;
use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
use entitle_radius_proxy::{Proxy, RawConfig};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const CLIENT_SECRET: &str = "client-secret-1";
pub const UPSTREAM_SECRET: &str = "upstream-secret-2";

pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

pub type Admin = AuthorityAdminClient<InterceptedService<Channel, Bearer>>;

/// An authority on 127.0.0.1:0 on the system clock, in a temporary directory.
pub struct TestAuthority {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub admin: Admin,
}

impl TestAuthority {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        authority::init(dir.path()).unwrap();
        let state = AuthorityState::open(dir.path(), Periods::default(), authority::system_clock())
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(authority::serve(state, listener, std::future::pending()));
        let credential =
            std::fs::read_to_string(DataDir::new(dir.path()).admin_credential()).unwrap();
        let channel = Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let bearer = Bearer(format!("Bearer {}", credential.trim()).parse().unwrap());
        let admin = AuthorityAdminClient::with_interceptor(channel, bearer);
        Self { dir, url, admin }
    }

    pub fn public_key(&self) -> PathBuf {
        DataDir::new(self.dir.path()).public_key()
    }

    /// "Acme"/"Radius" holding `par_tps` PAR-TPS licences (100 TPS each), and a token.
    pub async fn pool(&mut self, par_tps: u64) -> String {
        self.admin
            .create_smart_account(pb::CreateSmartAccountRequest {
                name: "Acme".into(),
                plr_authorized: false,
                export_controlled: false,
            })
            .await
            .unwrap();
        self.admin
            .create_virtual_account(pb::CreateVirtualAccountRequest {
                smart_account: "Acme".into(),
                name: "Radius".into(),
            })
            .await
            .unwrap();
        self.admin
            .add_licenses(pb::AddLicensesRequest {
                smart_account: "Acme".into(),
                virtual_account: "Radius".into(),
                tag: "PAR-TPS".into(),
                quantity: par_tps,
                term_end: 0,
                plr_capable: false,
            })
            .await
            .unwrap();
        self.admin
            .create_token(pb::CreateTokenRequest {
                smart_account: "Acme".into(),
                virtual_account: "Radius".into(),
                validity_days: 30,
                max_uses: 5,
                export_controlled: false,
                description: "proxy test".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// (admitted, rejected) of PAR-TPS in the ledger of Acme/Radius.
    pub async fn ledger(&mut self) -> (u64, u64) {
        let usage = self
            .admin
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
            .filter(|t| t.tag == "PAR-TPS")
            .fold((0, 0), |(a, r), t| (a + t.admitted, r + t.rejected))
    }
}

/// A public key for an embedded agent that never calls home (evaluation limits).
pub fn offline_key(dir: &Path) -> PathBuf {
    let data = dir.join("authority");
    authority::init(&data).unwrap();
    DataDir::new(&data).public_key()
}

/// An embedded `[licence]` whose agent asks for `selection` PAR-TPS licences (so evaluates
/// at 100 x selection TPS until registered).
pub fn embedded_licence(
    dir: &Path,
    public_key: &Path,
    callhome: Option<&str>,
    selection: u64,
) -> String {
    let callhome = callhome
        .map(|u| format!("callhome_url = {u:?}\n"))
        .unwrap_or_default();
    format!(
        "[licence]\nmode = \"embedded\"\n[licence.sidecar]\ndata_dir = {:?}\n\
         authority_public_key = {:?}\nsnapshot_interval_secs = 1\n\
         {callhome}[licence.sidecar.udi]\nproduct_id = \"CPAR\"\nserial = \"PROXY-TEST\"\n\
         [licence.sidecar.agent]\nselection = {{ \"PAR-TPS\" = {selection} }}\n",
        dir.join("agent"),
        public_key,
    )
}

/// The proxy's TOML: listening on 127.0.0.1:0, one client (127.0.0.1), the upstreams
/// given as (name, auth, acct), then `extra` (top-level keys and tables) and `licence`.
pub fn proxy_toml(
    upstreams: &[(&str, SocketAddr, SocketAddr)],
    client_extra: &str,
    extra: &str,
    licence: &str,
) -> String {
    let mut text = format!(
        "listen = [\"127.0.0.1:0\"]\nmetrics_listen = \"127.0.0.1:0\"\n{extra}\n\
         [[client]]\nname = \"nas\"\naddress = \"127.0.0.1\"\nsecret = {CLIENT_SECRET:?}\n{client_extra}\n"
    );
    for (name, auth, acct) in upstreams {
        text.push_str(&format!(
            "[[upstream]]\nname = {name:?}\nauth = \"{auth}\"\nacct = \"{acct}\"\n\
             secret = {UPSTREAM_SECRET:?}\ntimeout_ms = 500\nmax_timeouts = 2\n"
        ));
    }
    text.push_str(licence);
    text
}

pub async fn start_proxy(toml_text: &str) -> Proxy {
    let raw: RawConfig = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    Proxy::start(raw.validate().unwrap()).await.unwrap()
}

/// A packet counter from the metrics text.
pub fn counter(text: &str, reason: &str) -> u64 {
    let prefix = format!("entitle_radius_proxy_packets_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {reason} in the metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The metrics over HTTP, as Prometheus reads them.
pub fn scrape(address: SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap()
}

/// A plain UDP RADIUS client on 127.0.0.1.
pub struct UdpClient {
    pub socket: UdpSocket,
    pub to: SocketAddr,
}

impl UdpClient {
    pub fn new(to: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        Self { socket, to }
    }

    pub fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.to).unwrap();
    }

    /// The next datagram within `timeout`, if any.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buffer = [0u8; 4096];
        self.socket
            .recv_from(&mut buffer)
            .ok()
            .map(|(n, _)| buffer[..n].to_vec())
    }
}
