//! The operator's web portal, served by `entitle-authority serve --portal-listen`: the
//! smart account overview and each virtual account's licences, product instances and
//! registration tokens, as server-rendered pages that work without JavaScript.
//!
//! Every page reads, and every form changes, through the admin service the CLI uses
//! ([`AdminService`]), so each change lands in the same audit log; the portal has no
//! second way to the data. Operators log in with the admin credential, or with the
//! read-only viewer credential (`viewer.credential`), which sees everything and changes
//! nothing. A session is a random cookie (HttpOnly, Secure, SameSite=Strict) that expires;
//! every form carries the session's CSRF token.

mod pages;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use entitle_proto::pb;
use entitle_proto::pb::authority_admin_server::AuthorityAdmin;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use self::session::{Role, Session, Sessions};
use crate::error::{Error, Result};
use crate::service::AdminService;
use crate::{AuthorityState, DataDir};

/// How long a failed login waits before it is answered, so credentials cannot be guessed
/// at speed.
const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);

/// The portal of one authority.
pub struct Portal {
    admin: AdminService,
    state: Arc<AuthorityState>,
    viewer_hash: [u8; 32],
    sessions: Sessions,
    failed_logins: AtomicU64,
}

impl Portal {
    /// The portal of `state`, whose data directory is `dir`; makes the viewer credential
    /// there if it has none yet.
    pub fn new(state: Arc<AuthorityState>, dir: &std::path::Path) -> Result<Arc<Self>> {
        let viewer = viewer_credential(&DataDir::new(dir))?;
        Ok(Arc::new(Self {
            admin: AdminService(state.clone()),
            state,
            viewer_hash: Sha256::digest(viewer.as_bytes()).into(),
            sessions: Sessions::default(),
            failed_logins: AtomicU64::new(0),
        }))
    }

    /// The routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(overview))
            .route("/login", get(login_page).post(login))
            .route("/logout", post(logout))
            .route("/va/{smart}/{virtual_account}", get(virtual_account))
            .route("/va/{smart}/{virtual_account}/tokens", post(create_token))
            .route(
                "/va/{smart}/{virtual_account}/tokens/{id}/revoke",
                post(revoke_token),
            )
            .route("/va/{smart}/{virtual_account}/transfer", post(transfer))
            .route("/va/{smart}/{virtual_account}/licences/{tag}", get(licence))
            .route(
                "/va/{smart}/{virtual_account}/instances/{id}/remove",
                post(remove_instance),
            )
            .route("/satellites", get(satellites))
            .route("/events", get(events))
            .route("/events/csv", get(events_csv))
            .route("/usage/{smart}/{virtual_account}", get(usage))
            .route("/usage/{smart}/{virtual_account}/csv", get(usage_csv))
            .route("/reservations/{smart}", get(reservations))
            .route(
                "/reservations/{smart}/authorize",
                post(authorize_reservation),
            )
            .route("/reservations/{smart}/return", post(return_reservation))
            .with_state(self.clone())
    }

    /// Which role `credential` logs in as, if any (compared in constant time).
    fn role_of(&self, credential: &str) -> Option<Role> {
        let credential = credential.trim();
        if credential.is_empty() {
            return None;
        }
        if self
            .state
            .admin_allowed(Some(&format!("Bearer {credential}")))
        {
            return Some(Role::Admin);
        }
        let presented = Sha256::digest(credential.as_bytes());
        let differs = presented
            .iter()
            .zip(&self.viewer_hash)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (differs == 0).then_some(Role::Viewer)
    }
}

/// The viewer credential of `dir`, made (mode 0600) when missing.
fn viewer_credential(dir: &DataDir) -> Result<String> {
    let path = dir.viewer_credential();
    let io = |e: std::io::Error| Error::Internal(format!("{}: {e}", path.display()));
    if !path.exists() {
        crate::write_viewer_credential(dir).map_err(io)?;
    }
    let bytes = entitle_proto::signing::read_secret(&path).map_err(io)?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| Error::Internal(format!("{} is not text", path.display())))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves the portal on `listener`, over TLS with `tls`, until `shutdown`.
pub async fn serve(
    portal: Arc<Portal>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = portal.router();
    let accept = async {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "portal: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move { connection(acceptor, app, tcp, peer).await });
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
}

async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "portal: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let service = hyper_util::service::TowerToHyperService::new(app);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "portal: connection ended");
    }
}

