//! The authority's gRPC services: [`DeviceService`] (the `Authority` service devices call),
//! [`AdminService`] (the `AuthorityAdmin` service of the admin CLI and the portal), and
//! [`serve`], which runs both.

mod admin;
mod device;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use entitle_proto::pb;
use entitle_proto::pb::authority_admin_server::AuthorityAdmin;
use entitle_proto::pb::authority_server::Authority;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Error, Result};
use crate::{AuthorityState, MAX_MESSAGE_BYTES};
use crate::{ledger, reservations};
use entitle_codes::{self as codes, CodeSigningKey};
use entitle_proto::signing;
use entitle_proto::signing::registration_proof_bytes;

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

/// Serves both services on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<AuthorityState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::result::Result<(), tonic::transport::Error> {
    use entitle_proto::pb::authority_admin_server::AuthorityAdminServer;
    use entitle_proto::pb::authority_server::AuthorityServer;
    // Devices that missed their deadline release their licences even while nobody asks.
    let sweeper = tokio::spawn(sweep_overdue(state.clone()));
    let devices = AuthorityServer::new(DeviceService(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let admin = tonic::service::interceptor::InterceptedService::new(
        AuthorityAdminServer::new(AdminService(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        admin_interceptor(state),
    );
    let served = tonic::transport::Server::builder()
        // One span per call, so every event of a call names its method.
        .trace_fn(|request| tracing::info_span!("call", method = %request.uri().path()))
        .add_service(devices)
        .add_service(admin)
        // No Nagle: an acknowledgement must not wait for the peer's delayed ACK (40 ms).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    sweeper.abort();
    served
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
