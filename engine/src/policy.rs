//! Enforcement policy off the hot path: usage levels, warnings and steady-state throttling.
//!
//! The sampler calls [`PolicyState::step`] once a second per entitlement with the offered
//! TPS (admitted + rejected) as a percentage of the licensed TPS.
//!
//! - The first crossing of each configured level (80%, 90%, 100% by default) in an episode
//!   raises [`EventKind::LevelCrossed`]; while traffic stays at or above the lowest level a
//!   [`EventKind::UsageWarning`] repeats every `warn_every` (5 minutes). Dropping below the
//!   lowest level ends the episode with [`EventKind::Recovered`] and re-arms the levels.
//! - `steady-state` only: once traffic has been at or above `throttle_level` (80%) for
//!   `throttle_after` (15 minutes) of the last `throttle_window` (20 minutes), the gate
//!   throttles the entitlement as `hard` ([`EventKind::ThrottleStarted`]); it stops when that
//!   time falls below `throttle_after` again ([`EventKind::ThrottleStopped`]).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::duration_nanos;
use crate::table::Entitlement;
use crate::{Error, Result};

/// The thresholds of the steady-state policy and of usage events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SteadyStateConfig {
    /// Percentages of the licensed TPS whose first crossing raises an event, ascending.
    pub levels: Vec<u32>,
    /// How often the usage warning repeats while traffic is at or above the lowest level.
    #[serde(with = "secs")]
    pub warn_every: Duration,
    /// The percentage that counts as "high" for throttling.
    pub throttle_level: u32,
    /// How long traffic must be high, within `throttle_window`, before throttling starts.
    #[serde(with = "secs")]
    pub throttle_after: Duration,
    /// The sliding window in which high time is counted.
    #[serde(with = "secs")]
    pub throttle_window: Duration,
}

impl Default for SteadyStateConfig {
    fn default() -> Self {
        Self {
            levels: vec![80, 90, 100],
            warn_every: Duration::from_secs(5 * 60),
            throttle_level: 80,
            throttle_after: Duration::from_secs(15 * 60),
            throttle_window: Duration::from_secs(20 * 60),
        }
    }
}

impl SteadyStateConfig {
    /// Checks that the levels ascend, lie in 1..=1000%, are at most 32, and that
    /// `throttle_after` fits in a non-empty `throttle_window`.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::Config(why.to_owned()));
        if self.levels.is_empty() || self.levels.len() > 32 {
            return bad("between 1 and 32 usage levels are needed");
        }
        if self.levels.windows(2).any(|w| w[0] >= w[1]) {
            return bad("usage levels must be strictly ascending");
        }
        if self
            .levels
            .iter()
            .chain([&self.throttle_level])
            .any(|l| !(1..=1000).contains(l))
        {
            return bad("levels are percentages from 1 to 1000");
        }
        if self.warn_every.is_zero() {
            return bad("warn_every must be longer than zero");
        }
        if self.throttle_window.is_zero() || self.throttle_after.is_zero() {
            return bad("throttle_after and throttle_window must be longer than zero");
        }
        if self.throttle_after > self.throttle_window {
            return bad("throttle_after cannot be longer than throttle_window");
        }
        Ok(())
    }
}

/// Something the sampler noticed about one entitlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The entitlement.
    #[serde(skip, default = "first_entitlement")]
    pub entitlement: Entitlement,
    /// Its tag.
    pub tag: String,
    /// Clock nanoseconds when the sampler saw it.
    pub at_nanos: u64,
    /// Offered TPS (admitted + rejected) in the last sample.
    pub offered_tps: u64,
    /// The licensed TPS at the time.
    pub licensed_tps: u64,
    /// What happened.
    pub kind: EventKind,
}

fn first_entitlement() -> Entitlement {
    Entitlement { index: 0 }
}

/// The kinds of [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Traffic crossed this level (a percentage of the licensed TPS) for the first time in
    /// this episode.
    LevelCrossed {
        /// The level.
        percent: u32,
    },
    /// Traffic is still at or above the lowest level; repeats every `warn_every`.
    UsageWarning {
        /// Offered TPS as a percentage of the licensed TPS.
        percent: u32,
    },
    /// Traffic fell below the lowest level; the levels are armed again.
    Recovered,
    /// A steady-state entitlement is now throttled to its licensed TPS.
    ThrottleStarted,
    /// A steady-state entitlement is no longer throttled.
    ThrottleStopped,
}

/// The policy state of one entitlement, owned by the sampler (public so that a licence
/// shared among several gates can be watched as a whole, by whoever sees their demand).
#[derive(Debug, Default)]
pub struct PolicyState {
    /// Bit `i` set: level `i` crossed in this episode.
    crossed: u32,
    last_warning: u64,
    /// Periods `[start, end)` of high traffic within the window, oldest first.
    high: VecDeque<(u64, u64)>,
    pub(crate) throttled: bool,
}

