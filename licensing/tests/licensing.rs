//! Behaviour of the licence agent that operators and the sidecar rely on: every transition
//! of the three state machines, the timers (a year passes in a microsecond on the fake
//! clock), the limit table each state maps to and its hot swap into a gate, clock jumps,
//! configuration checks, and saving and restoring across a restart.
#![allow(clippy::unwrap_used)] // tests

use std::time::Duration;

use entitle_engine::{Clock, FakeClock, Gate, Limit, Policy};
use entitle_licensing::{
    Action, Agent, AgentConfig, AuthorizationStatus, Counts, Enforcement, EntitlementSpec,
    EntitlementStatus, Error, Event, EventKind, IdCertificate, IdToken, JumpDirection, Outcome,
    Product, RegistrationStatus, ReservationKind, ReservationStatus, Reserved, State, Timers,
    Unlicensed, apply_limits,
};

const SEC: u64 = 1_000_000_000;
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const WALL0: i64 = 1_750_000_000;

fn days(n: u64) -> Duration {
    DAY * n as u32
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

fn counts(pairs: &[(&str, u64)]) -> Counts {
    pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn cert() -> IdCertificate {
    IdCertificate {
        smart_account: "Example Corp".into(),
        virtual_account: "RADIUS".into(),
        export_controlled: true,
    }
}

/// The CPAR catalogue, requesting 1 PAR-TPS and 2 PAR-ADD-TPS (300 TPS).
fn par_config() -> AgentConfig {
    AgentConfig::new(Product::par_tps()).with_selection([("PAR-TPS", 1), ("PAR-ADD-TPS", 2)])
}

/// An agent on a fake clock, with a wall clock that follows it (plus a skew tests set).
struct Rig {
    clock: FakeClock,
    agent: Agent,
    wall_skew: i64,
    events: Vec<Event>,
}

impl Rig {
    fn new(config: AgentConfig) -> Self {
        let clock = FakeClock::new();
        let agent = Agent::new(config, clock.now()).unwrap();
        Self {
            clock,
            agent,
            wall_skew: 0,
            events: Vec::new(),
        }
    }

    fn par() -> Self {
        Self::new(par_config())
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn wall(&self) -> i64 {
        WALL0 + (self.now() / SEC) as i64 + self.wall_skew
    }

    fn poll(&mut self) -> Vec<Action> {
        let actions = self.agent.poll(self.now(), self.wall());
        self.events.extend(self.agent.take_events());
        actions
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.clock.advance(by);
        self.poll()
    }

    fn auth(&self) -> AuthorizationStatus {
        self.agent.status().authorization.status
    }

    fn reg(&self) -> RegistrationStatus {
        self.agent.status().registration.status
    }

    fn enforcement(&self) -> Enforcement {
        self.agent.status().enforcement
    }

    /// The limit of the first gate entitlement.
    fn limit(&self) -> Limit {
        self.agent.limits()[0].1
    }

    fn tps(&self) -> Option<u64> {
        self.limit().per_second()
    }

    fn evaluation_left(&self) -> Duration {
        self.agent.status().authorization.evaluation_remaining
    }

    /// Registers (the authority accepting at once) and returns the actions of the poll
    /// after the success.
    fn register(&mut self) -> Vec<Action> {
        self.agent
            .register(self.now(), IdToken::new("token-1").unwrap())
            .unwrap();
        let actions = self.poll();
        assert!(
            matches!(&actions[..], [Action::Register { token }] if token.expose() == "token-1"),
            "{actions:?}"
        );
        self.agent
            .registration_succeeded(self.now(), cert())
            .unwrap();
        self.poll()
    }

    /// Registers and answers the first authorisation with `granted`.
    fn register_and_authorize(&mut self, granted: &[(&str, u64)]) {
        let actions = self.register();
        assert!(
            matches!(&actions[..], [Action::Authorize { .. }]),
            "{actions:?}"
        );
        self.agent
            .authorization_received(self.now(), counts(granted))
            .unwrap();
        self.poll();
    }

    /// Drives the agent like a sidecar for `span`: polls at every wake-up (and at least
    /// every `period`), letting `respond` answer each action. Returns the actions with the
    /// time each went out.
    fn drive(
        &mut self,
        span: Duration,
        period: Duration,
        mut respond: impl FnMut(&mut Agent, u64, &Action),
    ) -> Vec<(u64, Action)> {
        let end = self.now() + nanos(span);
        let mut log = Vec::new();
        for _ in 0..1_000_000 {
            let actions = self.poll();
            let now = self.now();
            for action in actions {
                respond(&mut self.agent, now, &action);
                log.push((now, action));
            }
            self.events.extend(self.agent.take_events());
            let now = self.now();
            if now >= end {
                return log;
            }
            let next = self
                .agent
                .next_wakeup()
                .unwrap_or(u64::MAX)
                .min(now + nanos(period))
                .min(end);
            self.clock.advance_nanos(next.saturating_sub(now));
        }
        panic!("the agent never stopped asking to be polled");
    }

    /// The events of `kind`'s variant seen so far, with their times.
    fn events_where(&self, f: impl Fn(&EventKind) -> bool) -> Vec<(i64, EventKind)> {
        self.events
            .iter()
            .filter(|e| f(&e.kind))
            .map(|e| (e.at.mono_nanos, e.kind.clone()))
            .collect()
    }
}

fn authorization_changes(rig: &Rig) -> Vec<(i64, AuthorizationStatus)> {
    rig.events_where(|k| matches!(k, EventKind::Authorization { .. }))
        .into_iter()
        .map(|(at, k)| match k {
            EventKind::Authorization { to, .. } => (at, to),
            _ => unreachable!(),
        })
        .collect()
}

fn is_register(a: &Action) -> bool {
    matches!(a, Action::Register { .. })
}

// ----- Defaults -----

#[test]
fn the_default_timers_are_those_of_the_design() {
    let t = Timers::default();
    assert_eq!(t.evaluation, days(90));
    assert_eq!(t.id_validity, days(365));
    assert_eq!(t.id_renewal, days(180));
    assert_eq!(t.authorization_renewal, days(30));
    assert_eq!(t.communication_deadline, days(90));
    assert_eq!(t.grace, days(30));
    assert_eq!(t.retry, HOUR);
    assert_eq!(t.clock_jump_tolerance, Duration::from_secs(300));
    t.validate().unwrap();
}

// ----- Evaluation -----

#[test]
fn a_new_agent_evaluates_what_it_requests_for_90_days() {
    let mut rig = Rig::par();
    rig.poll();
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.enforcement(), Enforcement::Evaluation);
    assert_eq!(rig.tps(), Some(300), "1 PAR-TPS + 2 PAR-ADD-TPS requested");
    assert_eq!(rig.agent.next_wakeup(), Some(nanos(days(90))));

    rig.advance(days(90) - Duration::from_nanos(1));
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.evaluation_left(), Duration::from_nanos(1));

    // Polled late: the expiry is dated when it happened.
    rig.advance(days(5));
    assert_eq!(rig.auth(), AuthorizationStatus::EvaluationExpired);
    assert_eq!(rig.enforcement(), Enforcement::Unlicensed);
    assert_eq!(rig.tps(), Some(10), "the default floor");
    assert_eq!(rig.evaluation_left(), Duration::ZERO);
    assert_eq!(
        authorization_changes(&rig),
        vec![(
            nanos(days(90)) as i64,
            AuthorizationStatus::EvaluationExpired
        )]
    );
    let limits = rig.events_where(|k| matches!(k, EventKind::LimitsChanged { .. }));
    assert_eq!(limits.len(), 1);
    assert_eq!(rig.agent.next_wakeup(), None, "nothing left to time");
}

#[test]
fn evaluation_time_runs_only_while_unregistered() {
    let mut rig = Rig::par();
    rig.advance(days(30));
    assert_eq!(rig.evaluation_left(), days(60));

    // It still runs while registering.
    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    rig.poll();
    rig.advance(days(1));
    rig.agent.registration_succeeded(rig.now(), cert()).unwrap();
    assert_eq!(rig.evaluation_left(), days(59));

    // Registered for 100 days (renewing as it should): it stands still.
    rig.drive(days(100), DAY, |agent, now, action| match action {
        Action::Authorize { requests } => {
            agent.authorization_received(now, requests.clone()).unwrap()
        }
        Action::RenewId => agent.id_renewed(now, cert()).unwrap(),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);
    assert_eq!(rig.evaluation_left(), days(59));

    // Deregistered: it goes on from where it was.
    rig.agent.deregister(rig.now()).unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.evaluation_left(), days(59));
    rig.advance(days(58));
    assert_eq!(rig.evaluation_left(), days(1));
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    rig.advance(days(1));
    assert_eq!(rig.auth(), AuthorizationStatus::EvaluationExpired);
    assert_eq!(rig.tps(), Some(10));
}

#[test]
fn a_fixed_evaluation_rate_overrides_the_request() {
    let product = Product::new([EntitlementSpec::new("PAR-TPS", Policy::Hard)
        .fed_by("PAR-TPS", 100)
        .evaluation_tps(50)]);
    let rig = Rig::new(AgentConfig::new(product).with_selection([("PAR-TPS", 4)]));
    assert_eq!(rig.tps(), Some(50));
}

// ----- Registration -----

#[test]
fn registration_succeeds_and_status_shows_the_certificate_and_timers() {
    let mut rig = Rig::par();
    rig.clock.advance(days(2));
    rig.agent
        .register(rig.now(), IdToken::new("token-1").unwrap())
        .unwrap();
    assert_eq!(rig.reg(), RegistrationStatus::Registering);
    let actions = rig.poll();
    assert!(matches!(&actions[..], [Action::Register { token }] if token.expose() == "token-1"));
    assert!(rig.poll().is_empty(), "the registration goes out once");

    let t0 = rig.now();
    rig.agent.registration_succeeded(t0, cert()).unwrap();
    let status = rig.agent.status();
    let r = &status.registration;
    assert_eq!(r.status, RegistrationStatus::Registered);
    assert_eq!(r.smart_account.as_deref(), Some("Example Corp"));
    assert_eq!(r.virtual_account.as_deref(), Some("RADIUS"));
    assert_eq!(r.export_controlled, Some(true));
    let initial = r.initial_registration.unwrap();
    assert_eq!(initial.mono_nanos, t0 as i64);
    assert_eq!(initial.wall_unix_secs, Some(WALL0 + 2 * 86_400));
    assert_eq!(
        r.next_renewal_attempt.unwrap().mono_nanos,
        (t0 + nanos(days(180))) as i64
    );
    assert_eq!(
        r.expires.unwrap().mono_nanos,
        (t0 + nanos(days(365))) as i64
    );
    assert_eq!(
        r.expires.unwrap().wall_unix_secs,
        Some(WALL0 + 367 * 86_400),
        "the wall time it will be, from the last reading"
    );
    assert_eq!(status.authorization.status, AuthorizationStatus::Pending);
    assert_eq!(
        status.enforcement,
        Enforcement::Evaluation,
        "evaluation limits until the first authorisation"
    );

    // The first authorisation is asked for at once.
    let actions = rig.poll();
    assert_eq!(
        actions,
        vec![Action::Authorize {
            requests: counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)])
        }]
    );
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    let a = rig.agent.status().authorization;
    assert_eq!(a.status, AuthorizationStatus::Authorized);
    assert_eq!(
        a.last_communication_attempt.unwrap().outcome,
        Outcome::Succeeded
    );
    assert_eq!(
        a.next_communication_attempt.unwrap().mono_nanos,
        (t0 + nanos(days(30))) as i64
    );
    assert_eq!(
        a.communication_deadline.unwrap().mono_nanos,
        (t0 + nanos(days(90))) as i64
    );
    assert_eq!(
        a.grace_ends.unwrap().mono_nanos,
        (t0 + nanos(days(120))) as i64
    );
    assert!(
        a.entitlements
            .iter()
            .all(|e| e.status == EntitlementStatus::Authorized)
    );
    assert_eq!(rig.enforcement(), Enforcement::Authorized);
    assert_eq!(rig.tps(), Some(300));

    rig.events.extend(rig.agent.take_events());
    let registrations: Vec<_> = rig
        .events_where(|k| matches!(k, EventKind::Registration { .. }))
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert_eq!(
        registrations,
        vec![
            EventKind::Registration {
                from: RegistrationStatus::Unregistered,
                to: RegistrationStatus::Registering,
                reason: None
            },
            EventKind::Registration {
                from: RegistrationStatus::Registering,
                to: RegistrationStatus::Registered,
                reason: None
            },
        ]
    );
}

