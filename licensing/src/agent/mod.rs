//! The licence agent: the three state machines, their timers, the limit table they map to,
//! the actions the caller performs, the audit events, and saving and restoring.
//!
//! The agent does no I/O and reads no clock: every input and every [`Agent::poll`] brings
//! the caller's monotonic time in nanoseconds (and polls a wall-clock reading, only
//! watched). Timers "fire" by time passing them: whenever the agent is told the time, it
//! visits each due moment in order (an evaluation running out, a communication deadline, a
//! grace ending, a certificate expiring) and raises its events at that moment.

use std::time::Duration;

mod inputs;
mod state;

pub use inputs::Authorized;

use serde::{Deserialize, Serialize};

use super::attempt::{Failed, Tried};
use super::authorization::{Authorization, Evaluation};
use super::config::{AgentConfig, Catalogue, Counts, check_selection};
use super::mapping::{Basis, Limits, apply_limits, limits};
use super::registration::{IdCertificate, IdToken, Registered, Registration};
use super::reservation::{Reservation, ReservationKind, Reserved};
use super::status::{
    Attempt, AuthorizationStatus, AuthorizationView, Enforcement, EntitlementStatus,
    EntitlementView, Event, EventKind, Failure, Outcome, RegistrationStatus, RegistrationView,
    ReservationStatus, ReservationView, Stamp, Status,
};
use super::wall::WallAnchor;
use super::{Error, Result};
use entitle_engine::{Clock, Gate};

/// A duration in nanoseconds, saturating after 584 years.
fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The version of [`State`] this build writes and reads.
const STATE_VERSION: u32 = 1;

/// Something the caller must do for the agent, returned by [`Agent::poll`]. Report each
/// outcome back with the matching input (for example [`Agent::registration_succeeded`] or
/// [`Agent::registration_failed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Register with the authority using this ID token. Sent once per
    /// [`Agent::register`] (and again after a restore); report the outcome, a timeout as a
    /// failure.
    Register {
        /// The token (its `Debug` is redacted).
        token: IdToken,
    },
    /// Renew the ID certificate. Sent again every `retry` until an outcome is reported.
    RenewId,
    /// Ask for an authorisation of these licences. Sent again every `retry` until an
    /// outcome is reported.
    Authorize {
        /// Licence tag to count.
        requests: Counts,
    },
    /// Tell the authority the device deregistered (best effort: the device is already
    /// unregistered).
    Deregister,
}

/// The agent's state, as saved to survive a restart: serialise it with serde and give it
/// back to [`Agent::restore`]. Times inside are on the agent's own monotonic timeline, which
/// goes on across restarts. It holds the ID token only while a registration is in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    version: u32,
    /// The latest agent time seen.
    now: u64,
    registration: Registration,
    evaluation: Evaluation,
    reservation: Reservation,
    next_sequence: u32,
    selection: Counts,
    deregister_due: bool,
    wall: Option<WallAnchor>,
}

/// Everything whose change is an event.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Summary {
    registration: RegistrationStatus,
    authorization: AuthorizationStatus,
    reservation: ReservationStatus,
    enforcement: Enforcement,
    limits: Limits,
}

/// The licence agent of one device. See the [module docs](super) for an example.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    state: State,
    /// Agent time minus caller time.
    offset: i128,
    events: Vec<Event>,
    /// The summary as of the last events raised.
    seen: Summary,
    /// The reason for the registration change being made, if any.
    reason: Option<String>,
}

impl Agent {
    /// A new agent, unregistered, its evaluation period starting at `now_nanos`.
    pub fn new(config: AgentConfig, now_nanos: u64) -> Result<Self> {
        config.validate()?;
        let state = State {
            version: STATE_VERSION,
            now: now_nanos,
            registration: Registration::Unregistered { last_failure: None },
            evaluation: Evaluation::new(duration_nanos(config.timers.evaluation), now_nanos),
            reservation: Reservation::Disabled,
            next_sequence: 1,
            selection: without_zeros(config.selection.clone()),
            deregister_due: false,
            wall: None,
        };
        Ok(Self::with_state(config, state, 0))
    }

