//! The authority's gRPC services: [`DeviceService`] (the `Authority` service devices call),
//! [`AdminService`] (the `AuthorityAdmin` service of the admin CLI and the portal), and
//! [`SyncService`] (satellites' network sync), and [`serve`], which runs them.

mod admin;
mod device;
#[cfg(test)]
mod report_tests;

use std::pin::Pin;
use std::sync::Arc;

use entitle_proto::pb;
use entitle_proto::pb::authority_admin_server::AuthorityAdmin;
use entitle_proto::pb::authority_server::Authority;
use entitle_proto::pb::satellite_sync_server::SatelliteSync;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Error, Result};
use crate::store::Chain;
use crate::{AuthorityState, MAX_MESSAGE_BYTES};
use crate::{ledger, reservations};
use entitle_proto::signing;
use entitle_proto::signing::registration_proof_bytes;

/// The device-facing service.
#[derive(Clone)]
pub struct DeviceService(pub Arc<AuthorityState>);

/// The cloud's service for satellites' network syncs.
#[derive(Clone)]
pub struct SyncService(pub Arc<AuthorityState>);

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
            tracing::warn!("admin call refused: no credential");
            return Err(Status::unauthenticated(
                "admin calls need `authorization: Bearer <admin credential>`",
            ));
        }
        if !state.admin_allowed(header) {
            tracing::warn!("admin call refused: wrong credential");
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

/// Serves both services in plaintext on `listener` until `shutdown` resolves: for an
/// authority in the same process or on loopback (tests, examples, benchmarks). The
/// `entitle-authority serve` program serves [`serve_tls`].
pub async fn serve(
    state: Arc<AuthorityState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::result::Result<(), tonic::transport::Error> {
    // Devices that missed their deadline release their licences even while nobody asks.
    let sweeper = tokio::spawn(sweep_overdue(state.clone()));
    let served = tonic::transport::Server::builder()
        // One span per call, so every event of a call names its method.
        .trace_fn(|request| tracing::info_span!("call", method = %request.uri().path()))
        .add_service(device_service(&state))
        .add_service(sync_service(&state))
        .add_service(admin_service(state.clone()))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await;
    sweeper.abort();
    served
}

/// Serves devices on `devices` and the admin service on `admin`, both over TLS with
/// `tls`, until `shutdown` resolves.
pub async fn serve_tls(
    state: Arc<AuthorityState>,
    devices: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    tls: tonic::transport::ServerTlsConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::result::Result<(), tonic::transport::Error> {
    let sweeper = tokio::spawn(sweep_overdue(state.clone()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let device_server = tonic::transport::Server::builder()
        .tls_config(tls.clone())?
        .trace_fn(|request| tracing::info_span!("call", method = %request.uri().path()))
        .add_service(device_service(&state))
        .add_service(sync_service(&state))
        .serve_with_incoming_shutdown(incoming(devices), until_stopped(stopped.clone()));
    let admin_server = tonic::transport::Server::builder()
        .tls_config(tls)?
        .trace_fn(|request| tracing::info_span!("admin", method = %request.uri().path()))
        .add_service(admin_service(state.clone()))
        .serve_with_incoming_shutdown(incoming(admin), until_stopped(stopped));
    let stopper = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let (served_devices, served_admin, ()) = tokio::join!(device_server, admin_server, stopper);
    sweeper.abort();
    served_devices.and(served_admin)
}

fn device_service(
    state: &Arc<AuthorityState>,
) -> entitle_proto::pb::authority_server::AuthorityServer<DeviceService> {
    entitle_proto::pb::authority_server::AuthorityServer::new(DeviceService(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
}

fn sync_service(
    state: &Arc<AuthorityState>,
) -> entitle_proto::pb::satellite_sync_server::SatelliteSyncServer<SyncService> {
    entitle_proto::pb::satellite_sync_server::SatelliteSyncServer::new(SyncService(state.clone()))
        .max_decoding_message_size(crate::satellite::SYNC_MESSAGE_BYTES)
        .max_encoding_message_size(crate::satellite::SYNC_MESSAGE_BYTES)
}

fn admin_service(
    state: Arc<AuthorityState>,
) -> tonic::service::interceptor::InterceptedService<
    entitle_proto::pb::authority_admin_server::AuthorityAdminServer<AdminService>,
    impl tonic::service::Interceptor + Clone,
> {
    tonic::service::interceptor::InterceptedService::new(
        entitle_proto::pb::authority_admin_server::AuthorityAdminServer::new(AdminService(
            state.clone(),
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES),
        admin_interceptor(state),
    )
}

/// No Nagle: an acknowledgement must not wait for the peer's delayed ACK (40 ms).
fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Every minute, releases the licences of devices past their deadline and release grace.
async fn sweep_overdue(state: Arc<AuthorityState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let (now, periods) = (state.now(), state.periods);
        match state
            .store
            .run(move |conn| ledger::expire_overdue(conn, now, &periods))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(instances = n, "released the licences of expired instances"),
            Err(e) => {
                tracing::error!(error = %e, "cannot release the licences of expired instances")
            }
        }
    }
}