/// The TLS configuration of the portal: the authority's own certificate and key.
pub fn tls_config(dir: &DataDir) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Error::FailedPrecondition(format!("the portal's TLS {what}: {e}"))
    };
    let chain = CertificateDer::pem_file_iter(dir.tls_certificate())
        .map_err(|e| bad("certificate", &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_file(dir.tls_key()).map_err(|e| bad("key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("versions", &e))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| bad("certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type Shared = State<Arc<Portal>>;

/// What a handler answers when it fails: a page with one clear message.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Html(pages::failure(&self.1))).into_response()
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::AlreadyExists
            | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(code, status.message().to_owned())
    }
}

/// Why a request gets no session.
enum Denied {
    /// None: to the login page.
    LogIn,
    /// Its form may not change anything.
    Refused(Failure),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::LogIn => Redirect::to("/login").into_response(),
            Denied::Refused(failure) => failure.into_response(),
        }
    }
}

/// The session of a request, or a redirect to the login page.
fn session(portal: &Portal, headers: &HeaderMap) -> std::result::Result<Session, Denied> {
    session::from_cookie(headers)
        .and_then(|id| portal.sessions.get(&id))
        .ok_or(Denied::LogIn)
}

/// The session of a form that changes something: an admin's, with the session's CSRF
/// token.
fn changing(
    portal: &Portal,
    headers: &HeaderMap,
    csrf: &str,
) -> std::result::Result<Session, Denied> {
    let session = session(portal, headers)?;
    if !session.csrf_matches(csrf) {
        return Err(Denied::Refused(Failure(
            StatusCode::FORBIDDEN,
            "the form's security token is missing or stale: reload the page and try again".into(),
        )));
    }
    if session.role != Role::Admin {
        return Err(Denied::Refused(Failure(
            StatusCode::FORBIDDEN,
            "a viewer cannot change anything: log in with the admin credential".into(),
        )));
    }
    Ok(session)
}

