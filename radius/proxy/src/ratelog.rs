//! Rate-limited warnings: at most one line per reason a second, saying how many like it were
//! left out, so that a flood of bad packets cannot flood the log.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use entitle_radius_proxy::metrics::Reason;
//! use entitle_radius_proxy::ratelog::RateLog;
//!
//! let mut log = RateLog::new(Duration::from_secs(1));
//! let now = Instant::now();
//! assert_eq!(log.admit(Reason::Malformed, now), Some(0));
//! assert_eq!(log.admit(Reason::Malformed, now), None);
//! assert_eq!(log.admit(Reason::UnknownClient, now), Some(0));
//! assert_eq!(log.admit(Reason::Malformed, now + Duration::from_secs(1)), Some(1));
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::metrics::Reason;

/// Per reason: when a line was last written and how many were left out since.
pub struct RateLog {
    every: Duration,
    last: HashMap<Reason, (Instant, u64)>,
}

impl RateLog {
    /// At most one line per reason every `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: HashMap::new(),
        }
    }

    /// Whether a line for `reason` may be written at `now`; if so, how many were left out
    /// since the last one.
    pub fn admit(&mut self, reason: Reason, now: Instant) -> Option<u64> {
        match self.last.get_mut(&reason) {
            Some((at, left_out)) if now.duration_since(*at) < self.every => {
                *left_out += 1;
                None
            }
            Some((at, left_out)) => {
                *at = now;
                Some(std::mem::take(left_out))
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}
