//! The `Sidecar` gRPC service, and serving it with health and reflection on the local API's
//! listeners (see [`LocalApi`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use entitle_licensing::{Stamp, Status as AgentStatus};
use entitle_proto::pb;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::Result;
use super::convert::{limit_to_pb, table_from_pb, table_to_pb};
use super::local_api::LocalApi;
use super::runtime::{LEASE, Outbound, Shared, Sidecar};
use super::store::Spooled;

/// The `Sidecar` service of a running [`Sidecar`].
#[derive(Clone)]
pub struct SidecarService {
    shared: Arc<Shared>,
}

impl Sidecar {
    /// The gRPC service, to serve alongside others.
    pub fn service(&self) -> pb::sidecar_server::SidecarServer<SidecarService> {
        pb::sidecar_server::SidecarServer::new(SidecarService {
            shared: Arc::clone(&self.shared),
        })
    }

    /// The `Sidecar` service with gRPC health and reflection, as one set of routes.
    async fn routes(&self) -> tonic::service::Routes {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<pb::sidecar_server::SidecarServer<SidecarService>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(entitle_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| {
                tracing::error!(error = %e, "reflection is off");
                e
            })
            .ok();
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(health_service);
        if let Some(reflection) = reflection {
            routes.add_service(reflection);
        }
        routes.add_service(self.service());
        routes.routes()
    }

    /// Opens the local API's listeners as the configuration says ([`LocalApi::bind`]).
    pub async fn bind_local_api(&self) -> Result<LocalApi> {
        LocalApi::bind(&self.shared.config).await
    }

    /// Serves the local API on its socket, and on TCP with the credential when configured,
    /// until `shutdown` completes; then removes the socket.
    pub async fn serve_local(
        &self,
        api: LocalApi,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::result::Result<(), tonic::transport::Error> {
        let LocalApi { socket, unix, tcp } = api;
        let routes = self.routes().await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
            Ok::<(), tonic::transport::Error>(())
        };
        let on_unix = tonic::transport::Server::builder()
            .add_routes(routes.clone())
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(unix),
                until_stopped(stopped.clone()),
            );
        let on_tcp = async move {
            let Some((listener, guard)) = tcp else {
                return Ok(());
            };
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .layer(tonic::service::InterceptorLayer::new(
                    move |request: Request<()>| guard.check(request),
                ))
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, until_stopped(stopped))
                .await
        };
        let served = tokio::try_join!(signal, on_unix, on_tcp).map(drop);
        drop(socket);
        served
    }
}

fn reply(message: Result<String>) -> std::result::Result<Response<pb::CommandReply>, Status> {
    Ok(Response::new(pb::CommandReply { message: message? }))
}

fn unix(stamp: Option<Stamp>) -> Option<i64> {
    stamp.and_then(|s| s.wall_unix_secs)
}