#[test]
fn a_failed_registration_goes_back_to_unregistered_and_keeps_the_reason() {
    let mut rig = Rig::par();
    rig.agent
        .register(rig.now(), IdToken::new("expired-token").unwrap())
        .unwrap();
    assert!(rig.poll().iter().any(is_register));
    rig.clock.advance(Duration::from_secs(30));
    rig.agent
        .registration_failed(rig.now(), "token expired")
        .unwrap();
    let status = rig.agent.status();
    assert_eq!(status.registration.status, RegistrationStatus::Unregistered);
    let failure = status.registration.last_failure.unwrap();
    assert_eq!(failure.reason, "token expired");
    assert_eq!(failure.at.mono_nanos, 30 * SEC as i64);
    assert_eq!(status.authorization.status, AuthorizationStatus::Evaluation);
    rig.events.extend(rig.agent.take_events());
    assert!(rig.events.iter().any(|e| e.kind
        == EventKind::Registration {
            from: RegistrationStatus::Registering,
            to: RegistrationStatus::Unregistered,
            reason: Some("token expired".into())
        }));
    // And it can be tried again.
    rig.agent
        .register(rig.now(), IdToken::new("new-token").unwrap())
        .unwrap();
    assert!(rig.poll().iter().any(is_register));
}

#[test]
fn registration_inputs_out_of_turn_are_refused_and_change_nothing() {
    let mut rig = Rig::par();
    assert_eq!(IdToken::new("  ").unwrap_err(), Error::EmptyToken);
    assert_eq!(
        rig.agent.registration_succeeded(rig.now(), cert()),
        Err(Error::NotRegistering)
    );
    assert_eq!(
        rig.agent.registration_failed(rig.now(), "x"),
        Err(Error::NotRegistering)
    );
    assert_eq!(rig.agent.deregister(rig.now()), Err(Error::NotRegistered));
    assert_eq!(
        rig.agent.id_renewed(rig.now(), cert()),
        Err(Error::NotRegistered)
    );
    assert_eq!(
        rig.agent.id_renewal_failed(rig.now(), "x"),
        Err(Error::NotRegistered)
    );
    assert_eq!(rig.agent.renew_id(rig.now()), Err(Error::NotRegistered));
    assert_eq!(
        rig.agent.renew_authorization(rig.now()),
        Err(Error::NotRegistered)
    );
    assert_eq!(
        rig.agent.authorization_received(rig.now(), Counts::new()),
        Err(Error::NotRegistered)
    );
    assert_eq!(
        rig.agent.authorization_failed(rig.now(), "x"),
        Err(Error::NotRegistered)
    );
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    assert!(rig.agent.take_events().is_empty());

    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    assert_eq!(
        rig.agent.register(rig.now(), IdToken::new("t").unwrap()),
        Err(Error::AlreadyRegistering)
    );
    rig.poll();
    rig.agent.registration_succeeded(rig.now(), cert()).unwrap();
    assert_eq!(
        rig.agent.register(rig.now(), IdToken::new("t").unwrap()),
        Err(Error::AlreadyRegistered)
    );
    assert_eq!(rig.reg(), RegistrationStatus::Registered);
}

