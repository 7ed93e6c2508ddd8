//! Licence reservation on the device: enable, request, install, return, cancel.
//!
//! The request code is made from the UDI and the agent's pending request sequence, so the
//! same pending request prints the same code. An install verifies the authorisation code
//! with the authority's code key (no shared secret on the device), for this UDI and the
//! pending request, then installs it in the agent, whose new limits the driver's step
//! applies at once. The installed code is kept in the local store to make the return code.

use entitle_licensing::{ReservationKind, ReservationStatus, Status};
use entitle_proto::pb;

use super::runtime::Shared;
use super::{Result, SidecarError};
use entitle_codes::{self as codes, Udi};

/// Store keys of the installed code, its confirmation code and the latest request sequence.
const INSTALLED_CODE: &str = "reservation_code";
const CONFIRMATION: &str = "reservation_confirmation";
const LAST_REQUEST: &str = "reservation_last_request";

/// How many earlier requests a never-installed PLR code is tried against (it carries no
/// sequence; its signature binds one).
const RETURN_LOOKBACK: u32 = 1000;

impl Shared {
    fn udi(&self) -> Result<Udi> {
        Udi::new(&self.config.udi.product_id, &self.config.udi.serial)
            .map_err(|e| SidecarError::Config(e.to_string()))
    }

