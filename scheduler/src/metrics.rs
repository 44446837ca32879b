//! Prometheus metrics with upstream's names, and the `/metrics` and `/healthz` endpoints.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `result` and `profile` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// scheduled, unschedulable or error.
    pub result: String,
    /// The scheduler name.
    pub profile: String,
}

/// A `queue` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// active, backoff or unschedulable.
    pub queue: String,
}

/// The scheduler's metrics.
pub struct Metrics {
    registry: Registry,
    /// `scheduler_schedule_attempts_total`.
    pub attempts: Family<AttemptLabels, Counter>,
    /// `scheduler_scheduling_attempt_duration_seconds`.
    pub attempt_duration: Family<AttemptLabels, Histogram, fn() -> Histogram>,
    /// `scheduler_pending_pods`.
    pub pending: Family<QueueLabel, Gauge>,
    /// `scheduler_is_leader` (1 when this replica acts).
    pub leader: Gauge,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result",
            attempts.clone(),
        );
        let attempt_duration: Family<AttemptLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(histogram);
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            attempt_duration.clone(),
        );
        let pending = Family::<QueueLabel, Gauge>::default();
        registry.register("scheduler_pending_pods", "Number of pending pods, by the queue type", pending.clone());
        let leader = Gauge::default();
        registry.register("scheduler_is_leader", "1 when this scheduler holds the leader lease", leader.clone());
        Metrics { registry, attempts, attempt_duration, pending, leader }
    }
}

impl Metrics {
    /// Records one attempt.
    pub fn attempt(&self, result: &str, profile: &str, seconds: f64) {
        let labels = AttemptLabels { result: result.to_owned(), profile: profile.to_owned() };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration.get_or_create(&labels).observe(seconds);
    }

    /// Sets the queue sizes.
    pub fn queues(&self, active: usize, backoff: usize, unschedulable: usize) {
        for (name, n) in [("active", active), ("backoff", backoff), ("unschedulable", unschedulable)] {
            self.pending.get_or_create(&QueueLabel { queue: name.to_owned() }).set(n as i64);
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        component_base::encode_metrics(&self.registry)
    }
}