#[test]
fn deregistration_tells_the_authority_and_falls_back_to_evaluation() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    assert_eq!(rig.tps(), Some(100));
    rig.agent.deregister(rig.now()).unwrap();
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.tps(), Some(300), "back to evaluating the request");
    assert!(
        rig.agent
            .status()
            .authorization
            .communication_deadline
            .is_none()
    );
    assert_eq!(rig.poll(), vec![Action::Deregister]);
    assert!(rig.poll().is_empty(), "once");
}

#[test]
fn deregistering_while_registering_cancels_the_registration() {
    let mut rig = Rig::par();
    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    // Not sent yet: nothing to undo at the authority.
    rig.agent.deregister(rig.now()).unwrap();
    assert!(rig.poll().is_empty());
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);

    // Sent: the authority may have registered it, so it is told.
    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    assert!(rig.poll().iter().any(is_register));
    rig.agent.deregister(rig.now()).unwrap();
    assert_eq!(rig.poll(), vec![Action::Deregister]);
    assert_eq!(
        rig.agent.registration_succeeded(rig.now(), cert()),
        Err(Error::NotRegistering),
        "a late answer is refused"
    );
}

#[test]
fn the_id_certificate_is_renewed_every_six_months() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    let log = rig.drive(days(800), DAY, |agent, now, action| match action {
        Action::Authorize { requests } => {
            agent.authorization_received(now, requests.clone()).unwrap()
        }
        Action::RenewId => agent.id_renewed(now, cert()).unwrap(),
        other => panic!("unexpected {other:?}"),
    });
    let renewals: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == Action::RenewId)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        renewals,
        vec![
            nanos(days(180)),
            nanos(days(360)),
            nanos(days(540)),
            nanos(days(720))
        ]
    );
    let authorizations = log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Authorize { .. }))
        .count();
    assert_eq!(authorizations, 800 / 30, "every 30 days");
    assert_eq!(rig.reg(), RegistrationStatus::Registered, "never expired");
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);
    let r = rig.agent.status().registration;
    assert_eq!(r.expires.unwrap().mono_nanos, nanos(days(720 + 365)) as i64);
    assert_eq!(r.last_renewal_attempt.unwrap().outcome, Outcome::Succeeded);
}

#[test]
fn a_failed_id_renewal_is_retried_every_hour_until_it_succeeds() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    rig.clock.advance(days(180));
    let actions = rig.poll();
    assert!(actions.contains(&Action::RenewId));
    for attempt in 1..=3 {
        rig.agent
            .id_renewal_failed(rig.now(), format!("unreachable {attempt}"))
            .unwrap();
        let r = rig.agent.status().registration;
        assert_eq!(
            r.next_renewal_attempt.unwrap().mono_nanos,
            (rig.now() + nanos(HOUR)) as i64
        );
        assert_eq!(
            r.last_renewal_attempt.unwrap().outcome,
            Outcome::Failed {
                reason: format!("unreachable {attempt}")
            }
        );
        assert!(
            !rig.advance(HOUR - Duration::from_secs(1))
                .contains(&Action::RenewId)
        );
        assert!(
            rig.advance(Duration::from_secs(1))
                .contains(&Action::RenewId)
        );
    }
    assert_eq!(
        rig.agent.status().registration.expires.unwrap().mono_nanos,
        nanos(days(365)) as i64,
        "failures do not extend the certificate"
    );
    let t = rig.now();
    rig.agent.id_renewed(t, cert()).unwrap();
    let r = rig.agent.status().registration;
    assert_eq!(r.expires.unwrap().mono_nanos, (t + nanos(days(365))) as i64);
    assert_eq!(
        r.next_renewal_attempt.unwrap().mono_nanos,
        (t + nanos(days(180))) as i64
    );
    assert!(!rig.advance(HOUR).contains(&Action::RenewId));
}

#[test]
fn an_unanswered_id_renewal_goes_out_again_after_the_retry_interval() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    assert!(rig.advance(days(180)).contains(&Action::RenewId));
    assert!(
        !rig.advance(Duration::from_secs(60))
            .contains(&Action::RenewId)
    );
    assert!(rig.advance(HOUR).contains(&Action::RenewId));
}

// ----- Authorisation -----

#[test]
fn a_failed_authorisation_renewal_is_retried_every_hour_and_enforcement_holds() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    let deadline = rig.agent.status().authorization.communication_deadline;
    let actions = rig.advance(days(30));
    assert!(matches!(&actions[..], [Action::Authorize { .. }]));
    for _ in 0..5 {
        rig.agent
            .authorization_failed(rig.now(), "connection refused")
            .unwrap();
        assert!(rig.advance(HOUR - Duration::from_secs(1)).is_empty());
        assert!(matches!(
            &rig.advance(Duration::from_secs(1))[..],
            [Action::Authorize { .. }]
        ));
    }
    let a = rig.agent.status().authorization;
    assert_eq!(a.status, AuthorizationStatus::Authorized);
    assert_eq!(
        a.communication_deadline, deadline,
        "failures do not move it"
    );
    assert_eq!(
        a.last_communication_attempt.unwrap().outcome,
        Outcome::Failed {
            reason: "connection refused".into()
        }
    );
    assert_eq!(rig.tps(), Some(300));

    let t = rig.now();
    rig.agent
        .authorization_received(t, counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    let a = rig.agent.status().authorization;
    assert_eq!(
        a.communication_deadline.unwrap().mono_nanos,
        (t + nanos(days(90))) as i64
    );
    assert_eq!(
        a.next_communication_attempt.unwrap().mono_nanos,
        (t + nanos(days(30))) as i64
    );
}

