//! Unit tests of [`super`].

#![allow(clippy::unwrap_used)]
use super::*;
use proptest::prelude::*;

fn attached(demand: u64) -> Claim {
    Claim { own: false, demand }
}

fn own(demand: u64) -> Claim {
    Claim { own: true, demand }
}

fn licence(rate: u64) -> Vec<(String, Limit)> {
    vec![("PAR-TPS".into(), Limit::hard(rate).unwrap())]
}

#[test]
fn skewed_demand_is_water_filled_and_adds_up_to_the_licence() {
    // 420/120/60 offered against 300 licensed, and an idle own gate.
    let shares = split_rate(300, &[own(0), attached(420), attached(120), attached(60)]);
    assert_eq!(shares[0], 0, "the idle own gate is closed");
    assert_eq!(
        shares[3], 61,
        "the small gate gets its demand and 1% headroom"
    );
    assert_eq!(shares[1] + shares[2], 239, "the hungry split the rest");
    assert!(shares[1].abs_diff(shares[2]) <= 1);
    assert_eq!(shares.iter().sum::<u64>(), 300);
}

#[test]
fn a_lone_gate_gets_the_whole_licence_limit_for_limit() {
    let l = Limit::new(300, 45, Policy::SteadyState).unwrap();
    assert_eq!(share(&l, &[own(0)]), vec![l]);
    assert_eq!(share(&l, &[own(5000)]), vec![l]);
    assert_eq!(share(&l, &[attached(0)]), vec![l]);
    assert_eq!(share(&l, &[own(0), attached(7)]), vec![Limit::closed(), l]);
    assert_eq!(
        share(&l, &[own(0), attached(900)]),
        vec![Limit::closed(), l]
    );
}

#[test]
fn unlimited_and_monitor_pass_through_and_bursts_split_in_proportion() {
    let claims = [own(3), attached(100), attached(0)];
    assert_eq!(share(&Limit::Unlimited, &claims), vec![Limit::Unlimited; 3]);
    let monitor = Limit::new(100, 100, Policy::Monitor).unwrap();
    assert_eq!(share(&monitor, &claims), vec![monitor; 3]);
    let hard = Limit::new(100, 50, Policy::Hard).unwrap();
    let shares = share(&hard, &[attached(1000), attached(1000)]);
    assert_eq!(shares, vec![Limit::new(50, 25, Policy::Hard).unwrap(); 2]);
    let tiny = share(&hard, &[attached(1000), attached(0)]);
    assert_eq!(
        tiny[1],
        Limit::new(1, 1, Policy::Hard).unwrap(),
        "burst at least 1"
    );
}

#[test]
fn idle_gates_split_the_rest_so_growth_has_room() {
    assert_eq!(
        split_rate(300, &[attached(0), attached(0), attached(0)]),
        [100; 3]
    );
    assert_eq!(split_rate(300, &[own(10), attached(20)]), [145, 155]);
}

#[test]
fn more_attached_gates_than_tps_close_the_ones_left_over() {
    let claims = [attached(50), attached(0), attached(7)];
    let shares = split_rate(2, &claims);
    assert_eq!(shares.iter().sum::<u64>(), 2, "{shares:?}");
    let limits = share(&Limit::hard(2).unwrap(), &claims);
    assert_eq!(
        limits.iter().filter(|l| l.is_closed()).count(),
        1,
        "{limits:?}"
    );
    assert_eq!(limits.iter().filter_map(Limit::per_second).sum::<u64>(), 2);
}

