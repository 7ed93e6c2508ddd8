//! The whole licence flow in one process: a device registers with the authority, asks for
//! 1 PAR-TPS + 2 PAR-ADD-TPS, and the licence agent turns the signed grants into a 300 TPS
//! limit on a running gate; a second device gets nothing and falls to the unlicensed floor.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{TestAuthority, counts, udi};
use entitle_engine::{Clock, FakeClock, Gate};
use entitle_licensing::{
    Agent, AgentConfig, AuthorizationStatus, Counts, IdCertificate, IdToken, Product,
};

/// An agent registered to the authority's answer, with its gate.
async fn licensed_gate(
    authority: &TestAuthority,
    token: &str,
    serial: &str,
) -> (Agent, std::sync::Arc<Gate<FakeClock>>) {
    let clock = FakeClock::new();
    let config =
        AgentConfig::new(Product::par_tps()).with_selection([("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]);
    let mut agent = Agent::new(config, clock.now()).unwrap();
    let mut builder = Gate::builder(clock.clone());
    for (tag, limit) in agent.limits() {
        builder.register(&tag, limit).unwrap();
    }
    let gate = builder.build();

    let mut device = authority.device().await;
    agent
        .register(clock.now(), IdToken::new(token).unwrap())
        .unwrap();
    let certificate = device.register(token, udi(serial)).await.unwrap();
    agent
        .registration_succeeded(
            clock.now(),
            IdCertificate {
                smart_account: certificate.smart_account,
                virtual_account: certificate.virtual_account,
                export_controlled: certificate.export_controlled,
            },
        )
        .unwrap();
    let requested = agent
        .selection()
        .iter()
        .map(|(tag, count)| (tag.as_str(), *count))
        .collect::<Vec<_>>();
    let authorization = device.authorize(counts(&requested)).await.unwrap();
    let granted: Counts = authorization
        .grants
        .iter()
        .map(|g| (g.tag.clone(), g.granted))
        .collect();
    agent.authorization_received(clock.now(), granted).unwrap();
    agent.apply_to(&gate).unwrap();
    (agent, gate)
}

#[tokio::test]
async fn granted_counts_add_up_on_the_gate_and_a_short_pool_gets_the_floor() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(2).await;
    let (_first, gate) = licensed_gate(&authority, &token, "A1").await;
    let par_tps = gate.entitlement("PAR-TPS").unwrap();
    assert_eq!(
        gate.limits().limit(par_tps).per_second(),
        Some(300),
        "100 + 2 x 100 TPS"
    );

    let (second, gate) = licensed_gate(&authority, &token, "B2").await;
    let floor = gate.limits().limit(par_tps).per_second().unwrap();
    assert!(
        floor > 0 && floor < 300,
        "the unlicensed floor, never zero: {floor}"
    );
    assert_eq!(
        second.status().authorization.status,
        AuthorizationStatus::OutOfCompliance
    );
}
