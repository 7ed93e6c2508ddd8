//! The agent's configuration: its timers, the product catalogue (which gate entitlements
//! exist and which licences feed them), the unlicensed behaviour and the first selection;
//! and what the authority signs that a licence is worth ([`Worth`]).
//!
//! The product and the unlicensed behaviour are the vendor's (its build, not a device's
//! file); once an authority signed what each licence is worth, that is what counts, and a
//! device's own view ([`AgentConfig::device_catalogue`]) may only lower it.
//!
//! Every struct refuses unknown fields; [`AgentConfig::validate`] refuses what would make
//! no sense (a zero renewal interval, a renewal not shorter than the validity it renews, a
//! floor of 0 TPS that would silently stop all traffic, an unknown licence, ...).
//! Durations are written in seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Error, Result};
use entitle_engine::{MAX_RATE, Policy};

/// Licence tags with counts: a selection, a request, a grant or a reservation.
pub type Counts = BTreeMap<String, u64>;

/// What one unit of a licence is worth, as the authority signed it in a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worth {
    /// TPS per unit, at least 1.
    pub tps_per_unit: u64,
    /// How the entitlement it feeds is enforced.
    pub policy: Policy,
}

/// Licence tag to what the authority signed it is worth.
pub type Catalogue = BTreeMap<String, Worth>;

/// The stricter of two policies: `hard`, then `steady-state`, then `monitor`.
pub fn stricter(a: Policy, b: Policy) -> Policy {
    let rank = |p| match p {
        Policy::Hard => 2,
        Policy::SteadyState => 1,
        Policy::Monitor => 0,
    };
    if rank(a) >= rank(b) { a } else { b }
}

const DAY: u64 = 86_400;
/// The longest timer accepted: 100 years, far inside the agent's `u64` nanoseconds.
const MAX_TIMER: Duration = Duration::from_secs(100 * 365 * DAY);

/// The timers of the three state machines. The defaults are those of Cisco Smart Licensing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timers {
    /// How long a device may run unregistered on the evaluation limits: 90 days. Counts only
    /// while the device is unregistered. Zero means no evaluation period.
    #[serde(with = "secs")]
    pub evaluation: Duration,
    /// How long an ID certificate is valid from its issue: 1 year.
    #[serde(with = "secs")]
    pub id_validity: Duration,
    /// How often the ID certificate is renewed: every 6 months (180 days).
    #[serde(with = "secs")]
    pub id_renewal: Duration,
    /// How often the authorisation is renewed: every 30 days.
    #[serde(with = "secs")]
    pub authorization_renewal: Duration,
    /// How long after the last successful authorisation it expires: 90 days.
    #[serde(with = "secs")]
    pub communication_deadline: Duration,
    /// How long the last authorised counts stay enforced after the communication deadline
    /// before the unlicensed behaviour applies: 30 days. Zero is allowed.
    #[serde(with = "secs")]
    pub grace: Duration,
    /// How soon a failed (or unanswered) renewal is tried again: 1 hour.
    #[serde(with = "secs")]
    pub retry: Duration,
    /// How far the wall clock may drift from the monotonic clock before a clock-jump event:
    /// 5 minutes.
    #[serde(with = "secs")]
    pub clock_jump_tolerance: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            evaluation: Duration::from_secs(90 * DAY),
            id_validity: Duration::from_secs(365 * DAY),
            id_renewal: Duration::from_secs(180 * DAY),
            authorization_renewal: Duration::from_secs(30 * DAY),
            communication_deadline: Duration::from_secs(90 * DAY),
            grace: Duration::from_secs(30 * DAY),
            retry: Duration::from_secs(3600),
            clock_jump_tolerance: Duration::from_secs(5 * 60),
        }
    }
}

