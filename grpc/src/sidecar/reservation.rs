//! Licence reservation on the device: enable, request, install, return, cancel.

use entitle_proto::pb;

use super::runtime::Shared;
use super::{Result, SidecarError};

impl Shared {
    pub(crate) async fn reservation_enable(&self) -> Result<String> {
        self.command(|agent, now| Ok(agent.reservation_enable(now)?))
            .await?;
        Ok("License reservation is enabled.".into())
    }

    pub(crate) async fn reservation_disable(&self) -> Result<String> {
        self.command(|agent, now| Ok(agent.reservation_disable(now)?))
            .await?;
        Ok("License reservation is disabled.".into())
    }

    pub(crate) async fn reservation_cancel(&self) -> Result<String> {
        self.command(|agent, now| Ok(agent.reservation_cancel(now)?))
            .await?;
        Ok("The reservation request is cancelled.".into())
    }

    pub(crate) async fn reservation_request(&self) -> Result<pb::ReservationCodeReply> {
        Err(SidecarError::FailedPrecondition(
            "reservation codes are not available in this build yet".into(),
        ))
    }

    pub(crate) async fn reservation_install(
        &self,
        _code: &str,
    ) -> Result<pb::ReservationCodeReply> {
        Err(SidecarError::FailedPrecondition(
            "reservation codes are not available in this build yet".into(),
        ))
    }

    pub(crate) async fn reservation_return(&self, _code: &str) -> Result<pb::ReservationCodeReply> {
        Err(SidecarError::FailedPrecondition(
            "reservation codes are not available in this build yet".into(),
        ))
    }

    pub(crate) fn reservation_info(
        &self,
        status: &entitle_engine::licensing::Status,
    ) -> pb::ReservationInfo {
        pb::ReservationInfo {
            status: status.reservation.status.to_string(),
            pending_sequence: status.reservation.pending_sequence,
            ..Default::default()
        }
    }
}