#[test]
fn a_year_without_contact_expires_the_authorisation_then_the_registration() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    assert_eq!(rig.tps(), Some(300));
    rig.events.clear();

    // Every call fails for a year; the driver samples the state daily.
    let mut tps_by_day = Vec::new();
    let mut calls = 0;
    for _ in 0..366 {
        rig.drive(DAY, DAY, |agent, now, action| {
            calls += 1;
            match action {
                Action::Authorize { .. } => agent.authorization_failed(now, "no route").unwrap(),
                Action::RenewId => agent.id_renewal_failed(now, "no route").unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        });
        tps_by_day.push((rig.auth(), rig.enforcement(), rig.tps()));
    }
    // Day n (1-based) is sampled at the end of day n.
    assert_eq!(
        tps_by_day[88],
        (
            AuthorizationStatus::Authorized,
            Enforcement::Authorized,
            Some(300)
        )
    );
    assert_eq!(
        tps_by_day[89],
        (
            AuthorizationStatus::AuthorizationExpired,
            Enforcement::Grace,
            Some(300)
        ),
        "the last authorised counts stay enforced in grace"
    );
    assert_eq!(
        tps_by_day[118],
        (
            AuthorizationStatus::AuthorizationExpired,
            Enforcement::Grace,
            Some(300)
        )
    );
    assert_eq!(
        tps_by_day[119],
        (
            AuthorizationStatus::AuthorizationExpired,
            Enforcement::Unlicensed,
            Some(10)
        ),
        "then the unlicensed floor"
    );
    assert_eq!(tps_by_day[363].1, Enforcement::Unlicensed);
    assert_eq!(
        tps_by_day[364],
        (
            AuthorizationStatus::Evaluation,
            Enforcement::Evaluation,
            Some(300)
        ),
        "the certificate expired: unregistered, back on the 90 days of evaluation it never used"
    );
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    let status = rig.agent.status();
    assert_eq!(
        status.registration.last_failure.unwrap().reason,
        "ID certificate expired"
    );
    assert_eq!(status.authorization.evaluation_remaining, days(89));
    // Retried hourly from day 30 (authorisation) and day 180 (ID) until the expiry.
    assert!(calls > 24 * (365 - 30), "{calls} calls");

    // The audit log dates each change when it happened.
    assert_eq!(
        authorization_changes(&rig),
        vec![
            (
                nanos(days(90)) as i64,
                AuthorizationStatus::AuthorizationExpired
            ),
            (nanos(days(365)) as i64, AuthorizationStatus::Evaluation),
        ]
    );
    let enforcement: Vec<_> = rig
        .events_where(|k| matches!(k, EventKind::Enforcement { .. }))
        .into_iter()
        .map(|(at, k)| match k {
            EventKind::Enforcement { to, .. } => (at / nanos(DAY) as i64, to),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        enforcement,
        vec![
            (90, Enforcement::Grace),
            (120, Enforcement::Unlicensed),
            (365, Enforcement::Evaluation)
        ]
    );
    assert!(rig.events.iter().any(|e| e.kind
        == EventKind::Registration {
            from: RegistrationStatus::Registered,
            to: RegistrationStatus::Unregistered,
            reason: Some("ID certificate expired".into())
        }
        && e.at.mono_nanos == nanos(days(365)) as i64));
}

#[test]
fn a_grace_of_zero_applies_the_unlicensed_behaviour_at_the_deadline() {
    let mut config = par_config();
    config.timers.grace = Duration::ZERO;
    let mut rig = Rig::new(config);
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(days(90) - Duration::from_nanos(1));
    assert_eq!(rig.tps(), Some(300));
    rig.advance(Duration::from_nanos(1));
    assert_eq!(rig.auth(), AuthorizationStatus::AuthorizationExpired);
    assert_eq!(rig.enforcement(), Enforcement::Unlicensed);
    assert_eq!(rig.tps(), Some(10));
}

#[test]
fn a_later_successful_contact_recovers_from_an_expired_authorisation() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(days(125));
    assert_eq!(rig.enforcement(), Enforcement::Unlicensed);
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 1)]))
        .unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::OutOfCompliance);
    assert_eq!(rig.tps(), Some(200));
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);
    assert_eq!(rig.tps(), Some(300));
}

#[test]
fn a_registration_never_authorised_expires_at_the_deadline_to_the_unlicensed_behaviour() {
    let mut rig = Rig::par();
    rig.register();
    assert_eq!(rig.auth(), AuthorizationStatus::Pending);
    assert_eq!(rig.tps(), Some(300), "evaluation limits while pending");
    rig.advance(days(90));
    assert_eq!(rig.auth(), AuthorizationStatus::AuthorizationExpired);
    assert_eq!(
        rig.enforcement(),
        Enforcement::Unlicensed,
        "no counts to keep in grace"
    );
    assert_eq!(rig.tps(), Some(10));
}

#[test]
fn out_of_compliance_enforces_what_was_granted_but_never_below_the_floor() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 1)]);
    let a = rig.agent.status().authorization;
    assert_eq!(a.status, AuthorizationStatus::OutOfCompliance);
    let add = a
        .entitlements
        .iter()
        .find(|e| e.licence == "PAR-ADD-TPS")
        .unwrap();
    assert_eq!((add.requested, add.granted), (2, 1));
    assert_eq!(add.status, EntitlementStatus::OutOfCompliance);
    let base = a
        .entitlements
        .iter()
        .find(|e| e.licence == "PAR-TPS")
        .unwrap();
    assert_eq!(base.status, EntitlementStatus::Authorized);
    assert_eq!(rig.enforcement(), Enforcement::Authorized);
    assert_eq!(rig.tps(), Some(200));

    rig.agent.renew_authorization(rig.now()).unwrap();
    assert!(matches!(&rig.poll()[..], [Action::Authorize { .. }]));
    rig.agent
        .authorization_received(rig.now(), Counts::new())
        .unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::OutOfCompliance);
    assert_eq!(rig.tps(), Some(10), "nothing granted: the floor, not zero");

    let mut config = par_config();
    config.unlicensed = Unlicensed::Floor { tps: 150 };
    let mut rig = Rig::new(config);
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    assert_eq!(rig.auth(), AuthorizationStatus::OutOfCompliance);
    assert_eq!(rig.tps(), Some(150), "100 granted, raised to the floor");
}

#[test]
fn counted_licences_add_up_with_the_burst_rule_and_policy() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    assert_eq!(rig.limit(), Limit::new(300, 30, Policy::Hard).unwrap());

    // Two gate entitlements; one licence may feed both.
    let product = Product::new([
        EntitlementSpec::new("AUTH-TPS", Policy::SteadyState)
            .fed_by("PAR-TPS", 100)
            .fed_by("PAR-ADD-TPS", 100)
            .burst_ms(1000),
        EntitlementSpec::new("ACCT-TPS", Policy::Monitor)
            .fed_by("PAR-TPS", 50)
            .fed_by("PAR-ACCT-TPS", 25)
            .burst_ms(1),
    ]);
    let config = AgentConfig::new(product).with_selection([
        ("PAR-TPS", 2),
        ("PAR-ADD-TPS", 3),
        ("PAR-ACCT-TPS", 4),
    ]);
    let mut rig = Rig::new(config);
    rig.register_and_authorize(&[("PAR-TPS", 2), ("PAR-ADD-TPS", 3), ("PAR-ACCT-TPS", 4)]);
    assert_eq!(
        rig.agent.limits(),
        vec![
            (
                "AUTH-TPS".to_owned(),
                Limit::new(500, 500, Policy::SteadyState).unwrap()
            ),
            (
                "ACCT-TPS".to_owned(),
                Limit::new(200, 1, Policy::Monitor).unwrap()
            ),
        ]
    );
}