    /// An agent from a saved [`State`], in a process whose monotonic clock reads
    /// `now_nanos`, `elapsed` after the state was saved (the caller measures it, for
    /// example from the wall clock; it cannot be negative). Deadlines are rebased onto the
    /// new clock; those that passed while the agent was down take effect now, their events
    /// (at their due moments) waiting in [`Agent::take_events`]. A `Register` action that
    /// was in flight goes out again. The saved selection is kept (the configuration's
    /// selection only seeds a new agent); timers and catalogue come from `config`.
    pub fn restore(
        config: AgentConfig,
        state: State,
        now_nanos: u64,
        elapsed: Duration,
    ) -> Result<Self> {
        config.validate()?;
        if state.version != STATE_VERSION {
            return Err(Error::StateVersion {
                found: state.version,
                supported: STATE_VERSION,
            });
        }
        let resumed = state.now.saturating_add(duration_nanos(elapsed));
        let offset = i128::from(resumed) - i128::from(now_nanos);
        let mut agent = Self::with_state(config, state, offset);
        agent.advance(resumed);
        Ok(agent)
    }

    fn with_state(config: AgentConfig, state: State, offset: i128) -> Self {
        let seen = state.summary(&config);
        Self {
            config,
            state,
            offset,
            events: Vec::new(),
            seen,
            reason: None,
        }
    }

