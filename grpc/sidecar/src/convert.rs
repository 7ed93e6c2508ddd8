//! Between the engine's types and the wire's: limits, snapshots, clock readings.

use std::time::{SystemTime, UNIX_EPOCH};

use entitle_engine::{Limit, Policy, Snapshot};
use entitle_proto::pb;

use super::{Result, SidecarError};

/// The wire form of a limit.
pub fn limit_to_pb(limit: &Limit) -> pb::EntitlementLimit {
    match limit {
        Limit::Unlimited => pb::EntitlementLimit {
            unlimited: true,
            ..Default::default()
        },
        Limit::Rate(_) => pb::EntitlementLimit {
            unlimited: false,
            rate: limit.per_second().unwrap_or(0),
            burst: limit.burst().unwrap_or(0),
            policy: match limit.policy() {
                Some(Policy::SteadyState) => pb::PolicyKind::SteadyState,
                Some(Policy::Monitor) => pb::PolicyKind::Monitor,
                _ => pb::PolicyKind::Hard,
            } as i32,
        },
    }
}

/// A limit from the wire, refused when it would not be a valid engine limit. A rate of 0
/// is [`Limit::closed`] (a share of nothing for now).
pub fn limit_from_pb(limit: &pb::EntitlementLimit) -> Result<Limit> {
    if limit.unlimited {
        return Ok(Limit::Unlimited);
    }
    if limit.rate == 0 {
        return Ok(Limit::closed());
    }
    let policy = match pb::PolicyKind::try_from(limit.policy) {
        Ok(pb::PolicyKind::Hard) => Policy::Hard,
        Ok(pb::PolicyKind::SteadyState) => Policy::SteadyState,
        Ok(pb::PolicyKind::Monitor) => Policy::Monitor,
        _ => {
            return Err(SidecarError::InvalidArgument(format!(
                "unknown policy {}",
                limit.policy
            )));
        }
    };
    Limit::new(limit.rate, limit.burst, policy)
        .map_err(|e| SidecarError::InvalidArgument(format!("invalid limit: {e}")))
}

/// A limit table in wire form, for the tags in `only` (all when `None`).
pub fn table_to_pb(limits: &[(String, Limit)], only: Option<&[String]>) -> pb::LimitTable {
    pb::LimitTable {
        limits: limits
            .iter()
            .filter(|(tag, _)| only.is_none_or(|only| only.contains(tag)))
            .map(|(tag, limit)| pb::TaggedLimit {
                tag: tag.clone(),
                limit: Some(limit_to_pb(limit)),
            })
            .collect(),
        sequence: 0,
    }
}

/// A limit table from the wire.
pub fn table_from_pb(table: &pb::LimitTable) -> Result<Vec<(String, Limit)>> {
    table
        .limits
        .iter()
        .map(|t| {
            let limit = t
                .limit
                .as_ref()
                .ok_or_else(|| SidecarError::InvalidArgument(format!("{} has no limit", t.tag)))?;
            Ok((t.tag.clone(), limit_from_pb(limit)?))
        })
        .collect()
}

/// Maps an engine clock's nanoseconds to Unix milliseconds, from one reading of both.
#[derive(Clone, Copy, Debug)]
pub struct WallAnchor {
    unix_millis: i64,
    clock_nanos: u64,
}

impl WallAnchor {
    /// Reads the wall clock now, against the engine clock reading `clock_nanos`.
    pub fn now(clock_nanos: u64) -> Self {
        Self {
            unix_millis: unix_millis(),
            clock_nanos,
        }
    }

    /// The Unix milliseconds of an engine clock reading.
    pub fn unix_millis(&self, clock_nanos: u64) -> i64 {
        let delta_ms = (i128::from(clock_nanos) - i128::from(self.clock_nanos)) / 1_000_000;
        i64::try_from(i128::from(self.unix_millis) + delta_ms).unwrap_or(self.unix_millis)
    }
}

/// The wall clock in Unix milliseconds.
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The usage of a snapshot in wire form; `None` when nothing was admitted or rejected.
pub fn usage_to_pb(snapshot: &Snapshot) -> Option<Vec<pb::EntitlementUsage>> {
    if snapshot
        .entitlements
        .iter()
        .all(|u| u.admitted == 0 && u.rejected == 0)
    {
        return None;
    }
    Some(
        snapshot
            .entitlements
            .iter()
            .map(|u| pb::EntitlementUsage {
                tag: u.tag.to_string(),
                admitted: u.admitted,
                rejected: u.rejected,
                peak_tps: u.peak_tps,
                // A histogram that does not encode is left out: the counts are what the
                // ledger needs.
                tps_histogram: u
                    .tps_histogram
                    .as_ref()
                    .and_then(|h| h.to_v2_deflate().ok())
                    .unwrap_or_default(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_round_trip_and_bad_ones_are_refused() {
        for limit in [
            Limit::Unlimited,
            Limit::new(300, 30, Policy::Hard).unwrap(),
            Limit::new(5, 1, Policy::SteadyState).unwrap(),
            Limit::new(7, 2, Policy::Monitor).unwrap(),
            Limit::closed(),
        ] {
            assert_eq!(limit_from_pb(&limit_to_pb(&limit)).unwrap(), limit);
        }
        let no_burst = pb::EntitlementLimit {
            rate: 5,
            burst: 0,
            policy: pb::PolicyKind::Hard as i32,
            ..Default::default()
        };
        assert!(limit_from_pb(&no_burst).is_err());
        let unknown = pb::EntitlementLimit {
            rate: 1,
            burst: 1,
            policy: 99,
            ..Default::default()
        };
        assert!(limit_from_pb(&unknown).is_err());
    }
}