#[test]
fn monitor_only_never_rejects_when_nothing_is_licensed() {
    let mut config = par_config();
    config.unlicensed = Unlicensed::MonitorOnly;
    let mut rig = Rig::new(config);
    rig.advance(days(90));
    assert_eq!(rig.enforcement(), Enforcement::Unlicensed);
    assert_eq!(
        rig.limit(),
        Limit::new(300, 30, Policy::Monitor).unwrap(),
        "metered against what is requested"
    );
    rig.agent.set_selection(rig.now(), Counts::new()).unwrap();
    assert_eq!(rig.limit(), Limit::Unlimited);
}

#[test]
fn a_selection_change_triggers_an_authorisation_and_the_gate_follows_without_restart() {
    let mut rig = Rig::par();
    // In evaluation, the evaluation limits follow the selection at once.
    rig.agent
        .set_selection(rig.now(), counts(&[("PAR-TPS", 1)]))
        .unwrap();
    assert_eq!(rig.tps(), Some(100));
    assert_eq!(
        rig.agent
            .set_selection(rig.now(), counts(&[("PAR-BOGUS", 1)])),
        Err(Error::UnknownLicence("PAR-BOGUS".into()))
    );
    assert_eq!(rig.agent.selection(), &counts(&[("PAR-TPS", 1)]));

    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    assert_eq!(rig.tps(), Some(100));
    let gate = gate_for(&rig.agent);
    let par_tps = gate.entitlement("PAR-TPS").unwrap();

    rig.clock.advance(days(3));
    rig.agent
        .set_selection(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 4)]))
        .unwrap();
    assert_eq!(
        rig.tps(),
        Some(100),
        "registered: it waits for the authority"
    );
    assert_eq!(
        rig.poll(),
        vec![Action::Authorize {
            requests: counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 4)])
        }]
    );
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 4)]))
        .unwrap();
    assert_eq!(rig.tps(), Some(500));
    rig.agent.apply_to(&gate).unwrap();
    assert_eq!(gate.limits().limit(par_tps).per_second(), Some(500));
    assert_eq!(
        rig.agent
            .status()
            .authorization
            .next_communication_attempt
            .unwrap()
            .mono_nanos,
        (rig.now() + nanos(days(30))) as i64
    );
}

#[test]
fn an_answer_to_an_older_selection_asks_again_at_once() {
    let mut rig = Rig::par();
    rig.register();
    // The first request (300 TPS) is in flight when the operator changes the selection.
    rig.agent
        .set_selection(rig.now(), counts(&[("PAR-TPS", 1)]))
        .unwrap();
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    assert_eq!(rig.tps(), Some(300), "what was granted");
    assert_eq!(
        rig.poll(),
        vec![Action::Authorize {
            requests: counts(&[("PAR-TPS", 1)])
        }]
    );
}

// ----- Reservation -----

fn reserved(sequence: u32, kind: ReservationKind) -> Reserved {
    Reserved {
        sequence,
        smart_account: "Air Gapped Inc".into(),
        virtual_account: None,
        export_controlled: false,
        kind,
    }
}

fn reservation(rig: &Rig) -> ReservationStatus {
    rig.agent.status().reservation.status
}

#[test]
fn reservation_walks_through_its_states() {
    let mut rig = Rig::par();
    let now = rig.now();
    assert_eq!(reservation(&rig), ReservationStatus::Disabled);
    assert_eq!(
        rig.agent.reservation_request(now),
        Err(Error::ReservationDisabled)
    );
    assert_eq!(
        rig.agent.reservation_cancel(now),
        Err(Error::ReservationDisabled)
    );

    rig.agent.reservation_enable(now).unwrap();
    assert_eq!(reservation(&rig), ReservationStatus::Enabled);
    assert_eq!(
        rig.agent.reservation_cancel(now),
        Err(Error::NoRequestPending)
    );
    assert_eq!(
        rig.agent
            .reservation_install(now, reserved(1, ReservationKind::Permanent)),
        Err(Error::NoRequestPending),
        "install only answers a pending request"
    );
    assert_eq!(rig.agent.reservation_return(now), Err(Error::NotInstalled));

    let first = rig.agent.reservation_request(now).unwrap();
    assert_eq!(reservation(&rig), ReservationStatus::RequestPending);
    assert_eq!(rig.agent.status().reservation.pending_sequence, Some(first));
    assert_eq!(
        rig.agent.reservation_request(now),
        Ok(first),
        "same request again"
    );

    rig.agent.reservation_cancel(now).unwrap();
    assert_eq!(reservation(&rig), ReservationStatus::Enabled);
    let second = rig.agent.reservation_request(now).unwrap();
    assert_ne!(second, first, "a new request, a new sequence number");
    assert_eq!(
        rig.agent
            .reservation_install(now, reserved(first, ReservationKind::Permanent)),
        Err(Error::SequenceMismatch {
            expected: second,
            got: first
        })
    );
    assert_eq!(reservation(&rig), ReservationStatus::RequestPending);

    rig.agent
        .reservation_install(now, reserved(second, ReservationKind::Permanent))
        .unwrap();
    assert_eq!(reservation(&rig), ReservationStatus::Installed);
    assert_eq!(
        rig.agent.reservation_disable(now),
        Err(Error::DisableWhileInstalled)
    );
    assert_eq!(
        rig.agent.reservation_request(now),
        Err(Error::AlreadyInstalled)
    );
    assert_eq!(
        rig.agent.register(now, IdToken::new("t").unwrap()),
        Err(Error::RegisterWhileReserved(ReservationStatus::Installed))
    );
    assert_eq!(reservation(&rig), ReservationStatus::Installed);

    let returned = rig.agent.reservation_return(now).unwrap();
    assert_eq!(returned.sequence, second);
    assert_eq!(reservation(&rig), ReservationStatus::Enabled);
    rig.agent.reservation_disable(now).unwrap();
    assert_eq!(reservation(&rig), ReservationStatus::Disabled);

    let kinds: Vec<_> = rig
        .agent
        .take_events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Reservation { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    use ReservationStatus::*;
    assert_eq!(
        kinds,
        vec![
            Enabled,
            RequestPending,
            Enabled,
            RequestPending,
            Installed,
            Enabled,
            Disabled
        ]
    );
}

#[test]
fn token_registration_and_reservation_exclude_each_other() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    let now = rig.now();
    assert_eq!(
        rig.agent.reservation_enable(now),
        Err(Error::ReserveWhileRegistered)
    );
    rig.agent.deregister(now).unwrap();
    rig.agent.reservation_enable(now).unwrap();
    // Enabled but nothing requested: a token registration is still possible...
    rig.agent.register(now, IdToken::new("t").unwrap()).unwrap();
    // ...and then requesting a reservation is refused until deregistered.
    assert_eq!(
        rig.agent.reservation_request(now),
        Err(Error::ReserveWhileRegistered)
    );
    rig.agent.deregister(now).unwrap();
    rig.agent.reservation_request(now).unwrap();
    assert_eq!(
        rig.agent.register(now, IdToken::new("t").unwrap()),
        Err(Error::RegisterWhileReserved(
            ReservationStatus::RequestPending
        ))
    );
    // Disabling drops the pending request.
    rig.agent.reservation_disable(now).unwrap();
    assert_eq!(rig.agent.status().reservation.pending_sequence, None);
    rig.agent.register(now, IdToken::new("t").unwrap()).unwrap();
}