    pub(crate) async fn reservation_enable(&self) -> Result<String> {
        self.command(|agent, now| Ok(agent.reservation_enable(now)?))
            .await?;
        Ok("License reservation is enabled; `license smart reservation request` prints the request code.".into())
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
        let udi = self.udi()?;
        // Refuse a UDI too long for a request code before the agent moves.
        codes::make_request(&udi, 1)
            .map_err(|e| SidecarError::FailedPrecondition(e.to_string()))?;
        let mut sequence = 0;
        self.command(|agent, now| {
            sequence = agent.reservation_request(now)?;
            Ok(())
        })
        .await?;
        let last = self
            .store
            .get_text(LAST_REQUEST)?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0u32);
        if sequence > last {
            self.store
                .put_text(LAST_REQUEST, Some(&sequence.to_string()))?;
        }
        let code = codes::make_request(&udi, sequence)
            .map_err(|e| SidecarError::FailedPrecondition(e.to_string()))?;
        Ok(pb::ReservationCodeReply {
            code,
            message: format!(
                "Reservation request {sequence}: enter this request code in the portal, then install the authorization code it answers."
            ),
        })
    }

    pub(crate) async fn reservation_install(&self, code: &str) -> Result<pb::ReservationCodeReply> {
        let key = &self.codes_key()?;
        let udi = self.udi()?;
        let code = codes::normalize_authorization(code)
            .map_err(|e| SidecarError::InvalidArgument(e.to_string()))?;
        let status = self.status();
        let pending = match (
            status.reservation.status,
            status.reservation.pending_sequence,
        ) {
            (ReservationStatus::RequestPending, Some(sequence)) => sequence,
            (ReservationStatus::Installed, _) => {
                return Err(SidecarError::FailedPrecondition(
                    "a licence reservation is already installed: return it first".into(),
                ));
            }
            (ReservationStatus::Disabled, _) => {
                return Err(SidecarError::FailedPrecondition(
                    "licence reservation is disabled: enable it first".into(),
                ));
            }
            _ => {
                return Err(SidecarError::FailedPrecondition(
                    "no reservation request is pending: request one first (a cancelled request cannot be installed)".into(),
                ));
            }
        };
        let verified = codes::verify_authorization(&code, key, &udi, pending)
            .map_err(|e| SidecarError::InvalidArgument(e.to_string()))?;
        let reserved = verified.into_reserved(pending);
        let confirmation = codes::confirmation(&code, &udi);
        let (_, status) = self
            .command(|agent, now| Ok(agent.reservation_install(now, reserved)?))
            .await?;
        self.store.put_text(INSTALLED_CODE, Some(&code))?;
        self.store.put_text(CONFIRMATION, Some(&confirmation))?;
        self.pin_codes_key();
        let what = match status.reservation.installed.as_ref().map(|r| &r.kind) {
            Some(ReservationKind::Permanent) => "every entitlement is unlimited".to_owned(),
            Some(ReservationKind::Specific { licences }) => {
                let list: Vec<String> =
                    licences.iter().map(|(t, n)| format!("{t} x {n}")).collect();
                format!("reserved {}", list.join(", "))
            }
            None => String::new(),
        };
        tracing::info!(%confirmation, "reservation installed");
        Ok(pb::ReservationCodeReply {
            code: confirmation,
            message: format!(
                "Reservation installed ({what}); the limits apply now. Confirmation code:"
            ),
        })
    }

    pub(crate) async fn reservation_return(&self, code: &str) -> Result<pb::ReservationCodeReply> {
        let udi = self.udi()?;
        if !code.trim().is_empty() {
            return self.return_uninstalled(&udi, code);
        }
        let status = self.status();
        let Some(installed) = status.reservation.installed.clone() else {
            return Err(SidecarError::FailedPrecondition(
                "no licence reservation is installed; to return a code that was never installed, use `license smart reservation return authorization <code>`".into(),
            ));
        };
        let code = self.store.get_text(INSTALLED_CODE)?.ok_or_else(|| {
            SidecarError::Internal(
                "the installed authorization code is missing from the store".into(),
            )
        })?;
        let return_code = codes::make_return(&udi, installed.sequence, &code)
            .map_err(|e| SidecarError::Internal(e.to_string()))?;
        self.command(|agent, now| {
            agent.reservation_return(now)?;
            Ok(())
        })
        .await?;
        self.store.put_text(INSTALLED_CODE, None)?;
        Ok(pb::ReservationCodeReply {
            code: return_code,
            message: "Reservation removed; the device is unregistered again. Enter this return code in the portal to put the licences back:".into(),
        })
    }

    /// A return code for an authorisation code that was never installed: it must verify
    /// for this device and one of its requests, and must not be the installed one.
    fn return_uninstalled(&self, udi: &Udi, code: &str) -> Result<pb::ReservationCodeReply> {
        let key = &self.codes_key()?;
        let code = codes::normalize_authorization(code)
            .map_err(|e| SidecarError::InvalidArgument(e.to_string()))?;
        if self.store.get_text(INSTALLED_CODE)?.as_deref() == Some(code.as_str()) {
            return Err(SidecarError::FailedPrecondition(
                "that authorization code is installed: use `license smart reservation return`"
                    .into(),
            ));
        }
        let sequence = match codes::peek_authorization(&code)
            .map_err(|e| SidecarError::InvalidArgument(e.to_string()))?
        {
            codes::Unverified::Slr { sequence, .. } => {
                codes::verify_authorization(&code, key, udi, sequence)
                    .map_err(|e| SidecarError::InvalidArgument(e.to_string()))?;
                sequence
            }
            codes::Unverified::Plr(_) => {
                let last = self
                    .store
                    .get_text(LAST_REQUEST)?
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0u32);
                let first = last.saturating_sub(RETURN_LOOKBACK).max(1);
                (first..=last)
                    .rev()
                    .find(|s| codes::verify_authorization(&code, key, udi, *s).is_ok())
                    .ok_or_else(|| {
                        SidecarError::InvalidArgument(
                            "the authorization code does not verify for any request of this device"
                                .into(),
                        )
                    })?
            }
        };
        let return_code = codes::make_return(udi, sequence, &code)
            .map_err(|e| SidecarError::InvalidArgument(e.to_string()))?;
        Ok(pb::ReservationCodeReply {
            code: return_code,
            message: format!(
                "Return code for the authorization code of request {sequence} (never installed):"
            ),
        })
    }

    /// The key codes are checked against (the pinned one, see [`crate::trust`]).
    fn codes_key(&self) -> Result<entitle_codes::CodeVerifyingKey> {
        self.trust.lock().codes().ok_or_else(|| {
            SidecarError::FailedPrecondition(
                "no reservation code key is configured (codes_public_key), so no code can be verified".into(),
            )
        })
    }

    /// Pins the codes key a code installed under; a store failure is logged (the code is
    /// installed, and the key is pinned at the next installation or registration).
    fn pin_codes_key(&self) {
        let pinned = self.trust.lock().pin_codes(&self.store);
        match pinned {
            Ok(Some(message)) => self.record(&[crate::events::Recorded::Trust {
                message,
                warning: false,
            }]),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot pin the reservation code key"),
        }
    }

    pub(crate) fn reservation_info(&self, status: &Status) -> pb::ReservationInfo {
        let r = &status.reservation;
        let mut info = pb::ReservationInfo {
            status: r.status.to_string(),
            pending_sequence: r.pending_sequence,
            ..Default::default()
        };
        if let (Some(sequence), Ok(udi)) = (r.pending_sequence, self.udi()) {
            info.request_code = codes::make_request(&udi, sequence).ok();
        }
        info.confirmation_code = self.store.get_text(CONFIRMATION).ok().flatten();
        if let Some(installed) = &r.installed {
            info.smart_account = Some(installed.smart_account.clone());
            info.virtual_account = installed.virtual_account.clone();
            info.export_controlled = Some(installed.export_controlled);
            info.installed_at = r.installed_at.and_then(|s| s.wall_unix_secs);
            match &installed.kind {
                ReservationKind::Permanent => info.kind = Some("PERMANENT".into()),
                ReservationKind::Specific { licences } => {
                    info.kind = Some("SPECIFIC".into());
                    info.reserved = licences
                        .iter()
                        .map(|(tag, count)| pb::LicenseCount {
                            tag: tag.clone(),
                            count: *count,
                        })
                        .collect();
                }
            }
        }
        info
    }
}
