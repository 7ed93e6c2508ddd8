//! The licence agent: licence reservation: enable, request, install, return, cancel, as operators and the sidecar rely on
//! them (on the fake clock, a year passes in a microsecond).
#![allow(clippy::unwrap_used)] // tests

mod common;

use common::*;

// ----- Reservation -----

fn reserved(sequence: u32, kind: ReservationKind) -> Reserved {
    Reserved {
        sequence,
        smart_account: "Air Gapped Inc".into(),
        virtual_account: None,
        export_controlled: false,
        kind,
        worth: Default::default(),
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
