//! The errors of the licensing domain: bad configuration, and inputs that the current state
//! refuses. A refused input changes nothing.

use super::status::ReservationStatus;

/// A `Result` whose error is the licensing [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the licence agent refuses, each with a sentence an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A timer that must be longer than zero is zero.
    #[error("timer {timer} must be longer than zero")]
    ZeroTimer {
        /// The timer's name in the configuration.
        timer: &'static str,
    },
    /// A timer longer than the agent's arithmetic is meant for.
    #[error("timer {timer} must be at most 100 years")]
    TimerTooLong {
        /// The timer's name in the configuration.
        timer: &'static str,
    },
    /// Two timers in the wrong order (for example a renewal interval not shorter than the
    /// validity it renews).
    #[error("timer {shorter} must be shorter than {longer}")]
    TimerOrder {
        /// The timer that must be the shorter.
        shorter: &'static str,
        /// The timer it must be shorter than.
        longer: &'static str,
    },
    /// An unlicensed floor of 0 TPS.
    #[error(
        "the unlicensed floor must be at least 1 TPS: a floor of 0 would silently stop all \
         traffic (use monitor-only to enforce nothing instead)"
    )]
    ZeroFloor,
    /// An unlicensed floor above what one entitlement can enforce.
    #[error(
        "the unlicensed floor of {tps} TPS is above the most one entitlement can enforce ({max} TPS)"
    )]
    FloorTooHigh {
        /// The floor asked for.
        tps: u64,
        /// The highest rate allowed.
        max: u64,
    },
    /// A product without entitlements.
    #[error("the product must define at least one gate entitlement")]
    EmptyProduct,
    /// A gate or licence tag that is empty, too long or not printable ASCII.
    #[error("tag {0:?} is invalid: use 1 to 64 letters, digits and - _ . :")]
    InvalidTag(String),
    /// The same gate entitlement defined twice.
    #[error("gate entitlement {0:?} is defined twice in the product")]
    DuplicateEntitlement(String),
    /// A gate entitlement that no licence feeds.
    #[error("gate entitlement {0:?} is fed by no licence: list at least one")]
    NoLicences(String),
    /// The same licence listed twice for one gate entitlement.
    #[error("licence {licence:?} feeds gate entitlement {entitlement:?} twice")]
    DuplicateLicence {
        /// The gate entitlement.
        entitlement: String,
        /// The licence tag.
        licence: String,
    },
    /// A licence worth 0 TPS per unit.
    #[error(
        "licence {licence:?} must give gate entitlement {entitlement:?} at least 1 TPS per unit"
    )]
    ZeroTpsPerUnit {
        /// The gate entitlement.
        entitlement: String,
        /// The licence tag.
        licence: String,
    },
    /// A burst window outside 1 ms to 60 s.
    #[error(
        "burst_ms of gate entitlement {entitlement:?} must be from 1 to 60000 (ms of traffic at the rate)"
    )]
    BurstWindow {
        /// The gate entitlement.
        entitlement: String,
    },
    /// An evaluation rate of 0 TPS.
    #[error(
        "evaluation_tps of gate entitlement {entitlement:?} must be at least 1 (or left out to evaluate what is requested)"
    )]
    ZeroEvaluationTps {
        /// The gate entitlement.
        entitlement: String,
    },
    /// A licence tag that feeds no gate entitlement of the product.
    #[error("licence {0:?} is not in the product catalogue")]
    UnknownLicence(String),
    /// An empty ID token.
    #[error("the ID token is empty")]
    EmptyToken,
    /// `register` while already registered.
    #[error("the device is already registered: deregister first")]
    AlreadyRegistered,
    /// `register` while a registration is in progress.
    #[error("a registration is already in progress")]
    AlreadyRegistering,
    /// A registration outcome while no registration is in progress.
    #[error("no registration is in progress")]
    NotRegistering,
    /// An input that needs a registered device.
    #[error("the device is not registered")]
    NotRegistered,
    /// `register` while a reservation is requested or installed.
    #[error(
        "a licence reservation is {0}: return or cancel it (and disable reservation) before \
         registering with a token"
    )]
    RegisterWhileReserved(ReservationStatus),
    /// Enabling or requesting a reservation while registered with a token.
    #[error(
        "the device is registered with a token (or registering): deregister before reserving licences"
    )]
    ReserveWhileRegistered,
    /// A reservation input while reservation is disabled.
    #[error("licence reservation is disabled: enable it first")]
    ReservationDisabled,
    /// Disabling reservation while a reservation is installed.
    #[error("a licence reservation is installed: return it before disabling reservation")]
    DisableWhileInstalled,
    /// A request while a reservation is already installed.
    #[error("a licence reservation is already installed: return it first")]
    AlreadyInstalled,
    /// An install or cancel with no request pending.
    #[error("no reservation request is pending: request one first")]
    NoRequestPending,
    /// An authorisation that answers another request than the pending one.
    #[error(
        "the authorisation answers reservation request {got}, but the pending request is {expected}"
    )]
    SequenceMismatch {
        /// The sequence number of the pending request.
        expected: u32,
        /// The sequence number the authorisation answers.
        got: u32,
    },
    /// A return with no reservation installed.
    #[error("no licence reservation is installed")]
    NotInstalled,
    /// Saved state of a version this build does not read.
    #[error("saved agent state has version {found}; this build reads version {supported}")]
    StateVersion {
        /// The version found.
        found: u32,
        /// The version supported.
        supported: u32,
    },
    /// The gate refused a limit table.
    #[error(transparent)]
    Gate(#[from] entitle_engine::Error),
}
