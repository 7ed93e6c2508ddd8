//! The licence authority (the cloud "CSSM" role): the `Authority` service devices call and
//! the `AuthorityAdmin` service the admin CLI calls, over one SQLite store.
//!
//! A data directory holds everything: `authority.db` (the store), `signing.key` (the
//! Ed25519 key that signs certificates and authorisations, mode 0600), `authority.pub` (its
//! public half, the devices' trust anchor), `codes.key` (the BLS12-381 key that signs
//! reservation authorisation codes, mode 0600), `codes.pub` (its public half, the devices'
//! trust anchor for codes) and `admin.credential` (the admin secret, mode 0600).

pub mod ledger;
pub mod reservations;
pub mod store;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ed25519_dalek::{SigningKey, VerifyingKey};
use entitle_proto::pb;
use entitle_proto::pb::authority_admin_server::AuthorityAdmin;
use entitle_proto::pb::authority_server::Authority;
use parking_lot::RwLock;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::codes::{self, CodeSigningKey};
use crate::crypto;
use crate::error::{Error, Result};
pub use ledger::Periods;
pub use store::Store;

/// Most usage reports verified in one batch.
const VERIFY_BATCH: usize = 64;

/// The largest message the authority decodes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Unix seconds now; replaceable so tests can move the authority's time.
pub type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> WallClock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// The files of an authority's data directory.
pub struct DataDir(PathBuf);

impl DataDir {
    /// The data directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }
    /// The store.
    pub fn database(&self) -> PathBuf {
        self.0.join("authority.db")
    }
    /// The signing key (secret).
    pub fn signing_key(&self) -> PathBuf {
        self.0.join("signing.key")
    }
    /// The public key devices trust.
    pub fn public_key(&self) -> PathBuf {
        self.0.join("authority.pub")
    }
    /// The admin credential (secret).
    pub fn admin_credential(&self) -> PathBuf {
        self.0.join("admin.credential")
    }
    /// The key that signs reservation codes (secret).
    pub fn codes_key(&self) -> PathBuf {
        self.0.join("codes.key")
    }
    /// Its public half, the devices' trust anchor for reservation codes.
    pub fn codes_public_key(&self) -> PathBuf {
        self.0.join("codes.pub")
    }
}

/// The reservation code key: read, or made (with its public half) when the directory has
/// none, as one made before reservation codes existed.
fn codes_key(files: &DataDir) -> Result<CodeSigningKey> {
    let io = |e: std::io::Error| Error::Internal(e.to_string());
    if files.codes_key().exists() {
        let bytes = crypto::read_secret(&files.codes_key()).map_err(|e| {
            Error::FailedPrecondition(format!("cannot read the reservation code key: {e}"))
        })?;
        return CodeSigningKey::from_bytes(&bytes).map_err(|_| {
            Error::FailedPrecondition("the reservation code key file is corrupt".into())
        });
    }
    let key = CodeSigningKey::from_seed(&crypto::random_bytes::<32>().map_err(io)?);
    crypto::write_secret(&files.codes_key(), &key.to_bytes()).map_err(io)?;
    std::fs::write(files.codes_public_key(), key.verifying_key().to_bytes()).map_err(io)?;
    Ok(key)
}

