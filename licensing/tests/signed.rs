//! The licensee cannot raise its own limit: under an authorisation the gate enforces what
//! the authority signed each licence is worth; the device's own catalogue only lowers; the
//! authority's renewal and deadline replace the configured ones.
#![allow(clippy::unwrap_used)] // tests

mod common;

use common::*;
use entitle_licensing::{Authorized, Catalogue, Worth};

fn worth(tps_per_unit: u64, policy: Policy) -> Worth {
    Worth {
        tps_per_unit,
        policy,
    }
}

/// 100 TPS per unit, hard, for both CPAR licences: what today's authority signs.
fn signed_par() -> Catalogue {
    Catalogue::from([
        ("PAR-TPS".to_owned(), worth(100, Policy::Hard)),
        ("PAR-ADD-TPS".to_owned(), worth(100, Policy::Hard)),
    ])
}

fn authorize(rig: &mut Rig, answer: Authorized) {
    rig.register();
    rig.agent.authorization_signed(rig.now(), answer).unwrap();
    rig.poll();
}

fn all(worth: Catalogue) -> Authorized {
    Authorized {
        granted: counts(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]),
        worth,
        ..Authorized::default()
    }
}

/// A device whose own configuration claims ten times the TPS per licence, monitor-only.
fn greedy_device() -> AgentConfig {
    let mut config = par_config();
    config.device_catalogue = Some(Product::new([EntitlementSpec::new(
        "PAR-TPS",
        Policy::Monitor,
    )
    .fed_by("PAR-TPS", 1000)
    .fed_by("PAR-ADD-TPS", 1000)
    .burst_ms(60_000)]));
    config
}

#[test]
fn a_device_claiming_ten_times_the_tps_or_monitor_still_enforces_what_was_signed() {
    let mut rig = Rig::new(greedy_device());
    authorize(&mut rig, all(signed_par()));
    assert_eq!(rig.enforcement(), Enforcement::Authorized);
    assert_eq!(rig.limit(), Limit::new(300, 30, Policy::Hard).unwrap());

    // The product (the vendor's) saying 1000 per unit and monitor is overruled by the
    // signature too: the authority's worth counts.
    let mut config = par_config();
    config.product = Product::new([EntitlementSpec::new("PAR-TPS", Policy::Monitor)
        .fed_by("PAR-TPS", 1000)
        .fed_by("PAR-ADD-TPS", 1000)]);
    let mut rig = Rig::new(config);
    authorize(&mut rig, all(signed_par()));
    assert_eq!(rig.limit(), Limit::new(300, 30, Policy::Hard).unwrap());
}

#[test]
fn the_signed_worth_and_policy_decide_the_rate_and_the_strictest_counts() {
    let mut rig = Rig::par();
    let signed = Catalogue::from([
        ("PAR-TPS".to_owned(), worth(250, Policy::Monitor)),
        ("PAR-ADD-TPS".to_owned(), worth(50, Policy::SteadyState)),
    ]);
    authorize(&mut rig, all(signed));
    // 1 x 250 + 2 x 50; steady-state is stricter than monitor.
    assert_eq!(rig.tps(), Some(350));
    assert_eq!(rig.limit().policy(), Some(Policy::SteadyState));
    // Only a monitor licence counts: monitor.
    rig.agent
        .authorization_signed(
            rig.now(),
            Authorized {
                granted: counts(&[("PAR-TPS", 1)]),
                worth: Catalogue::from([("PAR-TPS".to_owned(), worth(250, Policy::Monitor))]),
                ..Authorized::default()
            },
        )
        .unwrap();
    assert_eq!(rig.limit().policy(), Some(Policy::Monitor));
    // It survives a save and restore.
    let state = rig.agent.save(rig.now());
    let agent = Agent::restore(par_config(), state, 0, Duration::ZERO).unwrap();
    assert_eq!(agent.limits()[0].1.per_second(), Some(250));
    assert_eq!(agent.limits()[0].1.policy(), Some(Policy::Monitor));
}

