//! Property tests of the licence agent: any sequence of inputs, polls, clock steps, wall
//! clock jumps and restarts keeps the promises the gate and the operator rely on.
#![allow(clippy::unwrap_used)] // tests

use std::time::Duration;

use entitle_engine::{Limit, Policy};
use entitle_licensing::{
    Action, Agent, AgentConfig, AuthorizationStatus, Counts, Enforcement, IdCertificate, IdToken,
    Product, RegistrationStatus, ReservationKind, ReservationStatus, Reserved, State, Unlicensed,
};
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;
const WALL0: i64 = 1_750_000_000;

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Poll,
    Register,
    RegistrationOk,
    RegistrationFail,
    Deregister,
    AuthorizationOk(u64, u64),
    AuthorizationFail,
    IdOk,
    IdFail,
    RenewId,
    RenewAuthorization,
    Select(u64, u64),
    Enable,
    Disable,
    Request,
    Cancel,
    InstallPermanent,
    InstallSpecific(u64, u64),
    Return,
    WallStep(i64),
    Restart(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let secs = prop_oneof![0u64..10, 0u64..7200, 0u64..(200 * 86_400)];
    prop_oneof![
        4 => secs.prop_map(Op::Advance),
        3 => Just(Op::Poll),
        1 => Just(Op::Register),
        1 => Just(Op::RegistrationOk),
        1 => Just(Op::RegistrationFail),
        1 => Just(Op::Deregister),
        2 => (0u64..4, 0u64..4).prop_map(|(a, b)| Op::AuthorizationOk(a, b)),
        1 => Just(Op::AuthorizationFail),
        1 => Just(Op::IdOk),
        1 => Just(Op::IdFail),
        1 => Just(Op::RenewId),
        1 => Just(Op::RenewAuthorization),
        1 => (0u64..4, 0u64..4).prop_map(|(a, b)| Op::Select(a, b)),
        1 => Just(Op::Enable),
        1 => Just(Op::Disable),
        1 => Just(Op::Request),
        1 => Just(Op::Cancel),
        1 => Just(Op::InstallPermanent),
        1 => (0u64..4, 0u64..4).prop_map(|(a, b)| Op::InstallSpecific(a, b)),
        1 => Just(Op::Return),
        1 => (-7200i64..7200).prop_map(Op::WallStep),
        1 => (0u64..1000, 0u64..(100 * 86_400)).prop_map(|(n, e)| Op::Restart(n, e)),
    ]
}

fn counts(a: u64, b: u64) -> Counts {
    Counts::from([("PAR-TPS".to_owned(), a), ("PAR-ADD-TPS".to_owned(), b)])
}

fn cert() -> IdCertificate {
    IdCertificate {
        smart_account: "A".into(),
        virtual_account: "V".into(),
        export_controlled: false,
    }
}