#[test]
fn a_permanent_reservation_makes_everything_unlimited_until_returned() {
    let mut rig = Rig::par();
    rig.advance(days(10));
    rig.agent.reservation_enable(rig.now()).unwrap();
    let seq = rig.agent.reservation_request(rig.now()).unwrap();
    rig.agent
        .reservation_install(rig.now(), reserved(seq, ReservationKind::Permanent))
        .unwrap();
    let status = rig.agent.status();
    assert_eq!(
        status.registration.status,
        RegistrationStatus::ReservedPermanent
    );
    assert_eq!(
        status.registration.smart_account.as_deref(),
        Some("Air Gapped Inc")
    );
    assert_eq!(status.authorization.status, AuthorizationStatus::Reserved);
    assert_eq!(status.enforcement, Enforcement::Permanent);
    assert!(
        rig.agent
            .limits()
            .iter()
            .all(|(_, l)| *l == Limit::Unlimited)
    );

    // Years pass; nothing expires, and the evaluation time stands still.
    rig.advance(days(3 * 365));
    assert_eq!(rig.enforcement(), Enforcement::Permanent);
    assert_eq!(rig.evaluation_left(), days(80));
    assert!(rig.poll().is_empty());

    rig.agent.reservation_return(rig.now()).unwrap();
    assert_eq!(rig.reg(), RegistrationStatus::Unregistered);
    assert_eq!(rig.auth(), AuthorizationStatus::Evaluation);
    assert_eq!(rig.tps(), Some(300));
    rig.advance(days(80));
    assert_eq!(rig.auth(), AuthorizationStatus::EvaluationExpired);
    assert_eq!(rig.tps(), Some(10));
}

#[test]
fn a_specific_reservation_enforces_exactly_the_reserved_counts() {
    let mut rig = Rig::par();
    rig.advance(days(100)); // evaluation over
    assert_eq!(rig.tps(), Some(10));
    rig.agent.reservation_enable(rig.now()).unwrap();
    let seq = rig.agent.reservation_request(rig.now()).unwrap();
    let licences = counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 4), ("OTHER-PRODUCT", 9)]);
    rig.agent
        .reservation_install(
            rig.now(),
            reserved(seq, ReservationKind::Specific { licences }),
        )
        .unwrap();
    let status = rig.agent.status();
    assert_eq!(
        status.registration.status,
        RegistrationStatus::ReservedSpecific
    );
    assert_eq!(status.enforcement, Enforcement::Specific);
    assert_eq!(
        rig.tps(),
        Some(500),
        "the reservation, not the selection (300)"
    );
    assert_eq!(status.authorization.entitlements.len(), 3);
    rig.advance(days(400));
    assert_eq!(rig.tps(), Some(500));

    rig.agent.reservation_return(rig.now()).unwrap();
    assert_eq!(rig.auth(), AuthorizationStatus::EvaluationExpired);
    assert_eq!(rig.tps(), Some(10));
}

// ----- Limits on a gate -----

fn gate_for(agent: &Agent) -> std::sync::Arc<Gate<FakeClock>> {
    let mut builder = Gate::builder(FakeClock::new());
    for (tag, limit) in agent.limits() {
        builder.register(&tag, limit).unwrap();
    }
    builder.build()
}

#[test]
fn the_agents_limits_apply_to_a_running_gate() {
    let clock = FakeClock::new();
    let mut agent = Agent::new(par_config(), clock.now()).unwrap();
    let mut builder = Gate::builder(clock.clone());
    let mut tags = Vec::new();
    for (tag, limit) in agent.limits() {
        tags.push(builder.register(&tag, limit).unwrap());
    }
    let other = builder.register("OTHER", Limit::hard(7).unwrap()).unwrap();
    let gate = builder.build();
    let par_tps = tags[0];
    let mut worker = gate.worker();

    let admitted = |w: &mut entitle_engine::Worker<FakeClock>| {
        (0..10_000).filter(|_| w.check(par_tps).is_admit()).count()
    };
    assert_eq!(
        admitted(&mut worker),
        30,
        "evaluation: 300 TPS, a burst of 30"
    );

    // The evaluation ends: the same gate and worker, now at the floor.
    clock.advance(days(90));
    agent.poll(clock.now(), WALL0);
    assert!(
        agent
            .take_events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::LimitsChanged { .. }))
    );
    agent.apply_to(&gate).unwrap();
    assert_eq!(
        gate.limits().limit(par_tps),
        Limit::new(10, 1, Policy::Hard).unwrap()
    );
    assert_eq!(
        gate.limits().limit(other).per_second(),
        Some(7),
        "untouched"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(admitted(&mut worker), 1, "the floor's burst");
    clock.advance(Duration::from_secs(1));
    let per_second = (0..10)
        .map(|_| {
            clock.advance(Duration::from_millis(100));
            admitted(&mut worker)
        })
        .sum::<usize>();
    assert_eq!(per_second, 10, "10 TPS");
}

#[test]
fn applying_limits_with_an_unknown_tag_is_refused_and_applies_nothing() {
    let agent = Agent::new(par_config(), 0).unwrap();
    let gate = gate_for(&agent);
    let before = gate.limits().limit(gate.entitlement("PAR-TPS").unwrap());
    let limits = vec![
        ("PAR-TPS".to_owned(), Limit::hard(5).unwrap()),
        ("NOT-ON-GATE".to_owned(), Limit::hard(5).unwrap()),
    ];
    let err = apply_limits(&gate, &limits).unwrap_err();
    assert!(matches!(err, Error::Gate(entitle_engine::Error::UnknownTag(t)) if t == "NOT-ON-GATE"));
    assert_eq!(
        gate.limits().limit(gate.entitlement("PAR-TPS").unwrap()),
        before
    );
}

// ----- Clocks -----