/// Creates a data directory: the store, a signing key and an admin credential. Refuses to
/// touch a directory that already holds an authority.
pub fn init(dir: &Path) -> Result<()> {
    let files = DataDir::new(dir);
    if files.database().exists() || files.signing_key().exists() {
        return Err(Error::AlreadyExists(format!(
            "{} already holds an authority",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let io = |e: std::io::Error| Error::Internal(e.to_string());
    let key = crypto::generate_key().map_err(io)?;
    crypto::write_secret(&files.signing_key(), &key.to_bytes()).map_err(io)?;
    std::fs::write(files.public_key(), key.verifying_key().to_bytes()).map_err(io)?;
    let credential = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        crypto::random_bytes::<32>().map_err(io)?,
    );
    crypto::write_secret(&files.admin_credential(), credential.as_bytes()).map_err(io)?;
    codes_key(&files)?;
    // Opening the store creates and migrates it.
    drop(Store::open(&files.database())?);
    Ok(())
}

/// The authority's state shared by both services.
pub struct AuthorityState {
    store: Store,
    key: SigningKey,
    /// Signs reservation authorisation codes.
    codes_key: CodeSigningKey,
    periods: Periods,
    clock: WallClock,
    /// Public keys of registered instances, to check report signatures without the store.
    device_keys: RwLock<HashMap<String, VerifyingKey>>,
    admin_credential_hash: Vec<u8>,
}

impl AuthorityState {
    /// Opens the authority in `dir` (made by [`init`]).
    pub fn open(dir: &Path, periods: Periods, clock: WallClock) -> Result<Arc<Self>> {
        let files = DataDir::new(dir);
        let io = |what: &str, e: std::io::Error| {
            Error::FailedPrecondition(format!("cannot read {what} in {}: {e}", dir.display()))
        };
        let seed =
            crypto::read_secret(&files.signing_key()).map_err(|e| io("the signing key", e))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| Error::FailedPrecondition("the signing key file is corrupt".into()))?;
        let credential = crypto::read_secret(&files.admin_credential())
            .map_err(|e| io("the admin credential", e))?;
        if !files.database().exists() {
            return Err(Error::FailedPrecondition(format!(
                "{} holds no authority; run `entitle-authority init` first",
                dir.display()
            )));
        }
        Ok(Arc::new(Self {
            store: Store::open(&files.database())?,
            codes_key: codes_key(&files)?,
            key: SigningKey::from_bytes(&seed),
            periods,
            clock,
            device_keys: RwLock::new(HashMap::new()),
            admin_credential_hash: Sha256::digest(credential.trim_ascii()).to_vec(),
        }))
    }

    /// The public key that verifies this authority's signatures.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The key of a registered instance, from the cache or the store.
    async fn device_key(&self, instance: &str) -> Result<VerifyingKey> {
        if let Some(key) = self.device_keys.read().get(instance) {
            return Ok(*key);
        }
        let id = instance.to_owned();
        let (bytes, _) = self
            .store
            .run(move |conn| ledger::device_key(conn, &id))
            .await?;
        let key = crypto::verifying_key(&bytes)?;
        self.device_keys.write().insert(instance.to_owned(), key);
        Ok(key)
    }

    /// Checks a device-signed request: decodes it to find the instance, then verifies it
    /// with that instance's key.
    async fn open_device_request<M: prost::Message + Default>(
        &self,
        type_name: &'static str,
        signed: &pb::Signed,
        instance_of: impl Fn(&M) -> &str,
    ) -> Result<M> {
        let body: M = crypto::peek(type_name, signed)?;
        let key = self.device_key(instance_of(&body)).await?;
        crypto::verify(&key, type_name, signed)?;
        Ok(body)
    }

    /// Decodes and verifies usage reports, each with its instance's key, in one batch.
    /// Returns each report with the hash of its signed body, in order; the first failure
    /// ends the list.
    async fn open_reports(&self, batch: &[pb::Signed]) -> Vec<Result<(pb::UsageReport, Vec<u8>)>> {
        let mut opened = Vec::with_capacity(batch.len());
        let mut keyed = Vec::with_capacity(batch.len());
        for signed in batch {
            let report: pb::UsageReport = match crypto::peek("UsageReport", signed) {
                Ok(report) => report,
                Err(e) => {
                    opened.push(Err(e.into()));
                    break;
                }
            };
            match self.device_key(&report.instance_id).await {
                Ok(key) => keyed.push((key, signed, report)),
                Err(e) => {
                    opened.push(Err(e));
                    break;
                }
            }
        }
        let items: Vec<_> = keyed
            .iter()
            .map(|(key, signed, _)| (*key, *signed))
            .collect();
        let checks = crypto::verify_all("UsageReport", &items);
        let mut verified = Vec::with_capacity(keyed.len() + 1);
        for ((_, signed, report), check) in keyed.into_iter().zip(checks) {
            match check {
                Ok(()) => verified.push(Ok((report, Sha256::digest(&signed.body).to_vec()))),
                Err(e) => {
                    verified.push(Err(e.into()));
                    break;
                }
            }
        }
        // A decoding or key failure came after every report that verified.
        verified.extend(opened);
        verified
    }

    /// Whether `header` (the `authorization` metadata) carries the admin credential.
    pub fn admin_allowed(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let presented = Sha256::digest(presented.trim().as_bytes());
        presented
            .iter()
            .zip(&self.admin_credential_hash)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The device-facing service.
#[derive(Clone)]
pub struct DeviceService(pub Arc<AuthorityState>);

/// The admin service; wrap it with [`admin_interceptor`].
#[derive(Clone)]
pub struct AdminService(pub Arc<AuthorityState>);

/// Refuses admin calls without the admin credential.
pub fn admin_interceptor(state: Arc<AuthorityState>) -> impl tonic::service::Interceptor + Clone {
    move |request: Request<()>| {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if header.is_none() {
            return Err(Status::unauthenticated(
                "admin calls need `authorization: Bearer <admin credential>`",
            ));
        }
        if !state.admin_allowed(header) {
            return Err(Status::unauthenticated("the admin credential is wrong"));
        }
        Ok(request)
    }
}

fn check_udi(udi: Option<&pb::Udi>) -> Result<&pb::Udi> {
    let udi = udi.ok_or_else(|| {
        Error::InvalidArgument("the UDI (product id and serial) is missing".into())
    })?;
    ledger::check_name("product id", &udi.product_id)?;
    ledger::check_name("serial number", &udi.serial)?;
    Ok(udi)
}

/// The bytes a device signs to prove it holds the key it registers.
pub fn registration_proof_bytes(token: &str, udi: &pb::Udi, device_key: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in [
        token.as_bytes(),
        udi.product_id.as_bytes(),
        udi.serial.as_bytes(),
    ] {
        body.extend_from_slice(part);
        body.push(0);
    }
    body.extend_from_slice(device_key);
    entitle_proto::signing_bytes("RegisterRequest", &body)
}

type AckStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::UsageAck, Status>> + Send>>;

#[tonic::async_trait]
impl Authority for DeviceService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> std::result::Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        let udi = check_udi(r.udi.as_ref())?.clone();
        let device_key = crypto::verifying_key(&r.device_public_key).map_err(Error::from)?;
        crypto::verify_raw(
            &device_key,
            &registration_proof_bytes(&r.id_token, &udi, &r.device_public_key),
            &r.proof,
        )
        .map_err(|_| {
            Error::Unauthenticated(
                "the registration proof does not verify with the device key".into(),
            )
        })?;
        let (periods, now) = (self.0.periods, self.0.now());
        let certificate = self
            .0
            .store
            .run(move |conn| {
                let registration = ledger::Registration {
                    token: &r.id_token,
                    udi: &udi,
                    device_key: &r.device_public_key,
                };
                ledger::register(conn, now, &periods, &registration)
            })
            .await?;
        self.0
            .device_keys
            .write()
            .insert(certificate.instance_id.clone(), device_key);
        Ok(Response::new(pb::RegisterResponse {
            certificate: Some(crypto::sign(&self.0.key, "IdCertificate", &certificate)),
        }))
    }

    async fn renew_id(
        &self,
        request: Request<pb::Signed>,
    ) -> std::result::Result<Response<pb::RegisterResponse>, Status> {
        let body: pb::RenewIdBody = self
            .0
            .open_device_request("RenewIdBody", request.get_ref(), |b: &pb::RenewIdBody| {
                &b.instance_id
            })
            .await?;
        let (periods, now) = (self.0.periods, self.0.now());
        let certificate = self
            .0
            .store
            .run(move |conn| ledger::renew_id(conn, now, &periods, &body))
            .await?;
        Ok(Response::new(pb::RegisterResponse {
            certificate: Some(crypto::sign(&self.0.key, "IdCertificate", &certificate)),
        }))
    }

    async fn authorize(
        &self,
        request: Request<pb::Signed>,
    ) -> std::result::Result<Response<pb::Signed>, Status> {
        let body: pb::AuthorizeBody = self
            .0
            .open_device_request(
                "AuthorizeBody",
                request.get_ref(),
                |b: &pb::AuthorizeBody| &b.instance_id,
            )
            .await?;
        let (periods, now) = (self.0.periods, self.0.now());
        let authorization = self
            .0
            .store
            .run(move |conn| ledger::authorize(conn, now, &periods, &body))
            .await?;
        Ok(Response::new(crypto::sign(
            &self.0.key,
            "Authorization",
            &authorization,
        )))
    }

    async fn deregister(
        &self,
        request: Request<pb::Signed>,
    ) -> std::result::Result<Response<pb::DeregisterResponse>, Status> {
        let body: pb::DeregisterBody = self
            .0
            .open_device_request(
                "DeregisterBody",
                request.get_ref(),
                |b: &pb::DeregisterBody| &b.instance_id,
            )
            .await?;
        let instance = body.instance_id.clone();
        let now = self.0.now();
        self.0
            .store
            .run(move |conn| ledger::deregister(conn, now, &body))
            .await?;
        self.0.device_keys.write().remove(&instance);
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    type ReportUsageStream = AckStream;

    async fn report_usage(
        &self,
        request: Request<Streaming<pb::Signed>>,
    ) -> std::result::Result<Response<AckStream>, Status> {
        let mut inbound = request.into_inner();
        let (acks, out) = mpsc::channel(1024);
        // Reports are verified and queued in order; acknowledgements follow in that order,
        // each once its batch is durable. The first bad report ends the stream with its
        // status; those before it are acknowledged.
        let (queued, mut pending) = mpsc::channel(4096);
        let state = self.0.clone();
        let refused = Arc::new(AtomicBool::new(false));
        tokio::spawn(async move {
            let mut ended = false;
            while !ended {
                // Take what has arrived, up to a batch, so signatures verify together.
                let mut batch = Vec::new();
                let mut broken = None;
                loop {
                    let next = if batch.is_empty() {
                        Some(inbound.message().await)
                    } else {
                        futures_util::FutureExt::now_or_never(inbound.message())
                    };
                    let idle = next.is_none();
                    match next {
                        Some(Ok(Some(signed))) => batch.push(signed),
                        Some(Ok(None)) => ended = true,
                        Some(Err(status)) => broken = Some(status),
                        None => {}
                    }
                    if ended || broken.is_some() || batch.len() >= VERIFY_BATCH || idle {
                        break;
                    }
                }
                for report in state.open_reports(&batch).await {
                    let report = match report {
                        Ok(report) => report,
                        Err(e) => {
                            broken = Some(Status::from(e));
                            break;
                        }
                    };
                    let now = state.now();
                    let refused = refused.clone();
                    let ack = state.store.submit(move |conn| {
                        // Jobs of one stream run in order: after a refusal, store nothing more.
                        if refused.load(Ordering::Relaxed) {
                            return Err(Error::FailedPrecondition(
                                "an earlier report on this stream was refused".into(),
                            ));
                        }
                        let ack = ledger::store_report(conn, now, &report.0, &report.1);
                        refused.store(ack.is_err(), Ordering::Relaxed);
                        ack
                    });
                    if queued.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
                if let Some(status) = broken {
                    let _ = queued.send(Err(status)).await;
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(next) = pending.recv().await {
                let result = match next {
                    Ok(ack) => ack.await.map_err(Status::from),
                    Err(status) => Err(status),
                };
                let failed = result.is_err();
                if acks.send(result).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}

macro_rules! admin_call {
    ($self:ident, $request:ident, |$conn:ident, $now:ident, $r:ident| $body:expr) => {{
        let $r = $request.into_inner();
        let $now = $self.0.now();
        let value = $self.0.store.run(move |$conn| $body).await?;
        Ok(Response::new(value))
    }};
}

#[tonic::async_trait]
impl AuthorityAdmin for AdminService {
    async fn create_smart_account(
        &self,
        request: Request<pb::CreateSmartAccountRequest>,
    ) -> std::result::Result<Response<pb::SmartAccount>, Status> {
        admin_call!(self, request, |conn, now, r| ledger::create_smart_account(
            conn, now, &r
        ))
    }

    async fn list_smart_accounts(
        &self,
        request: Request<pb::ListSmartAccountsRequest>,
    ) -> std::result::Result<Response<pb::ListSmartAccountsResponse>, Status> {
        admin_call!(self, request, |conn, _now, _r| ledger::list_smart_accounts(
            conn
        )
        .map(|accounts| pb::ListSmartAccountsResponse { accounts }))
    }

    async fn create_virtual_account(
        &self,
        request: Request<pb::CreateVirtualAccountRequest>,
    ) -> std::result::Result<Response<pb::VirtualAccount>, Status> {
        admin_call!(
            self,
            request,
            |conn, now, r| ledger::create_virtual_account(conn, now, &r)
        )
    }

    async fn list_virtual_accounts(
        &self,
        request: Request<pb::ListVirtualAccountsRequest>,
    ) -> std::result::Result<Response<pb::ListVirtualAccountsResponse>, Status> {
        admin_call!(self, request, |conn, _now, r| {
            ledger::list_virtual_accounts(conn, &r.smart_account)
                .map(|accounts| pb::ListVirtualAccountsResponse { accounts })
        })
    }

    async fn add_licenses(
        &self,
        request: Request<pb::AddLicensesRequest>,
    ) -> std::result::Result<Response<pb::Pool>, Status> {
        admin_call!(self, request, |conn, now, r| ledger::add_licenses(
            conn, now, &r
        ))
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> std::result::Result<Response<pb::ListPoolsResponse>, Status> {
        admin_call!(self, request, |conn, now, r| ledger::list_pools(
            conn,
            now,
            &r.smart_account,
            &r.virtual_account
        )
        .map(|pools| pb::ListPoolsResponse { pools }))
    }

    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> std::result::Result<Response<pb::TransferResponse>, Status> {
        admin_call!(self, request, |conn, now, r| ledger::transfer(
            conn, now, &r
        ))
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> std::result::Result<Response<pb::Token>, Status> {
        admin_call!(self, request, |conn, now, r| ledger::create_token(
            conn, now, &r
        ))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> std::result::Result<Response<pb::ListTokensResponse>, Status> {
        admin_call!(self, request, |conn, _now, r| ledger::list_tokens(
            conn,
            &r.smart_account,
            &r.virtual_account
        )
        .map(|tokens| pb::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> std::result::Result<Response<pb::Token>, Status> {
        admin_call!(self, request, |conn, now, r| ledger::revoke_token(
            conn, now, &r.id
        ))
    }

    async fn list_instances(
        &self,
        request: Request<pb::ListInstancesRequest>,
    ) -> std::result::Result<Response<pb::ListInstancesResponse>, Status> {
        admin_call!(self, request, |conn, _now, r| ledger::list_instances(
            conn,
            &r.smart_account,
            &r.virtual_account
        )
        .map(|instances| pb::ListInstancesResponse { instances }))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> std::result::Result<Response<pb::GetUsageResponse>, Status> {
        admin_call!(self, request, |conn, _now, r| ledger::usage(conn, &r)
            .map(|totals| pb::GetUsageResponse { totals }))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> std::result::Result<Response<pb::ListAuditResponse>, Status> {
        admin_call!(self, request, |conn, _now, r| ledger::list_audit(
            conn, r.after_id, r.limit
        )
        .map(|entries| pb::ListAuditResponse { entries }))
    }

    async fn authorize_reservation(
        &self,
        request: Request<pb::AuthorizeReservationRequest>,
    ) -> std::result::Result<Response<pb::Reservation>, Status> {
        let r = request.into_inner();
        let parsed = codes::parse_request(&r.request_code).map_err(code_error)?;
        let udi = pb::Udi {
            product_id: parsed.udi.product_id().to_owned(),
            serial: parsed.udi.serial().to_owned(),
        };
        let key = self.0.codes_key.clone();
        let now = self.0.now();
        let reservation = self
            .0
            .store
            .run(move |conn| {
                reservations::authorize(conn, now, &r, &udi, parsed.sequence, |grant| {
                    reservation_code(&key, &parsed, grant, now)
                })
            })
            .await?;
        Ok(Response::new(reservation))
    }

    async fn return_reservation(
        &self,
        request: Request<pb::ReturnReservationRequest>,
    ) -> std::result::Result<Response<pb::ReturnReservationResponse>, Status> {
        let r = request.into_inner();
        let returned = codes::parse_return(&r.return_code).map_err(code_error)?;
        let udi = pb::Udi {
            product_id: returned.udi.product_id().to_owned(),
            serial: returned.udi.serial().to_owned(),
        };
        let now = self.0.now();
        let (reservation, already_returned) = self
            .0
            .store
            .run(move |conn| {
                reservations::take_return(conn, now, &udi, returned.sequence, |code| {
                    codes::return_tag_matches(&returned, code)
                })
            })
            .await?;
        Ok(Response::new(pb::ReturnReservationResponse {
            reservation: Some(reservation),
            already_returned,
        }))
    }

    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> std::result::Result<Response<pb::ListReservationsResponse>, Status> {
        admin_call!(self, request, |conn, _now, r| reservations::list(
            conn,
            &r.smart_account
        )
        .map(|reservations| pb::ListReservationsResponse { reservations }))
    }
}

/// A code that does not parse is the caller's mistake: its sentence as INVALID_ARGUMENT.
fn code_error(e: codes::CodeError) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// The authorisation code (PLR or SLR) for a grant, and its confirmation code.
fn reservation_code(
    key: &CodeSigningKey,
    request: &codes::Request,
    grant: &reservations::Grant,
    now: i64,
) -> Result<(String, String)> {
    let code = match grant.kind {
        pb::ReservationKind::Permanent => codes::make_plr(
            key,
            request,
            &codes::PlrGrant {
                smart_account_ref: grant.account_number,
                export_controlled: grant.export_controlled,
            },
        ),
        _ => codes::make_slr(
            key,
            request,
            &codes::SlrGrant {
                licences: grant.licences.iter().cloned().collect(),
                smart_account: grant.smart_account.clone(),
                virtual_account: grant.virtual_account.clone(),
                export_controlled: grant.export_controlled,
                issued_at: now,
            },
        ),
    }
    .map_err(code_error)?;
    let confirmation = codes::confirmation(&code, &request.udi);
    Ok((code, confirmation))
}

/// Serves both services on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<AuthorityState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::result::Result<(), tonic::transport::Error> {
    use entitle_proto::pb::authority_admin_server::AuthorityAdminServer;
    use entitle_proto::pb::authority_server::AuthorityServer;
    let devices = AuthorityServer::new(DeviceService(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let admin = tonic::service::interceptor::InterceptedService::new(
        AuthorityAdminServer::new(AdminService(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        admin_interceptor(state),
    );
    tonic::transport::Server::builder()
        .add_service(devices)
        .add_service(admin)
        // No Nagle: an acknowledgement must not wait for the peer's delayed ACK (40 ms).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