    /// The state to save, brought up to `now_nanos`; measure the downtime from this moment.
    pub fn save(&mut self, now_nanos: u64) -> State {
        self.enter(now_nanos);
        self.state.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    // ----- Driving -----

    /// Brings the agent to `now_nanos`, watches the wall clock (`wall_unix_secs`, never
    /// used for timers), and returns what the caller must do now. Call it at
    /// [`Agent::next_wakeup`] at the latest, and after inputs; calling more often is
    /// harmless.
    pub fn poll(&mut self, now_nanos: u64, wall_unix_secs: i64) -> Vec<Action> {
        let t = self.enter(now_nanos);
        self.watch_wall(t, wall_unix_secs);
        let retry = duration_nanos(self.config.timers.retry);
        let mut actions = Vec::new();
        if std::mem::take(&mut self.state.deregister_due) {
            actions.push(Action::Deregister);
        }
        match &mut self.state.registration {
            Registration::Registering { token, sent } if !*sent => {
                *sent = true;
                actions.push(Action::Register {
                    token: token.clone(),
                });
            }
            Registration::Registered(r) => {
                if r.next_renewal <= t {
                    r.next_renewal = t.saturating_add(retry);
                    actions.push(Action::RenewId);
                }
                if r.auth.next_attempt <= t {
                    r.auth.next_attempt = t.saturating_add(retry);
                    let requests = self.state.selection.clone();
                    r.auth.in_flight = Some(requests.clone());
                    actions.push(Action::Authorize { requests });
                }
            }
            _ => {}
        }
        actions
    }

    /// When to poll next, on the caller's monotonic clock (never before the latest time
    /// the agent was told: something overdue is due then); `None` when no timer runs. Wall-clock jumps are only noticed at polls, so a
    /// caller that wants them promptly also polls on a period of its own.
    pub fn next_wakeup(&self) -> Option<u64> {
        let s = &self.state;
        let mut next = s.next_moment(&self.config);
        let mut consider = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        if s.deregister_due {
            consider(s.now);
        }
        match &s.registration {
            Registration::Registering { sent: false, .. } => consider(s.now),
            Registration::Registered(r) => {
                consider(r.next_renewal);
                consider(r.auth.next_attempt);
            }
            _ => {}
        }
        next.map(|t| {
            let caller = i128::from(t.max(s.now)) - self.offset;
            u64::try_from(caller.max(0)).unwrap_or(u64::MAX)
        })
    }

    /// The events raised since the last call, oldest first, for the audit log.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The limit of every gate entitlement of the product, as of the latest time the agent
    /// was told. A [`EventKind::LimitsChanged`] event says when it changed.
    pub fn limits(&self) -> Limits {
        self.seen.limits.clone()
    }

    /// Applies [`Agent::limits`] to `gate` through its hot swap (see
    /// [`apply_limits`](super::apply_limits)).
    pub fn apply_to<C: Clock>(&self, gate: &Gate<C>) -> Result<()> {
        apply_limits(gate, &self.seen.limits)
    }

    /// Everything `show license status` prints, as of the latest time the agent was told.
    pub fn status(&self) -> Status {
        let s = &self.state;
        let t = s.now;
        let grace = duration_nanos(self.config.timers.grace);
        let installed = s.installed();
        let mut registration = RegistrationView {
            status: self.seen.registration,
            smart_account: None,
            virtual_account: None,
            export_controlled: None,
            initial_registration: None,
            last_renewal_attempt: None,
            next_renewal_attempt: None,
            expires: None,
            last_failure: None,
        };
        let mut authorization = AuthorizationView {
            status: self.seen.authorization,
            evaluation_remaining: Duration::from_nanos(s.evaluation.remaining_at(t)),
            entitlements: Vec::new(),
            last_communication_attempt: None,
            next_communication_attempt: None,
            communication_deadline: None,
            grace_ends: None,
        };
        if let Some(reserved) = installed {
            registration.smart_account = Some(reserved.smart_account.clone());
            registration.virtual_account = reserved.virtual_account.clone();
            registration.export_controlled = Some(reserved.export_controlled);
            if let ReservationKind::Specific { licences } = &reserved.kind {
                authorization.entitlements = licences
                    .iter()
                    .map(|(licence, &n)| EntitlementView {
                        licence: licence.clone(),
                        requested: n,
                        granted: n,
                        status: EntitlementStatus::Authorized,
                    })
                    .collect();
            }
        }
        match &s.registration {
            Registration::Unregistered { last_failure } => {
                registration.last_failure = last_failure.as_ref().map(|f| Failure {
                    at: self.stamp(f.at),
                    reason: f.reason.clone(),
                });
            }
            Registration::Registering { .. } => {}
            Registration::Registered(r) => {
                registration.smart_account = Some(r.cert.smart_account.clone());
                registration.virtual_account = Some(r.cert.virtual_account.clone());
                registration.export_controlled = Some(r.cert.export_controlled);
                registration.initial_registration = Some(self.stamp(r.registered_at));
                registration.last_renewal_attempt =
                    r.last_renewal.as_ref().map(|a| self.attempt(a));
                registration.next_renewal_attempt = Some(self.stamp(r.next_renewal));
                registration.expires = Some(self.stamp(r.expires_at));
                let a = &r.auth;
                if let Some(granted) = &a.granted {
                    let tags = a.answered.keys().chain(granted.keys());
                    let mut tags: Vec<&String> = tags.collect();
                    tags.sort();
                    tags.dedup();
                    authorization.entitlements = tags
                        .into_iter()
                        .map(|tag| {
                            let requested = a.answered.get(tag).copied().unwrap_or(0);
                            let granted = granted.get(tag).copied().unwrap_or(0);
                            EntitlementView {
                                licence: tag.clone(),
                                requested,
                                granted,
                                status: if granted >= requested {
                                    EntitlementStatus::Authorized
                                } else {
                                    EntitlementStatus::OutOfCompliance
                                },
                            }
                        })
                        .collect();
                }
                authorization.last_communication_attempt =
                    a.last_attempt.as_ref().map(|x| self.attempt(x));
                authorization.next_communication_attempt = Some(self.stamp(a.next_attempt));
                authorization.communication_deadline = Some(self.stamp(a.deadline));
                authorization.grace_ends = Some(self.stamp(a.deadline.saturating_add(grace)));
            }
        }
        let (pending_sequence, installed_at) = match &s.reservation {
            Reservation::Pending { sequence } => (Some(*sequence), None),
            Reservation::Installed { at, .. } => (None, Some(self.stamp(*at))),
            _ => (None, None),
        };
        Status {
            registration,
            authorization,
            reservation: ReservationView {
                status: self.seen.reservation,
                pending_sequence,
                installed: installed.cloned(),
                installed_at,
            },
            enforcement: self.seen.enforcement,
            selection: s.selection.clone(),
        }
    }

    // ----- Time -----

    /// Agent time for the caller's `now_nanos`; never before the latest agent time seen.
    fn time(&self, now_nanos: u64) -> u64 {
        let t = (i128::from(now_nanos) + self.offset).max(0);
        u64::try_from(t).unwrap_or(u64::MAX).max(self.state.now)
    }

    /// Brings the agent to the caller's `now_nanos`, returning the agent time.
    fn enter(&mut self, now_nanos: u64) -> u64 {
        let t = self.time(now_nanos);
        self.advance(t);
        t
    }

    /// Visits every due moment up to `target` in order, then stands at `target`.
    fn advance(&mut self, target: u64) {
        while let Some(m) = self
            .state
            .next_moment(&self.config)
            .filter(|&m| m <= target)
        {
            self.state.now = self.state.now.max(m);
            let expired = self
                .state
                .registered()
                .map(|r| r.expires_at)
                .filter(|&at| at <= self.state.now);
            if let Some(at) = expired {
                let reason = "ID certificate expired".to_owned();
                self.reason = Some(reason.clone());
                self.state.registration = Registration::Unregistered {
                    last_failure: Some(Failed { at, reason }),
                };
            }
            self.settle();
        }
        self.state.now = self.state.now.max(target);
        self.settle();
    }

    /// Runs or stops the evaluation as the state requires, and raises an event for each
    /// change of status, enforcement and limits.
    fn settle(&mut self) {
        let t = self.state.now;
        // Evaluation time runs while not registered (registering included) and not reserved.
        let run = self.state.registered().is_none() && self.state.installed().is_none();
        self.state.evaluation.run(run, t);
        let now = self.state.summary(&self.config);
        let reason = self.reason.take();
        if now == self.seen {
            return;
        }
        let at = self.stamp(t);
        let was = std::mem::replace(&mut self.seen, now.clone());
        let mut push = |kind| self.events.push(Event { at, kind });
        if was.registration != now.registration {
            push(EventKind::Registration {
                from: was.registration,
                to: now.registration,
                reason,
            });
        }
        if was.authorization != now.authorization {
            push(EventKind::Authorization {
                from: was.authorization,
                to: now.authorization,
            });
        }
        if was.reservation != now.reservation {
            push(EventKind::Reservation {
                from: was.reservation,
                to: now.reservation,
            });
        }
        if was.enforcement != now.enforcement {
            push(EventKind::Enforcement {
                from: was.enforcement,
                to: now.enforcement,
            });
        }
        if was.limits != now.limits {
            push(EventKind::LimitsChanged { limits: now.limits });
        }
    }

    /// Compares a wall-clock reading with the anchor, raising a clock-jump event.
    fn watch_wall(&mut self, t: u64, wall_unix_secs: i64) {
        let anchor = WallAnchor {
            at: t,
            wall_unix_secs,
        };
        let Some(previous) = self.state.wall else {
            self.state.wall = Some(anchor);
            return;
        };
        let tolerance = duration_nanos(self.config.timers.clock_jump_tolerance);
        if let Some(jump) = previous.check(t, wall_unix_secs, tolerance) {
            self.state.wall = Some(anchor);
            self.events.push(Event {
                at: self.stamp(t),
                kind: EventKind::ClockJump {
                    direction: jump.direction,
                    by: Duration::from_nanos(jump.by_nanos),
                    expected_wall_unix_secs: jump.expected_wall_unix_secs,
                    wall_unix_secs,
                },
            });
        }
    }

    /// Agent time `t` on the caller's clock, with its estimated wall time.
    fn stamp(&self, t: u64) -> Stamp {
        let mono = i128::from(t) - self.offset;
        Stamp {
            mono_nanos: i64::try_from(mono).unwrap_or(if mono < 0 { i64::MIN } else { i64::MAX }),
            wall_unix_secs: self.state.wall.map(|w| w.wall_at(t)),
        }
    }

    fn attempt(&self, tried: &Tried) -> Attempt {
        Attempt {
            at: self.stamp(tried.at),
            outcome: match &tried.failure {
                None => Outcome::Succeeded,
                Some(reason) => Outcome::Failed {
                    reason: reason.clone(),
                },
            },
        }
    }

    fn registered_mut(&mut self) -> Result<&mut Registered> {
        match &mut self.state.registration {
            Registration::Registered(r) => Ok(r),
            _ => Err(Error::NotRegistered),
        }
    }
}

fn without_zeros(mut counts: Counts) -> Counts {
    counts.retain(|_, n| *n > 0);
    counts
}
