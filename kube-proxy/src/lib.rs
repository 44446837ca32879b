//! kube-proxy: watches Services and EndpointSlices and programs this node's kernel with
//! nftables so that cluster IPs and node ports reach the pods behind them.
//!
//! - [`rules`]: the ruleset, a pure function of (service ports with endpoints, node);
//! - [`model`]: those service ports, from the API objects;
//! - [`Proxier`]: the loop: watch, and after a change (at most every `--min-sync-period`)
//!   or every `--sync-period`, write what changed since the last write, or the whole table
//!   (first, hourly, and after a failed write), each in one `nft -f` transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;

pub mod model;
pub mod rules;

/// How often the whole table is written again, however little changed (a partial sync
/// writes only the difference from what was last written).
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// How the proxier runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node.
    pub node: rules::Node,
    /// The longest the rules go without a full rewrite (`--sync-period`).
    pub sync_period: Duration,
    /// The shortest time between two writes (`--min-sync-period`): changes in between
    /// are written together.
    pub min_sync_period: Duration,
    /// The `nft` program.
    pub nft: String,
}

/// Upstream's metric names.
pub struct Metrics {
    registry: Registry,
    /// `kubeproxy_sync_proxy_rules_duration_seconds`.
    pub sync_duration: Histogram,
    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`.
    pub last_sync: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `kubeproxy_network_programming_duration_seconds`: from a change reaching kube-proxy
    /// to its rules being in the kernel.
    pub programming: Histogram,
    /// Rule writes the kernel refused.
    pub syncs_failed: prometheus_client::metrics::counter::Counter,
    /// When the rules were last written or found current (for `/healthz`).
    pub last_success: parking_lot::Mutex<Option<std::time::SystemTime>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = || prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15);
        let mut registry = Registry::default();
        let sync_duration = Histogram::new(buckets());
        let last_sync = Gauge::default();
        let programming = Histogram::new(buckets());
        let syncs_failed = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            last_sync.clone(),
        );
        registry.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            programming.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_failures",
            "Rule writes the kernel refused",
            syncs_failed.clone(),
        );
        Metrics { registry, sync_duration, last_sync, programming, syncs_failed, last_success: Default::default() }
    }
}

impl Metrics {
    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        component_base::encode_metrics(&self.registry)
    }

    /// Upstream's `/healthz` answer: healthy while the rules were written (or found
    /// current) within `within`.
    pub fn health(&self, within: Duration) -> (bool, serde_json::Value) {
        let now = std::time::SystemTime::now();
        let last = *self.last_success.lock();
        let healthy = last.is_some_and(|t| now.duration_since(t).unwrap_or_default() <= within);
        let stamp = |t: std::time::SystemTime| {
            let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
            jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default()
        };
        let body = serde_json::json!({
            "lastUpdated": last.map(stamp).unwrap_or_default(),
            "currentTime": stamp(now),
            "nodeEligible": true,
        });
        (healthy, body)
    }
}

/// Writes a ruleset to the kernel through `nft -f -`: one transaction.
pub async fn apply(nft: &str, script: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(nft)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {nft}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.context("writing the ruleset to nft")?;
    }
    let out = child.wait_with_output().await.context("waiting for nft")?;
    if !out.status.success() {
        anyhow::bail!("nft refused the ruleset: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The watch-and-write loop.
pub struct Proxier {
    client: kube::Client,
    config: Config,
    metrics: Arc<Metrics>,
}

impl Proxier {
    /// A proxier for this node.
    pub fn new(client: kube::Client, config: Config, metrics: Arc<Metrics>) -> Proxier {
        Proxier { client, config, metrics }
    }

    /// Runs until the watches end (never, normally).
    pub async fn run(self) -> anyhow::Result<()> {
        let (services, services_writer) = reflector::store::<Service>();
        let (slices, slices_writer) = reflector::store::<EndpointSlice>();
        let (changed_tx, mut changed) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let tx = changed_tx.clone();
        let services_stream =
            reflector(services_writer, watcher(Api::<Service>::all(self.client.clone()), watcher::Config::default()))
                .default_backoff()
                .for_each(move |_| {
                    let _ = tx.send(Instant::now());
                    async {}
                });
        let tx = changed_tx.clone();
        let slices_stream = reflector(
            slices_writer,
            watcher(Api::<EndpointSlice>::all(self.client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(move |_| {
            let _ = tx.send(Instant::now());
            async {}
        });
        tokio::spawn(services_stream);
        tokio::spawn(slices_stream);
        services.wait_until_ready().await.context("watching services")?;
        slices.wait_until_ready().await.context("watching endpoint slices")?;
        // What the kernel holds, as last written; `None` forces a full rewrite.
        let mut kernel: Option<rules::Ruleset> = None;
        let mut last_full = Instant::now();
        let mut oldest_change: Option<Instant> = Some(Instant::now());
        let mut last_sync = Instant::now() - self.config.min_sync_period;
        loop {
            // Wait for a change (or the periodic resync), then let changes gather until
            // the minimum period since the last write has passed.
            if oldest_change.is_none() {
                match tokio::time::timeout(self.config.sync_period, changed.recv()).await {
                    Ok(Some(at)) => oldest_change = Some(at),
                    Ok(None) => anyhow::bail!("the watches ended"),
                    Err(_) => {}
                }
            }
            let since = last_sync.elapsed();
            if since < self.config.min_sync_period {
                tokio::time::sleep(self.config.min_sync_period - since).await;
            }
            while let Ok(at) = changed.try_recv() {
                oldest_change = Some(oldest_change.map_or(at, |o| o.min(at)));
            }
            if last_full.elapsed() >= FULL_SYNC_PERIOD {
                // Now and then the whole table is written again, whatever else changed it.
                kernel = None;
            }
            let ports = model::service_ports(&services.state(), &slices.state());
            let wanted = rules::build(&ports, &self.config.node);
            let started = Instant::now();
            last_sync = started;
            if kernel.as_ref() == Some(&wanted) {
                oldest_change = None;
                *self.metrics.last_success.lock() = Some(std::time::SystemTime::now());
                continue;
            }
            let (script, full) = match &kernel {
                Some(old) => (rules::update(old, &wanted), false),
                None => (rules::full(&wanted), true),
            };
            match apply(&self.config.nft, &script).await {
                Ok(()) => {
                    self.metrics.sync_duration.observe(started.elapsed().as_secs_f64());
                    self.metrics.last_sync.set(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs_f64())
                            .unwrap_or_default(),
                    );
                    if let Some(at) = oldest_change.take() {
                        self.metrics.programming.observe(at.elapsed().as_secs_f64());
                    }
                    *self.metrics.last_success.lock() = Some(std::time::SystemTime::now());
                    if full {
                        last_full = Instant::now();
                    }
                    tracing::debug!(service_ports = ports.len(), full, took = ?started.elapsed(), "rules written");
                    kernel = Some(wanted);
                }
                Err(e) => {
                    self.metrics.syncs_failed.inc();
                    tracing::error!(error = %e, "writing the rules failed; rewriting the whole table");
                    kernel = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_last_successful_sync() {
        let m = Metrics::default();
        let (healthy, body) = m.health(Duration::from_secs(60));
        assert!(!healthy, "nothing written yet");
        assert_eq!(body["lastUpdated"], "");
        *m.last_success.lock() = Some(std::time::SystemTime::now());
        assert!(m.health(Duration::from_secs(60)).0);
        *m.last_success.lock() = Some(std::time::SystemTime::now() - Duration::from_secs(120));
        assert!(!m.health(Duration::from_secs(60)).0, "stale rules");
    }
}
