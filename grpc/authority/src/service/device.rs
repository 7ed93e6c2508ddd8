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
                    let (report, body_hash) = report;
                    let ack = state.store.submit_grouped(
                        &chain,
                        StreamReport {
                            now: state.now(),
                            report,
                            body_hash,
                            signed,
                            satellite,
                            chain: chain.clone(),
                        },
                    );
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

/// One verified report of a usage stream, for the store to take together with the reports
/// of every stream queued beside it (see [`crate::store::Grouped`]).
pub(super) struct StreamReport {
    pub(super) now: i64,
    pub(super) report: pb::UsageReport,
    pub(super) body_hash: Vec<u8>,
    /// As received, for the cloud (satellites only).
    pub(super) signed: pb::Signed,
    /// Whether this authority is a satellite, which keeps each new report for the cloud.
    pub(super) satellite: bool,
    /// The stream's chain (see [`Chain`]): once one of its reports is refused, its later
    /// reports store nothing.
    pub(super) chain: Chain,
}

impl crate::store::Grouped for StreamReport {
    type Output = pb::UsageAck;

    fn run_one(&self, conn: &crate::store::Db) -> Result<pb::UsageAck> {
        if self.chain.failed() {
            return Err(self.chain.refusal());
        }
        let mut ack = ledger::store_report(conn, self.now, &self.report, &self.body_hash);
        // A satellite keeps each new report for the cloud, in the same transaction: stored
        // here means delivered there, in time.
        if self.satellite
            && let Ok(stored) = &ack
            && !stored.duplicate
            && !stored.retired
            && let Err(e) = crate::satellite::sync::keep_for_cloud(conn, &self.report, &self.signed)
        {
            ack = Err(e);
        }
        // A run falls back to each alone in turn: the stream's next report must see this.
        if ack.is_err() {
            self.chain.fail();
        }
        ack
    }

    fn run_all(conn: &crate::store::Db, items: &[&Self]) -> Result<Vec<Result<pb::UsageAck>>> {
        let reports: Vec<&pb::UsageReport> = items.iter().map(|item| &item.report).collect();
        let mut batch = ledger::ReportBatch::read(conn, &reports)?;
        // Streams refused in this run: their chains fail only with the answers, as an
        // error here undoes the whole run and each report runs again alone.
        let mut refused_now: Vec<&Chain> = Vec::new();
        let mut answers = Vec::with_capacity(items.len());
        let mut kept = Vec::new();
        for item in items {
            if item.chain.failed() || refused_now.iter().any(|c| c.is(&item.chain)) {
                answers.push(Err(item.chain.refusal()));
                continue;
            }
            let ack = batch.add(item.now, &item.report, &item.body_hash);
            match &ack {
                Ok(stored) if item.satellite && !stored.duplicate && !stored.retired => {
                    kept.push((&item.report, &item.signed));
                }
                Ok(_) => {}
                Err(_) => refused_now.push(&item.chain),
            }
            answers.push(ack);
        }
        batch.write(conn)?;
        crate::satellite::sync::keep_all_for_cloud(conn, &kept)?;
        Ok(answers)
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
            .insert(certificate.instance_id.clone(), device_key.into());
        Ok(pb::RegisterResponse {
            certificate: Some(self.sign("IdCertificate", &certificate)),
        })
    }
}
