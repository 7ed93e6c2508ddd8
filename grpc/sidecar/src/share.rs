//! One licence shared by demand among a sidecar's gates (its own and every attached one),
//! never multiplied by their number. Pure: time comes in as a `Duration` since any origin,
//! and tables go out as values for the caller to deliver.
//!
//! # Demand
//! Each gate says what it was offered (admitted + rejected) per second over its last report
//! interval (about a second; any interval works, the rate is per second of that interval).
//! Rejected transactions count, so a gate held below its demand still shows it. An attached
//! engine reports it in a `GateReport` every report interval, whether or not it took a
//! usage snapshot (an idle gate takes none, and a full spool pushes snapshots back); the
//! sidecar reads its own gate's offered counts (`Gate::offered`) once a second.
//!
//! # Allocation ([`share`])
//! Per entitlement, max-min fair water-filling of the licensed rate by demand. A gate that
//! wants less than its fair part gets its demand plus a little headroom (1%, at least 1 TPS,
//! so that it can show growth); what is left is split evenly among the hungry; when nobody
//! is hungry the rest is split evenly among the gates, so a growing gate has room at once.
//! The sum of the rates is never above the licensed rate. Bursts are split in proportion to
//! the rates, each at least 1. An idle attached gate wants 1 TPS (its headroom), so it gets
//! 1 TPS while the licence has room for it; with more attached gates than licensed TPS, the
//! gates the even split leaves at 0 get [`Limit::closed`] (rate 0 on the wire), which meters
//! their rejects, so their demand still shows. The sidecar's own gate, when it has no demand
//! while an attached gate shares the entitlement, is closed too. So a lone gate (only the
//! own gate, or one attached gate while the own gate is idle) gets the whole licence, limit
//! for limit. Unlimited (a permanent reservation) stays unlimited for all, and `monitor`
//! (which never rejects) passes through to all.
//!
//! # Safety while shares change ([`Board`])
//! A share is *in force* from the moment it is sent until the gate acknowledges applying a
//! later table (`GateReport.applied`): a gate's in-force rate is the highest of its
//! acknowledged table and every table sent to it since. Each [`Board::plan`] first sends
//! every gate whose target is below its in-force share its reduced table (which raises
//! nothing), then grows others only into what the licence has left beyond every share in
//! force. So the shares in force never add up to more than the licence, also while they
//! change; when the licence itself drops, everyone shrinks first and nobody grows until
//! the sum fits. The own gate applies its table at once and acknowledges it in the same
//! call.
//!
//! A gate whose stream broke keeps its share in force, and a gate that sends nothing keeps
//! its share, until its lease runs out: [`Board::expire`] frees the share once nothing was
//! heard from the gate for the lease period. The engine keeps its side of it: it closes its
//! share when no report of its was acknowledged for the lease period (see
//! `crate::attach`). An engine reconnecting within its lease tells the sidecar in its hello
//! which table it enforces, and that is what counts as in force from then on.
//!
//! A sidecar that starts (again) does not know the shares of engines attached to its
//! previous run that have not reconnected yet; each of them closes its share within one
//! lease of its last acknowledged report, so the board grows no share for one lease after
//! start ([`Board::hold_growth_until`]). Not covered: a gate's limits before its first
//! share (what its host built it with) are not counted.

use std::collections::BTreeMap;
use std::time::Duration;

use entitle_engine::{Limit, Policy};

/// The id of the sidecar's own gate on the board; engine ids are never empty.
pub(crate) const OWN: &str = "";

/// Headroom above a satisfied gate's demand: 1%, at least 1 TPS.
fn headroom(demand: u64) -> u64 {
    demand.div_ceil(100).max(1)
}

/// What one gate claims of one entitlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The sidecar's own gate (which may be closed) rather than an attached one.
    pub(crate) own: bool,
    /// Offered TPS.
    pub(crate) demand: u64,
}