/// The status as the wire carries it.
fn license_status(shared: &Shared, status: &AgentStatus) -> pb::LicenseStatus {
    let r = &status.registration;
    let a = &status.authorization;
    let failure = |o: &entitle_licensing::Outcome| match o {
        entitle_licensing::Outcome::Succeeded => None,
        entitle_licensing::Outcome::Failed { reason } => Some(reason.clone()),
    };
    let totals = shared.stats.totals.lock().clone();
    let limits = shared.limits.borrow().clone();
    pb::LicenseStatus {
        udi: Some(shared.config.udi.clone()),
        callhome_url: shared.callhome_url().unwrap_or_default(),
        registration: Some(pb::RegistrationInfo {
            status: r.status.to_string(),
            smart_account: r.smart_account.clone(),
            virtual_account: r.virtual_account.clone(),
            export_controlled: r.export_controlled,
            initial_registration: unix(r.initial_registration),
            last_renewal_attempt: r
                .last_renewal_attempt
                .as_ref()
                .and_then(|a| unix(Some(a.at))),
            last_renewal_failure: r
                .last_renewal_attempt
                .as_ref()
                .and_then(|a| failure(&a.outcome)),
            next_renewal_attempt: unix(r.next_renewal_attempt),
            expires: unix(r.expires),
            last_failure: r.last_failure.as_ref().map(|f| f.reason.clone()),
            last_failure_at: r.last_failure.as_ref().and_then(|f| unix(Some(f.at))),
        }),
        authorization: Some(pb::AuthorizationInfo {
            status: a.status.to_string(),
            evaluation_remaining_secs: a.evaluation_remaining.as_secs(),
            grants: a
                .entitlements
                .iter()
                .map(|e| pb::Grant {
                    tag: e.licence.clone(),
                    requested: e.requested,
                    granted: e.granted,
                    status: match e.status {
                        entitle_licensing::EntitlementStatus::Authorized => {
                            pb::GrantStatus::Authorized
                        }
                        entitle_licensing::EntitlementStatus::OutOfCompliance => {
                            pb::GrantStatus::OutOfCompliance
                        }
                    } as i32,
                    ..Default::default()
                })
                .collect(),
            last_communication_attempt: a
                .last_communication_attempt
                .as_ref()
                .and_then(|x| unix(Some(x.at))),
            last_communication_failure: a
                .last_communication_attempt
                .as_ref()
                .and_then(|x| failure(&x.outcome)),
            next_communication_attempt: unix(a.next_communication_attempt),
            communication_deadline: unix(a.communication_deadline),
            grace_ends: unix(a.grace_ends),
        }),
        reservation: Some(shared.reservation_info(status)),
        enforcement: serde_json::to_value(status.enforcement)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        selection: status
            .selection
            .iter()
            .map(|(tag, count)| pb::LicenseCount {
                tag: tag.clone(),
                count: *count,
            })
            .collect(),
        entitlements: limits
            .iter()
            .map(|(tag, limit)| {
                let (admitted, rejected) = totals.get(tag).copied().unwrap_or_default();
                pb::EntitlementState {
                    tag: tag.clone(),
                    limit: Some(limit_to_pb(limit)),
                    admitted,
                    rejected,
                }
            })
            .collect(),
        spool: Some(pb::SpoolInfo {
            depth: shared.spool_depth(),
            capacity: shared.config.spool_capacity,
            delivered: shared.stats.delivered.load(Ordering::Relaxed),
            last_failure: shared.stats.last_delivery_failure.lock().clone(),
        }),
        last_callhome_success: *shared.stats.last_success_unix.lock(),
        attached_engines: shared.stats.attached.load(Ordering::Relaxed),
        trust: Some(shared.trust.lock().to_pb()),
        callhome_proxy: shared
            .callhome_proxy()
            .map(|p| entitle_proto::tls::proxy_shown(&p))
            .unwrap_or_default(),
    }
}

/// Engine ids: 1 to 64 of `[A-Za-z0-9-_.]`.
fn valid_engine_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Counts an attached engine while it is attached.
struct AttachedGuard(Arc<Shared>);

impl Drop for AttachedGuard {
    fn drop(&mut self) {
        self.0.stats.attached.fetch_sub(1, Ordering::Relaxed);
        self.0.refresh_metrics();
    }
}

