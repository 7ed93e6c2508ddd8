//! Prometheus metrics of the sidecar, in the OpenMetrics text format at `/metrics`:
//! per entitlement admitted, rejected and the current limit; the licence states; the spool
//! depth and capacity; reports delivered; the last successful call home; attached engines.

use std::sync::atomic::AtomicU64;

use entitle_engine::Limit;
use entitle_licensing::Status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TagLabels {
    tag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    machine: String,
    state: String,
}

/// What the gauges show, read from the running sidecar.
pub(crate) struct Reading<'a> {
    pub(crate) limits: &'a [(String, Limit)],
    pub(crate) status: &'a Status,
    pub(crate) spool_depth: u64,
    pub(crate) spool_capacity: u64,
    pub(crate) delivered: u64,
    pub(crate) last_callhome_unix: Option<i64>,
    pub(crate) attached: u32,
}

/// The sidecar's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    admitted: Family<TagLabels, Counter>,
    rejected: Family<TagLabels, Counter>,
    limit: Family<TagLabels, Gauge<f64, AtomicU64>>,
    state: Family<StateLabels, Gauge>,
    spool_depth: Gauge,
    spool_capacity: Gauge,
    delivered: Gauge,
    last_callhome: Gauge,
    attached: Gauge,
}

impl Metrics {
    pub(crate) fn new(limits: &[(String, Limit)]) -> Self {
        let mut registry = Registry::with_prefix("entitle");
        let metrics = Self {
            registry: Registry::default(),
            admitted: Family::default(),
            rejected: Family::default(),
            limit: Family::default(),
            state: Family::default(),
            spool_depth: Gauge::default(),
            spool_capacity: Gauge::default(),
            delivered: Gauge::default(),
            last_callhome: Gauge::default(),
            attached: Gauge::default(),
        };
        registry.register(
            "admitted",
            "Transactions admitted, from the snapshots spooled since the sidecar started",
            metrics.admitted.clone(),
        );
        registry.register(
            "rejected",
            "Transactions rejected, from the snapshots spooled since the sidecar started",
            metrics.rejected.clone(),
        );
        registry.register(
            "limit_tps",
            "The licensed rate each gate entitlement enforces now (+Inf when unlimited)",
            metrics.limit.clone(),
        );
        registry.register(
            "license_state",
            "1 for the current state of each licence state machine",
            metrics.state.clone(),
        );
        registry.register(
            "spool_depth",
            "Usage snapshots durable in the spool, not yet acknowledged by the authority",
            metrics.spool_depth.clone(),
        );
        registry.register(
            "spool_capacity",
            "The spool's bound; at it, snapshots are pushed back, not dropped",
            metrics.spool_capacity.clone(),
        );
        registry.register(
            "usage_reports_delivered",
            "Usage reports acknowledged by the authority since the sidecar started",
            metrics.delivered.clone(),
        );
        registry.register(
            "last_callhome_success_timestamp_seconds",
            "Unix time of the last call to the authority that succeeded (0: none yet)",
            metrics.last_callhome.clone(),
        );
        registry.register(
            "attached_engines",
            "Packet-server engines attached now",
            metrics.attached.clone(),
        );
        for (tag, _) in limits {
            let labels = TagLabels { tag: tag.clone() };
            drop(metrics.admitted.get_or_create(&labels));
            drop(metrics.rejected.get_or_create(&labels));
        }
        Self {
            registry,
            ..metrics
        }
    }

    pub(crate) fn count(&self, tag: &str, admitted: u64, rejected: u64) {
        let labels = TagLabels {
            tag: tag.to_owned(),
        };
        self.admitted.get_or_create(&labels).inc_by(admitted);
        self.rejected.get_or_create(&labels).inc_by(rejected);
    }

    pub(crate) fn update(&self, reading: &Reading<'_>) {
        for (tag, limit) in reading.limits {
            let tps = limit.per_second().map_or(f64::INFINITY, |r| r as f64);
            self.limit
                .get_or_create(&TagLabels { tag: tag.clone() })
                .set(tps);
        }
        self.state.clear();
        for (machine, state) in [
            (
                "registration",
                reading.status.registration.status.to_string(),
            ),
            (
                "authorization",
                reading.status.authorization.status.to_string(),
            ),
            ("reservation", reading.status.reservation.status.to_string()),
        ] {
            self.state
                .get_or_create(&StateLabels {
                    machine: machine.into(),
                    state,
                })
                .set(1);
        }
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.spool_depth.set(int(reading.spool_depth));
        self.spool_capacity.set(int(reading.spool_capacity));
        self.delivered.set(int(reading.delivered));
        self.last_callhome
            .set(reading.last_callhome_unix.unwrap_or(0));
        self.attached.set(i64::from(reading.attached));
    }

    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        text
    }
}
