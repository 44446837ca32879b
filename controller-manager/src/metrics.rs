//! Prometheus metrics with upstream's names: work queue depth, adds and retries per queue,
//! and reconcile durations and errors per controller.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A `name` label (the queue).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    /// The controller's queue name.
    pub name: String,
}

/// A `controller` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// The controller.
    pub controller: String,
}

/// The controller-manager's metrics.
pub struct Metrics {
    registry: Registry,
    depth: Family<NameLabel, Gauge>,
    adds: Family<NameLabel, Counter>,
    retries: Family<NameLabel, Counter>,
    durations: Family<ControllerLabel, Histogram, fn() -> Histogram>,
    errors: Family<ControllerLabel, Counter>,
    /// `leader_election_master_status` (1 when this replica acts).
    pub leader: Gauge,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let depth = Family::<NameLabel, Gauge>::default();
        registry.register("workqueue_depth", "Current depth of workqueue", depth.clone());
        let adds = Family::<NameLabel, Counter>::default();
        registry.register("workqueue_adds", "Total number of adds handled by workqueue", adds.clone());
        let retries = Family::<NameLabel, Counter>::default();
        registry.register("workqueue_retries", "Total number of retries handled by workqueue", retries.clone());
        let durations: Family<ControllerLabel, Histogram, fn() -> Histogram> = Family::new_with_constructor(histogram);
        registry.register(
            "controller_reconcile_duration_seconds",
            "Time of one reconcile, per controller",
            durations.clone(),
        );
        let errors = Family::<ControllerLabel, Counter>::default();
        registry.register("controller_reconcile_errors", "Reconciles that failed, per controller", errors.clone());
        let leader = Gauge::default();
        registry.register(
            "leader_election_master_status",
            "1 when this replica holds the leader lease",
            leader.clone(),
        );
        Metrics { registry, depth, adds, retries, durations, errors, leader }
    }
}

impl Metrics {
    pub(crate) fn queue_add(&self, name: &str) {
        self.adds.get_or_create(&NameLabel { name: name.to_owned() }).inc();
    }

    pub(crate) fn queue_depth(&self, name: &str, depth: usize) {
        self.depth.get_or_create(&NameLabel { name: name.to_owned() }).set(depth as i64);
    }

    pub(crate) fn queue_retry(&self, name: &str) {
        self.retries.get_or_create(&NameLabel { name: name.to_owned() }).inc();
    }

    pub(crate) fn reconciled(&self, controller: &str, took: Duration, failed: bool) {
        let label = ControllerLabel { controller: controller.to_owned() };
        self.durations.get_or_create(&label).observe(took.as_secs_f64());
        if failed {
            self.errors.get_or_create(&label).inc();
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        component_base::encode_metrics(&self.registry)
    }
}
