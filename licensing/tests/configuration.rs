//! The licence agent: configuration checks, as operators and the sidecar rely on
//! them (on the fake clock, a year passes in a microsecond).
#![allow(clippy::unwrap_used)] // tests

mod common;

use common::*;

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
