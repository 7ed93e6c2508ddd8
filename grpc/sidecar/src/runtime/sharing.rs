//! The licence shared among the sidecar's gates, at work: the [`Board`](crate::share::Board)
//! behind a lock, the own gate's demand read once a second, leases expired, and each plan's
//! tables delivered (the own gate's applied at once, an engine's sent down its Attach
//! stream). A plan runs whenever something changes: an engine attaches, reports or leaves,
//! the licence changes, or the tick finds new demand or an expired lease.

use std::collections::HashMap;

use entitle_engine::policy::PolicyState;
use entitle_engine::{Event, EventKind, SteadyStateConfig};
use tokio::sync::mpsc;

use super::*;
use crate::share::{Board, OWN};

/// How long an engine's share stays in force after it was last heard.
pub(crate) const LEASE: Duration = Duration::from_secs(3);
/// How often leases and the own gate's demand are looked at.
const TICK: Duration = Duration::from_millis(250);
/// The own gate's demand is measured over at least this long.
const DEMAND_WINDOW: Duration = Duration::from_secs(1);

/// What the sharing sends an Attach stream.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A share to apply: its sequence and table.
    Table(u64, Limits),
    /// The lease ran out with nothing heard: the stream ends.
    Expired,
}

/// The board and where its tables go.
pub(crate) struct Sharing {
    board: Board,
    /// Per engine id: its stream's epoch and sender.
    outboxes: HashMap<String, (u64, mpsc::UnboundedSender<Outbound>)>,
    /// The own gate's offered counts at the last reading.
    own_offered: Option<(Instant, Vec<u64>)>,
    /// While engines are attached: the usage levels of the whole licence, per tag, and
    /// when they were last stepped.
    licence_levels: BTreeMap<String, PolicyState>,
    levels_at: Option<Instant>,
}

impl Sharing {
    /// At start. When engines attached to an earlier run (`engines_before`), growth waits
    /// one lease (see [`Board::hold_growth_until`]); the origin of the board's time is
    /// about now.
    pub(crate) fn new(applied: &Limits, engines_before: bool) -> Self {
        let mut board = Board::new(LEASE, applied);
        if engines_before {
            board.hold_growth_until(LEASE);
        }
        Self {
            board,
            outboxes: HashMap::new(),
            own_offered: None,
            licence_levels: BTreeMap::new(),
            levels_at: None,
        }
    }
}

impl Shared {
    fn since_origin(&self) -> Duration {
        self.origin.elapsed()
    }

    /// An engine attaches with `tags`, enforcing `applied`; answers its epoch and the
    /// stream of what to send it.
    pub(crate) fn share_attach(
        &self,
        engine_id: &str,
        tags: Vec<String>,
        applied: Limits,
    ) -> (u64, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let now = self.since_origin();
        {
            let mut sharing = self.sharing.lock();
            let epoch = sharing.board.attach(engine_id, tags, applied, now);
            sharing.outboxes.insert(engine_id.to_owned(), (epoch, tx));
            drop(sharing);
            self.reshare();
            (epoch, rx)
        }
    }

    /// An engine's report: the table it applied last and its demand.
    pub(crate) fn share_report(&self, engine_id: &str, epoch: u64, report: &pb::GateReport) {
        let demand = report
            .demand
            .iter()
            .map(|d| (d.tag.clone(), d.offered_tps))
            .collect();
        let now = self.since_origin();
        tracing::debug!(engine = %engine_id, applied = report.applied, ?demand, "gate report");
        self.sharing
            .lock()
            .board
            .report(engine_id, epoch, report.applied, demand, now);
        self.reshare();
    }

    /// Something else came from an engine: it is alive.
    pub(crate) fn share_heard(&self, engine_id: &str, epoch: u64) {
        let now = self.since_origin();
        self.sharing.lock().board.heard(engine_id, epoch, now);
    }

    /// An engine's stream ended: its share stays in force until its lease runs out.
    pub(crate) fn share_detach(&self, engine_id: &str, epoch: u64) {
        let mut sharing = self.sharing.lock();
        sharing.board.detach(engine_id, epoch);
        if sharing
            .outboxes
            .get(engine_id)
            .is_some_and(|(e, _)| *e == epoch)
        {
            sharing.outboxes.remove(engine_id);
        }
    }

