//! The event log's writer: the agent's events, the outcomes of calls to the authority and
//! the own gate's usage events go to the local store, the sidecar's log, and the
//! configured syslog and SNMP destinations ([`crate::notify`]).

use super::*;
use crate::events::{Notice, Recorded};

impl Shared {
    /// Records `entries`, all of this moment. A store failure is logged, not returned:
    /// the event log must never stop the agent.
    pub(crate) fn record(&self, entries: &[Recorded]) {
        if entries.is_empty() {
            return;
        }
        let now = Self::wall_secs();
        let mut json = Vec::with_capacity(entries.len());
        for entry in entries {
            let notice = Notice::of(entry, now);
            tracing::info!(kind = notice.kind, "{}", notice.message);
            self.notifier.send(&notice);
            match serde_json::to_string(entry) {
                Ok(text) => json.push(text),
                Err(e) => tracing::error!(error = %e, "cannot encode a licence event"),
            }
        }
        if let Err(e) = self.store.append_events(now, &json) {
            tracing::error!(error = %e, "cannot store licence events");
        }
    }

    /// Records the agent's events raised so far.
    pub(super) fn record_agent_events(&self, core: &mut Core) {
        let entries: Vec<Recorded> = core
            .agent
            .take_events()
            .into_iter()
            .map(Recorded::Licence)
            .collect();
        self.record(&entries);
    }

    /// Records the own gate's usage events (levels crossed, throttling) as they come; while
    /// engines are attached, its level events are left to the licence-wide watch.
    pub(super) async fn record_usage(
        self: Arc<Self>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<entitle_engine::Event>,
    ) {
        while let Some(usage) = events.recv().await {
            let level = matches!(
                usage.kind,
                entitle_engine::EventKind::LevelCrossed { .. }
                    | entitle_engine::EventKind::UsageWarning { .. }
                    | entitle_engine::EventKind::Recovered
            );
            if level && self.levels_are_shared() {
                // The licence's levels are watched as a whole (sharing.rs).
                continue;
            }
            self.record(&[Recorded::Usage { usage }]);
        }
    }
}

impl Performed {
    /// The call as the event log keeps it.
    pub(super) fn recorded(&self) -> Recorded {
        Recorded::Call {
            call: self.kind.to_owned(),
            failure: self.result.as_ref().err().map(ToString::to_string),
        }
    }
}