proptest! {
    #[test]
    fn shares_never_add_up_past_the_licence(
        rate in prop_oneof![1u64..10, 1u64..100_000],
        demands in proptest::collection::vec(0u64..200_000, 1..8),
        with_own in any::<bool>(),
    ) {
        let claims: Vec<Claim> = demands
            .iter()
            .enumerate()
            .map(|(i, &d)| Claim { own: with_own && i == 0, demand: d })
            .collect();
        let shares = split_rate(rate, &claims);
        prop_assert!(shares.iter().sum::<u64>() <= rate, "{shares:?}");
        // Nobody wanting less than its fair part is cut below its demand.
        for (c, s) in claims.iter().zip(&shares) {
            if c.demand * (claims.len() as u64) < rate / 2 && rate >= 4 * claims.len() as u64 {
                prop_assert!(*s >= c.demand, "{c:?} got {s}: {shares:?}");
            }
            // An attached gate is closed only when the licence has no TPS left for it.
            if !c.own && rate >= claims.len() as u64 {
                prop_assert!(*s >= 1, "{c:?} got nothing of {rate}: {shares:?}");
            }
        }
        if claims.len() == 1 {
            prop_assert_eq!(shares[0], rate);
        }
        let licence = Limit::hard(rate).unwrap();
        for l in share(&licence, &claims) {
            prop_assert!(l.burst().unwrap() >= 1);
        }
    }

    /// Random demands, acknowledgements, disconnects, expiries and licence changes:
    /// after every plan the shares in force fit the licence, or, after the licence
    /// dropped, shrink and never grow until they fit.
    #[test]
    fn shares_in_force_never_exceed_the_licence_while_they_change(
        steps in proptest::collection::vec((0u8..7, 0usize..4, 0u64..1_000), 1..120),
    ) {
        let ids = ["a", "b", "c"];
        let mut rate = 300u64;
        let mut board = Board::new(Duration::from_secs(3), &licence(rate));
        let mut now = Duration::ZERO;
        let mut epochs = [0u64; 3];
        let mut pending: Vec<Send> = Vec::new();
        let mut demands = [0u64; 4];
        for (op, who, value) in steps {
            now += Duration::from_millis(value % 700);
            let i = who % 3;
            match op {
                0 => epochs[i] = board.attach(ids[i], vec!["PAR-TPS".into()], Vec::new(), now),
                1 => demands[who] = value,
                2 => {
                    // The gate acknowledges the oldest table pending for it.
                    if let Some(at) = pending.iter().position(|s| s.gate == ids[i]) {
                        let s = pending.remove(at);
                        let d = BTreeMap::from([("PAR-TPS".to_owned(), demands[i])]);
                        board.report(&s.gate, s.epoch, s.sequence, d, now);
                    }
                }
                3 => board.detach(ids[i], epochs[i]),
                4 => { board.expire(now); }
                5 => rate = value.max(3),
                _ => {
                    let d = BTreeMap::from([("PAR-TPS".to_owned(), demands[i])]);
                    board.report(ids[i], epochs[i], 0, d, now);
                }
            }
            board.own_demand(BTreeMap::from([("PAR-TPS".to_owned(), demands[3])]));
            for _ in 0..4 {
                let before = board.in_force("PAR-TPS");
                let sends = board.plan(&licence(rate));
                let after = board.in_force("PAR-TPS");
                if before <= rate {
                    prop_assert!(after <= rate, "grew past the licence: {before} -> {after} > {rate}");
                } else {
                    prop_assert!(after <= before, "grew while over the licence: {before} -> {after}");
                }
                let mut own_applied = false;
                for s in sends {
                    if s.gate == OWN {
                        board.report(OWN, 0, s.sequence, BTreeMap::from([("PAR-TPS".to_owned(), demands[3])]), now);
                        own_applied = true;
                    } else {
                        pending.retain(|p| p.gate != s.gate || p.epoch == s.epoch);
                        pending.push(s);
                    }
                }
                if !own_applied {
                    break;
                }
            }
        }
    }

    /// With every table acknowledged and demands steady, the shares reach the targets.
    #[test]
    fn acknowledged_plans_converge_to_the_targets(
        demands in proptest::collection::vec(0u64..1_000, 4),
        rate in 10u64..2_000,
    ) {
        let ids = ["a", "b", "c"];
        let mut board = Board::new(Duration::from_secs(3), &licence(rate));
        let mut epochs = Vec::new();
        for id in ids {
            epochs.push(board.attach(id, vec!["PAR-TPS".into()], Vec::new(), Duration::ZERO));
        }
        board.own_demand(BTreeMap::from([("PAR-TPS".to_owned(), demands[3])]));
        for _ in 0..10 {
            let sends = board.plan(&licence(rate));
            if sends.is_empty() {
                break;
            }
            for s in sends {
                let i = ids.iter().position(|id| *id == s.gate).unwrap_or(3);
                let d = BTreeMap::from([("PAR-TPS".to_owned(), demands[i])]);
                board.report(&s.gate, s.epoch, s.sequence, d, Duration::ZERO);
            }
        }
        let claims = [own(demands[3]), attached(demands[0]), attached(demands[1]), attached(demands[2])];
        let targets = share(&Limit::hard(rate).unwrap(), &claims);
        for (id, target) in [OWN, "a", "b", "c"].iter().zip(targets) {
            let sent = board.sent(id).and_then(|t| t.get("PAR-TPS")).copied().unwrap();
            // Within 1% (changes smaller than that are not sent).
            let (got, want) = (rate_of(&sent), rate_of(&target));
            prop_assert!(got.abs_diff(want) * 100 <= got.max(want), "{id}: {sent:?}, want {target:?}");
            prop_assert_eq!(sent.is_closed(), target.is_closed());
        }
        prop_assert!(board.in_force("PAR-TPS") <= rate);
    }
}