#[test]
fn the_device_catalogue_may_lower_a_limit() {
    let mut config = par_config();
    config.device_catalogue = Some(Product::new([EntitlementSpec::new(
        "PAR-TPS",
        Policy::Hard,
    )
    .fed_by("PAR-TPS", 50)
    .fed_by("PAR-ADD-TPS", 50)]));
    let mut rig = Rig::new(config.clone());
    // Evaluation: at most the device's 150 of the 300 requested.
    assert_eq!(rig.tps(), Some(150));
    let signed = Catalogue::from([
        ("PAR-TPS".to_owned(), worth(100, Policy::Monitor)),
        ("PAR-ADD-TPS".to_owned(), worth(100, Policy::Monitor)),
    ]);
    authorize(&mut rig, all(signed));
    // At most 150; hard, as the device asks, though the authority allows monitor.
    assert_eq!(rig.limit(), Limit::new(150, 15, Policy::Hard).unwrap());
    // A device catalogue that is invalid is refused like a product.
    config.device_catalogue = Some(Product::new([EntitlementSpec::new(
        "PAR-TPS",
        Policy::Hard,
    )]));
    assert!(Agent::new(config, 0).is_err());
}

#[test]
fn the_authoritys_renewal_and_deadline_replace_the_configured_ones() {
    let mut rig = Rig::par();
    authorize(
        &mut rig,
        Authorized {
            renewal: Some(days(3)),
            deadline: Some(days(7)),
            ..all(signed_par())
        },
    );
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);
    let registered_at = rig.now();
    // The configured 30 days do not count: the renewal is due on day 3.
    assert!(rig.advance(days(3) - HOUR).is_empty());
    let actions = rig.advance(HOUR);
    assert!(
        matches!(&actions[..], [Action::Authorize { .. }]),
        "{actions:?}"
    );
    // Unanswered, the authorisation expires on day 7, not day 90.
    rig.clock.advance(days(4) - HOUR);
    rig.poll();
    assert_eq!(rig.auth(), AuthorizationStatus::Authorized);
    rig.clock.advance(HOUR);
    rig.poll();
    assert_eq!(rig.auth(), AuthorizationStatus::AuthorizationExpired);
    assert_eq!(rig.now() - registered_at, nanos(days(7)));
    // A renewal later than the deadline is due at the deadline; absurd periods are capped.
    let mut rig = Rig::par();
    authorize(
        &mut rig,
        Authorized {
            renewal: Some(days(50)),
            deadline: Some(Duration::from_secs(u64::MAX)),
            ..all(signed_par())
        },
    );
    let deadline = rig.agent.status().authorization.communication_deadline;
    let next = rig.agent.status().authorization.next_communication_attempt;
    assert!(deadline.is_some() && next.is_some());
    assert!(rig.advance(days(50) - HOUR).is_empty());
    assert!(!rig.advance(HOUR).is_empty(), "renewal due at day 50");
}

#[test]
fn a_wall_clock_set_back_while_the_agent_was_down_is_a_clock_event_at_restore() {
    let mut rig = Rig::par();
    rig.register_and_authorize(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    rig.advance(HOUR);
    rig.events.clear();
    let saved_wall = rig.wall();
    let state = rig.agent.save(rig.now());
    // Down for a minute, during which someone set the wall clock back a day: the wall
    // clock says less time passed than none at all, so the downtime counts as zero...
    let mut agent = Agent::restore(par_config(), state, 0, Duration::ZERO).unwrap();
    let wall_now = saved_wall + 60 - 86_400;
    agent.poll(0, wall_now);
    let jumps: Vec<_> = agent
        .take_events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::ClockJump { direction, by, .. } => Some((direction, by)),
            _ => None,
        })
        .collect();
    // ...and the first poll reports the jump, not hiding it.
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert_eq!(jumps[0].0, JumpDirection::Backward);
    assert!(jumps[0].1 >= Duration::from_secs(86_400 - 60), "{jumps:?}");
    // The timers did not move back: the authorisation is as it was.
    assert_eq!(
        agent.status().authorization.status,
        AuthorizationStatus::Authorized
    );
}
