//! The licensing domain: a licence agent with three state machines (registration,
//! authorisation, reservation) whose state maps to the gate's limit table. Pure logic: no
//! I/O, no threads, no clock of its own. The caller tells it the time (monotonic
//! nanoseconds) with every input, performs the [`Action`]s it asks for, reports their
//! outcomes, and applies its [`Agent::limits`] to the gate through the hot swap; so a test
//! passes a year in a microsecond.
//!
//! ```
//! use std::time::Duration;
//! use entitle_licensing::{
//!     Action, Agent, AgentConfig, AuthorizationStatus, Counts, IdCertificate, IdToken, Product,
//! };
//! use entitle_engine::{Clock, FakeClock, Gate};
//!
//! const DAY: u64 = 86_400;
//! let clock = FakeClock::new();
//! let wall = 1_750_000_000; // a wall-clock reading, watched but never trusted for timers
//! let config = AgentConfig::new(Product::par_tps())
//!     .with_selection([("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
//! let mut agent = Agent::new(config, clock.now())?;
//!
//! // The gate starts on the agent's limits: evaluation allows what is requested, 300 TPS.
//! let mut builder = Gate::builder(clock.clone());
//! for (tag, limit) in agent.limits() {
//!     builder.register(&tag, limit)?;
//! }
//! let gate = builder.build();
//! let par_tps = gate.entitlement("PAR-TPS").expect("registered above");
//! assert_eq!(gate.limits().limit(par_tps).per_second(), Some(300));
//!
//! // `license smart register <token>`: the agent asks the caller to call the authority.
//! agent.register(clock.now(), IdToken::new("token-from-the-portal")?)?;
//! let actions = agent.poll(clock.now(), wall);
//! assert!(matches!(&actions[..], [Action::Register { .. }]));
//! let cert = IdCertificate {
//!     smart_account: "Example Corp".into(),
//!     virtual_account: "RADIUS".into(),
//!     export_controlled: false,
//! };
//! agent.registration_succeeded(clock.now(), cert)?;
//!
//! // Registered: an authorisation is due at once. The pool is one PAR-ADD-TPS short.
//! let actions = agent.poll(clock.now(), wall);
//! assert!(matches!(&actions[..], [Action::Authorize { .. }]));
//! let granted = Counts::from([("PAR-TPS".into(), 1), ("PAR-ADD-TPS".into(), 1)]);
//! agent.authorization_received(clock.now(), granted)?;
//! assert_eq!(agent.status().authorization.status, AuthorizationStatus::OutOfCompliance);
//! agent.apply_to(&gate)?; // no restart
//! assert_eq!(gate.limits().limit(par_tps).per_second(), Some(200));
//!
//! // No contact for 91 days: past the communication deadline, the grace begins.
//! clock.advance(Duration::from_secs(91 * DAY));
//! let _renewals_that_fail = agent.poll(clock.now(), wall + 91 * DAY as i64);
//! assert_eq!(agent.status().authorization.status, AuthorizationStatus::AuthorizationExpired);
//! assert_eq!(agent.limits()[0].1.per_second(), Some(200), "the last counts, in grace");
//! # Ok::<(), entitle_licensing::Error>(())
//! ```
//!
//! # The state machines
//! - **Registration** ([`RegistrationStatus`]): UNREGISTERED -> REGISTERING -> REGISTERED
//!   -> UNREGISTERED on deregistration or certificate expiry; a failed registration goes
//!   back to UNREGISTERED and keeps its reason.
//! - **Authorisation** ([`AuthorizationStatus`]): EVALUATION -> EVALUATION_EXPIRED while
//!   unregistered (evaluation time runs only then, and what is left is kept); registered:
//!   AUTHORIZATION_PENDING until the first answer, then AUTHORIZED or OUT_OF_COMPLIANCE
//!   (per licence: granted in full or short), AUTHORIZATION_EXPIRED past the communication
//!   deadline, and back on a later success.
//! - **Reservation** ([`ReservationStatus`]): DISABLED, ENABLED, REQUEST_PENDING,
//!   INSTALLED (PLR or SLR), with cancel and return. Token registration and reservation
//!   exclude each other: enabling or requesting a reservation is refused while registered,
//!   and registering is refused while a reservation is requested or installed.
//!
//! # Timers ([`Timers`], defaults of Cisco Smart Licensing)
//! Evaluation 90 days; ID certificate valid 1 year, renewed every 6 months (180 days);
//! authorisation renewed every 30 days, communication deadline 90 days after the last
//! success (or the registration); grace 30 days after the deadline (0 allowed); failed or
//! unanswered calls retried every hour; clock-jump tolerance 5 minutes. All run on the
//! monotonic clock; the wall clock is only compared with it (a
//! [`EventKind::ClockJump`] event when they part by more than the tolerance).
//!
//! # From state to limits
//! [`Enforcement`] says which limits apply:
//!
//! | state | enforcement | limits |
//! |---|---|---|
//! | evaluation time left, unregistered or registered awaiting the first authorisation | `Evaluation` | `evaluation_tps`, or what the selection requests |
//! | AUTHORIZED, OUT_OF_COMPLIANCE | `Authorized` | what was granted |
//! | AUTHORIZATION_EXPIRED, within `grace` | `Grace` | the last counts granted |
//! | evaluation expired, or expired past the grace | `Unlicensed` | the unlicensed behaviour |
//! | PLR installed | `Permanent` | [`Limit::Unlimited`](entitle_engine::Limit::Unlimited) for all |
//! | SLR installed | `Specific` | exactly the reserved counts |
//!
//! Counts become rates through the [`Product`] catalogue: a gate entitlement's rate is the
//! sum, over the licences that feed it, of count x TPS per unit (1 `PAR-TPS` + 2
//! `PAR-ADD-TPS` at 100 TPS each: 300 TPS). Its burst is `ceil(rate x burst_ms / 1000)`, at
//! least 1 (`burst_ms` defaults to 100: a tenth of a second of traffic). Its policy is the
//! entitlement's (`hard` by default). No rate is ever below the unlicensed floor
//! ([`Unlicensed::Floor`], 10 TPS by default, 0 refused): a short authorisation enforces
//! what was granted but never less than the floor, and traffic never silently stops. With
//! [`Unlicensed::MonitorOnly`] nothing is rejected when nothing is licensed: the entitlement
//! is metered under `monitor` against the requested TPS. A rate above
//! [`MAX_RATE`](entitle_engine::MAX_RATE) becomes unlimited. The caller applies the limits with
//! [`Agent::apply_to`] or [`apply_limits`], which swap the gate's table while traffic flows.
//!
//! # Persistence
//! [`Agent::save`] gives a serde-serialisable [`State`]; [`Agent::restore`] takes it back
//! in a new process with the time elapsed meanwhile, rebasing every deadline onto the new
//! monotonic clock; deadlines that passed during the downtime take effect at once.

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod agent;
mod attempt;
mod authorization;
mod config;
mod error;
mod mapping;
mod registration;
mod reservation;
mod status;
mod wall;

pub use agent::{Action, Agent, Authorized, State};
pub use config::{
    AgentConfig, Catalogue, Counts, EntitlementSpec, Feed, Product, Timers, Unlicensed, Worth,
    stricter,
};
pub use error::{Error, Result};
pub use mapping::{Limits, apply_limits};
pub use registration::{IdCertificate, IdToken};
pub use reservation::{ReservationKind, Reserved};
pub use status::{
    Attempt, AuthorizationStatus, AuthorizationView, Enforcement, EntitlementStatus,
    EntitlementView, Event, EventKind, Failure, JumpDirection, Outcome, RegistrationStatus,
    RegistrationView, ReservationStatus, ReservationView, Stamp, Status,
};
