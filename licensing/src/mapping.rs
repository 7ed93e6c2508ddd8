//! From licence state to gate limits: which rate each gate entitlement gets.
//!
//! The rules (also in the [module docs](super)):
//! - A gate entitlement's licensed rate is the sum, over the licences that feed it, of
//!   count x TPS per unit (1 `PAR-TPS` + 2 `PAR-ADD-TPS` at 100 TPS each: 300 TPS). Under
//!   an authorisation, TPS per unit and policy are what the authority signed for each
//!   licence; the product's own values only stand where it signed nothing.
//! - The device's catalogue ([`AgentConfig::device_catalogue`]) only lowers: at most its
//!   rate for the same counts, at least its policy's strictness, at most its burst window.
//! - Its burst is `ceil(rate x burst_ms / 1000)`, at least 1 (100 ms of traffic by default).
//! - With `Unlicensed::Floor { tps }`, no rate is ever below the floor. With
//!   `Unlicensed::MonitorOnly`, a rate of 0 becomes `monitor` against the requested TPS.
//! - A rate above [`MAX_RATE`] becomes [`Limit::Unlimited`].

use super::Result;
use super::config::{AgentConfig, Catalogue, Counts, EntitlementSpec, Unlicensed, stricter};
use entitle_engine::Clock;
use entitle_engine::Gate;
use entitle_engine::LimitTable;
use entitle_engine::{Limit, MAX_RATE, Policy};

/// Limits for gate entitlements, by tag, as [`Agent::limits`](super::Agent::limits) gives
/// them.
pub type Limits = Vec<(String, Limit)>;

/// What the counts of the limit table come from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Basis<'a> {
    /// Everything unlimited (a permanent reservation).
    Unlimited,
    /// These licence counts (an authorisation, its last counts in grace, a specific
    /// reservation), each licence worth what the authority signed (where it did).
    Counts(&'a Counts, &'a Catalogue),
    /// The evaluation limits.
    Evaluation,
    /// Nothing licenses the device.
    Unlicensed,
}

/// The limit of every gate entitlement of the product, in catalogue order.
pub(crate) fn limits(config: &AgentConfig, basis: Basis<'_>, selection: &Counts) -> Limits {
    config
        .product
        .entitlements
        .iter()
        .map(|spec| {
            let device = config
                .device_catalogue
                .as_ref()
                .and_then(|p| p.entitlements.iter().find(|e| e.tag == spec.tag));
            let limit = limit_of(spec, device, config.unlicensed, basis, selection);
            (spec.tag.clone(), limit)
        })
        .collect()
}

fn limit_of(
    spec: &EntitlementSpec,
    device: Option<&EntitlementSpec>,
    unlicensed: Unlicensed,
    basis: Basis<'_>,
    selection: &Counts,
) -> Limit {
    let evaluation = |s: &EntitlementSpec| s.evaluation_tps.unwrap_or_else(|| s.tps_of(selection));
    let (licensed, policy) = match basis {
        Basis::Unlimited => return Limit::Unlimited,
        Basis::Counts(counts, worth) => spec.signed_tps_of(counts, worth),
        Basis::Evaluation => (evaluation(spec), spec.policy),
        Basis::Unlicensed => (0, spec.policy),
    };
    // The device's own view lowers, never raises.
    let (licensed, policy, spec) = match device {
        None => (licensed, policy, spec.clone()),
        Some(d) => {
            let ceiling = match basis {
                Basis::Counts(counts, _) => d.tps_of(counts),
                Basis::Evaluation => evaluation(d),
                Basis::Unlimited | Basis::Unlicensed => licensed,
            };
            let mut lowered = spec.clone();
            lowered.burst_ms = spec.burst_ms.min(d.burst_ms);
            (licensed.min(ceiling), stricter(policy, d.policy), lowered)
        }
    };
    let spec = &spec;
    match unlicensed {
        Unlicensed::Floor { tps } => rate(spec, policy, licensed.max(tps)),
        Unlicensed::MonitorOnly if licensed > 0 => rate(spec, policy, licensed),
        Unlicensed::MonitorOnly => match spec.tps_of(selection) {
            0 => Limit::Unlimited,
            requested => rate(spec, Policy::Monitor, requested),
        },
    }
}

/// A limit of `tps` (at least 1) with the entitlement's burst rule.
fn rate(spec: &EntitlementSpec, policy: Policy, tps: u64) -> Limit {
    if tps > MAX_RATE {
        return Limit::Unlimited;
    }
    let burst = (u128::from(tps) * u128::from(spec.burst_ms)).div_ceil(1000);
    let burst = u64::try_from(burst).unwrap_or(u64::MAX).max(1);
    // With tps in 1..=MAX_RATE and burst_ms at most 60 s (validated), `Limit::new` cannot
    // fail; were it to, admitting is the failure that stops no traffic.
    Limit::new(tps, burst, policy).unwrap_or(Limit::Unlimited)
}

/// Applies `limits` to `gate` through its hot swap: a copy of the gate's table with each
/// listed tag set, installed with [`Gate::apply`]. Tags not listed keep their limits; a tag
/// the gate does not know is refused and nothing is applied.
///
/// Two callers applying at once may overwrite each other's changes to other tags; apply
/// from one place (the agent's driver).
pub fn apply_limits<C: Clock>(gate: &Gate<C>, limits: &[(String, Limit)]) -> Result<()> {
    let mut table = LimitTable::clone(&gate.limits());
    for (tag, limit) in limits {
        table.set_tag(tag, *limit)?;
    }
    gate.apply(table)?;
    Ok(())
}
