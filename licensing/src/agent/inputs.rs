//! The agent's inputs: the operator's commands and the outcomes of the actions it asked
//! for, for each of the three state machines.

use super::*;

/// The longest period an authority's answer may set: 100 years.
const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 86_400);

/// An authority's answer to an [`Action::Authorize`], as its signature vouches for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorized {
    /// Licence tag to count granted.
    pub granted: Counts,
    /// What each licence is worth (TPS per unit, policy); a licence left out is worth what
    /// the product says.
    pub worth: Catalogue,
    /// When to renew, from now (`None`: the configured `authorization_renewal`).
    pub renewal: Option<Duration>,
    /// The communication deadline, from now (`None`: the configured
    /// `communication_deadline`).
    pub deadline: Option<Duration>,
}

impl Agent {
    // ----- Registration -----

    /// `license smart register <token>`: starts a registration; the next poll returns a
    /// [`Action::Register`]. Refused while registered or registering, and while a licence
    /// reservation is requested or installed.
    pub fn register(&mut self, now_nanos: u64, token: IdToken) -> Result<()> {
        self.enter(now_nanos);
        match self.state.reservation {
            Reservation::Pending { .. } => {
                return Err(Error::RegisterWhileReserved(
                    ReservationStatus::RequestPending,
                ));
            }
            Reservation::Installed { .. } => {
                return Err(Error::RegisterWhileReserved(ReservationStatus::Installed));
            }
            Reservation::Disabled | Reservation::Enabled => {}
        }
        match self.state.registration {
            Registration::Registered(_) => Err(Error::AlreadyRegistered),
            Registration::Registering { .. } => Err(Error::AlreadyRegistering),
            Registration::Unregistered { .. } => {
                self.state.registration = Registration::Registering { token, sent: false };
                self.settle();
                Ok(())
            }
        }
    }

    /// The authority registered the device and issued `cert`: REGISTERED, the certificate
    /// valid `id_validity` from now, and an authorisation due at once.
    pub fn registration_succeeded(&mut self, now_nanos: u64, cert: IdCertificate) -> Result<()> {
        let t = self.enter(now_nanos);
        if !matches!(self.state.registration, Registration::Registering { .. }) {
            return Err(Error::NotRegistering);
        }
        let timers = &self.config.timers;
        self.state.registration = Registration::Registered(Box::new(Registered {
            cert,
            registered_at: t,
            expires_at: t.saturating_add(duration_nanos(timers.id_validity)),
            next_renewal: t.saturating_add(duration_nanos(timers.id_renewal)),
            last_renewal: None,
            auth: Authorization::new(
                t,
                t.saturating_add(duration_nanos(timers.communication_deadline)),
            ),
        }));
        self.settle();
        Ok(())
    }

    /// The registration failed (a timeout included): back to UNREGISTERED, keeping
    /// `reason` for the status.
    pub fn registration_failed(&mut self, now_nanos: u64, reason: impl Into<String>) -> Result<()> {
        let t = self.enter(now_nanos);
        if !matches!(self.state.registration, Registration::Registering { .. }) {
            return Err(Error::NotRegistering);
        }
        let reason = reason.into();
        self.reason = Some(reason.clone());
        self.state.registration = Registration::Unregistered {
            last_failure: Some(Failed { at: t, reason }),
        };
        self.settle();
        Ok(())
    }

    /// `license smart deregister`: UNREGISTERED at once (the evaluation, with the time it
    /// had left, applies again), and a [`Action::Deregister`] at the next poll. Cancels a
    /// registration in progress.
    pub fn deregister(&mut self, now_nanos: u64) -> Result<()> {
        self.enter(now_nanos);
        match &self.state.registration {
            Registration::Unregistered { .. } => return Err(Error::NotRegistered),
            // A registration that was sent may have succeeded at the authority.
            Registration::Registering { sent, .. } => self.state.deregister_due |= *sent,
            Registration::Registered(_) => self.state.deregister_due = true,
        }
        self.reason = Some("deregistered".to_owned());
        self.state.registration = Registration::Unregistered { last_failure: None };
        self.settle();
        Ok(())
    }

    /// `license smart renew id`: a [`Action::RenewId`] at the next poll.
    pub fn renew_id(&mut self, now_nanos: u64) -> Result<()> {
        let t = self.enter(now_nanos);
        self.registered_mut()?.next_renewal = t;
        Ok(())
    }

