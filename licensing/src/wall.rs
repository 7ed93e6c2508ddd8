//! Watching the wall clock without trusting it.
//!
//! Every timer runs on the monotonic clock. Each poll brings a wall-clock reading, which is
//! compared with an anchor (an earlier reading and the monotonic time it was taken at): when
//! the wall clock has moved more or less than the monotonic clock by more than the tolerance,
//! that is a clock jump, reported once, and the reading becomes the new anchor. Drift is
//! compared with the anchor, not with the previous poll, so many small steps add up to a
//! reported jump too. The anchor also turns monotonic moments into estimated wall times for
//! the status.

use serde::{Deserialize, Serialize};

use super::status::JumpDirection;

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// A wall-clock reading and the agent time it was taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WallAnchor {
    pub(crate) at: u64,
    pub(crate) wall_unix_secs: i64,
}

/// A jump found by [`WallAnchor::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Jump {
    pub(crate) direction: JumpDirection,
    pub(crate) by_nanos: u64,
    pub(crate) expected_wall_unix_secs: i64,
}

impl WallAnchor {
    /// The wall time at agent time `t`, estimated from this anchor.
    pub(crate) fn wall_at(&self, t: u64) -> i64 {
        let secs = (i128::from(t) - i128::from(self.at)).div_euclid(NANOS_PER_SECOND);
        saturate(i128::from(self.wall_unix_secs) + secs)
    }

    /// Compares a reading `wall_unix_secs` at agent time `t` with this anchor: a jump when
    /// the two clocks differ by more than `tolerance_nanos`.
    pub(crate) fn check(&self, t: u64, wall_unix_secs: i64, tolerance_nanos: u64) -> Option<Jump> {
        let mono = i128::from(t) - i128::from(self.at);
        let wall =
            (i128::from(wall_unix_secs) - i128::from(self.wall_unix_secs)) * NANOS_PER_SECOND;
        let skew = wall - mono;
        if skew.unsigned_abs() <= u128::from(tolerance_nanos) {
            return None;
        }
        Some(Jump {
            direction: if skew > 0 {
                JumpDirection::Forward
            } else {
                JumpDirection::Backward
            },
            by_nanos: u64::try_from(skew.unsigned_abs()).unwrap_or(u64::MAX),
            expected_wall_unix_secs: self.wall_at(t),
        })
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}
