//! What `show license status` prints, as data; and the audit events of the agent.
//!
//! Times are [`Stamp`]s: nanoseconds on the caller's monotonic clock (the one given to
//! [`Agent::poll`](super::Agent::poll)), negative when the moment lies before that clock's
//! origin (for example before a restart), plus the wall time estimated from the last wall
//! reading, when one was given.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::Counts;
use super::mapping::Limits;
use super::reservation::Reserved;

/// A moment: monotonic nanoseconds of the caller's clock, and the wall time when known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Nanoseconds on the caller's monotonic clock; negative before its origin.
    pub mono_nanos: i64,
    /// Seconds since the Unix epoch, estimated from the last wall-clock reading and the
    /// monotonic time since it; `None` before the first poll.
    pub wall_unix_secs: Option<i64>,
}

/// The registration status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegistrationStatus {
    /// Not registered.
    Unregistered,
    /// A registration with an ID token is in progress.
    Registering,
    /// Registered with an ID certificate.
    Registered,
    /// A permanent licence reservation (PLR) is installed.
    ReservedPermanent,
    /// A specific licence reservation (SLR) is installed.
    ReservedSpecific,
}

impl fmt::Display for RegistrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unregistered => "UNREGISTERED",
            Self::Registering => "REGISTERING",
            Self::Registered => "REGISTERED",
            Self::ReservedPermanent => "REGISTERED - UNIVERSAL LICENSE RESERVATION",
            Self::ReservedSpecific => "REGISTERED - SPECIFIC LICENSE RESERVATION",
        })
    }
}

/// The licence authorisation status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationStatus {
    /// Unregistered with evaluation time left.
    Evaluation,
    /// Unregistered with no evaluation time left.
    EvaluationExpired,
    /// Registered; the first authorisation has not arrived yet (the evaluation limits
    /// apply, without using evaluation time).
    Pending,
    /// Every requested licence is granted in full.
    Authorized,
    /// Some requested licence was granted short (the pool is short).
    OutOfCompliance,
    /// The communication deadline passed without a successful authorisation.
    AuthorizationExpired,
    /// A reservation (PLR or SLR) is installed.
    Reserved,
}

impl fmt::Display for AuthorizationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Evaluation => "EVALUATION MODE",
            Self::EvaluationExpired => "EVALUATION EXPIRED",
            Self::Pending => "AUTHORIZATION PENDING",
            Self::Authorized => "AUTHORIZED",
            Self::OutOfCompliance => "OUT OF COMPLIANCE",
            Self::AuthorizationExpired => "AUTHORIZATION EXPIRED",
            Self::Reserved => "AUTHORIZED - RESERVED",
        })
    }
}

/// The licence reservation status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    /// Reservation is off (smart licensing with a token).
    Disabled,
    /// Reservation is on; nothing requested.
    Enabled,
    /// A request (with a sequence number) waits for its authorisation code.
    RequestPending,
    /// A reservation is installed.
    Installed,
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disabled => "DISABLED",
            Self::Enabled => "ENABLED",
            Self::RequestPending => "REQUEST PENDING",
            Self::Installed => "INSTALLED",
        })
    }
}

/// Which limits the gate enforces, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Enforcement {
    /// The evaluation limits.
    Evaluation,
    /// The counts of the latest authorisation (short ones included).
    Authorized,
    /// The last authorised counts, after the communication deadline, until the grace ends.
    Grace,
    /// The unlicensed behaviour (floor or monitor-only).
    Unlicensed,
    /// Everything unlimited (PLR).
    Permanent,
    /// The reserved counts (SLR).
    Specific,
}

/// The outcome of one licence of an authorisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntitlementStatus {
    /// Granted in full.
    Authorized,
    /// Granted fewer than requested.
    OutOfCompliance,
}

/// How a call to the authority went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// It succeeded.
    Succeeded,
    /// It failed, for this reason.
    Failed {
        /// What the caller reported.
        reason: String,
    },
}

/// A call to the authority and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When the outcome was reported.
    pub at: Stamp,
    /// How it went.
    pub outcome: Outcome,
}