/// Splits `rate` among `claims` by max-min fairness (see the module docs). The sum is at
/// most `rate`.
pub(crate) fn split_rate(rate: u64, claims: &[Claim]) -> Vec<u64> {
    if claims.len() <= 1 {
        return vec![rate; claims.len()];
    }
    let wants: Vec<u64> = claims
        .iter()
        .map(|c| match c {
            Claim {
                own: true,
                demand: 0,
            } => 0,
            c => c.demand.saturating_add(headroom(c.demand)).min(rate),
        })
        .collect();
    let mut shares = vec![0; claims.len()];
    let mut order: Vec<usize> = (0..claims.len()).filter(|&i| wants[i] > 0).collect();
    order.sort_by_key(|&i| (wants[i], i));
    let mut remaining = rate;
    let mut left = order.len() as u64;
    let mut hungry = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let fair = remaining / left;
        if wants[i] <= fair {
            shares[i] = wants[i];
            remaining -= wants[i];
            left -= 1;
        } else {
            hungry = order[n..].to_vec();
            break;
        }
    }
    // The rest goes to the hungry, or, when everyone is satisfied, to everyone.
    let takers = if hungry.is_empty() { &order } else { &hungry };
    if !takers.is_empty() {
        let each = remaining / takers.len() as u64;
        let extra = (remaining % takers.len() as u64) as usize;
        for (n, &i) in takers.iter().enumerate() {
            shares[i] += each + u64::from(n < extra);
        }
    }
    shares
}

/// The limit of a `rate` share of `licence` (a hard or steady-state rate): the burst in
/// proportion, at least 1; closed for a rate of 0.
fn limit_at(licence: &Limit, rate: u64) -> Limit {
    let (Some(total), Some(burst), Some(policy)) =
        (licence.per_second(), licence.burst(), licence.policy())
    else {
        return *licence;
    };
    if rate == 0 || total == 0 {
        return Limit::closed();
    }
    if rate >= total {
        return *licence;
    }
    let share = u128::from(burst) * u128::from(rate) / u128::from(total);
    let share_burst = u64::try_from(share).unwrap_or(burst).max(1);
    Limit::new(rate, share_burst, policy)
        .or_else(|_| Limit::new(rate, 1, policy))
        .unwrap_or(Limit::closed())
}

/// Whether a licence limit is shared out (a counted, enforced rate) or passes through to
/// every gate as it is (unlimited, monitor, closed).
fn is_shared(licence: &Limit) -> bool {
    matches!(licence.policy(), Some(Policy::Hard | Policy::SteadyState)) && !licence.is_closed()
}

/// Each claim's limit of `licence` (see the module docs).
pub(crate) fn share(licence: &Limit, claims: &[Claim]) -> Vec<Limit> {
    if !is_shared(licence) {
        return vec![*licence; claims.len()];
    }
    let rate = licence.per_second().unwrap_or(0);
    split_rate(rate, claims)
        .into_iter()
        .map(|r| limit_at(licence, r))
        .collect()
}

/// The rate a limit lets through, for counting shares in force: everything for unlimited
/// and monitor.
fn rate_of(limit: &Limit) -> u64 {
    match limit.policy() {
        None | Some(Policy::Monitor) => u64::MAX,
        Some(_) => limit.per_second().unwrap_or(u64::MAX),
    }
}

/// A table to deliver to one gate.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Send {
    /// The gate ([`OWN`] or an engine id).
    pub(crate) gate: String,
    /// The stream it goes to (stale streams are ignored).
    pub(crate) epoch: u64,
    /// The table's number, for the gate's acknowledgement.
    pub(crate) sequence: u64,
    /// The share, per tag.
    pub(crate) table: Vec<(String, Limit)>,
}

#[derive(Debug)]
struct GateState {
    epoch: u64,
    tags: Vec<String>,
    demand: BTreeMap<String, u64>,
    /// What the gate acknowledged applying.
    applied: BTreeMap<String, Limit>,
    /// Tables sent since, not yet acknowledged.
    unacked: Vec<(u64, BTreeMap<String, Limit>)>,
    /// The last table sent, to send only changes.
    sent: Option<BTreeMap<String, Limit>>,
    heard: Duration,
    connected: bool,
}

impl GateState {
    fn in_force(&self, tag: &str) -> u64 {
        self.unacked
            .iter()
            .filter_map(|(_, t)| t.get(tag))
            .chain(self.applied.get(tag))
            .map(rate_of)
            .max()
            .unwrap_or(0)
    }
}

/// Every gate's demand and shares in force, and the plans that move them (see the module
/// docs).
#[derive(Debug)]
pub(crate) struct Board {
    lease: Duration,
    gates: BTreeMap<String, GateState>,
    next_sequence: u64,
    next_epoch: u64,
    /// The latest time the board was told (by `attach`, `report`, `heard` or `expire`).
    now: Duration,
    /// No share grows before this ([`Board::hold_growth_until`]).
    growth_held_until: Duration,
}