impl Timers {
    /// Checks that every timer is at most 100 years; that the ID validity, the renewal
    /// intervals, the communication deadline and `retry` are longer than zero; that each
    /// renewal is shorter than what it renews (`id_renewal < id_validity`,
    /// `authorization_renewal < communication_deadline`); that `retry` is shorter than both
    /// renewal intervals; and that the clock-jump tolerance is at least one second (the wall
    /// clock is read in whole seconds).
    pub fn validate(&self) -> Result<()> {
        let all = [
            ("evaluation", self.evaluation),
            ("id_validity", self.id_validity),
            ("id_renewal", self.id_renewal),
            ("authorization_renewal", self.authorization_renewal),
            ("communication_deadline", self.communication_deadline),
            ("grace", self.grace),
            ("retry", self.retry),
            ("clock_jump_tolerance", self.clock_jump_tolerance),
        ];
        if let Some((timer, _)) = all.iter().find(|(_, d)| *d > MAX_TIMER) {
            return Err(Error::TimerTooLong { timer });
        }
        let positive = [
            ("id_validity", self.id_validity),
            ("id_renewal", self.id_renewal),
            ("authorization_renewal", self.authorization_renewal),
            ("communication_deadline", self.communication_deadline),
            ("retry", self.retry),
        ];
        if let Some((timer, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::ZeroTimer { timer });
        }
        let order = [
            (
                "id_renewal",
                self.id_renewal,
                "id_validity",
                self.id_validity,
            ),
            (
                "authorization_renewal",
                self.authorization_renewal,
                "communication_deadline",
                self.communication_deadline,
            ),
            ("retry", self.retry, "id_renewal", self.id_renewal),
            (
                "retry",
                self.retry,
                "authorization_renewal",
                self.authorization_renewal,
            ),
        ];
        if let Some((shorter, _, longer, _)) = order.iter().find(|(_, s, _, l)| s >= l) {
            return Err(Error::TimerOrder { shorter, longer });
        }
        if self.clock_jump_tolerance < Duration::from_secs(1) {
            // The wall clock is read in whole seconds.
            return Err(Error::ZeroTimer {
                timer: "clock_jump_tolerance",
            });
        }
        Ok(())
    }
}

/// The product catalogue: the gate entitlements of one product and the licences that feed
/// each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The gate entitlements, in the order the limit table lists them.
    pub entitlements: Vec<EntitlementSpec>,
}

impl Product {
    /// A product with these gate entitlements.
    pub fn new(entitlements: impl IntoIterator<Item = EntitlementSpec>) -> Self {
        Self {
            entitlements: entitlements.into_iter().collect(),
        }
    }

    /// The catalogue of a RADIUS server sold as CPAR is: one gate entitlement `PAR-TPS`, fed
    /// by the licences `PAR-TPS` (the base) and `PAR-ADD-TPS` (the add-on), each at 100 TPS
    /// per unit, enforced `hard`.
    pub fn par_tps() -> Self {
        Self::new([EntitlementSpec::new("PAR-TPS", Policy::Hard)
            .fed_by("PAR-TPS", 100)
            .fed_by("PAR-ADD-TPS", 100)])
    }

    /// Whether some gate entitlement is fed by `licence`.
    pub fn knows_licence(&self, licence: &str) -> bool {
        self.entitlements
            .iter()
            .any(|e| e.licences.iter().any(|f| f.licence == licence))
    }

    /// Checks the tags, that gate entitlements are unique and each fed by at least one
    /// licence, once each, worth at least 1 TPS per unit; that burst windows lie in 1 ms to
    /// 60 s; and that evaluation rates are at least 1 TPS.
    pub fn validate(&self) -> Result<()> {
        if self.entitlements.is_empty() {
            return Err(Error::EmptyProduct);
        }
        for (i, e) in self.entitlements.iter().enumerate() {
            check_tag(&e.tag)?;
            if self.entitlements[..i].iter().any(|o| o.tag == e.tag) {
                return Err(Error::DuplicateEntitlement(e.tag.clone()));
            }
            if e.licences.is_empty() {
                return Err(Error::NoLicences(e.tag.clone()));
            }
            for (j, f) in e.licences.iter().enumerate() {
                check_tag(&f.licence)?;
                if e.licences[..j].iter().any(|o| o.licence == f.licence) {
                    return Err(Error::DuplicateLicence {
                        entitlement: e.tag.clone(),
                        licence: f.licence.clone(),
                    });
                }
                if f.tps_per_unit == 0 {
                    return Err(Error::ZeroTpsPerUnit {
                        entitlement: e.tag.clone(),
                        licence: f.licence.clone(),
                    });
                }
            }
            if !(1..=60_000).contains(&e.burst_ms) {
                return Err(Error::BurstWindow {
                    entitlement: e.tag.clone(),
                });
            }
            if e.evaluation_tps == Some(0) {
                return Err(Error::ZeroEvaluationTps {
                    entitlement: e.tag.clone(),
                });
            }
        }
        Ok(())
    }
}