async fn login_page() -> Html<String> {
    Html(pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    credential: String,
}

async fn login(State(portal): Shared, Form(form): Form<LoginForm>) -> Response {
    let Some(role) = portal.role_of(&form.credential) else {
        let failed = portal.failed_logins.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            failed_logins = failed,
            "portal: a login with a wrong credential"
        );
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        return (
            StatusCode::UNAUTHORIZED,
            Html(pages::login(Some("That credential is not valid."))),
        )
            .into_response();
    };
    let id = portal.sessions.open(role);
    tracing::info!(?role, "portal: logged in");
    (
        [(header::SET_COOKIE, session::cookie(&id))],
        Redirect::to("/"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(portal): Shared, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Ok(session) = session(&portal, &headers)
        && session.csrf_matches(&form.csrf)
    {
        portal.sessions.close(&session.id);
    }
    (
        [(header::SET_COOKIE, session::expired_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

fn request<T>(message: T) -> tonic::Request<T> {
    tonic::Request::new(message)
}

async fn overview(State(portal): Shared, headers: HeaderMap) -> Response {
    let session = match session(&portal, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let data = async {
        let accounts = overview_data(&portal).await?;
        let satellites = satellite_list(&portal).await?;
        Ok::<_, Failure>((accounts, satellites))
    };
    match data.await {
        Ok((accounts, satellites)) => {
            let alerts = satellite_alerts(&satellites, portal.state.now());
            Html(pages::overview(&session, &accounts, &alerts)).into_response()
        }
        Err(f) => f.into_response(),
    }
}

async fn satellite_list(portal: &Portal) -> std::result::Result<Vec<pb::SatelliteInfo>, Failure> {
    Ok(portal
        .admin
        .list_satellites(request(pb::ListSatellitesRequest {}))
        .await?
        .into_inner()
        .satellites)
}

/// Satellites that must sync soon, by the default sync deadline (the cloud does not know
/// a satellite's own), and delegations about to expire.
fn satellite_alerts(satellites: &[pb::SatelliteInfo], now: i64) -> Vec<String> {
    let mut alerts = Vec::new();
    for s in satellites
        .iter()
        .filter(|s| s.revoked_at == 0 && s.expires_at > now)
    {
        if s.last_sync_at > 0 {
            let deadline = s.last_sync_at + crate::satellite::DEFAULT_SYNC_DEADLINE;
            if deadline - now < ALERT_AHEAD_SECS {
                alerts.push(format!(
                    "satellite {} last synced {}: by the default deadline it must sync by {}",
                    s.name,
                    pages::date(s.last_sync_at),
                    pages::date(deadline)
                ));
            }
        }
        if s.expires_at - now < ALERT_AHEAD_SECS {
            alerts.push(format!(
                "satellite {}'s delegation expires {}",
                s.name,
                pages::date(s.expires_at)
            ));
        }
    }
    alerts
}

async fn satellites(State(portal): Shared, headers: HeaderMap) -> Response {
    let session = match session(&portal, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    match satellite_list(&portal).await {
        Ok(list) => Html(pages::satellites(&session, &list)).into_response(),
        Err(f) => f.into_response(),
    }
}

/// A smart account with its virtual accounts and their pools.
pub(crate) struct AccountView {
    pub(crate) account: pb::SmartAccount,
    pub(crate) virtual_accounts: Vec<(pb::VirtualAccount, Vec<pb::Pool>)>,
    /// What needs the operator, as sentences.
    pub(crate) alerts: Vec<String>,
}

/// How far ahead a deadline or an expiry is an alert.
const ALERT_AHEAD_SECS: i64 = 7 * 86_400;

/// The alerts of a virtual account: instances out of compliance or near their
/// communication deadline, tokens about to expire.
fn alerts(va: &str, instances: &[pb::Instance], tokens: &[pb::Token], now: i64) -> Vec<String> {
    let mut alerts = Vec::new();
    for i in instances
        .iter()
        .filter(|i| !i.removed && !i.deregistered && i.expired_at == 0)
    {
        let udi = i.udi.as_ref().map_or_else(
            || i.instance_id.clone(),
            |u| format!("{}:{}", u.product_id, u.serial),
        );
        for g in i.grants.iter().filter(|g| g.granted < g.requested) {
            alerts.push(format!(
                "{va}: {udi} is out of compliance for {} ({} of {} granted)",
                g.tag, g.granted, g.requested
            ));
        }
        if i.deadline_at > 0 && i.deadline_at - now < ALERT_AHEAD_SECS {
            alerts.push(format!(
                "{va}: {udi} must call home by {}",
                pages::date(i.deadline_at)
            ));
        }
    }
    for t in tokens.iter().filter(|t| !t.revoked && t.expires_at > now) {
        if t.expires_at - now < ALERT_AHEAD_SECS {
            alerts.push(format!(
                "{va}: token {} expires {}",
                t.id,
                pages::date(t.expires_at)
            ));
        }
    }
    alerts
}

async fn overview_data(portal: &Portal) -> std::result::Result<Vec<AccountView>, Failure> {
    let accounts = portal
        .admin
        .list_smart_accounts(request(pb::ListSmartAccountsRequest {}))
        .await?
        .into_inner()
        .accounts;
    let mut views = Vec::new();
    for account in accounts {
        let vas = portal
            .admin
            .list_virtual_accounts(request(pb::ListVirtualAccountsRequest {
                smart_account: account.name.clone(),
            }))
            .await?
            .into_inner()
            .accounts;
        let mut virtual_accounts = Vec::new();
        let mut account_alerts = Vec::new();
        for va in vas {
            let view =
                virtual_account_data(portal, va.smart_account.clone(), va.name.clone()).await?;
            account_alerts.extend(alerts(&va.name, &view.instances, &view.tokens, view.now));
            virtual_accounts.push((va, view.pools));
        }
        views.push(AccountView {
            account,
            virtual_accounts,
            alerts: account_alerts,
        });
    }
    Ok(views)
}

async fn pools(
    portal: &Portal,
    smart: &str,
    va: &str,
) -> std::result::Result<Vec<pb::Pool>, Failure> {
    Ok(portal
        .admin
        .list_pools(request(pb::ListPoolsRequest {
            smart_account: smart.to_owned(),
            virtual_account: va.to_owned(),
        }))
        .await?
        .into_inner()
        .pools)
}

/// Everything the virtual account page shows.
pub(crate) struct VirtualAccountView {
    pub(crate) smart: String,
    pub(crate) name: String,
    pub(crate) pools: Vec<pb::Pool>,
    pub(crate) instances: Vec<pb::Instance>,
    pub(crate) tokens: Vec<pb::Token>,
    /// The smart account's other virtual accounts, to transfer licences to.
    pub(crate) others: Vec<String>,
    /// Per tag, the licences held by this virtual account's reservations.
    pub(crate) reserved: std::collections::HashMap<String, u64>,
    pub(crate) now: i64,
}

async fn virtual_account_data(
    portal: &Portal,
    smart: String,
    name: String,
) -> std::result::Result<VirtualAccountView, Failure> {
    let pools = pools(portal, &smart, &name).await?;
    let instances = portal
        .admin
        .list_instances(request(pb::ListInstancesRequest {
            smart_account: smart.clone(),
            virtual_account: name.clone(),
        }))
        .await?
        .into_inner()
        .instances;
    let tokens = portal
        .admin
        .list_tokens(request(pb::ListTokensRequest {
            smart_account: smart.clone(),
            virtual_account: name.clone(),
        }))
        .await?
        .into_inner()
        .tokens;
    let others = portal
        .admin
        .list_virtual_accounts(request(pb::ListVirtualAccountsRequest {
            smart_account: smart.clone(),
        }))
        .await?
        .into_inner()
        .accounts
        .into_iter()
        .map(|va| va.name)
        .filter(|other| *other != name)
        .collect();
    let mut reserved = std::collections::HashMap::new();
    let reservations = portal
        .admin
        .list_reservations(request(pb::ListReservationsRequest {
            smart_account: smart.clone(),
        }))
        .await?
        .into_inner()
        .reservations;
    for r in reservations
        .iter()
        .filter(|r| r.virtual_account == name && r.returned_at == 0)
    {
        for l in &r.licenses {
            *reserved.entry(l.tag.clone()).or_insert(0) += l.count;
        }
    }
    Ok(VirtualAccountView {
        smart,
        name,
        pools,
        instances,
        tokens,
        others,
        reserved,
        now: portal.state.now(),
    })
}

async fn virtual_account(
    State(portal): Shared,
    headers: HeaderMap,
    Path((smart, name)): Path<(String, String)>,
) -> Response {
    let session = match session(&portal, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    match virtual_account_data(&portal, smart, name).await {
        Ok(view) => Html(pages::virtual_account(&session, &view, None)).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn licence(
    State(portal): Shared,
    headers: HeaderMap,
    Path((smart, name, tag)): Path<(String, String, String)>,
) -> Response {
    let session = match session(&portal, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let data = async {
        let view = virtual_account_data(&portal, smart.clone(), name.clone()).await?;
        if !view.pools.iter().any(|p| p.tag == tag) {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                format!("{smart}/{name} has no {tag} licences"),
            ));
        }
        let filter = EventFilter {
            account: smart.clone(),
            ..EventFilter::default()
        };
        let events: Vec<pb::AuditEntry> = audit_entries(&portal, &filter)
            .await?
            .into_iter()
            .filter(|e| e.detail.contains(&tag))
            .collect();
        Ok((view, events))
    };
    match data.await {
        Ok((view, events)) => Html(pages::licence(&session, &view, &tag, &events)).into_response(),
        Err(f) => f.into_response(),
    }
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    uses: String,
    #[serde(default)]
    description: String,
    /// A checkbox: present when ticked.
    export_controlled: Option<String>,
}

/// A whole number from a form field, or the one message the page shows.
fn number(field: &str, value: &str) -> std::result::Result<u32, Failure> {
    value.trim().parse().map_err(|_| {
        Failure(
            StatusCode::BAD_REQUEST,
            format!("{field} must be a whole number, not {:?}", value.trim()),
        )
    })
}

async fn create_token(
    State(portal): Shared,
    headers: HeaderMap,
    Path((smart, name)): Path<(String, String)>,
    Form(form): Form<TokenForm>,
) -> Response {
    let session = match changing(&portal, &headers, &form.csrf) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let created = async {
        let request_body = pb::CreateTokenRequest {
            smart_account: smart.clone(),
            virtual_account: name.clone(),
            validity_days: number("Days", &form.days)?,
            max_uses: number("Uses", &form.uses)?,
            export_controlled: form.export_controlled.is_some(),
            description: form.description.trim().to_owned(),
        };
        Ok::<_, Failure>(
            portal
                .admin
                .create_token(request(request_body))
                .await?
                .into_inner(),
        )
    }
    .await;
    let shown = match created {
        Ok(token) => pages::Shown::Token(token),
        Err(Failure(_, message)) => pages::Shown::Error(message),
    };
    match virtual_account_data(&portal, smart, name).await {
        Ok(view) => {
            let status = match shown {
                pages::Shown::Error(_) => StatusCode::BAD_REQUEST,
                pages::Shown::Token(_) => StatusCode::OK,
            };
            (
                status,
                Html(pages::virtual_account(&session, &view, Some(&shown))),
            )
                .into_response()
        }
        Err(f) => f.into_response(),
    }
}

async fn revoke_token(
    State(portal): Shared,
    headers: HeaderMap,
    Path((smart, name, id)): Path<(String, String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(denied) = changing(&portal, &headers, &form.csrf) {
        return denied.into_response();
    }
    if let Err(status) = portal
        .admin
        .revoke_token(request(pb::RevokeTokenRequest { id }))
        .await
    {
        return Failure::from(status).into_response();
    }
    Redirect::to(&pages::va_path(&smart, &name)).into_response()
}

#[derive(Deserialize)]
struct TransferForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    quantity: String,
    /// Checkboxes: present when ticked.
    force: Option<String>,
    confirm: Option<String>,
}

/// What a transfer will do, for the operator to confirm before it runs.
pub(crate) struct TransferPlan {
    pub(crate) smart: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) tag: String,
    pub(crate) quantity: u64,
    pub(crate) force: bool,
    /// Of the pool: purchased and in use.
    pub(crate) total: u64,
    pub(crate) in_use: u64,
}

impl TransferPlan {
    /// How many of the moved licences are in use (their devices go out of compliance).
    pub(crate) fn moved_in_use(&self) -> u64 {
        self.quantity
            .saturating_sub(self.total.saturating_sub(self.in_use))
    }
}

async fn transfer(
    State(portal): Shared,
    headers: HeaderMap,
    Path((smart, from)): Path<(String, String)>,
    Form(form): Form<TransferForm>,
) -> Response {
    let session = match changing(&portal, &headers, &form.csrf) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let quantity = match number("Quantity", &form.quantity) {
        Ok(q) => u64::from(q),
        Err(f) => return f.into_response(),
    };
    let force = form.force.is_some();
    if form.confirm.as_deref() == Some("yes") {
        let done = portal
            .admin
            .transfer(request(pb::TransferRequest {
                smart_account: smart.clone(),
                from_virtual_account: from.clone(),
                to_virtual_account: form.to.clone(),
                tag: form.tag.clone(),
                quantity,
                force,
            }))
            .await;
        return match done {
            Ok(_) => Redirect::to(&pages::va_path(&smart, &from)).into_response(),
            Err(status) => Failure::from(status).into_response(),
        };
    }
    let pools = match pools(&portal, &smart, &from).await {
        Ok(p) => p,
        Err(f) => return f.into_response(),
    };
    let of_tag = pools.iter().filter(|p| p.tag == form.tag);
    let plan = TransferPlan {
        total: of_tag.clone().map(|p| p.quantity).sum(),
        in_use: of_tag.map(|p| p.in_use).sum(),
        smart,
        from,
        to: form.to,
        tag: form.tag,
        quantity,
        force,
    };
    Html(pages::confirm_transfer(&session, &plan)).into_response()
}

/// Everything the reservations page shows.
pub(crate) struct ReservationsView {
    pub(crate) smart: String,
    pub(crate) virtual_accounts: Vec<String>,
    pub(crate) reservations: Vec<pb::Reservation>,
}

async fn reservations_data(
    portal: &Portal,
    smart: String,
) -> std::result::Result<ReservationsView, Failure> {
    let virtual_accounts = portal
        .admin
        .list_virtual_accounts(request(pb::ListVirtualAccountsRequest {
            smart_account: smart.clone(),
        }))
        .await?
        .into_inner()
        .accounts
        .into_iter()
        .map(|va| va.name)
        .collect();
    let reservations = portal
        .admin
        .list_reservations(request(pb::ListReservationsRequest {
            smart_account: smart.clone(),
        }))
        .await?
        .into_inner()
        .reservations;
    Ok(ReservationsView {
        smart,
        virtual_accounts,
        reservations,
    })
}

/// The reservations page, with what the last form did.
async fn reservations_page(
    portal: &Portal,
    session: &Session,
    smart: String,
    shown: Option<pages::Reserved>,
) -> Response {
    let status = match shown {
        Some(pages::Reserved::Error(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    match reservations_data(portal, smart).await {
        Ok(view) => (
            status,
            Html(pages::reservations(session, &view, shown.as_ref())),
        )
            .into_response(),
        Err(f) => f.into_response(),
    }
}

async fn reservations(
    State(portal): Shared,
    headers: HeaderMap,
    Path(smart): Path<String>,
) -> Response {
    match session(&portal, &headers) {
        Ok(session) => reservations_page(&portal, &session, smart, None).await,
        Err(denied) => denied.into_response(),
    }
}

#[derive(Deserialize)]
struct ReserveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    virtual_account: String,
    #[serde(default)]
    request_code: String,
    #[serde(default)]
    kind: String,
    /// SLR: `TAG=COUNT` pairs, separated by commas or spaces.
    #[serde(default)]
    licenses: String,
}

/// `PAR-TPS=1, PAR-ADD-TPS=2` as licence counts, or the one message the page shows.
fn licence_counts(text: &str) -> std::result::Result<Vec<pb::LicenseCount>, String> {
    text.split([',', ' ', '\n', '\r', '\t'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (tag, count) = part
                .split_once('=')
                .ok_or_else(|| format!("write each licence as TAG=COUNT, not {part:?}"))?;
            let count = count
                .parse()
                .map_err(|_| format!("the count of {tag} must be a whole number, not {count:?}"))?;
            Ok(pb::LicenseCount {
                tag: tag.to_owned(),
                count,
            })
        })
        .collect()
}

async fn authorize_reservation(
    State(portal): Shared,
    headers: HeaderMap,
    Path(smart): Path<String>,
    Form(form): Form<ReserveForm>,
) -> Response {
    let session = match changing(&portal, &headers, &form.csrf) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let kind = match form.kind.as_str() {
        "plr" => Ok(pb::ReservationKind::Permanent),
        "slr" => Ok(pb::ReservationKind::Specific),
        _ => Err("choose PLR or SLR".to_owned()),
    };
    let licenses = match kind {
        Ok(pb::ReservationKind::Specific) => licence_counts(&form.licenses),
        _ => Ok(Vec::new()),
    };
    let shown = match (kind, licenses) {
        (Err(e), _) | (_, Err(e)) => pages::Reserved::Error(e),
        (Ok(kind), Ok(licenses)) => {
            let answer = portal
                .admin
                .authorize_reservation(request(pb::AuthorizeReservationRequest {
                    smart_account: smart.clone(),
                    virtual_account: form.virtual_account.clone(),
                    request_code: form.request_code.trim().to_owned(),
                    kind: kind as i32,
                    licenses,
                }))
                .await;
            match answer {
                Ok(reservation) => pages::Reserved::Authorized(reservation.into_inner()),
                Err(status) => pages::Reserved::Error(status.message().to_owned()),
            }
        }
    };
    reservations_page(&portal, &session, smart, Some(shown)).await
}

#[derive(Deserialize)]
struct ReturnForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    return_code: String,
}

async fn return_reservation(
    State(portal): Shared,
    headers: HeaderMap,
    Path(smart): Path<String>,
    Form(form): Form<ReturnForm>,
) -> Response {
    let session = match changing(&portal, &headers, &form.csrf) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let answer = portal
        .admin
        .return_reservation(request(pb::ReturnReservationRequest {
            return_code: form.return_code.trim().to_owned(),
        }))
        .await;
    let shown = match answer {
        Ok(answer) if answer.get_ref().already_returned => pages::Reserved::Returned(
            "that reservation was returned before; nothing changed".into(),
        ),
        Ok(_) => pages::Reserved::Returned("returned; its licences are back in the pool".into()),
        Err(status) => pages::Reserved::Error(status.message().to_owned()),
    };
    reservations_page(&portal, &session, smart, Some(shown)).await
}

/// How many windows of usage a chart and a CSV export hold at most.
const USAGE_WINDOWS: u32 = 10_000;

#[derive(Deserialize)]
struct UsageQuery {
    /// One instance of the virtual account, or all when empty.
    #[serde(default)]
    instance: String,
}

async fn usage_windows(
    portal: &Portal,
    smart: &str,
    va: &str,
    instance: &str,
) -> std::result::Result<Vec<crate::ledger::UsageWindow>, Failure> {
    let (smart, va, instance) = (smart.to_owned(), va.to_owned(), instance.to_owned());
    portal
        .state
        .store
        .run(move |conn| crate::ledger::usage_windows(conn, &smart, &va, &instance, USAGE_WINDOWS))
        .await
        .map_err(|e| Failure::from(tonic::Status::from(e)))
}

async fn usage(
    State(portal): Shared,
    headers: HeaderMap,
    Path((smart, va)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<UsageQuery>,
) -> Response {
    let session = match session(&portal, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    match usage_windows(&portal, &smart, &va, &query.instance).await {
        Ok(windows) => Html(pages::usage(
            &session,
            &smart,
            &va,
            &query.instance,
            &windows,
        ))
        .into_response(),
        Err(f) => f.into_response(),
    }
}

async fn usage_csv(
    State(portal): Shared,
    headers: HeaderMap,
    Path((smart, va)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<UsageQuery>,
) -> Response {
    if let Err(denied) = session(&portal, &headers) {
        return denied.into_response();
    }
    match usage_windows(&portal, &smart, &va, &query.instance).await {
        Ok(windows) => {
            let mut csv =
                String::from("window_start_ms,window_end_ms,tag,admitted,rejected,peak_tps\n");
            for w in &windows {
                csv.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    w.window_start,
                    w.window_end,
                    csv_field(&w.tag),
                    w.admitted,
                    w.rejected,
                    w.peak_tps
                ));
            }
            csv_response(csv, "usage.csv")
        }
        Err(f) => f.into_response(),
    }
}

async fn remove_instance(
    State(portal): Shared,
    headers: HeaderMap,
    Path((smart, name, id)): Path<(String, String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(denied) = changing(&portal, &headers, &form.csrf) {
        return denied.into_response();
    }
    let removed = portal
        .admin
        .remove_instance(request(pb::InstanceRequest {
            smart_account: smart.clone(),
            virtual_account: name.clone(),
            instance_id: id,
        }))
        .await;
    match removed {
        Ok(_) => Redirect::to(&pages::va_path(&smart, &name)).into_response(),
        Err(status) => Failure::from(status).into_response(),
    }
}

/// The event log's filters, each empty for any.
#[derive(Deserialize, Default)]
pub(crate) struct EventFilter {
    #[serde(default)]
    pub(crate) account: String,
    #[serde(default)]
    pub(crate) instance: String,
    #[serde(default)]
    pub(crate) kind: String,
}

async fn audit_entries(
    portal: &Portal,
    filter: &EventFilter,
) -> std::result::Result<Vec<pb::AuditEntry>, Failure> {
    Ok(portal
        .admin
        .list_audit(request(pb::ListAuditRequest {
            after_id: 0,
            limit: 10_000,
            smart_account: filter.account.trim().to_owned(),
            instance_id: filter.instance.trim().to_owned(),
            kind: filter.kind.trim().to_owned(),
        }))
        .await?
        .into_inner()
        .entries)
}

async fn events(
    State(portal): Shared,
    headers: HeaderMap,
    axum::extract::Query(filter): axum::extract::Query<EventFilter>,
) -> Response {
    let session = match session(&portal, &headers) {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    match audit_entries(&portal, &filter).await {
        Ok(entries) => Html(pages::events(&session, &filter, &entries)).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn events_csv(
    State(portal): Shared,
    headers: HeaderMap,
    axum::extract::Query(filter): axum::extract::Query<EventFilter>,
) -> Response {
    if let Err(denied) = session(&portal, &headers) {
        return denied.into_response();
    }
    match audit_entries(&portal, &filter).await {
        Ok(entries) => {
            let mut csv = String::from("id,at,actor,action,detail\n");
            for e in &entries {
                csv.push_str(&format!(
                    "{},{},{},{},{}\n",
                    e.id,
                    e.at,
                    csv_field(&e.actor),
                    csv_field(&e.action),
                    csv_field(&e.detail)
                ));
            }
            csv_response(csv, "events.csv")
        }
        Err(f) => f.into_response(),
    }
}

fn csv_response(csv: String, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        csv,
    )
        .into_response()
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests;