#[test]
fn wall_clock_jumps_raise_events_and_move_no_timer() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(days(1));
    rig.events.clear();
    let wakeup = rig.agent.next_wakeup();
    let deadline = rig
        .agent
        .status()
        .authorization
        .communication_deadline
        .unwrap();

    // Someone sets the clock back an hour.
    rig.wall_skew = -3600;
    rig.advance(Duration::from_secs(10));
    let jumps = rig.events_where(|k| matches!(k, EventKind::ClockJump { .. }));
    assert_eq!(jumps.len(), 1);
    let EventKind::ClockJump {
        direction,
        by,
        expected_wall_unix_secs,
        wall_unix_secs,
    } = &jumps[0].1
    else {
        unreachable!()
    };
    assert_eq!(*direction, JumpDirection::Backward);
    assert_eq!(*by, HOUR);
    assert_eq!(*wall_unix_secs, expected_wall_unix_secs - 3600);
    assert_eq!(rig.agent.next_wakeup(), wakeup, "timers unchanged");
    let after = rig
        .agent
        .status()
        .authorization
        .communication_deadline
        .unwrap();
    assert_eq!(after.mono_nanos, deadline.mono_nanos);
    assert_eq!(
        after.wall_unix_secs.unwrap(),
        deadline.wall_unix_secs.unwrap() - 3600,
        "shown on the new wall clock"
    );
    assert!(rig.poll().is_empty());
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);

    // Reported once; then forwards by ten minutes.
    rig.advance(Duration::from_secs(10));
    rig.wall_skew += 600;
    rig.advance(Duration::from_secs(10));
    let jumps = rig.events_where(|k| matches!(k, EventKind::ClockJump { .. }));
    assert_eq!(jumps.len(), 2);
    assert!(matches!(
        jumps[1].1,
        EventKind::ClockJump { direction: JumpDirection::Forward, by, .. } if by == Duration::from_secs(600)
    ));
    assert_eq!(rig.agent.next_wakeup(), wakeup);
}

#[test]
fn drift_within_the_tolerance_is_quiet_until_it_adds_up() {
    let mut rig = Rig::par();
    rig.poll();
    for step in 1..=4 {
        rig.wall_skew += 100; // 100 s at a time
        rig.advance(Duration::from_secs(60));
        let jumps = rig.events_where(|k| matches!(k, EventKind::ClockJump { .. }));
        assert_eq!(jumps.len(), usize::from(step == 4), "step {step}");
    }
}

// ----- Configuration -----

#[test]
fn bad_configurations_are_refused_with_what_is_wrong() {
    fn timers(f: impl FnOnce(&mut Timers)) -> Result<(), Error> {
        let mut t = Timers::default();
        f(&mut t);
        t.validate()
    }
    assert_eq!(
        timers(|t| t.authorization_renewal = Duration::ZERO),
        Err(Error::ZeroTimer {
            timer: "authorization_renewal"
        })
    );
    assert_eq!(
        timers(|t| t.id_renewal = Duration::ZERO),
        Err(Error::ZeroTimer {
            timer: "id_renewal"
        })
    );
    assert_eq!(
        timers(|t| t.retry = Duration::ZERO),
        Err(Error::ZeroTimer { timer: "retry" })
    );
    assert_eq!(
        timers(|t| t.id_renewal = days(400)),
        Err(Error::TimerOrder {
            shorter: "id_renewal",
            longer: "id_validity"
        })
    );
    assert_eq!(
        timers(|t| t.authorization_renewal = days(90)),
        Err(Error::TimerOrder {
            shorter: "authorization_renewal",
            longer: "communication_deadline"
        })
    );
    assert_eq!(
        timers(|t| t.retry = days(31)),
        Err(Error::TimerOrder {
            shorter: "retry",
            longer: "authorization_renewal"
        })
    );
    assert_eq!(
        timers(|t| t.clock_jump_tolerance = Duration::ZERO),
        Err(Error::ZeroTimer {
            timer: "clock_jump_tolerance"
        })
    );
    assert_eq!(
        timers(|t| t.grace = days(365 * 200)),
        Err(Error::TimerTooLong { timer: "grace" })
    );
    timers(|t| {
        t.grace = Duration::ZERO;
        t.evaluation = Duration::ZERO;
    })
    .unwrap();

    let mut config = par_config();
    config.unlicensed = Unlicensed::Floor { tps: 0 };
    assert_eq!(config.validate(), Err(Error::ZeroFloor));
    assert_eq!(Agent::new(config, 0).unwrap_err(), Error::ZeroFloor);
    assert!(
        Error::ZeroFloor
            .to_string()
            .contains("silently stop all traffic")
    );

    let mut config = par_config();
    config.selection.insert("PAR-NOPE".into(), 1);
    assert_eq!(
        config.validate(),
        Err(Error::UnknownLicence("PAR-NOPE".into()))
    );

    let product = |specs: Vec<EntitlementSpec>| AgentConfig::new(Product::new(specs)).validate();
    let spec = || EntitlementSpec::new("PAR-TPS", Policy::Hard).fed_by("PAR-TPS", 100);
    assert_eq!(product(vec![]), Err(Error::EmptyProduct));
    assert_eq!(
        product(vec![spec(), spec()]),
        Err(Error::DuplicateEntitlement("PAR-TPS".into()))
    );
    assert_eq!(
        product(vec![EntitlementSpec::new("PAR-TPS", Policy::Hard)]),
        Err(Error::NoLicences("PAR-TPS".into()))
    );
    assert_eq!(
        product(vec![spec().fed_by("PAR-TPS", 5)]),
        Err(Error::DuplicateLicence {
            entitlement: "PAR-TPS".into(),
            licence: "PAR-TPS".into()
        })
    );
    assert_eq!(
        product(vec![spec().fed_by("PAR-ADD-TPS", 0)]),
        Err(Error::ZeroTpsPerUnit {
            entitlement: "PAR-TPS".into(),
            licence: "PAR-ADD-TPS".into()
        })
    );
    assert_eq!(
        product(vec![spec().burst_ms(0)]),
        Err(Error::BurstWindow {
            entitlement: "PAR-TPS".into()
        })
    );
    assert_eq!(
        product(vec![spec().evaluation_tps(0)]),
        Err(Error::ZeroEvaluationTps {
            entitlement: "PAR-TPS".into()
        })
    );
    assert_eq!(
        product(vec![
            EntitlementSpec::new("PAR TPS", Policy::Hard).fed_by("x", 1)
        ]),
        Err(Error::InvalidTag("PAR TPS".into()))
    );
}

#[test]
fn configuration_reads_from_json_with_defaults_and_refuses_unknown_fields() {
    let json = r#"{
        "product": { "entitlements": [
            { "tag": "PAR-TPS", "policy": "steady-state",
              "licences": [ { "licence": "PAR-TPS", "tps_per_unit": 100 },
                            { "licence": "PAR-ADD-TPS", "tps_per_unit": 100 } ] }
        ] },
        "timers": { "grace": 0, "retry": 600 },
        "unlicensed": { "floor": { "tps": 5 } },
        "selection": { "PAR-TPS": 1 }
    }"#;
    let config: AgentConfig = serde_json::from_str(json).unwrap();
    config.validate().unwrap();
    assert_eq!(config.timers.grace, Duration::ZERO);
    assert_eq!(config.timers.retry, Duration::from_secs(600));
    assert_eq!(config.timers.evaluation, days(90), "defaults fill the rest");
    assert_eq!(config.unlicensed, Unlicensed::Floor { tps: 5 });
    assert_eq!(config.product.entitlements[0].burst_ms, 100);
    let again: AgentConfig =
        serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
    let monitor: Unlicensed = serde_json::from_str(r#""monitor-only""#).unwrap();
    assert_eq!(monitor, Unlicensed::MonitorOnly);

    for bad in [
        json.replace("\"selection\"", "\"selektion\""),
        json.replace("\"grace\": 0", "\"grace\": -1"),
        json.replace("\"grace\": 0", "\"grace_days\": 1"),
        json.replace(
            "\"tps_per_unit\": 100 },\n",
            "\"tps_per_unit\": 100, \"x\": 1 },\n",
        ),
        json.replace("{ \"tps\": 5 }", "{ \"tps\": 5, \"burst\": 1 }"),
        json.replace("\"policy\": \"steady-state\"", "\"policy\": \"lenient\""),
    ] {
        assert!(serde_json::from_str::<AgentConfig>(&bad).is_err(), "{bad}");
    }
    let zero_floor = json.replace("\"tps\": 5", "\"tps\": 0");
    let config: AgentConfig = serde_json::from_str(&zero_floor).unwrap();
    assert_eq!(config.validate(), Err(Error::ZeroFloor));
}

