//! Every limit the apiserver enforces on a request, in one place: what a hostile or careless
//! client can make it spend is bounded by these. docs/limits.md lists each with its flag,
//! its default and upstream's value.

/// The limits of one apiserver.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest object stored, as encoded (`--max-object-size-bytes`). etcd refuses
    /// values over its `--max-request-bytes` (1.5 MiB by default), so upstream's apiserver
    /// cannot store more either; the embedded store keeps the same limit so that a cluster
    /// moved to etcd does not find objects it cannot write back.
    pub max_object_bytes: usize,
    /// Bytes of objects each resource's watch cache keeps in its history of events for
    /// watches that resume (`--watch-cache-bytes`), besides the count
    /// (`--watch-cache-size`): a few hundred updates of a large object would otherwise
    /// hold gigabytes. Upstream bounds the count only.
    pub watch_history_bytes: usize,
    /// Read-only requests served at once (`--max-requests-inflight`, upstream's 400);
    /// watches and followed logs do not count. Beyond it: 429 with `Retry-After`.
    pub max_requests_inflight: usize,
    /// Mutating requests served at once (`--max-mutating-requests-inflight`, upstream's 200).
    pub max_mutating_requests_inflight: usize,
    /// How long a request that is not long-running may take, its body's upload included
    /// (`--request-timeout`, upstream's 60 s): 504 after it.
    pub request_timeout: std::time::Duration,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may sit idle (`--read-header-timeout`; upstream's server uses 32 s).
    pub read_header_timeout: std::time::Duration,
    /// Connections open at once (`--max-open-connections`), and never more than three
    /// quarters of the open-files limit; more are closed at accept, with a log line.
    pub max_open_connections: usize,
}

/// The default of [`Limits::watch_history_bytes`]: 32 MiB per resource.
pub const DEFAULT_WATCH_HISTORY_BYTES: usize = 32 << 20;

/// etcd's default `--max-request-bytes`.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 1_572_864;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            watch_history_bytes: DEFAULT_WATCH_HISTORY_BYTES,
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            request_timeout: std::time::Duration::from_secs(60),
            read_header_timeout: std::time::Duration::from_secs(32),
            max_open_connections: 10_000,
        }
    }
}