/// Everything `show license status` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Registration.
    pub registration: RegistrationView,
    /// License Authorization.
    pub authorization: AuthorizationView,
    /// License Reservation.
    pub reservation: ReservationView,
    /// Which limits the gate enforces.
    pub enforcement: Enforcement,
    /// The licences requested at the next authorisation.
    pub selection: Counts,
}

/// The registration part of [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationView {
    /// Status.
    pub status: RegistrationStatus,
    /// Smart Account (from the ID certificate or the reservation).
    pub smart_account: Option<String>,
    /// Virtual Account.
    pub virtual_account: Option<String>,
    /// Export-Controlled Functionality: allowed or not.
    pub export_controlled: Option<bool>,
    /// Initial Registration: when it succeeded.
    pub initial_registration: Option<Stamp>,
    /// The last ID renewal attempt.
    pub last_renewal_attempt: Option<Attempt>,
    /// Next Renewal Attempt.
    pub next_renewal_attempt: Option<Stamp>,
    /// Registration Expires.
    pub expires: Option<Stamp>,
    /// Why the device last fell back to (or stayed) unregistered: a failed registration or
    /// an expired certificate. Cleared by the next successful registration.
    pub last_failure: Option<Failure>,
}

/// A failure kept for the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// When it happened.
    pub at: Stamp,
    /// Why.
    pub reason: String,
}

/// The authorisation part of [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationView {
    /// Status.
    pub status: AuthorizationStatus,
    /// Evaluation time left (it runs only while unregistered).
    pub evaluation_remaining: Duration,
    /// Each licence of the latest authorisation (or of an installed specific reservation).
    pub entitlements: Vec<EntitlementView>,
    /// Last Communication Attempt.
    pub last_communication_attempt: Option<Attempt>,
    /// Next Communication Attempt.
    pub next_communication_attempt: Option<Stamp>,
    /// Communication Deadline.
    pub communication_deadline: Option<Stamp>,
    /// When the grace after the deadline ends and the unlicensed behaviour applies.
    pub grace_ends: Option<Stamp>,
}

/// One licence of an authorisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntitlementView {
    /// The licence tag.
    pub licence: String,
    /// How many were requested.
    pub requested: u64,
    /// How many were granted.
    pub granted: u64,
    /// Authorised in full or not.
    pub status: EntitlementStatus,
}

/// The reservation part of [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    /// Status.
    pub status: ReservationStatus,
    /// The sequence number of the pending request.
    pub pending_sequence: Option<u32>,
    /// The installed reservation.
    pub installed: Option<Reserved>,
    /// When it was installed.
    pub installed_at: Option<Stamp>,
}

/// Something the agent did or noticed, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened: a timer's due moment (possibly before the poll that found it), or
    /// the moment of the input or poll.
    pub at: Stamp,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The registration status changed.
    Registration {
        /// Before.
        from: RegistrationStatus,
        /// After.
        to: RegistrationStatus,
        /// Why, when the change is a failure or an expiry.
        reason: Option<String>,
    },
    /// The authorisation status changed.
    Authorization {
        /// Before.
        from: AuthorizationStatus,
        /// After.
        to: AuthorizationStatus,
    },
    /// The reservation status changed.
    Reservation {
        /// Before.
        from: ReservationStatus,
        /// After.
        to: ReservationStatus,
    },
    /// The basis of enforcement changed.
    Enforcement {
        /// Before.
        from: Enforcement,
        /// After.
        to: Enforcement,
    },
    /// The limit table changed: apply it to the gate.
    LimitsChanged {
        /// The new limits.
        limits: Limits,
    },
    /// The wall clock moved differently from the monotonic clock by more than the
    /// tolerance since the last reading it was compared with. Timers are not affected.
    ClockJump {
        /// Whether the wall clock ran ahead or fell behind.
        direction: JumpDirection,
        /// By how much.
        by: Duration,
        /// The wall time the monotonic clock predicted.
        expected_wall_unix_secs: i64,
        /// The wall time read.
        wall_unix_secs: i64,
    },
}

/// Which way the wall clock jumped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JumpDirection {
    /// The wall clock is ahead of where the monotonic clock says it should be.
    Forward,
    /// The wall clock is behind.
    Backward,
}
