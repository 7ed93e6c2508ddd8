//! The `Authority` service: registration, renewals, authorisation, usage and
//! deregistration.

use super::*;

/// Most usage reports verified in one batch.
const VERIFY_BATCH: usize = 64;

type AckStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::UsageAck, Status>> + Send>>;

#[tonic::async_trait]
impl Authority for DeviceService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> std::result::Result<Response<pb::RegisterResponse>, Status> {
        self.0
            .register(request.into_inner(), Vec::new())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn register_replacing(
        &self,
        request: Request<pb::RegisterReplacingRequest>,
    ) -> std::result::Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        let inner = r
            .request
            .ok_or_else(|| Error::InvalidArgument("the registration request is missing".into()))?;
        if r.previous_key_proof.is_empty() {
            return Err(Error::InvalidArgument(
                "the proof from the previous key is missing".into(),
            )
            .into());
        }
        self.0
            .register(inner, r.previous_key_proof)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn renew_id(
        &self,
        request: Request<pb::Signed>,
    ) -> std::result::Result<Response<pb::RegisterResponse>, Status> {
        self.0.check_sync_deadline().await?;
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
        tracing::info!(instance = %certificate.instance_id, "ID certificate renewed");
        Ok(Response::new(pb::RegisterResponse {
            certificate: Some(self.0.sign("IdCertificate", &certificate)),
        }))
    }

    async fn authorize(
        &self,
        request: Request<pb::Signed>,
    ) -> std::result::Result<Response<pb::Signed>, Status> {
        self.0.check_sync_deadline().await?;
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
        tracing::info!(instance = %authorization.instance_id, "authorized");
        Ok(Response::new(self.0.sign("Authorization", &authorization)))
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
        tracing::info!(%instance, "device deregistered");
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
        // Stored in order, none after a report that failed (the device resends from there).
        let chain = Chain::new("an earlier report on this stream was refused");
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
                let satellite = state.satellite.is_some();
                for (report, signed) in state.open_reports(&batch).await.into_iter().zip(batch) {
                    let report = match report {
                        Ok(report) => report,
                        Err(e) => {
                            broken = Some(Status::from(e));
                            break;
                        }
                    };
                    let now = state.now();
                    let ack = state.store.submit_keyed(&chain, move |conn| {
                        let mut ack = ledger::store_report(conn, now, &report.0, &report.1);
                        // A satellite keeps each new report for the cloud, in the same
                        // transaction: stored here means delivered there, in time.
                        if satellite
                            && let Ok(stored) = &ack
                            && !stored.duplicate
                            && !stored.retired
                            && let Err(e) =
                                crate::satellite::sync::keep_for_cloud(conn, &report.0, &signed)
                        {
                            ack = Err(e);
                        }
                        ack
                    });
                    if queued.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
                if let Some(status) = broken {
                    tracing::info!(code = ?status.code(), reason = %status.message(), "usage stream ended");
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

#[tonic::async_trait]
impl SatelliteSync for SyncService {
    async fn sync(
        &self,
        request: Request<pb::Signed>,
    ) -> std::result::Result<Response<pb::Signed>, Status> {
        let outcome = self.0.take_sync(request.into_inner()).await?;
        Ok(Response::new(outcome.answer))
    }
}

impl AuthorityState {
    /// Registers a device (checking its proof of key possession), replacing a registration
    /// of its UDI in contact only as [`ledger::register`] allows.
    async fn register(
        &self,
        r: pb::RegisterRequest,
        previous_key_proof: Vec<u8>,
    ) -> Result<pb::RegisterResponse> {
        self.check_sync_deadline().await?;
        let udi = check_udi(r.udi.as_ref())?.clone();
        let device_key = signing::verifying_key(&r.device_public_key).map_err(Error::from)?;
        signing::verify_raw(
            &device_key,
            &registration_proof_bytes(&r.id_token, &udi, &r.device_public_key),
            &r.proof,
        )
        .map_err(|_| {
            Error::Unauthenticated(
                "the registration proof does not verify with the device key".into(),
            )
        })?;
        let (periods, now) = (self.periods, self.now());
        let certificate = self
            .store
            .run(move |conn| {
                let registration = ledger::Registration {
                    token: &r.id_token,
                    udi: &udi,
                    device_key: &r.device_public_key,
                    previous_key_proof: &previous_key_proof,
                };
                ledger::register(conn, now, &periods, &registration)
            })
            .await?;
        tracing::info!(instance = %certificate.instance_id, "device registered");
        self.device_keys
            .write()
            .insert(certificate.instance_id.clone(), device_key);
        Ok(pb::RegisterResponse {
            certificate: Some(self.sign("IdCertificate", &certificate)),
        })
    }
}