    /// Plans and delivers until the plan is settled: the own gate's tables are applied and
    /// acknowledged at once, which may make room for another round.
    pub(crate) fn reshare(&self) {
        let licence = self.limits.borrow().clone();
        let mut sharing = self.sharing.lock();
        // Each round either applies the own gate's table or ends; four is plenty.
        for _ in 0..4 {
            let sends = sharing.board.plan(&licence);
            let mut again = false;
            for send in sends {
                if send.gate == OWN {
                    match apply_limits(&self.gate, &send.table) {
                        Ok(()) => {
                            tracing::debug!(table = ?send.table, "own gate's share applied");
                            let demand = sharing.board.demand(OWN);
                            let now = self.since_origin();
                            sharing
                                .board
                                .report(OWN, send.epoch, send.sequence, demand, now);
                            again = true;
                        }
                        Err(e) => tracing::error!(error = %e, "cannot apply the own gate's share"),
                    }
                    continue;
                }
                tracing::debug!(engine = %send.gate, sequence = send.sequence, table = ?send.table, "share sent");
                let delivered = sharing
                    .outboxes
                    .get(&send.gate)
                    .filter(|(epoch, _)| *epoch == send.epoch)
                    .is_some_and(|(_, tx)| {
                        tx.send(Outbound::Table(send.sequence, send.table)).is_ok()
                    });
                if !delivered {
                    // Counted in force all the same until the lease runs out.
                    tracing::debug!(engine = %send.gate, "a share for a stream that is gone");
                }
            }
            if !again {
                break;
            }
        }
    }

    /// Every tick: the own gate's demand, expired leases, a plan.
    pub(super) async fn share_ticks(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut licence = self.limits.subscribe();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = licence.changed() => if changed.is_err() { return },
            }
            self.measure_own_demand();
            self.watch_licence_levels();
            let gone = {
                let mut sharing = self.sharing.lock();
                let gone = sharing.board.expire(self.since_origin());
                for (id, epoch) in &gone {
                    if let Some((e, tx)) = sharing.outboxes.get(id)
                        && e == epoch
                    {
                        let _ = tx.send(Outbound::Expired);
                        sharing.outboxes.remove(id);
                    }
                }
                gone
            };
            for (id, _) in gone {
                tracing::warn!(engine = %id, "an attached engine's lease ran out: its share is freed");
            }
            self.reshare();
        }
    }

    /// Whether usage levels are the licence's as a whole (engines attached), so the own
    /// gate's level events, which measure only its share, are not the operator's.
    pub(crate) fn levels_are_shared(&self) -> bool {
        self.sharing.lock().board.engines() > 0
    }

    /// Once a second while engines are attached: every gate's demand together against the
    /// licence, through the same usage levels a gate's sampler applies (80, 90, 100%,
    /// repeated warnings, recovery). Without engines the own gate has the whole licence and
    /// its sampler raises these events itself.
    fn watch_licence_levels(&self) {
        let now = Instant::now();
        let licence = self.limits.borrow().clone();
        let mut sharing = self.sharing.lock();
        let Some(at) = sharing.levels_at.replace(now) else {
            return;
        };
        let elapsed = now.duration_since(at);
        if elapsed < DEMAND_WINDOW {
            sharing.levels_at = Some(at);
            return;
        }
        if sharing.board.engines() == 0 {
            sharing.licence_levels.clear();
            return;
        }
        let config = SteadyStateConfig::default();
        let at_nanos = self.gate.clock().now();
        let elapsed_nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let mut events = Vec::new();
        for (tag, limit) in &licence {
            let (Some(rate), Some(entitlement)) = (
                limit.per_second().filter(|r| *r > 0),
                self.gate.entitlement(tag),
            ) else {
                continue;
            };
            let offered = sharing.board.total_demand(tag);
            let percent = offered.saturating_mul(100) / rate;
            let mut kinds: Vec<EventKind> = Vec::new();
            sharing.licence_levels.entry(tag.clone()).or_default().step(
                &config,
                at_nanos,
                elapsed_nanos,
                percent,
                false,
                &mut kinds,
            );
            events.extend(kinds.into_iter().map(|kind| Event {
                entitlement,
                tag: tag.clone(),
                at_nanos,
                offered_tps: offered,
                licensed_tps: rate,
                kind,
            }));
        }
        drop(sharing);
        for usage in events {
            self.record(&[crate::events::Recorded::Usage { usage }]);
        }
    }

    /// Reads the own gate's offered counts; once a window has passed, its demand.
    fn measure_own_demand(&self) {
        let now = Instant::now();
        let offered = self.gate.offered();
        let mut sharing = self.sharing.lock();
        let Some((at, before)) = &sharing.own_offered else {
            sharing.own_offered = Some((now, offered));
            return;
        };
        let elapsed = now.duration_since(*at);
        if elapsed < DEMAND_WINDOW {
            return;
        }
        let limits = self.gate.limits();
        let demand = limits
            .iter()
            .zip(offered.iter().zip(before.iter()))
            .map(|((_, tag, _), (now, then))| {
                let per_second = (now.saturating_sub(*then) as f64 / elapsed.as_secs_f64()).ceil();
                (tag.to_owned(), per_second as u64)
            })
            .collect();
        sharing.board.own_demand(demand);
        sharing.own_offered = Some((now, offered));
    }
}
