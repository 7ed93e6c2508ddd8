//! Calls home that failed for want of the authority are tried again on an exponential
//! backoff with full jitter ([`crate::backoff`]), capped at the agent's own `retry`
//! period, so that a fleet whose authority was down comes back spread out. The agent's
//! fixed `retry` stays as the backstop; a refusal (the authority answered) waits for it.

use super::*;
use crate::backoff::{Backoff, Retry};

/// The first backoff window; it doubles after each failure up to the agent's `retry`.
const BASE: Duration = Duration::from_secs(5);

/// The calls waiting for a jittered retry.
#[derive(Debug, Default)]
pub(super) struct CallRetry {
    run: Retry,
    renew_id: bool,
    authorize: bool,
}

impl CallRetry {
    /// When the retry is due, on the agent's clock.
    pub(super) fn due(&self) -> Option<u64> {
        self.run.due
    }
}

impl Shared {
    /// Asks the agent again for the calls whose retry is due.
    pub(super) fn retry_due(&self, core: &mut Core) {
        let now = self.now();
        if !core.retry.run.take_due(now) {
            return;
        }
        // Refused only when the device is no longer registered: nothing to retry then.
        if std::mem::take(&mut core.retry.renew_id) {
            let _ = core.agent.renew_id(now);
        }
        if std::mem::take(&mut core.retry.authorize) {
            let _ = core.agent.renew_authorization(now);
        }
    }

    /// Schedules a retry after calls home that could not reach the authority; ends the
    /// run after one that did.
    pub(super) fn note_calls(&self, core: &mut Core, performed: &[Performed]) {
        let mut unreachable = false;
        for p in performed {
            let (renew_id, authorize) = (p.kind == "renew-id", p.kind == "authorize");
            if !(renew_id || authorize) {
                continue;
            }
            match &p.result {
                Err(SidecarError::Unavailable(_)) => {
                    unreachable = true;
                    core.retry.renew_id |= renew_id;
                    core.retry.authorize |= authorize;
                }
                Ok(()) => {
                    core.retry.run.succeeded();
                    core.retry.renew_id &= !renew_id;
                    core.retry.authorize &= !authorize;
                }
                Err(_) => {}
            }
        }
        if unreachable {
            let cap = core.agent.config().timers.retry;
            let backoff = Backoff::new(BASE.min(cap), cap);
            let wait = core.retry.run.failed(
                &backoff,
                self.now(),
                getrandom::u64().unwrap_or(u64::MAX / 2),
            );
            tracing::info!(
                ?wait,
                failures = core.retry.run.failures,
                "calling home again"
            );
        }
    }
}