/// One gate entitlement of a [`Product`]: its tag on the gate, its policy, its burst rule,
/// its evaluation rate, and the licences that feed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitlementSpec {
    /// The tag the entitlement is registered with on the gate, such as `PAR-TPS`.
    pub tag: String,
    /// The policy of every limit given to it (`hard` by default); the unlicensed behaviour
    /// `monitor-only` uses `monitor` instead.
    #[serde(default = "default_policy")]
    pub policy: Policy,
    /// The burst, as milliseconds of traffic at the rate: `burst = ceil(rate x burst_ms /
    /// 1000)`, at least 1. Default 100 ms, a tenth of the rate.
    #[serde(default = "default_burst_ms")]
    pub burst_ms: u64,
    /// The rate allowed during evaluation; left out, the evaluation allows what the
    /// selection requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_tps: Option<u64>,
    /// The licences whose counts add up to this entitlement's rate.
    pub licences: Vec<Feed>,
}

impl EntitlementSpec {
    /// A gate entitlement with no licences yet, a burst of 100 ms, evaluating what is
    /// requested.
    pub fn new(tag: impl Into<String>, policy: Policy) -> Self {
        Self {
            tag: tag.into(),
            policy,
            burst_ms: default_burst_ms(),
            evaluation_tps: None,
            licences: Vec::new(),
        }
    }

    /// Adds a licence worth `tps_per_unit` TPS of this entitlement per unit.
    #[must_use]
    pub fn fed_by(mut self, licence: impl Into<String>, tps_per_unit: u64) -> Self {
        self.licences.push(Feed {
            licence: licence.into(),
            tps_per_unit,
        });
        self
    }

    /// Sets a fixed evaluation rate.
    #[must_use]
    pub fn evaluation_tps(mut self, tps: u64) -> Self {
        self.evaluation_tps = Some(tps);
        self
    }

    /// Sets the burst window.
    #[must_use]
    pub fn burst_ms(mut self, ms: u64) -> Self {
        self.burst_ms = ms;
        self
    }

    /// The TPS that `counts` give this entitlement: the sum over its licences of count x
    /// TPS per unit, saturating.
    pub fn tps_of(&self, counts: &Counts) -> u64 {
        self.signed_tps_of(counts, &Catalogue::new()).0
    }

    /// The TPS and policy that `counts` give this entitlement when the authority signed
    /// what its licences are worth: each licence at its signed TPS per unit (the product's
    /// own only for a licence the authority said nothing of), and the strictest signed
    /// policy of the licences that count (the entitlement's own when none was signed).
    pub fn signed_tps_of(&self, counts: &Counts, worth: &Catalogue) -> (u64, Policy) {
        let mut policy: Option<Policy> = None;
        let tps = self.licences.iter().fold(0u64, |sum, f| {
            let units = counts.get(&f.licence).copied().unwrap_or(0);
            let per_unit = match worth.get(&f.licence) {
                Some(w) => {
                    if units > 0 {
                        policy = Some(policy.map_or(w.policy, |p| stricter(p, w.policy)));
                    }
                    w.tps_per_unit
                }
                None => f.tps_per_unit,
            };
            sum.saturating_add(units.saturating_mul(per_unit))
        });
        (tps, policy.unwrap_or(self.policy))
    }
}

