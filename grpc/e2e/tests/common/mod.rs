//! A licence authority on 127.0.0.1:0 in a temporary directory, with an admin client, a
//! movable wall clock, and devices to register with it.
#![allow(dead_code, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use entitle_authority::{self as authority, AuthorityState, Periods};
use entitle_proto::pb;
use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
use entitle_proto::signing;
use entitle_sidecar::device::DeviceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Admin = AuthorityAdminClient<InterceptedService<Channel, BearerInterceptor>>;

#[derive(Clone)]
pub struct BearerInterceptor(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub const DAY: i64 = 86_400;

pub struct TestAuthority {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub state: Arc<AuthorityState>,
    pub clock: Arc<AtomicI64>,
    pub admin: Admin,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// `init` in `dir`, the store on PostgreSQL when the suite runs with
/// `ENTITLE_TEST_STORE=postgres` (a fresh database of the test process's own cluster).
pub fn init(dir: &std::path::Path) {
    let database = entitle_pgtest::database_for_tests().expect("the test store");
    authority::init_at(dir, &authority::TlsSource::PrivateCa, database.as_deref()).expect("init");
}

impl TestAuthority {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        init(dir.path());
        Self::open(dir).await
    }

    /// Serves the authority whose data is in `dir`.
    pub async fn open(dir: tempfile::TempDir) -> Self {
        Self::open_with(dir, Periods::default()).await
    }

    /// A new authority with these periods.
    pub async fn start_with(periods: Periods) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        init(dir.path());
        Self::open_with(dir, periods).await
    }

    /// Serves the authority whose data is in `dir`, with these periods.
    pub async fn open_with(dir: tempfile::TempDir, periods: Periods) -> Self {
        let clock = Arc::new(AtomicI64::new(1_800_000_000));
        let time = clock.clone();
        let state = AuthorityState::open(
            dir.path(),
            periods,
            Arc::new(move || time.load(Ordering::SeqCst)),
        )
        .expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let server = tokio::spawn(async move {
            authority::serve(served, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("serves");
        });
        let credential =
            std::fs::read_to_string(dir.path().join("admin.credential")).expect("credential");
        let admin = admin_client(&url, Some(&credential)).await;
        Self {
            dir,
            url,
            state,
            clock,
            admin,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connects")
    }

    pub async fn device(&self) -> DeviceClient {
        DeviceClient::new(
            self.channel().await,
            signing::generate_key().expect("key"),
            self.state.public_key(),
        )
    }

    pub fn advance_days(&self, days: i64) {
        self.clock.fetch_add(days * DAY, Ordering::SeqCst);
    }

    /// Smart account "Acme" with virtual account "Radius" holding 1 PAR-TPS and 2
    /// PAR-ADD-TPS, and a token for it.
    pub async fn acme(&mut self, token_uses: u32) -> String {
        self.admin
            .create_smart_account(pb::CreateSmartAccountRequest {
                name: "Acme".into(),
                plr_authorized: true,
                export_controlled: false,
            })
            .await
            .expect("account");
        self.admin
            .create_virtual_account(pb::CreateVirtualAccountRequest {
                smart_account: "Acme".into(),
                name: "Radius".into(),
            })
            .await
            .expect("virtual account");
        for (tag, quantity) in [("PAR-TPS", 1), ("PAR-ADD-TPS", 2)] {
            self.admin
                .add_licenses(pb::AddLicensesRequest {
                    smart_account: "Acme".into(),
                    virtual_account: "Radius".into(),
                    tag: tag.into(),
                    quantity,
                    term_end: 0,
                    plr_capable: false,
                })
                .await
                .expect("licences");
        }
        self.token("Radius", token_uses, 30).await
    }

    pub async fn token(&mut self, va: &str, uses: u32, days: u32) -> String {
        self.admin
            .create_token(pb::CreateTokenRequest {
                smart_account: "Acme".into(),
                virtual_account: va.into(),
                validity_days: days,
                max_uses: uses,
                export_controlled: false,
                description: "test".into(),
            })
            .await
            .expect("token")
            .into_inner()
            .secret
    }

    pub async fn audit_len(&mut self) -> usize {
        self.admin
            .list_audit(pb::ListAuditRequest {
                after_id: 0,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("audit")
            .into_inner()
            .entries
            .len()
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
        let dir = tempfile::tempdir().expect("placeholder");
        std::mem::replace(&mut self.dir, dir)
    }
}

pub async fn admin_client(url: &str, credential: Option<&str>) -> Admin {
    let channel = Channel::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let value = credential.map(|c| format!("Bearer {}", c.trim()).parse().expect("ascii"));
    AuthorityAdminClient::with_interceptor(channel, BearerInterceptor(value))
}

/// As [`admin_client`], over TLS trusting `ca`.
pub async fn admin_client_tls(url: &str, ca: &std::path::Path, credential: Option<&str>) -> Admin {
    let channel =
        entitle_proto::tls::endpoint(url, Some(ca), false, std::time::Duration::from_secs(10))
            .expect("url")
            .connect()
            .await
            .expect("connects");
    let value = credential.map(|c| format!("Bearer {}", c.trim()).parse().expect("ascii"));
    AuthorityAdminClient::with_interceptor(channel, BearerInterceptor(value))
}

pub fn udi(serial: &str) -> pb::Udi {
    pb::Udi {
        product_id: "CPAR".into(),
        serial: serial.into(),
    }
}

pub fn counts(list: &[(&str, u64)]) -> Vec<pb::LicenseCount> {
    list.iter()
        .map(|(tag, count)| pb::LicenseCount {
            tag: (*tag).into(),
            count: *count,
        })
        .collect()
}

pub fn report(instance: &str, sequence: u64, admitted: u64) -> pb::UsageReport {
    pb::UsageReport {
        instance_id: instance.into(),
        sequence,
        window_start: 0,
        window_end: 60_000,
        usage: ["PAR-TPS", "PAR-ADD-TPS", "EAP", "DIAMETER"]
            .iter()
            .map(|tag| pb::EntitlementUsage {
                tag: (*tag).into(),
                admitted,
                rejected: 1,
                peak_tps: 10,
                tps_histogram: vec![],
            })
            .collect(),
    }
}