    /// The ID certificate was renewed: valid `id_validity` from now, next renewal in
    /// `id_renewal`.
    pub fn id_renewed(&mut self, now_nanos: u64, cert: IdCertificate) -> Result<()> {
        let t = self.enter(now_nanos);
        let timers = self.config.timers;
        let r = self.registered_mut()?;
        r.cert = cert;
        r.expires_at = t.saturating_add(duration_nanos(timers.id_validity));
        r.next_renewal = t.saturating_add(duration_nanos(timers.id_renewal));
        r.last_renewal = Some(Tried {
            at: t,
            failure: None,
        });
        self.settle();
        Ok(())
    }

    /// The ID renewal failed: tried again in `retry`, until it succeeds or the certificate
    /// expires.
    pub fn id_renewal_failed(&mut self, now_nanos: u64, reason: impl Into<String>) -> Result<()> {
        let t = self.enter(now_nanos);
        let retry = duration_nanos(self.config.timers.retry);
        let r = self.registered_mut()?;
        r.next_renewal = t.saturating_add(retry);
        r.last_renewal = Some(Tried {
            at: t,
            failure: Some(reason.into()),
        });
        Ok(())
    }

    // ----- Authorisation -----

    /// `license smart renew auth`: a [`Action::Authorize`] at the next poll.
    pub fn renew_authorization(&mut self, now_nanos: u64) -> Result<()> {
        let t = self.enter(now_nanos);
        self.registered_mut()?.auth.next_attempt = t;
        Ok(())
    }

    /// The authority answered the latest [`Action::Authorize`] with `granted` (licence tag
    /// to count): AUTHORIZED when every requested licence is granted in full, otherwise
    /// OUT_OF_COMPLIANCE; the gate enforces what was granted. The communication deadline
    /// moves to `communication_deadline` from now; the next renewal is due in
    /// `authorization_renewal` (at once, if the selection changed meanwhile).
    pub fn authorization_received(&mut self, now_nanos: u64, granted: Counts) -> Result<()> {
        self.authorization_signed(
            now_nanos,
            Authorized {
                granted,
                ..Authorized::default()
            },
        )
    }

    /// The authority answered the latest [`Action::Authorize`] with `answer`: as
    /// [`Agent::authorization_received`], but the gate enforces each licence at the TPS per
    /// unit and policy the authority signed (`answer.worth`), and the authority's periods
    /// replace the configured `authorization_renewal` and `communication_deadline` (each
    /// counted from now, at most 100 years; the renewal never after the deadline).
    pub fn authorization_signed(&mut self, now_nanos: u64, answer: Authorized) -> Result<()> {
        let t = self.enter(now_nanos);
        let timers = self.config.timers;
        let selection = self.state.selection.clone();
        let deadline = answer
            .deadline
            .unwrap_or(timers.communication_deadline)
            .min(MAX_PERIOD);
        let renewal = answer
            .renewal
            .unwrap_or(timers.authorization_renewal)
            .min(deadline);
        let a = &mut self.registered_mut()?.auth;
        a.answered = a.in_flight.take().unwrap_or_else(|| selection.clone());
        a.granted = Some(answer.granted);
        a.worth = answer.worth;
        a.last_attempt = Some(Tried {
            at: t,
            failure: None,
        });
        a.deadline = t.saturating_add(duration_nanos(deadline));
        a.next_attempt = if a.answered == selection {
            t.saturating_add(duration_nanos(renewal))
        } else {
            t
        };
        self.settle();
        Ok(())
    }

    /// The authorisation request failed: tried again in `retry`. What is enforced does not
    /// change until the communication deadline.
    pub fn authorization_failed(
        &mut self,
        now_nanos: u64,
        reason: impl Into<String>,
    ) -> Result<()> {
        let t = self.enter(now_nanos);
        let retry = duration_nanos(self.config.timers.retry);
        let a = &mut self.registered_mut()?.auth;
        a.next_attempt = t.saturating_add(retry);
        a.last_attempt = Some(Tried {
            at: t,
            failure: Some(reason.into()),
        });
        Ok(())
    }

    /// Sets the licences to request (licence tag to count; zero counts are dropped). While
    /// registered, a change triggers an authorisation at the next poll and the gate follows
    /// its answer; during evaluation the evaluation limits follow at once. No restart.
    /// Refuses a licence the product does not know.
    pub fn set_selection(&mut self, now_nanos: u64, selection: Counts) -> Result<()> {
        let t = self.enter(now_nanos);
        check_selection(&self.config.product, &selection)?;
        let selection = without_zeros(selection);
        if selection == self.state.selection {
            return Ok(());
        }
        self.state.selection = selection;
        if let Registration::Registered(r) = &mut self.state.registration {
            r.auth.next_attempt = t;
        }
        self.settle();
        Ok(())
    }

