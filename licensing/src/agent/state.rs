//! What the saved state answers about itself: which machine is where, the next moment a
//! timer fires, and which limits apply.

use super::*;

impl State {
    pub(super) fn unregistered(&self) -> bool {
        matches!(self.registration, Registration::Unregistered { .. })
    }

    pub(super) fn registered(&self) -> Option<&Registered> {
        match &self.registration {
            Registration::Registered(r) => Some(r),
            _ => None,
        }
    }

    pub(super) fn installed(&self) -> Option<&Reserved> {
        match &self.reservation {
            Reservation::Installed { reserved, .. } => Some(reserved),
            _ => None,
        }
    }

    /// The earliest moment after `now` at which a status changes by itself, or a
    /// certificate expiry not yet handled.
    pub(super) fn next_moment(&self, config: &AgentConfig) -> Option<u64> {
        let now = self.now;
        let grace = duration_nanos(config.timers.grace);
        let mut moments = Vec::with_capacity(4);
        moments.extend(self.evaluation.runs_out_at().filter(|&t| t > now));
        if let Some(r) = self.registered() {
            moments.push(r.expires_at);
            let deadline = r.auth.deadline;
            moments.extend(
                [deadline, deadline.saturating_add(grace)]
                    .into_iter()
                    .filter(|&t| t > now),
            );
        }
        moments.into_iter().min()
    }

    /// What is enforced now, and the counts it comes from.
    pub(super) fn basis(&self, config: &AgentConfig) -> (Enforcement, Basis<'_>) {
        if let Some(reserved) = self.installed() {
            return match &reserved.kind {
                ReservationKind::Permanent => (Enforcement::Permanent, Basis::Unlimited),
                ReservationKind::Specific { licences } => (
                    Enforcement::Specific,
                    Basis::Counts(licences, &reserved.worth),
                ),
            };
        }
        let evaluation = if self.evaluation.remaining_at(self.now) > 0 {
            (Enforcement::Evaluation, Basis::Evaluation)
        } else {
            (Enforcement::Unlicensed, Basis::Unlicensed)
        };
        let Some(r) = self.registered() else {
            return evaluation;
        };
        let a = &r.auth;
        let grace_ends = a
            .deadline
            .saturating_add(duration_nanos(config.timers.grace));
        match &a.granted {
            _ if self.now >= grace_ends => (Enforcement::Unlicensed, Basis::Unlicensed),
            Some(granted) if self.now >= a.deadline => {
                (Enforcement::Grace, Basis::Counts(granted, &a.worth))
            }
            None if self.now >= a.deadline => (Enforcement::Unlicensed, Basis::Unlicensed),
            Some(granted) => (Enforcement::Authorized, Basis::Counts(granted, &a.worth)),
            None => evaluation,
        }
    }

    pub(super) fn summary(&self, config: &AgentConfig) -> Summary {
        let (enforcement, basis) = self.basis(config);
        let evaluation_left = self.evaluation.remaining_at(self.now) > 0;
        let (registration, authorization) = match (self.installed(), &self.registration) {
            (Some(reserved), _) => (
                match reserved.kind {
                    ReservationKind::Permanent => RegistrationStatus::ReservedPermanent,
                    ReservationKind::Specific { .. } => RegistrationStatus::ReservedSpecific,
                },
                AuthorizationStatus::Reserved,
            ),
            (None, Registration::Registered(r)) => (
                RegistrationStatus::Registered,
                if self.now >= r.auth.deadline {
                    AuthorizationStatus::AuthorizationExpired
                } else if r.auth.granted.is_none() {
                    AuthorizationStatus::Pending
                } else if r.auth.short() {
                    AuthorizationStatus::OutOfCompliance
                } else {
                    AuthorizationStatus::Authorized
                },
            ),
            (None, other) => (
                if matches!(other, Registration::Registering { .. }) {
                    RegistrationStatus::Registering
                } else {
                    RegistrationStatus::Unregistered
                },
                if evaluation_left {
                    AuthorizationStatus::Evaluation
                } else {
                    AuthorizationStatus::EvaluationExpired
                },
            ),
        };
        Summary {
            registration,
            authorization,
            reservation: match self.reservation {
                Reservation::Disabled => ReservationStatus::Disabled,
                Reservation::Enabled => ReservationStatus::Enabled,
                Reservation::Pending { .. } => ReservationStatus::RequestPending,
                Reservation::Installed { .. } => ReservationStatus::Installed,
            },
            enforcement,
            limits: limits(config, basis, &self.selection),
        }
    }
}
