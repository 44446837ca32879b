//! Prometheus metrics with upstream's names: request counts and latencies, stored object
//! counts, registered watchers, and storage operation latency.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `apiserver_request_total`, upstream's full set
/// (`k8s.io/apiserver/pkg/endpoints/metrics`): dashboards and alerts written for upstream
/// select on them. The request's route, then its code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Which request.
    #[prometheus(flatten)]
    pub route: DurationLabels,
    /// HTTP status code.
    pub code: String,
}

/// Labels of `apiserver_request_duration_seconds`: the request's route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    /// Upstream's reported verb: the HTTP method for writes (`POST`, `PUT`, `PATCH`,
    /// `APPLY` for server-side apply, `DELETE`), `DELETECOLLECTION`, and `GET`/`LIST`/`WATCH`.
    pub verb: String,
    /// `All` for dry runs, else empty.
    pub dry_run: String,
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, empty when none.
    pub subresource: String,
    /// `resource` (one object), `namespace` or `cluster`.
    pub scope: String,
    /// Always `apiserver`.
    pub component: String,
}

/// What one request was, for its metrics.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The reported verb.
    pub verb: &'static str,
    /// A dry run?
    pub dry_run: bool,
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// `resource`, `namespace` or `cluster`.
    pub scope: &'static str,
}

/// A `resource` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    /// Plural resource name (or storage prefix).
    pub resource: String,
}

/// A `request_kind` label: `readOnly` or `mutating`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestKind {
    /// `readOnly` or `mutating`.
    pub request_kind: String,
}

/// Labels of `etcd_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    /// get, list, create, update, delete, watch, compact.
    pub operation: String,
    /// The resource (`pods`, `deployments.apps`), as upstream's storage layer labels it.
    #[prometheus(flatten)]
    pub kind: TypeLabel,
}

/// The `type` label (a Rust keyword, so its own struct).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TypeLabel(pub String);

impl prometheus_client::encoding::EncodeLabelSet for TypeLabel {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("type", self.0.as_str()).encode(encoder.encode_label())
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the apiserver exports.
pub struct Metrics {
    registry: Registry,
    /// `apiserver_request_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `apiserver_request_duration_seconds`.
    pub request_duration: HistogramFamily<DurationLabels>,
    /// `apiserver_storage_objects`.
    pub storage_objects: Family<ResourceLabel, Gauge>,
    /// `apiserver_registered_watchers`.
    pub watchers: Family<ResourceLabel, Gauge>,
    /// `etcd_request_duration_seconds` (for either backend).
    pub storage_duration: HistogramFamily<StorageLabels>,
    /// `apiserver_current_inflight_requests`.
    pub current_inflight: Family<RequestKind, Gauge>,
    /// `apiserver_dropped_requests_total`: refused with 429 by the in-flight limits.
    pub dropped: Family<RequestKind, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, resource, subresource and HTTP response code",
            requests.clone(),
        );
        let request_duration: HistogramFamily<DurationLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb and resource (watches excluded)",
            request_duration.clone(),
        );
        let storage_objects = Family::<ResourceLabel, Gauge>::default();
        registry.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind",
            storage_objects.clone(),
        );
        let watchers = Family::<ResourceLabel, Gauge>::default();
        registry.register(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resource",
            watchers.clone(),
        );
        let storage_duration: HistogramFamily<StorageLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "etcd_request_duration_seconds",
            "Storage request latency in seconds for each operation (etcd or the embedded store)",
            storage_duration.clone(),
        );
        let current_inflight = Family::<RequestKind, Gauge>::default();
        registry.register(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second",
            current_inflight.clone(),
        );
        let dropped = Family::<RequestKind, Counter>::default();
        registry.register(
            "apiserver_dropped_requests",
            "Number of requests dropped with 'Try again later' response",
            dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            storage_objects,
            watchers,
            storage_duration,
            current_inflight,
            dropped,
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe_request(&self, info: &RequestInfo, code: u16, took: Duration) {
        let route = DurationLabels {
            verb: info.verb.to_owned(),
            dry_run: if info.dry_run { "All" } else { "" }.to_owned(),
            group: info.group.clone(),
            version: info.version.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            scope: info.scope.to_owned(),
            component: "apiserver".to_owned(),
        };
        if info.verb != "WATCH" {
            self.request_duration.get_or_create(&route).observe(took.as_secs_f64());
        }
        self.requests.get_or_create(&RequestLabels { route, code: code.to_string() }).inc();
    }

    /// Records one storage operation's latency for the resource stored under `kind`.
    pub fn observe_storage(&self, operation: &str, kind: &str, took: Duration) {
        self.storage_duration
            .get_or_create(&StorageLabels { operation: operation.to_owned(), kind: TypeLabel(kind.to_owned()) })
            .observe(took.as_secs_f64());
    }

    /// The in-flight gauge of one request kind.
    pub fn inflight(&self, kind: &str) -> Gauge {
        self.current_inflight.get_or_create(&RequestKind { request_kind: kind.to_owned() }).clone()
    }

    /// Counts a request refused by the in-flight limits.
    pub fn rejected(&self, kind: &str) {
        self.dropped.get_or_create(&RequestKind { request_kind: kind.to_owned() }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