impl Board {
    /// A board with the sidecar's own gate, enforcing `applied` now.
    pub(crate) fn new(lease: Duration, applied: &[(String, Limit)]) -> Self {
        let own = GateState {
            epoch: 0,
            tags: applied.iter().map(|(t, _)| t.clone()).collect(),
            demand: BTreeMap::new(),
            applied: applied.iter().cloned().collect(),
            unacked: Vec::new(),
            sent: Some(applied.iter().cloned().collect()),
            heard: Duration::ZERO,
            connected: true,
        };
        Self {
            lease,
            gates: BTreeMap::from([(OWN.to_owned(), own)]),
            next_sequence: 1,
            next_epoch: 1,
            now: Duration::ZERO,
            growth_held_until: Duration::ZERO,
        }
    }

    /// Grows no share before `until`: a sidecar that starts again holds growth for one
    /// lease, because an engine attached to its previous run that has not reconnected may
    /// still enforce its share, and closes it within a lease of its last acknowledged
    /// report. Shrinks and the shares engines name in their hellos apply meanwhile.
    pub(crate) fn hold_growth_until(&mut self, until: Duration) {
        self.growth_held_until = until;
    }

    /// An engine attaches (or reattaches) with `tags`, enforcing `applied` now (from its
    /// previous stream). Answers the epoch of this stream.
    pub(crate) fn attach(
        &mut self,
        id: &str,
        tags: Vec<String>,
        applied: Vec<(String, Limit)>,
        now: Duration,
    ) -> u64 {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.now = self.now.max(now);
        // The engine's word replaces what the old stream had: it applies one table at a
        // time, and nothing from a stream it left.
        self.gates.insert(
            id.to_owned(),
            GateState {
                epoch,
                tags,
                demand: BTreeMap::new(),
                applied: applied.into_iter().collect(),
                unacked: Vec::new(),
                sent: None,
                heard: now,
                connected: true,
            },
        );
        epoch
    }

    fn gate(&mut self, id: &str, epoch: u64) -> Option<&mut GateState> {
        self.gates.get_mut(id).filter(|g| g.epoch == epoch)
    }

    /// A gate reports: it applied table `applied` (0: none on this stream) and was offered
    /// `demand` per tag.
    pub(crate) fn report(
        &mut self,
        id: &str,
        epoch: u64,
        applied: u64,
        demand: BTreeMap<String, u64>,
        now: Duration,
    ) {
        self.now = self.now.max(now);
        let Some(gate) = self.gate(id, epoch) else {
            return;
        };
        gate.heard = now;
        // A report right after a table measures nothing: the demand stands.
        if !demand.is_empty() {
            gate.demand = demand;
        }
        if let Some(at) = gate.unacked.iter().position(|(s, _)| *s == applied) {
            gate.applied = gate.unacked[at].1.clone();
            gate.unacked.drain(..=at);
        }
    }

    /// The sidecar's own gate was offered `demand` per tag.
    pub(crate) fn own_demand(&mut self, demand: BTreeMap<String, u64>) {
        if let Some(own) = self.gates.get_mut(OWN) {
            own.demand = demand;
        }
    }

    /// Something else came from the gate (a snapshot): it is alive.
    pub(crate) fn heard(&mut self, id: &str, epoch: u64, now: Duration) {
        self.now = self.now.max(now);
        if let Some(gate) = self.gate(id, epoch) {
            gate.heard = now;
        }
    }

    /// The gate's stream ended: its share stays in force until its lease runs out.
    pub(crate) fn detach(&mut self, id: &str, epoch: u64) {
        if let Some(gate) = self.gate(id, epoch) {
            gate.connected = false;
        }
    }

    /// Frees the shares of gates not heard from for the lease period; answers them (with
    /// their epochs), for the caller to end the streams of those still connected.
    pub(crate) fn expire(&mut self, now: Duration) -> Vec<(String, u64)> {
        self.now = self.now.max(now);
        let lease = self.lease;
        let gone: Vec<(String, u64)> = self
            .gates
            .iter()
            .filter(|(id, g)| id.as_str() != OWN && g.heard + lease < now)
            .map(|(id, g)| (id.clone(), g.epoch))
            .collect();
        for (id, _) in &gone {
            self.gates.remove(id);
        }
        gone
    }

    /// The demand gate `id` reported last.
    pub(crate) fn demand(&self, id: &str) -> BTreeMap<String, u64> {
        self.gates
            .get(id)
            .map(|g| g.demand.clone())
            .unwrap_or_default()
    }

    /// Every gate's last demand for `tag`, summed (saturating).
    pub(crate) fn total_demand(&self, tag: &str) -> u64 {
        self.gates
            .values()
            .filter_map(|g| g.demand.get(tag))
            .fold(0u64, |sum, d| sum.saturating_add(*d))
    }

