//! The authorisation state machine's data, and the evaluation period.
//!
//! Unregistered, the device runs on evaluation (EVALUATION, then EVALUATION_EXPIRED once its
//! time is used up); the evaluation time runs only while unregistered and what is left is
//! kept. Registered, the agent asks for an authorisation at once and renews it every
//! `authorization_renewal` (retrying every `retry`); each answer is AUTHORIZED or
//! OUT_OF_COMPLIANCE per licence; `communication_deadline` after the last success (or the
//! registration) it is AUTHORIZATION_EXPIRED: the last authorised counts stay enforced for
//! `grace`, then the unlicensed behaviour applies. A later success recovers.
//!
//! The statuses are derived from these timestamps and the time, so a timer "fires" simply by
//! time passing it; the agent visits each due moment in order to raise its events.

use serde::{Deserialize, Serialize};

use super::attempt::Tried;
use super::config::{Catalogue, Counts};

/// The evaluation period: what is left, and since when it has been running (if it is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Evaluation {
    /// Nanoseconds left at `running_since` (or now, when not running).
    pub(crate) remaining: u64,
    pub(crate) running_since: Option<u64>,
}

impl Evaluation {
    /// A full evaluation period of `nanos`, running from `now`.
    pub(crate) fn new(nanos: u64, now: u64) -> Self {
        Self {
            remaining: nanos,
            running_since: Some(now),
        }
    }

    /// Nanoseconds left at `t`.
    pub(crate) fn remaining_at(&self, t: u64) -> u64 {
        match self.running_since {
            Some(since) => self.remaining.saturating_sub(t.saturating_sub(since)),
            None => self.remaining,
        }
    }

    /// Starts or stops the evaluation time at `t`, keeping what is left.
    pub(crate) fn run(&mut self, on: bool, t: u64) {
        match (self.running_since, on) {
            (Some(_), false) => {
                self.remaining = self.remaining_at(t);
                self.running_since = None;
            }
            (None, true) => self.running_since = Some(t),
            _ => {}
        }
    }

    /// When the evaluation time runs out, if it is running.
    pub(crate) fn runs_out_at(&self) -> Option<u64> {
        self.running_since
            .map(|since| since.saturating_add(self.remaining))
    }
}

/// The authorisation of a registered device; times are agent nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Authorization {
    /// The latest request sent and not yet answered.
    pub(crate) in_flight: Option<Counts>,
    /// The request the latest grant answered.
    pub(crate) answered: Counts,
    /// The latest counts granted; `None` until the first authorisation.
    pub(crate) granted: Option<Counts>,
    /// What the authority signed each granted licence is worth (empty from an authority
    /// that signs no worth: the product's own values apply then).
    #[serde(default, skip_serializing_if = "Catalogue::is_empty")]
    pub(crate) worth: Catalogue,
    pub(crate) last_attempt: Option<Tried>,
    /// When to send the next `Authorize`; moved by `retry` when one goes out unanswered.
    pub(crate) next_attempt: u64,
    /// The communication deadline: the last success (or the registration) plus
    /// `communication_deadline`.
    pub(crate) deadline: u64,
}

impl Authorization {
    /// A fresh authorisation for a device registered at `t`: due at once.
    pub(crate) fn new(t: u64, deadline: u64) -> Self {
        Self {
            in_flight: None,
            answered: Counts::new(),
            granted: None,
            worth: Catalogue::new(),
            last_attempt: None,
            next_attempt: t,
            deadline,
        }
    }

    /// Whether any answered licence was granted short.
    pub(crate) fn short(&self) -> bool {
        let Some(granted) = &self.granted else {
            return false;
        };
        self.answered
            .iter()
            .any(|(tag, &n)| granted.get(tag).copied().unwrap_or(0) < n)
    }
}