fn reserved(sequence: u32, kind: ReservationKind) -> Reserved {
    Reserved {
        sequence,
        smart_account: "A".into(),
        virtual_account: None,
        export_controlled: false,
        kind,
        worth: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_history_keeps_the_agents_promises(
        floor in 1u64..50,
        grace_days in 0u64..40,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut config = AgentConfig::new(Product::par_tps())
            .with_selection([("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
        config.unlicensed = Unlicensed::Floor { tps: floor };
        config.timers.grace = Duration::from_secs(grace_days * 86_400);
        let tags: Vec<String> =
            config.product.entitlements.iter().map(|e| e.tag.clone()).collect();

        let mut now = 0u64; // the caller's monotonic clock, reset by a restart
        let mut wall = WALL0;
        let mut agent = Agent::new(config.clone(), now).unwrap();
        let mut evaluation_left = agent.status().authorization.evaluation_remaining;
        let mut last_event = i64::MIN;

        for op in ops {
            let told = !matches!(op, Op::Advance(_));
            let _refused_or_not = match op {
                Op::Advance(secs) => {
                    now += secs * SEC;
                    wall += secs as i64;
                    Ok(())
                }
                Op::Poll => {
                    let registration = |agent: &Agent| agent.status().registration.status;
                    for action in agent.poll(now, wall) {
                        let expected = match action {
                            Action::Register { .. } => Some(RegistrationStatus::Registering),
                            Action::RenewId | Action::Authorize { .. } => Some(RegistrationStatus::Registered),
                            Action::Deregister => None,
                        };
                        if let Some(expected) = expected {
                            prop_assert_eq!(registration(&agent), expected, "{:?}", action);
                        }
                    }
                    let again = agent.poll(now, wall);
                    prop_assert!(again.is_empty(), "a second poll at once asks again: {again:?}");
                    Ok(())
                }
                Op::Register => agent.register(now, IdToken::new("t").unwrap()),
                Op::RegistrationOk => agent.registration_succeeded(now, cert()),
                Op::RegistrationFail => agent.registration_failed(now, "no"),
                Op::Deregister => agent.deregister(now),
                Op::AuthorizationOk(a, b) => agent.authorization_received(now, counts(a, b)),
                Op::AuthorizationFail => agent.authorization_failed(now, "no"),
                Op::IdOk => agent.id_renewed(now, cert()),
                Op::IdFail => agent.id_renewal_failed(now, "no"),
                Op::RenewId => agent.renew_id(now),
                Op::RenewAuthorization => agent.renew_authorization(now),
                Op::Select(a, b) => agent.set_selection(now, counts(a, b)),
                Op::Enable => agent.reservation_enable(now),
                Op::Disable => agent.reservation_disable(now),
                Op::Request => agent.reservation_request(now).map(|_| ()),
                Op::Cancel => agent.reservation_cancel(now),
                Op::InstallPermanent | Op::InstallSpecific(..) => {
                    let sequence = agent.status().reservation.pending_sequence.unwrap_or(1);
                    let kind = match op {
                        Op::InstallSpecific(a, b) => ReservationKind::Specific { licences: counts(a, b) },
                        _ => ReservationKind::Permanent,
                    };
                    agent.reservation_install(now, reserved(sequence, kind))
                }
                Op::Return => agent.reservation_return(now).map(|_| ()),
                Op::WallStep(secs) => {
                    wall += secs;
                    agent.poll(now, wall);
                    Ok(())
                }
                Op::Restart(new_now, down) => {
                    let json = serde_json::to_string(&agent.save(now)).unwrap();
                    for e in agent.take_events() {
                        prop_assert!(e.at.mono_nanos >= last_event);
                    }
                    let state: State = serde_json::from_str(&json).unwrap();
                    now = new_now * SEC;
                    wall += down as i64;
                    agent = Agent::restore(config.clone(), state, now, Duration::from_secs(down)).unwrap();
                    last_event = i64::MIN;
                    Ok(())
                }
            };

            let status = agent.status();
            let limits = agent.limits();

            // The limit table covers the product, in order, and never goes below the floor:
            // traffic never silently stops.
            prop_assert_eq!(limits.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(), tags.clone());
            for (_, limit) in &limits {
                match limit {
                    Limit::Unlimited => prop_assert_eq!(status.enforcement, Enforcement::Permanent),
                    Limit::Rate(_) => {
                        prop_assert!(limit.per_second().unwrap() >= floor);
                        prop_assert_eq!(limit.policy(), Some(Policy::Hard));
                    }
                }
            }

            // Evaluation time never comes back.
            let left = status.authorization.evaluation_remaining;
            prop_assert!(left <= evaluation_left);
            evaluation_left = left;

            // Token registration and reservation never hold at once, and the statuses agree.
            let installed = status.reservation.status == ReservationStatus::Installed;
            let reserved_registration = matches!(
                status.registration.status,
                RegistrationStatus::ReservedPermanent | RegistrationStatus::ReservedSpecific
            );
            prop_assert_eq!(installed, reserved_registration);
            prop_assert_eq!(installed, status.authorization.status == AuthorizationStatus::Reserved);
            use AuthorizationStatus as A;
            let consistent = match status.enforcement {
                Enforcement::Evaluation => matches!(status.authorization.status, A::Evaluation | A::Pending),
                Enforcement::Authorized => matches!(status.authorization.status, A::Authorized | A::OutOfCompliance),
                Enforcement::Grace => status.authorization.status == A::AuthorizationExpired,
                Enforcement::Unlicensed => matches!(
                    status.authorization.status,
                    A::EvaluationExpired | A::AuthorizationExpired | A::Pending
                ),
                Enforcement::Permanent | Enforcement::Specific => installed,
            };
            prop_assert!(consistent, "{:?} under {:?}", status.enforcement, status.authorization.status);

            // The next wake-up is never before the time the agent was last told.
            if let (true, Some(at)) = (told, agent.next_wakeup()) {
                prop_assert!(at >= now);
            }

            // Events come in time order.
            for e in agent.take_events() {
                prop_assert!(e.at.mono_nanos >= last_event, "{e:?} after {last_event}");
                last_event = e.at.mono_nanos;
            }
        }
    }
}