// ----- Persistence -----

#[test]
fn a_deadline_passing_while_the_agent_is_down_takes_effect_at_restore() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(days(80));
    let saved = rig.agent.save(rig.now());
    let json = serde_json::to_string(&saved).unwrap();

    // A new process: its clock starts near zero; the agent was down 15 days.
    let clock = FakeClock::new();
    clock.advance(Duration::from_secs(5));
    let state: State = serde_json::from_str(&json).unwrap();
    assert_eq!(state, saved, "round trip");
    let mut agent = Agent::restore(par_config(), state, clock.now(), days(15)).unwrap();
    let status = agent.status();
    assert_eq!(
        status.authorization.status,
        AuthorizationStatus::AuthorizationExpired
    );
    assert_eq!(status.enforcement, Enforcement::Grace);
    // The deadline (day 90) was 5 days before the restore (day 95), on the new clock.
    let deadline = status.authorization.communication_deadline.unwrap();
    assert_eq!(deadline.mono_nanos, 5 * SEC as i64 - nanos(days(5)) as i64);
    let events = agent.take_events();
    assert!(events.iter().any(|e| e.at.mono_nanos == deadline.mono_nanos
        && e.kind
            == EventKind::Authorization {
                from: AuthorizationStatus::Authorized,
                to: AuthorizationStatus::AuthorizationExpired
            }));
    // The grace ends at day 120: 25 days after the restore on the new clock. The overdue
    // authorisation goes out at once.
    assert_eq!(agent.next_wakeup(), Some(clock.now()));
    assert!(matches!(
        &agent.poll(clock.now(), WALL0)[..],
        [Action::Authorize { .. }]
    ));
    agent
        .authorization_failed(clock.now(), "still down")
        .unwrap();
    clock.advance(days(25) - Duration::from_secs(1));
    agent.poll(clock.now(), WALL0);
    assert_eq!(agent.status().enforcement, Enforcement::Grace);
    clock.advance(Duration::from_secs(1));
    agent.poll(clock.now(), WALL0);
    assert_eq!(agent.status().enforcement, Enforcement::Unlicensed);
    assert_eq!(agent.limits()[0].1.per_second(), Some(10));
}

#[test]
fn restore_rebases_every_timer_onto_the_new_clock() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1)]);
    rig.advance(days(10));
    let before = rig.agent.status();
    let next = rig.agent.next_wakeup().unwrap();
    let saved = rig.agent.save(rig.now());

    let new_now = 42 * SEC;
    let agent = Agent::restore(par_config(), saved, new_now, HOUR).unwrap();
    let shift = new_now as i64 - (rig.now() as i64 + nanos(HOUR) as i64);
    assert_eq!(
        agent.next_wakeup(),
        Some((next as i64 + shift) as u64),
        "the renewal is still 20 days (less an hour) away"
    );
    let after = agent.status();
    assert_eq!(
        after.authorization.status,
        AuthorizationStatus::OutOfCompliance
    );
    let moved = |s: &entitle_licensing::Status| {
        (
            s.authorization.communication_deadline.unwrap().mono_nanos,
            s.registration.expires.unwrap().mono_nanos,
            s.registration.initial_registration.unwrap().mono_nanos,
        )
    };
    let (d0, e0, i0) = moved(&before);
    assert_eq!(moved(&after), (d0 + shift, e0 + shift, i0 + shift));
    assert!(
        after.registration.initial_registration.unwrap().mono_nanos < 0,
        "before this process"
    );
    assert_eq!(
        after.authorization.evaluation_remaining,
        before.authorization.evaluation_remaining
    );
}

#[test]
fn a_registration_in_flight_at_a_restart_goes_out_again() {
    let mut rig = Rig::par();
    rig.agent
        .register(rig.now(), IdToken::new("token-9").unwrap())
        .unwrap();
    assert!(rig.poll().iter().any(is_register));
    let json = serde_json::to_string(&rig.agent.save(rig.now())).unwrap();
    let state: State = serde_json::from_str(&json).unwrap();
    let mut agent = Agent::restore(par_config(), state, 0, Duration::from_secs(3)).unwrap();
    assert!(matches!(
        &agent.poll(0, WALL0)[..],
        [Action::Register { token }] if token.expose() == "token-9"
    ));
}

#[test]
fn saved_state_of_another_version_is_refused() {
    let mut agent = Agent::new(par_config(), 0).unwrap();
    let json = serde_json::to_string(&agent.save(0)).unwrap();
    let json = json.replacen("\"version\":1", "\"version\":2", 1);
    let state: State = serde_json::from_str(&json).unwrap();
    assert_eq!(
        Agent::restore(par_config(), state, 0, Duration::ZERO).unwrap_err(),
        Error::StateVersion {
            found: 2,
            supported: 1
        }
    );
}

#[test]
fn the_id_token_stays_out_of_debug_output() {
    let mut agent = Agent::new(par_config(), 0).unwrap();
    agent
        .register(0, IdToken::new("s3cr3t-token").unwrap())
        .unwrap();
    let actions = agent.poll(0, WALL0);
    assert!(!format!("{actions:?}").contains("s3cr3t"));
    assert!(!format!("{agent:?}").contains("s3cr3t"));
    assert!(!format!("{:?}", agent.status()).contains("s3cr3t"));
}

#[test]
fn next_wakeup_is_the_earliest_timer() {
    let mut rig = Rig::par();
    assert_eq!(
        rig.agent.next_wakeup(),
        Some(nanos(days(90))),
        "evaluation end"
    );
    rig.clock.advance(days(1));
    rig.agent
        .register(rig.now(), IdToken::new("t").unwrap())
        .unwrap();
    assert_eq!(
        rig.agent.next_wakeup(),
        Some(rig.now()),
        "a registration to send"
    );
    rig.poll();
    assert_eq!(rig.agent.next_wakeup(), Some(nanos(days(90))));
    rig.agent.registration_succeeded(rig.now(), cert()).unwrap();
    assert_eq!(
        rig.agent.next_wakeup(),
        Some(rig.now()),
        "the first authorisation"
    );
    rig.poll();
    assert_eq!(
        rig.agent.next_wakeup(),
        Some(rig.now() + nanos(HOUR)),
        "the authorisation again if unanswered"
    );
    rig.agent
        .authorization_received(rig.now(), counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]))
        .unwrap();
    assert_eq!(rig.agent.next_wakeup(), Some(rig.now() + nanos(days(30))));
}