impl PolicyState {
    /// One sample of `elapsed` nanoseconds ending at `now` with traffic at `percent` of the
    /// licence. `steady_state` turns on throttling. Events go to `out`.
    pub fn step(
        &mut self,
        cfg: &SteadyStateConfig,
        now: u64,
        elapsed: u64,
        percent: u64,
        steady_state: bool,
        out: &mut Vec<EventKind>,
    ) {
        let lowest = u64::from(cfg.levels[0]);
        if percent >= lowest {
            let episode_starts = self.crossed == 0;
            for (i, level) in cfg.levels.iter().enumerate() {
                if percent >= u64::from(*level) && self.crossed & (1 << i) == 0 {
                    self.crossed |= 1 << i;
                    out.push(EventKind::LevelCrossed { percent: *level });
                }
            }
            if episode_starts {
                self.last_warning = now;
            } else if now.saturating_sub(self.last_warning) >= duration_nanos(cfg.warn_every) {
                self.last_warning = now;
                out.push(EventKind::UsageWarning {
                    percent: u32::try_from(percent).unwrap_or(u32::MAX),
                });
            }
        } else if self.crossed != 0 {
            self.crossed = 0;
            out.push(EventKind::Recovered);
        }

        if !steady_state {
            if self.throttled {
                self.throttled = false;
                self.high.clear();
                out.push(EventKind::ThrottleStopped);
            }
            return;
        }
        if percent >= u64::from(cfg.throttle_level) {
            let start = now.saturating_sub(elapsed);
            match self.high.back_mut() {
                Some(last) if last.1 >= start => last.1 = now,
                _ => self.high.push_back((start, now)),
            }
        }
        let window_start = now.saturating_sub(duration_nanos(cfg.throttle_window));
        while let Some(first) = self.high.front_mut() {
            if first.1 <= window_start {
                self.high.pop_front();
            } else {
                first.0 = first.0.max(window_start);
                break;
            }
        }
        let high: u64 = self.high.iter().map(|(s, e)| e - s).sum();
        let enough = high >= duration_nanos(cfg.throttle_after);
        if enough != self.throttled {
            self.throttled = enough;
            out.push(if enough {
                EventKind::ThrottleStarted
            } else {
                EventKind::ThrottleStopped
            });
        }
    }
}

/// Durations as whole seconds in configuration files.
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

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Runs `seconds` one-second samples at `percent`, returning the events.
    fn run(
        state: &mut PolicyState,
        cfg: &SteadyStateConfig,
        now: &mut u64,
        seconds: u64,
        percent: u64,
    ) -> Vec<EventKind> {
        let mut out = Vec::new();
        for _ in 0..seconds {
            *now += SEC;
            state.step(cfg, *now, SEC, percent, true, &mut out);
        }
        out
    }

    #[test]
    fn levels_fire_once_per_episode_and_warnings_repeat_every_five_minutes() {
        let cfg = SteadyStateConfig::default();
        let (mut s, mut now) = (PolicyState::default(), 0);
        assert_eq!(run(&mut s, &cfg, &mut now, 10, 50), vec![]);
        assert_eq!(
            run(&mut s, &cfg, &mut now, 1, 95),
            vec![
                EventKind::LevelCrossed { percent: 80 },
                EventKind::LevelCrossed { percent: 90 }
            ]
        );
        let events = run(&mut s, &cfg, &mut now, 600, 85);
        assert_eq!(
            events,
            vec![
                EventKind::UsageWarning { percent: 85 },
                EventKind::UsageWarning { percent: 85 }
            ]
        );
        assert_eq!(
            run(&mut s, &cfg, &mut now, 1, 120),
            vec![EventKind::LevelCrossed { percent: 100 }]
        );
        assert_eq!(
            run(&mut s, &cfg, &mut now, 1, 10),
            vec![EventKind::Recovered]
        );
        assert_eq!(
            run(&mut s, &cfg, &mut now, 1, 81),
            vec![EventKind::LevelCrossed { percent: 80 }]
        );
    }

    #[test]
    fn throttling_starts_after_15_high_minutes_of_any_20() {
        let cfg = SteadyStateConfig::default();
        let (mut s, mut now) = (PolicyState::default(), 0);
        // 10 minutes high, 5 low, 4:59 high: 14:59 of high time, no throttle yet.
        run(&mut s, &cfg, &mut now, 600, 90);
        run(&mut s, &cfg, &mut now, 300, 10);
        assert!(!run(&mut s, &cfg, &mut now, 299, 90).contains(&EventKind::ThrottleStarted));
        assert!(!s.throttled);
        assert_eq!(
            run(&mut s, &cfg, &mut now, 1, 90),
            vec![EventKind::ThrottleStarted]
        );
        assert!(s.throttled);
        // Low traffic: the high time drains out of the window and throttling stops.
        let events = run(&mut s, &cfg, &mut now, 20 * 60, 10);
        assert!(events.contains(&EventKind::ThrottleStopped));
        assert!(!s.throttled);
    }

    #[test]
    fn high_time_that_is_spread_out_never_throttles() {
        let cfg = SteadyStateConfig::default();
        let (mut s, mut now) = (PolicyState::default(), 0);
        for _ in 0..20 {
            // 10 minutes high, 10 low: never 15 of any 20.
            run(&mut s, &cfg, &mut now, 600, 95);
            run(&mut s, &cfg, &mut now, 600, 20);
            assert!(!s.throttled);
        }
    }

    #[test]
    fn bad_configurations_are_refused() {
        let ok = SteadyStateConfig::default();
        assert!(ok.validate().is_ok());
        for bad in [
            SteadyStateConfig {
                levels: vec![],
                ..ok.clone()
            },
            SteadyStateConfig {
                levels: vec![90, 80],
                ..ok.clone()
            },
            SteadyStateConfig {
                levels: vec![0, 80],
                ..ok.clone()
            },
            SteadyStateConfig {
                throttle_after: Duration::from_secs(2000),
                ..ok.clone()
            },
            SteadyStateConfig {
                warn_every: Duration::ZERO,
                ..ok.clone()
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::Config(_))), "{bad:?}");
        }
    }
}
