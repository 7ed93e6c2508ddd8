//! What the licence agent's tests share: the product, a rig of agent, fake clock and gate,
//! and small helpers.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

pub use std::time::Duration;

pub use entitle_engine::{Clock, FakeClock, Gate, Limit, Policy};
pub use entitle_licensing::{
    Action, Agent, AgentConfig, AuthorizationStatus, Counts, Enforcement, EntitlementSpec,
    EntitlementStatus, Error, Event, EventKind, IdCertificate, IdToken, JumpDirection, Outcome,
    Product, RegistrationStatus, ReservationKind, ReservationStatus, Reserved, State, Timers,
    Unlicensed, apply_limits,
};

pub const SEC: u64 = 1_000_000_000;
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);
pub const WALL0: i64 = 1_750_000_000;

pub fn days(n: u64) -> Duration {
    DAY * n as u32
}

pub fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

pub fn counts(pairs: &[(&str, u64)]) -> Counts {
    pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

pub fn cert() -> IdCertificate {
    IdCertificate {
        smart_account: "Example Corp".into(),
        virtual_account: "RADIUS".into(),
        export_controlled: true,
    }
}

/// The CPAR catalogue, requesting 1 PAR-TPS and 2 PAR-ADD-TPS (300 TPS).
pub fn par_config() -> AgentConfig {
    AgentConfig::new(Product::par_tps()).with_selection([("PAR-TPS", 1), ("PAR-ADD-TPS", 2)])
}

/// An agent on a fake clock, with a wall clock that follows it (plus a skew tests set).
pub struct Rig {
    pub clock: FakeClock,
    pub agent: Agent,
    pub wall_skew: i64,
    pub events: Vec<Event>,
}

impl Rig {
    pub fn new(config: AgentConfig) -> Self {
        let clock = FakeClock::new();
        let agent = Agent::new(config, clock.now()).unwrap();
        Self {
            clock,
            agent,
            wall_skew: 0,
            events: Vec::new(),
        }
    }

    pub fn par() -> Self {
        Self::new(par_config())
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    pub fn wall(&self) -> i64 {
        WALL0 + (self.now() / SEC) as i64 + self.wall_skew
    }

    pub fn poll(&mut self) -> Vec<Action> {
        let actions = self.agent.poll(self.now(), self.wall());
        self.events.extend(self.agent.take_events());
        actions
    }

    pub fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.clock.advance(by);
        self.poll()
    }

    pub fn auth(&self) -> AuthorizationStatus {
        self.agent.status().authorization.status
    }

    pub fn reg(&self) -> RegistrationStatus {
        self.agent.status().registration.status
    }

    pub fn enforcement(&self) -> Enforcement {
        self.agent.status().enforcement
    }

    /// The limit of the first gate entitlement.
    pub fn limit(&self) -> Limit {
        self.agent.limits()[0].1
    }

    pub fn tps(&self) -> Option<u64> {
        self.limit().per_second()
    }

    pub fn evaluation_left(&self) -> Duration {
        self.agent.status().authorization.evaluation_remaining
    }

    /// Registers (the authority accepting at once) and returns the actions of the poll
    /// after the success.
    pub fn register(&mut self) -> Vec<Action> {
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
    pub fn register_and_authorize(&mut self, granted: &[(&str, u64)]) {
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
    pub fn drive(
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
    pub fn events_where(&self, f: impl Fn(&EventKind) -> bool) -> Vec<(i64, EventKind)> {
        self.events
            .iter()
            .filter(|e| f(&e.kind))
            .map(|e| (e.at.mono_nanos, e.kind.clone()))
            .collect()
    }
}

pub fn authorization_changes(rig: &Rig) -> Vec<(i64, AuthorizationStatus)> {
    rig.events_where(|k| matches!(k, EventKind::Authorization { .. }))
        .into_iter()
        .map(|(at, k)| match k {
            EventKind::Authorization { to, .. } => (at, to),
            _ => unreachable!(),
        })
        .collect()
}

pub fn is_register(a: &Action) -> bool {
    matches!(a, Action::Register { .. })
}

pub fn gate_for(agent: &Agent) -> std::sync::Arc<Gate<FakeClock>> {
    let mut builder = Gate::builder(FakeClock::new());
    for (tag, limit) in agent.limits() {
        builder.register(&tag, limit).unwrap();
    }
    builder.build()
}
