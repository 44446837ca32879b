//! Prometheus metrics with upstream's names.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// An `operation_type` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// The runtime operation.
    pub operation_type: String,
}

/// The kubelet's metrics.
pub struct Metrics {
    registry: Registry,
    running_pods: Gauge,
    running_containers: Gauge,
    pod_start: Histogram,
    ops: Family<OpLabel, Histogram, fn() -> Histogram>,
    op_errors: Family<OpLabel, Counter>,
    workers: Counter,
    stopped: Counter,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let running_pods = Gauge::default();
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        let running_containers = Gauge::default();
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        let pod_start = histogram();
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration from the kubelet seeing a pod to it being ready",
            pod_start.clone(),
        );
        let ops: Family<OpLabel, Histogram, fn() -> Histogram> = Family::new_with_constructor(histogram);
        registry.register("kubelet_runtime_operations_duration_seconds", "Duration of runtime operations", ops.clone());
        let op_errors = Family::<OpLabel, Counter>::default();
        registry.register("kubelet_runtime_operations_errors", "Runtime operations that failed", op_errors.clone());
        let workers = Counter::default();
        registry.register("kubelet_pod_workers_started", "Pod workers started", workers.clone());
        let stopped = Counter::default();
        registry.register("kubelet_pods_terminated", "Pods stopped and confirmed deleted", stopped.clone());
        Metrics { registry, running_pods, running_containers, pod_start, ops, op_errors, workers, stopped }
    }
}

impl Metrics {
    pub(crate) fn running_pods(&self, n: usize) {
        self.running_pods.set(n as i64);
    }

    pub(crate) fn containers_running(&self, delta: i64) {
        self.running_containers.inc_by(delta);
    }

    pub(crate) fn pod_started(&self, took: Duration) {
        self.pod_start.observe(took.as_secs_f64());
    }

    pub(crate) fn pod_started_worker(&self) {
        self.workers.inc();
    }

    pub(crate) fn pod_stopped(&self) {
        self.stopped.inc();
    }

    pub(crate) fn runtime_op(&self, op: &str, took: Duration, failed: bool) {
        let label = OpLabel { operation_type: op.to_owned() };
        self.ops.get_or_create(&label).observe(took.as_secs_f64());
        if failed {
            self.op_errors.get_or_create(&label).inc();
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        component_base::encode_metrics(&self.registry)
    }
}