type AttachStream =
    Pin<Box<dyn Stream<Item = std::result::Result<pb::AttachResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::sidecar_server::Sidecar for SidecarService {
    async fn register(
        &self,
        request: Request<pb::RegisterCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(self.shared.register(&request.into_inner().id_token).await)
    }

    async fn deregister(
        &self,
        _: Request<pb::DeregisterCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(self.shared.deregister().await)
    }

    async fn renew_id(
        &self,
        _: Request<pb::RenewIdCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(self.shared.renew_id().await)
    }

    async fn renew_authorization(
        &self,
        _: Request<pb::RenewAuthorizationCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(self.shared.renew_authorization().await)
    }

    async fn set_call_home_proxy(
        &self,
        request: Request<pb::SetCallHomeProxyCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(
            self.shared
                .set_callhome_proxy(&request.into_inner().url)
                .await,
        )
    }

    async fn renew_trust(
        &self,
        _: Request<pb::RenewTrustCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(self.shared.renew_trust().await)
    }

    async fn set_call_home(
        &self,
        request: Request<pb::SetCallHomeCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(
            self.shared
                .set_callhome(request.into_inner().url.trim())
                .await,
        )
    }

    async fn set_selection(
        &self,
        request: Request<pb::SetSelectionCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        let changes = request
            .into_inner()
            .counts
            .into_iter()
            .map(|c| (c.tag, c.count))
            .collect();
        reply(self.shared.set_selection(changes).await)
    }

    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> std::result::Result<Response<pb::LicenseStatus>, Status> {
        let status = self.shared.status();
        Ok(Response::new(license_status(&self.shared, &status)))
    }

    async fn get_recent_usage(
        &self,
        request: Request<pb::GetRecentUsageRequest>,
    ) -> std::result::Result<Response<pb::UsageHistory>, Status> {
        let limit = match request.into_inner().limit {
            0 => 10,
            n => n.min(200),
        };
        let snapshots = self.shared.store.history(limit)?;
        Ok(Response::new(pb::UsageHistory { snapshots }))
    }

    async fn get_event_log(
        &self,
        request: Request<pb::GetEventLogRequest>,
    ) -> std::result::Result<Response<pb::EventLog>, Status> {
        let limit = match request.into_inner().limit {
            0 => 50,
            n => n.min(10_000),
        };
        let events = super::events::event_log(&self.shared.store, limit)?;
        Ok(Response::new(pb::EventLog { events }))
    }

    async fn reservation_enable(
        &self,
        _: Request<pb::ReservationEnableCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(self.shared.reservation_enable().await)
    }

    async fn reservation_disable(
        &self,
        _: Request<pb::ReservationDisableCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(self.shared.reservation_disable().await)
    }

    async fn reservation_request(
        &self,
        _: Request<pb::ReservationRequestCommand>,
    ) -> std::result::Result<Response<pb::ReservationCodeReply>, Status> {
        Ok(Response::new(self.shared.reservation_request().await?))
    }

    async fn reservation_install(
        &self,
        request: Request<pb::ReservationInstallCommand>,
    ) -> std::result::Result<Response<pb::ReservationCodeReply>, Status> {
        let code = request.into_inner().authorization_code;
        Ok(Response::new(self.shared.reservation_install(&code).await?))
    }

    async fn reservation_return(
        &self,
        request: Request<pb::ReservationReturnCommand>,
    ) -> std::result::Result<Response<pb::ReservationCodeReply>, Status> {
        let code = request.into_inner().authorization_code;
        Ok(Response::new(self.shared.reservation_return(&code).await?))
    }

    async fn reservation_cancel(
        &self,
        _: Request<pb::ReservationCancelCommand>,
    ) -> std::result::Result<Response<pb::CommandReply>, Status> {
        reply(self.shared.reservation_cancel().await)
    }

    type AttachStream = AttachStream;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AttachRequest>>,
    ) -> std::result::Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::AttachRequest {
                kind: Some(pb::attach_request::Kind::Hello(hello)),
            }) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "an attaching engine must say hello first",
                ));
            }
        };
        if !valid_engine_id(&hello.engine_id) {
            return Err(Status::invalid_argument(format!(
                "engine id {:?} is invalid: use 1 to 64 letters, digits and - _ .",
                hello.engine_id
            )));
        }
        let limits = self.shared.limits.borrow().clone();
        if let Some(unknown) = hello
            .tags
            .iter()
            .find(|tag| !limits.iter().any(|(t, _)| t == *tag))
        {
            return Err(Status::invalid_argument(format!(
                "entitlement {unknown:?} is not in this sidecar's product"
            )));
        }
        let applied = match &hello.applied {
            Some(table) => table_from_pb(table)?,
            None => Vec::new(),
        };
        if let Some((unknown, _)) = applied.iter().find(|(tag, _)| !hello.tags.contains(tag)) {
            return Err(Status::invalid_argument(format!(
                "the applied table names {unknown:?}, which the hello does not"
            )));
        }
        let shared = Arc::clone(&self.shared);
        shared.stats.attached.fetch_add(1, Ordering::Relaxed);
        let guard = AttachedGuard(Arc::clone(&shared));
        shared.refresh_metrics();
        let (tx, rx) = mpsc::channel(16);
        let engine = hello.engine_id;
        let (epoch, mut shares) = shared.share_attach(&engine, hello.tags, applied);
        // Snapshots are spooled in order off the stream's task, so that a slow write to the
        // store never holds up the reports that keep the engine's lease.
        let (to_spool, mut spooling) = mpsc::channel::<pb::EngineSnapshot>(64);
        {
            let (shared, answers, engine) = (Arc::clone(&shared), tx.clone(), engine.clone());
            tokio::spawn(async move {
                while let Some(snapshot) = spooling.recv().await {
                    let (shared, engine) = (Arc::clone(&shared), engine.clone());
                    let answer =
                        tokio::task::spawn_blocking(move || spooled(&shared, &engine, &snapshot))
                            .await
                            .unwrap_or_else(|e| {
                                Err(Status::internal(format!("the spool task failed: {e}")))
                            });
                    let stop = answer.is_err();
                    if answers.send(answer).await.is_err() || stop {
                        break;
                    }
                }
            });
        }
        tokio::spawn(async move {
            let _guard = guard;
            loop {
                tokio::select! {
                    share = shares.recv() => {
                        let next = match share {
                            Some(Outbound::Table(sequence, table)) => {
                                let mut table = table_to_pb(&table, None);
                                table.sequence = sequence;
                                Ok(pb::AttachResponse {
                                    kind: Some(pb::attach_response::Kind::Limits(table)),
                                })
                            }
                            Some(Outbound::Expired) => Err(Status::deadline_exceeded(format!(
                                "nothing heard from engine {engine} for {LEASE:?}: its share is freed; attach again"
                            ))),
                            None => Err(Status::unavailable("the sidecar is stopping")),
                        };
                        let stop = next.is_err();
                        if tx.send(next).await.is_err() || stop {
                            break;
                        }
                    }
                    message = inbound.message() => {
                        let answer = match message {
                            Ok(Some(pb::AttachRequest {
                                kind: Some(pb::attach_request::Kind::Snapshot(snapshot)),
                            })) => {
                                shared.share_heard(&engine, epoch);
                                if to_spool.send(snapshot).await.is_err() {
                                    break;
                                }
                                continue;
                            }
                            Ok(Some(pb::AttachRequest {
                                kind: Some(pb::attach_request::Kind::Report(report)),
                            })) => {
                                shared.share_report(&engine, epoch, &report);
                                Ok(pb::AttachResponse {
                                    kind: Some(pb::attach_response::Kind::ReportAck(pb::ReportAck {
                                        sequence: report.sequence,
                                        lease_millis: u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX),
                                    })),
                                })
                            }
                            Ok(Some(_)) => Err(Status::invalid_argument(
                                "only snapshots and reports may follow the hello",
                            )),
                            Ok(None) | Err(_) => break,
                        };
                        let stop = answer.is_err();
                        if tx.send(answer).await.is_err() || stop {
                            break;
                        }
                    }
                }
            }
            // The share stays in force until the lease runs out.
            shared.share_detach(&engine, epoch);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> std::result::Result<Response<pb::CheckResponse>, Status> {
        let request = request.into_inner();
        let entitlement =
            self.shared.gate.entitlement(&request.tag).ok_or_else(|| {
                Status::invalid_argument(format!("no entitlement {:?}", request.tag))
            })?;
        let admitted = self
            .shared
            .checker
            .lock()
            .check_n(entitlement, request.count.max(1))
            .is_admit();
        Ok(Response::new(pb::CheckResponse { admitted }))
    }
}

/// Offers an engine's snapshot to the spool; the answer for the stream.
fn spooled(
    shared: &Shared,
    engine: &str,
    snapshot: &pb::EngineSnapshot,
) -> std::result::Result<pb::AttachResponse, Status> {
    match shared.spool_engine(engine, snapshot) {
        Ok(Spooled::Stored) => Ok(ack(snapshot.sequence, false)),
        Ok(Spooled::Duplicate) => Ok(ack(snapshot.sequence, true)),
        Ok(Spooled::Full) => Err(Status::resource_exhausted(format!(
            "the usage spool is full ({} snapshots wait for the authority); keep snapshot {} and resend it later",
            shared.config.spool_capacity, snapshot.sequence
        ))),
        Ok(Spooled::OutOfOrder { expected }) => Err(Status::failed_precondition(format!(
            "snapshot {} skips ahead; resend from snapshot {expected}",
            snapshot.sequence
        ))),
        Err(e) => Err(e.into()),
    }
}

fn ack(sequence: u64, duplicate: bool) -> pb::AttachResponse {
    pb::AttachResponse {
        kind: Some(pb::attach_response::Kind::Ack(pb::SnapshotAck {
            sequence,
            duplicate,
        })),
    }
}