#[test]
fn a_shrink_is_counted_until_acknowledged_then_the_others_grow() {
    let mut board = Board::new(Duration::from_secs(3), &licence(300));
    let zero = Duration::ZERO;
    let a = board.attach("a", vec!["PAR-TPS".into()], Vec::new(), zero);
    // The own gate is idle: it closes at once, and `a` gets the lot.
    let sends = board.plan(&licence(300));
    let own_send = sends.iter().find(|s| s.gate == OWN).unwrap();
    assert_eq!(own_send.table[0].1, Limit::closed());
    assert!(
        sends.iter().all(|s| s.gate != "a"),
        "no room before the own gate applies"
    );
    board.report(OWN, 0, own_send.sequence, BTreeMap::new(), zero);
    let sends = board.plan(&licence(300));
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].table[0].1, Limit::hard(300).unwrap());
    board.report("a", a, sends[0].sequence, BTreeMap::new(), zero);

    // `b` attaches: `a` must shrink, and `b` gets nothing until `a` acknowledges.
    let b = board.attach("b", vec!["PAR-TPS".into()], Vec::new(), zero);
    let sends = board.plan(&licence(300));
    assert_eq!(
        sends.iter().map(|s| s.gate.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(board.in_force("PAR-TPS"), 300);
    assert!(board.plan(&licence(300)).is_empty(), "still waiting for a");
    board.report("a", a, sends[0].sequence, BTreeMap::new(), zero);
    let sends = board.plan(&licence(300));
    assert_eq!(
        sends.iter().map(|s| s.gate.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    board.report("b", b, sends[0].sequence, BTreeMap::new(), zero);
    assert_eq!(board.in_force("PAR-TPS"), 300);

    // `b` goes silent: its share stays in force for the lease, then is freed.
    board.detach("b", b);
    assert!(
        board.plan(&licence(300)).is_empty(),
        "b's share is still in force"
    );
    board.report("a", a, 0, BTreeMap::new(), Duration::from_secs(2));
    assert!(board.expire(Duration::from_secs(2)).is_empty());
    assert_eq!(
        board.expire(Duration::from_millis(3001)),
        [("b".to_owned(), b)]
    );
    let sends = board.plan(&licence(300));
    assert_eq!(sends[0].table[0].1, Limit::hard(300).unwrap());
    // A report from b's old stream changes nothing.
    board.report("b", b, 99, BTreeMap::new(), zero);
    assert_eq!(board.engines(), 1);
}

#[test]
fn after_a_restart_no_share_grows_for_one_lease() {
    let lease = Duration::from_secs(3);
    let mut board = Board::new(lease, &licence(300));
    board.hold_growth_until(lease);
    let zero = Duration::ZERO;
    // An engine of the previous run reconnects still enforcing 150; another may still
    // enforce the other 150 without having reconnected.
    let half = vec![("PAR-TPS".to_owned(), Limit::hard(150).unwrap())];
    let a = board.attach("a", vec!["PAR-TPS".into()], half, zero);
    let demand = BTreeMap::from([("PAR-TPS".to_owned(), 1_000)]);
    board.report("a", a, 0, demand.clone(), zero);
    let at_most_half = |sends: &[Send]| {
        sends
            .iter()
            .filter(|s| s.gate == "a")
            .all(|s| s.table[0].1.per_second() <= Some(150))
    };
    let sends = board.plan(&licence(300));
    let own = sends.iter().find(|s| s.gate == OWN).unwrap();
    assert_eq!(own.table[0].1, Limit::closed(), "the idle own gate shrinks");
    assert!(at_most_half(&sends), "{sends:?}");
    board.report(OWN, 0, own.sequence, BTreeMap::new(), zero);
    let held = Duration::from_millis(2_900);
    board.report("a", a, 0, demand.clone(), held);
    let sends = board.plan(&licence(300));
    assert!(at_most_half(&sends), "held for the lease: {sends:?}");
    // Once every unknown share has closed, `a` grows into the licence.
    board.report("a", a, 0, demand, lease + Duration::from_millis(1));
    let sends = board.plan(&licence(300));
    let grown = sends.iter().find(|s| s.gate == "a").expect("a grows");
    assert_eq!(grown.table[0].1.per_second(), Some(300));
}