/// A licence that feeds a gate entitlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// The licence tag, as the authority names it (such as `PAR-ADD-TPS`).
    pub licence: String,
    /// The TPS one unit of the licence is worth.
    pub tps_per_unit: u64,
}

fn default_policy() -> Policy {
    Policy::Hard
}

fn default_burst_ms() -> u64 {
    100
}

/// What the gate enforces when nothing licenses the device (evaluation over, authorisation
/// expired past its grace, or nothing granted). Traffic never silently stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Unlicensed {
    /// Every gate entitlement gets at least `tps` (with its own policy and burst rule).
    Floor {
        /// The floor, at least 1 TPS.
        tps: u64,
    },
    /// Nothing is rejected: every gate entitlement is metered under the `monitor` policy
    /// against the TPS the selection requests (unlimited when it requests none), so usage
    /// events still tell how far traffic is beyond what is licensed.
    MonitorOnly,
}

impl Default for Unlicensed {
    /// A floor of 10 TPS: enough for an operator to test, far from production traffic.
    fn default() -> Self {
        Unlicensed::Floor { tps: 10 }
    }
}

impl Unlicensed {
    /// Refuses a floor of 0 TPS or above [`MAX_RATE`].
    pub fn validate(&self) -> Result<()> {
        match *self {
            Unlicensed::Floor { tps: 0 } => Err(Error::ZeroFloor),
            Unlicensed::Floor { tps } if tps > MAX_RATE => {
                Err(Error::FloorTooHigh { tps, max: MAX_RATE })
            }
            _ => Ok(()),
        }
    }
}

/// The configuration of a licence [`Agent`](super::Agent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The timers.
    #[serde(default)]
    pub timers: Timers,
    /// The product catalogue.
    pub product: Product,
    /// The unlicensed behaviour.
    #[serde(default)]
    pub unlicensed: Unlicensed,
    /// The licences a new agent requests (licence tag to count); the operator changes it
    /// with [`Agent::set_selection`](super::Agent::set_selection).
    #[serde(default)]
    pub selection: Counts,
    /// The device's own view of the catalogue (as its configuration file states it), which
    /// may only lower a limit: a gate entitlement it names gets at most the rate this
    /// catalogue gives for the same counts, and at least the strictness of its policy. It
    /// never raises a rate or relaxes a policy, whatever it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_catalogue: Option<Product>,
}

impl AgentConfig {
    /// A configuration with default timers, the default floor and an empty selection.
    pub fn new(product: Product) -> Self {
        Self {
            timers: Timers::default(),
            product,
            unlicensed: Unlicensed::default(),
            selection: Counts::new(),
            device_catalogue: None,
        }
    }

    /// Sets the first selection.
    #[must_use]
    pub fn with_selection<'a>(
        mut self,
        selection: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Self {
        self.selection = selection
            .into_iter()
            .map(|(tag, n)| (tag.to_owned(), n))
            .collect();
        self
    }

    /// Validates the timers, the product, the unlicensed behaviour, and that the selection
    /// names only licences of the product.
    pub fn validate(&self) -> Result<()> {
        self.timers.validate()?;
        self.product.validate()?;
        self.unlicensed.validate()?;
        if let Some(device) = &self.device_catalogue {
            device.validate()?;
        }
        check_selection(&self.product, &self.selection)
    }
}

/// Refuses a selection that names a licence the product does not know.
pub(crate) fn check_selection(product: &Product, selection: &Counts) -> Result<()> {
    match selection.keys().find(|tag| !product.knows_licence(tag)) {
        Some(tag) => Err(Error::UnknownLicence(tag.clone())),
        None => Ok(()),
    }
}

/// Tags follow the gate's rule: 1 to 64 of `[A-Za-z0-9-_.:]`.
fn check_tag(tag: &str) -> Result<()> {
    if entitle_engine::table::is_valid_tag(tag) {
        Ok(())
    } else {
        Err(Error::InvalidTag(tag.to_owned()))
    }
}

/// Durations as whole seconds.
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}