    /// The licences requested at the next authorisation.
    pub fn selection(&self) -> &Counts {
        &self.state.selection
    }

    // ----- Reservation -----

    /// `license smart reservation`: DISABLED -> ENABLED (already enabled: nothing to do).
    /// Refused while registered with a token.
    pub fn reservation_enable(&mut self, now_nanos: u64) -> Result<()> {
        self.enter(now_nanos);
        if !self.state.unregistered() {
            return Err(Error::ReserveWhileRegistered);
        }
        if self.state.reservation == Reservation::Disabled {
            self.state.reservation = Reservation::Enabled;
            self.settle();
        }
        Ok(())
    }

    /// `no license smart reservation`: back to DISABLED, dropping a pending request.
    /// Refused while a reservation is installed.
    pub fn reservation_disable(&mut self, now_nanos: u64) -> Result<()> {
        self.enter(now_nanos);
        if let Reservation::Installed { .. } = self.state.reservation {
            return Err(Error::DisableWhileInstalled);
        }
        self.state.reservation = Reservation::Disabled;
        self.settle();
        Ok(())
    }

    /// `license smart reservation request`: REQUEST_PENDING with a new sequence number,
    /// returned for the request code. Asked again while pending, it returns the same
    /// sequence number.
    pub fn reservation_request(&mut self, now_nanos: u64) -> Result<u32> {
        self.enter(now_nanos);
        match self.state.reservation {
            Reservation::Disabled => Err(Error::ReservationDisabled),
            Reservation::Installed { .. } => Err(Error::AlreadyInstalled),
            Reservation::Pending { sequence } => Ok(sequence),
            Reservation::Enabled => {
                if !self.state.unregistered() {
                    return Err(Error::ReserveWhileRegistered);
                }
                let sequence = self.state.next_sequence;
                self.state.next_sequence = sequence.wrapping_add(1).max(1);
                self.state.reservation = Reservation::Pending { sequence };
                self.settle();
                Ok(sequence)
            }
        }
    }

    /// `license smart reservation cancel`: REQUEST_PENDING -> ENABLED.
    pub fn reservation_cancel(&mut self, now_nanos: u64) -> Result<()> {
        self.enter(now_nanos);
        match self.state.reservation {
            Reservation::Disabled => Err(Error::ReservationDisabled),
            Reservation::Pending { .. } => {
                self.state.reservation = Reservation::Enabled;
                self.settle();
                Ok(())
            }
            _ => Err(Error::NoRequestPending),
        }
    }

    /// `license smart reservation install <code>`, with the code already verified:
    /// REQUEST_PENDING -> INSTALLED when it answers the pending request. PLR makes every
    /// gate entitlement unlimited; SLR enforces exactly the reserved counts. The evaluation
    /// time stops.
    pub fn reservation_install(&mut self, now_nanos: u64, reserved: Reserved) -> Result<()> {
        let t = self.enter(now_nanos);
        match self.state.reservation {
            Reservation::Disabled => Err(Error::ReservationDisabled),
            Reservation::Installed { .. } => Err(Error::AlreadyInstalled),
            Reservation::Enabled => Err(Error::NoRequestPending),
            Reservation::Pending { sequence } if sequence != reserved.sequence => {
                Err(Error::SequenceMismatch {
                    expected: sequence,
                    got: reserved.sequence,
                })
            }
            // Unreachable while registering is refused with a request pending; kept so the
            // two modes can never be on at once.
            Reservation::Pending { .. } if !self.state.unregistered() => {
                Err(Error::ReserveWhileRegistered)
            }
            Reservation::Pending { .. } => {
                self.state.reservation = Reservation::Installed {
                    reserved: Box::new(reserved),
                    at: t,
                };
                self.settle();
                Ok(())
            }
        }
    }

    /// `license smart reservation return`: INSTALLED -> ENABLED; the device is
    /// UNREGISTERED again and back on its evaluation (with the time it had left) or the
    /// unlicensed behaviour. Returns what was installed, for the return code.
    pub fn reservation_return(&mut self, now_nanos: u64) -> Result<Reserved> {
        self.enter(now_nanos);
        match std::mem::replace(&mut self.state.reservation, Reservation::Enabled) {
            Reservation::Installed { reserved, .. } => {
                self.settle();
                Ok(*reserved)
            }
            other => {
                self.state.reservation = other;
                Err(Error::NotInstalled)
            }
        }
    }
}
