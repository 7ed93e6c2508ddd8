//! Prometheus metrics of the sidecar, in the OpenMetrics text format at `/metrics`:
//! per entitlement admitted, rejected and the current limit; the licence states; the spool
//! depth and capacity; reports delivered; the last successful call home; attached engines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use entitle_engine::Limit;
use entitle_engine::licensing::Status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::runtime::{Shared, Sidecar};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TagLabels {
    tag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    machine: String,
    state: String,
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

    pub(crate) fn update(&self, shared: &Shared, status: &Status, spool_depth: u64) {
        for (tag, limit) in shared.limits.borrow().iter() {
            let tps = limit.per_second().map_or(f64::INFINITY, |r| r as f64);
            self.limit
                .get_or_create(&TagLabels { tag: tag.clone() })
                .set(tps);
        }
        self.state.clear();
        for (machine, state) in [
            ("registration", status.registration.status.to_string()),
            ("authorization", status.authorization.status.to_string()),
            ("reservation", status.reservation.status.to_string()),
        ] {
            self.state
                .get_or_create(&StateLabels {
                    machine: machine.into(),
                    state,
                })
                .set(1);
        }
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.spool_depth.set(int(spool_depth));
        self.spool_capacity.set(int(shared.config.spool_capacity));
        self.delivered
            .set(int(shared.stats.delivered.load(Ordering::Relaxed)));
        self.last_callhome
            .set(shared.stats.last_success_unix.lock().unwrap_or(0));
        self.attached
            .set(i64::from(shared.stats.attached.load(Ordering::Relaxed)));
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        text
    }
}

impl Sidecar {
    /// The metrics text, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.shared.refresh_metrics();
        self.shared.metrics.encode()
    }

    /// Serves `/metrics` on `listener` until the process ends.
    pub async fn serve_metrics(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let shared: Arc<Shared> = Arc::clone(&self.shared);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let shared = Arc::clone(&shared);
                async move {
                    shared.refresh_metrics();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        shared.metrics.encode(),
                    )
                }
            }),
        );
        axum::serve(listener, app).await
    }
}