    /// The engines on the board (connected or within their lease).
    pub(crate) fn engines(&self) -> usize {
        self.gates.len() - usize::from(self.gates.contains_key(OWN))
    }

    /// The sum of the shares of `tag` in force (saturating).
    pub(crate) fn in_force(&self, tag: &str) -> u64 {
        self.gates
            .values()
            .filter(|g| g.tags.iter().any(|t| t == tag))
            .fold(0u64, |sum, g| sum.saturating_add(g.in_force(tag)))
    }

    /// The share last sent to gate `id`.
    #[cfg(test)]
    pub(crate) fn sent(&self, id: &str) -> Option<&BTreeMap<String, Limit>> {
        self.gates.get(id).and_then(|g| g.sent.as_ref())
    }

    /// The targets for `licence`, then the tables that move towards them safely: shrinks
    /// at once, grows into what is left beyond the shares in force. The caller delivers
    /// each; the own gate's is applied and acknowledged ([`Board::report`]) at once, after
    /// which a new plan may grow others.
    pub(crate) fn plan(&mut self, licence: &[(String, Limit)]) -> Vec<Send> {
        let mut desired: BTreeMap<String, BTreeMap<String, Limit>> = BTreeMap::new();
        for (tag, limit) in licence {
            let ids: Vec<String> = self
                .gates
                .iter()
                .filter(|(_, g)| g.connected && g.tags.iter().any(|t| t == tag))
                .map(|(id, _)| id.clone())
                .collect();
            let claims: Vec<Claim> = ids
                .iter()
                .map(|id| Claim {
                    own: id == OWN,
                    demand: self.gates[id].demand.get(tag).copied().unwrap_or(0),
                })
                .collect();
            let targets = share(limit, &claims);
            if !is_shared(limit) {
                for (id, target) in ids.iter().zip(targets) {
                    desired
                        .entry(id.clone())
                        .or_default()
                        .insert(tag.clone(), target);
                }
                continue;
            }
            let total = limit.per_second().unwrap_or(0);
            let in_force = self.in_force(tag);
            let mut available = if self.now < self.growth_held_until {
                0
            } else {
                total.saturating_sub(in_force)
            };
            // While the shares fit and every one is within 1% of its target, no table is
            // worth sending: demand measured over a second moves about that much by itself.
            let near = |id: &String, target: &Limit| {
                self.gates[id]
                    .sent
                    .as_ref()
                    .and_then(|t| t.get(tag))
                    .is_some_and(|sent| {
                        sent == target
                            || (!sent.is_closed()
                                && !target.is_closed()
                                && *target != *limit
                                && sent.policy() == target.policy()
                                && rate_of(sent).abs_diff(rate_of(target)) * 100 <= rate_of(sent))
                    })
            };
            if in_force <= total && ids.iter().zip(&targets).all(|(id, t)| near(id, t)) {
                continue;
            }
            // Shrinks (and unchanged shares) first: they raise nothing in force.
            let mut grows = Vec::new();
            for (id, target) in ids.iter().zip(targets) {
                let gate = &self.gates[id];
                let current = gate.in_force(tag);
                if rate_of(&target) <= current {
                    desired
                        .entry(id.clone())
                        .or_default()
                        .insert(tag.clone(), target);
                } else {
                    grows.push((id, target, current));
                }
            }
            // The most starved first.
            grows.sort_by_key(|(_, target, current)| {
                std::cmp::Reverse(rate_of(target).saturating_sub(*current))
            });
            for (id, target, current) in grows {
                let give = (rate_of(&target) - current).min(available);
                available -= give;
                let next = if give == rate_of(&target) - current {
                    target
                } else {
                    limit_at(limit, current + give)
                };
                // An engine's table cannot carry a closed share: it waits for room.
                if next.is_closed() && id != OWN {
                    continue;
                }
                desired
                    .entry(id.clone())
                    .or_default()
                    .insert(tag.clone(), next);
            }
        }
        let mut sends = Vec::new();
        for (id, table) in desired {
            let Some(gate) = self.gates.get_mut(&id) else {
                continue;
            };
            // Tags left out this time keep the share sent before.
            let mut full = gate.sent.clone().unwrap_or_default();
            full.extend(table);
            if gate.sent.as_ref() == Some(&full) {
                continue;
            }
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            gate.unacked.push((sequence, full.clone()));
            gate.sent = Some(full.clone());
            sends.push(Send {
                gate: id,
                epoch: gate.epoch,
                sequence,
                table: full.into_iter().collect(),
            });
        }
        sends
    }
}

#[cfg(test)]
mod tests;
