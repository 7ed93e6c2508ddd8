//! What an entitlement allows: a rate with a burst and a policy, or no limit at all.
//!
//! A [`Limit`] is validated when it is made, so the hot path never meets a zero rate or an
//! arithmetic overflow.
//!
//! ```
//! use entitle_engine::{Error, Limit, Policy};
//!
//! let par_tps = Limit::new(100, 100, Policy::Hard)?;
//! assert_eq!(par_tps.per_second(), Some(100));
//! assert_eq!(Limit::new(0, 10, Policy::Hard), Err(Error::ZeroRate));
//! # Ok::<(), Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::gcra::{NANOS_PER_SECOND, Params, TICK_SHIFT};
use crate::{Error, Result};

/// The highest rate one entitlement can enforce, in transactions per second.
///
/// Intervals are kept in sixteenths of a nanosecond and rounded up, so the enforced rate is
/// never above the licensed one and, up to this rate, less than 0.1% below it.
pub const MAX_RATE: u64 = 10_000_000;

/// The largest burst tolerance, in ticks; keeps every sum of the bucket arithmetic in `u64`.
const MAX_TAU_TICKS: u64 = 1 << 62;

/// A lease is one token per this many transactions per second of rate (1 below 20,000/s).
const LEASE_RATE_DIVISOR: u64 = 10_000;

/// The most tokens a worker leases at once.
pub const MAX_LEASE: u64 = 64;

/// What the gate does when an entitlement's traffic goes past its rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Reject beyond the rate plus the burst.
    Hard,
    /// CPAR-compatible: warn at the configured levels, and throttle (as `Hard`) only once
    /// traffic has been high for long enough; see [`crate::SteadyStateConfig`].
    SteadyState,
    /// Never reject; meter and raise events.
    Monitor,
}

/// The limit of one entitlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawLimit", into = "RawLimit")]
pub enum Limit {
    /// Everything is admitted and metered (for example under a permanent reservation).
    Unlimited,
    /// A counted rate.
    Rate(Rate),
}

/// A validated rate: transactions per second, a burst, and a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    per_second: u64,
    burst: u64,
    policy: Policy,
}

impl Limit {
    /// A rate of `per_second` transactions per second, of which up to `burst` may arrive at
    /// once, under `policy`.
    ///
    /// Refuses a zero rate, a zero burst, a rate above [`MAX_RATE`] and a burst so large its
    /// tolerance would overflow.
    pub fn new(per_second: u64, burst: u64, policy: Policy) -> Result<Self> {
        if per_second == 0 {
            return Err(Error::ZeroRate);
        }
        if burst == 0 {
            return Err(Error::ZeroBurst);
        }
        if per_second > MAX_RATE {
            return Err(Error::RateTooHigh {
                rate: per_second,
                max: MAX_RATE,
            });
        }
        let interval = interval_ticks(per_second);
        let max_burst = MAX_TAU_TICKS / interval;
        if burst > max_burst {
            return Err(Error::BurstTooLarge {
                burst,
                rate: per_second,
                max: max_burst,
            });
        }
        Ok(Limit::Rate(Rate {
            per_second,
            burst,
            policy,
        }))
    }

    /// A hard limit whose burst is one second of traffic.
    pub fn hard(per_second: u64) -> Result<Self> {
        Self::new(per_second, per_second, Policy::Hard)
    }

    /// A hard limit that admits nothing: rate 0, burst 1, and a bucket that never holds a
    /// token. For a gate whose share of a licence shared among gates is nothing for now; its
    /// rejected transactions are still metered, so its demand shows. Swapped in, it leaves
    /// the bucket empty; swapped out, the new limit starts from an empty bucket.
    pub const fn closed() -> Self {
        Limit::Rate(Rate {
            per_second: 0,
            burst: 1,
            policy: Policy::Hard,
        })
    }

    /// Whether this is [`Limit::closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Limit::Rate(r) if r.per_second == 0)
    }

    /// The licensed rate, or `None` when unlimited.
    pub fn per_second(&self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Rate(r) => Some(r.per_second),
        }
    }

    /// The burst, or `None` when unlimited.
    pub fn burst(&self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Rate(r) => Some(r.burst),
        }
    }

    /// The policy, or `None` when unlimited.
    pub fn policy(&self) -> Option<Policy> {
        match self {
            Limit::Unlimited => None,
            Limit::Rate(r) => Some(r.policy),
        }
    }

    /// The bucket parameters, or `None` when unlimited.
    pub(crate) fn params(&self) -> Option<Params> {
        match self {
            Limit::Unlimited => None,
            // Closed: no tolerance, so no token ever fits (see `gcra::fit`).
            Limit::Rate(r) if r.per_second == 0 => Some(Params {
                interval: MAX_TAU_TICKS,
                tau: 0,
            }),
            Limit::Rate(r) => {
                let interval = interval_ticks(r.per_second);
                Some(Params {
                    interval,
                    tau: r.burst * interval,
                })
            }
        }
    }

    /// How many tokens a worker takes from the bucket at once.
    pub(crate) fn lease(&self) -> u64 {
        match self {
            Limit::Unlimited => 1,
            Limit::Rate(r) => (r.per_second / LEASE_RATE_DIVISOR)
                .clamp(1, MAX_LEASE)
                .min(r.burst),
        }
    }
}

/// The emission interval in ticks, rounded up so the bucket never runs fast.
fn interval_ticks(per_second: u64) -> u64 {
    (NANOS_PER_SECOND << TICK_SHIFT).div_ceil(per_second)
}

/// The serialised form; deserialising validates through [`Limit::new`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    per_second: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<Policy>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unlimited: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    closed: bool,
}

impl TryFrom<RawLimit> for Limit {
    type Error = Error;

    fn try_from(raw: RawLimit) -> Result<Self> {
        match raw {
            RawLimit {
                unlimited: true,
                closed: false,
                per_second: None,
                burst: None,
                policy: None,
            } => Ok(Limit::Unlimited),
            RawLimit {
                unlimited: false,
                closed: true,
                per_second: None,
                burst: None,
                policy: None,
            } => Ok(Limit::closed()),
            RawLimit {
                unlimited: false,
                closed: false,
                per_second: Some(rate),
                burst,
                policy,
            } => Limit::new(rate, burst.unwrap_or(rate), policy.unwrap_or(Policy::Hard)),
            _ => Err(Error::MalformedLimit),
        }
    }
}

impl From<Limit> for RawLimit {
    fn from(limit: Limit) -> Self {
        match limit {
            Limit::Unlimited => RawLimit {
                per_second: None,
                burst: None,
                policy: None,
                unlimited: true,
                closed: false,
            },
            Limit::Rate(r) if r.per_second == 0 => RawLimit {
                per_second: None,
                burst: None,
                policy: None,
                unlimited: false,
                closed: true,
            },
            Limit::Rate(r) => RawLimit {
                per_second: Some(r.per_second),
                burst: Some(r.burst),
                policy: Some(r.policy),
                unlimited: false,
                closed: false,
            },
        }
    }
}
