//! The `AuthorityAdmin` service: accounts, pools, tokens, instances, reservations, usage
//! and the audit log, each call authenticated by the admin interceptor.

use super::*;

macro_rules! admin_call {
    ($self:ident, $request:ident, |$conn:ident, $now:ident, $r:ident| $body:expr) => {{
        let $r = $request.into_inner();
        let $now = $self.0.now();
        let value = $self.0.store.run(move |$conn| $body).await?;
        tracing::debug!("admin call done");
        Ok(Response::new(value))
    }};
}

#[tonic::async_trait]
impl AuthorityAdmin for AdminService {
    async fn create_smart_account(
        &self,
        request: Request<pb::CreateSmartAccountRequest>,
    ) -> std::result::Result<Response<pb::SmartAccount>, Status> {
        self.0.not_on_satellite("creating accounts")?;
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
        self.0.not_on_satellite("creating accounts")?;
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
        self.0.not_on_satellite("adding licences")?;
        admin_call!(self, request, |conn, now, r| ledger::add_licenses(
            conn, now, &r
        ))
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> std::result::Result<Response<pb::ListPoolsResponse>, Status> {
        let periods = self.0.periods;
        admin_call!(self, request, |conn, now, r| {
            ledger::expire_overdue(conn, now, &periods)?;
            ledger::list_pools(conn, now, &r.smart_account, &r.virtual_account)
                .map(|pools| pb::ListPoolsResponse { pools })
        })
    }

    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> std::result::Result<Response<pb::TransferResponse>, Status> {
        self.0.not_on_satellite("transferring licences")?;
        let periods = self.0.periods;
        admin_call!(self, request, |conn, now, r| {
            ledger::expire_overdue(conn, now, &periods)?;
            ledger::transfer(conn, now, &r)
        })
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> std::result::Result<Response<pb::Token>, Status> {
        self.0.not_on_satellite("creating tokens")?;
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
        self.0.not_on_satellite("revoking tokens")?;
        admin_call!(self, request, |conn, now, r| ledger::revoke_token(
            conn, now, &r.id
        ))
    }

    async fn list_instances(
        &self,
        request: Request<pb::ListInstancesRequest>,
    ) -> std::result::Result<Response<pb::ListInstancesResponse>, Status> {
        let periods = self.0.periods;
        admin_call!(self, request, |conn, now, r| {
            ledger::expire_overdue(conn, now, &periods)?;
            ledger::list_instances(conn, &r.smart_account, &r.virtual_account)
                .map(|instances| pb::ListInstancesResponse { instances })
        })
    }

    async fn remove_instance(
        &self,
        request: Request<pb::InstanceRequest>,
    ) -> std::result::Result<Response<pb::Instance>, Status> {
        self.0.not_on_satellite("removing instances")?;
        let state = self.0.clone();
        let r = request.into_inner();
        let now = state.now();
        let instance = r.instance_id.clone();
        let removed = state
            .store
            .run(move |conn| ledger::remove_instance(conn, now, &r))
            .await?;
        // Its signatures are no longer taken from the cache; the store refuses them.
        state.device_keys.write().remove(&instance);
        tracing::info!(%instance, "instance removed by the operator");
        Ok(Response::new(removed))
    }

    async fn allow_replace(
        &self,
        request: Request<pb::InstanceRequest>,
    ) -> std::result::Result<Response<pb::Instance>, Status> {
        self.0.not_on_satellite("allowing a replacement")?;
        admin_call!(self, request, |conn, now, r| ledger::allow_replace(
            conn, now, &r
        ))
    }

    async fn set_catalogue(
        &self,
        request: Request<pb::CatalogueEntry>,
    ) -> std::result::Result<Response<pb::CatalogueEntry>, Status> {
        self.0.not_on_satellite("setting the catalogue")?;
        admin_call!(self, request, |conn, now, r| ledger::set_catalogue(
            conn, now, &r
        ))
    }

    async fn list_catalogue(
        &self,
        request: Request<pb::ListCatalogueRequest>,
    ) -> std::result::Result<Response<pb::ListCatalogueResponse>, Status> {
        admin_call!(self, request, |conn, _now, _r| ledger::list_catalogue(conn)
            .map(|entries| pb::ListCatalogueResponse { entries }))
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
        admin_call!(self, request, |conn, _now, r| ledger::list_audit(conn, &r)
            .map(|entries| pb::ListAuditResponse { entries }))
    }

    async fn authorize_reservation(
        &self,
        request: Request<pb::AuthorizeReservationRequest>,
    ) -> std::result::Result<Response<pb::Reservation>, Status> {
        let r = request.into_inner();
        if self.0.satellite.is_some() {
            return Ok(Response::new(self.0.queue_reservation_request(r).await?));
        }
        let key = self.0.codes_key.clone();
        let request = Request::new(r);
        admin_call!(self, request, |conn, now, r| {
            reservations::authorize_request(conn, now, &key, &r)
        })
    }

    async fn return_reservation(
        &self,
        request: Request<pb::ReturnReservationRequest>,
    ) -> std::result::Result<Response<pb::ReturnReservationResponse>, Status> {
        let r = request.into_inner();
        if self.0.satellite.is_some() {
            return Ok(Response::new(self.0.queue_reservation_return(r).await?));
        }
        let request = Request::new(r);
        admin_call!(self, request, |conn, now, r| {
            reservations::return_code(conn, now, &r.return_code).map(
                |(reservation, already_returned)| pb::ReturnReservationResponse {
                    reservation: Some(reservation),
                    already_returned,
                },
            )
        })
    }

    async fn delegate_satellite(
        &self,
        request: Request<pb::DelegateSatelliteRequest>,
    ) -> std::result::Result<Response<pb::Signed>, Status> {
        self.0.not_on_satellite("delegating to satellites")?;
        let key = self.0.key.clone();
        admin_call!(self, request, |conn, now, r| ledger::satellites::delegate(
            conn, now, &key, &r
        ))
    }

    async fn revoke_satellite(
        &self,
        request: Request<pb::RevokeSatelliteRequest>,
    ) -> std::result::Result<Response<pb::SatelliteInfo>, Status> {
        self.0.not_on_satellite("revoking satellites")?;
        let r = request.into_inner();
        let now = self.0.now();
        let info = self
            .0
            .store
            .run(move |conn| ledger::satellites::revoke(conn, now, &r.name))
            .await?;
        self.0.refresh_revocations().await?;
        Ok(Response::new(info))
    }

    async fn list_satellites(
        &self,
        request: Request<pb::ListSatellitesRequest>,
    ) -> std::result::Result<Response<pb::ListSatellitesResponse>, Status> {
        self.0.not_on_satellite("listing satellites")?;
        admin_call!(self, request, |conn, _now, _r| ledger::satellites::list(
            conn
        )
        .map(|satellites| pb::ListSatellitesResponse { satellites }))
    }

    async fn export_sync(
        &self,
        _request: Request<pb::ExportSyncRequest>,
    ) -> std::result::Result<Response<pb::SyncFile>, Status> {
        let request = self.0.export_sync().await?;
        Ok(Response::new(pb::SyncFile {
            content: Some(pb::sync_file::Content::Request(request)),
        }))
    }

    async fn import_sync(
        &self,
        request: Request<pb::SyncFile>,
    ) -> std::result::Result<Response<pb::ImportSyncResponse>, Status> {
        let on_satellite = self.0.satellite.is_some();
        match (request.into_inner().content, on_satellite) {
            (Some(pb::sync_file::Content::Answer(answer)), true) => {
                let applied = self.0.import_answer(&answer).await?;
                Ok(Response::new(pb::ImportSyncResponse {
                    answer: None,
                    summary: applied.summary,
                    changed: applied.changed,
                }))
            }
            (Some(pb::sync_file::Content::Request(signed)), false) => {
                let outcome = self.0.take_sync(signed).await?;
                tracing::info!(summary = %outcome.summary, "satellite sync file imported");
                Ok(Response::new(pb::ImportSyncResponse {
                    answer: Some(pb::SyncFile {
                        content: Some(pb::sync_file::Content::Answer(outcome.answer)),
                    }),
                    summary: outcome.summary,
                    changed: outcome.changed,
                }))
            }
            (Some(pb::sync_file::Content::Request(_)), true) => Err(Error::FailedPrecondition(
                "this is a satellite's own sync request: import it on the cloud".into(),
            )
            .into()),
            (Some(pb::sync_file::Content::Answer(_)), false) => Err(Error::FailedPrecondition(
                "this is the cloud's answer to a satellite: import it on the satellite".into(),
            )
            .into()),
            (None, _) => Err(Error::InvalidArgument("the sync file is empty".into()).into()),
        }
    }

    async fn satellite_status(
        &self,
        _request: Request<pb::SatelliteStatusRequest>,
    ) -> std::result::Result<Response<pb::SatelliteInfo>, Status> {
        Ok(Response::new(self.0.satellite_status().await?))
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
