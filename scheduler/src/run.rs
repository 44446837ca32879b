//! The scheduling loop: one task owns the cache and the queue. It applies node and pod
//! watch events, schedules pending pods, assumes each placement in the cache at once (so
//! the next decision sees it), and sends bindings out concurrently; their results come back
//! to the same loop.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::plugins;
use crate::queue::Queue;
use crate::snapshot::{Cache, PodInfo};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `spec.schedulerName` this scheduler serves.
    pub scheduler_name: String,
    /// Bindings in flight at once.
    pub binding_concurrency: usize,
    /// How often parked pods are retried even if nothing changed.
    pub unschedulable_retry: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "default-scheduler".into(),
            binding_concurrency: 256,
            unschedulable_retry: Duration::from_secs(30),
        }
    }
}

/// What a binding task reports back.
struct Bound {
    uid: String,
    pod: Arc<Pod>,
    node: String,
    started: Instant,
    result: Result<(), kube::Error>,
}

fn ns_name(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

struct Loop {
    client: kube::Client,
    config: Config,
    metrics: Arc<Metrics>,
    cache: Cache,
    queue: Queue,
    in_flight: usize,
    turn: usize,
    pods_seen: Option<HashSet<String>>,
    nodes_seen: Option<HashSet<String>>,
    /// Whether each watch has delivered its first full list: nothing is scheduled before
    /// both have (upstream's WaitForCacheSync), or a pod seen before the nodes would be
    /// found to fit nowhere.
    nodes_synced: bool,
    pods_synced: bool,
    results: mpsc::UnboundedSender<Bound>,
}

impl Loop {
    fn on_node(&mut self, event: Event<Node>) {
        match event {
            Event::Init => self.nodes_seen = Some(HashSet::new()),
            Event::InitApply(node) | Event::Apply(node) => {
                if let Some(seen) = &mut self.nodes_seen {
                    seen.insert(node.metadata.name.clone().unwrap_or_default());
                }
                if self.cache.upsert_node(&node) {
                    self.queue.retry_unschedulable();
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.nodes_seen.take() {
                    self.cache.retain_nodes(&seen);
                }
                self.nodes_synced = true;
                self.queue.retry_unschedulable();
            }
            Event::Delete(node) => self.cache.remove_node(node.metadata.name.as_deref().unwrap_or_default()),
        }
    }

    fn on_pod(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.pods_seen = Some(HashSet::new()),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(seen) = &mut self.pods_seen {
                    seen.insert(uid.clone());
                }
                self.apply_pod(uid, pod);
            }
            Event::InitDone => {
                if let Some(seen) = self.pods_seen.take() {
                    self.cache.retain_pods(&seen);
                }
                self.pods_synced = true;
            }
            Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.queue.remove(&uid);
                if self.cache.unplace(&uid) {
                    self.queue.retry_unschedulable();
                }
            }
        }
    }

    fn apply_pod(&mut self, uid: String, pod: Pod) {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
        if is_terminal(&pod) {
            self.queue.remove(&uid);
            if self.cache.unplace(&uid) {
                self.queue.retry_unschedulable();
            }
            return;
        }
        match node {
            Some(node) => {
                self.queue.remove(&uid);
                if self.cache.placement(&uid) != Some(node.as_str()) {
                    self.cache.place(&node, PodInfo::new(&pod));
                }
            }
            None => {
                let ours = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("default-scheduler")
                    == self.config.scheduler_name;
                let deleting = pod.metadata.deletion_timestamp.is_some();
                if !ours || deleting {
                    self.queue.remove(&uid);
                } else if self.cache.placement(&uid).is_none() {
                    self.queue.upsert(&uid, Arc::new(pod));
                }
            }
        }
    }

    /// Schedules pending pods while bindings have room; returns how many were tried.
    fn schedule_some(&mut self, budget: usize) -> usize {
        let mut tried = 0;
        while tried < budget && self.in_flight < self.config.binding_concurrency {
            let Some(entry) = self.queue.pop() else { break };
            tried += 1;
            let started = Instant::now();
            let info = PodInfo::new(&entry.pod);
            self.turn = self.turn.wrapping_add(1);
            match plugins::schedule(&self.cache, &info, self.turn) {
                Ok(node) => {
                    // Assume: the next decision sees this placement before the binding returns.
                    self.cache.place(&node, info.clone());
                    self.in_flight += 1;
                    self.spawn_binding(info.uid, entry.pod, node, started);
                }
                Err(why) => {
                    self.metrics.attempt("unschedulable", &self.config.scheduler_name, started.elapsed().as_secs_f64());
                    if self.queue.park(&info.uid, &why.message) {
                        tracing::info!(pod = %info.key, reason = %why.message, "unschedulable");
                        self.spawn_report(entry.pod, why.message);
                    }
                }
            }
        }
        tried
    }

    fn spawn_binding(&self, uid: String, pod: Arc<Pod>, node: String, started: Instant) {
        let (ns, name) = ns_name(&pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let results = self.results.clone();
        tokio::spawn(async move {
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let result = api
                .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
                .await
                .map(|_| ());
            let _ = results.send(Bound { uid, pod, node, started, result });
        });
    }

    /// Writes `PodScheduled=False` with the reason, and a `FailedScheduling` event.
    fn spawn_report(&self, pod: Arc<Pod>, message: String) {
        let (ns, name) = ns_name(&pod);
        let client = self.client.clone();
        let scheduler = self.config.scheduler_name.clone();
        tokio::spawn(async move {
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let status = json!({"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastTransitionTime": now, "lastProbeTime": null,
            }]}});
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if let Err(e) = pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(status)).await {
                tracing::debug!(pod = %name, error = %e, "writing the PodScheduled condition failed");
            }
            let event = json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": format!("{name}.{:x}", jiff::Timestamp::now().as_nanosecond()), "namespace": ns},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                    "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version},
                "reason": "FailedScheduling", "message": message, "type": "Warning",
                "source": {"component": scheduler}, "reportingComponent": scheduler,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            });
            let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, &ns);
            match serde_json::from_value(event) {
                Ok(ev) => {
                    if let Err(e) = events.create(&PostParams::default(), &ev).await {
                        tracing::debug!(error = %e, "recording the FailedScheduling event failed");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "building the FailedScheduling event failed"),
            }
        });
    }

    fn on_bound(&mut self, b: Bound) {
        self.in_flight -= 1;
        let elapsed = b.started.elapsed().as_secs_f64();
        match b.result {
            Ok(()) => {
                self.queue.remove(&b.uid);
                self.metrics.attempt("scheduled", &self.config.scheduler_name, elapsed);
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                // Gone, or bound by someone else: the watch brings the truth.
                self.cache.unplace(&b.uid);
                self.queue.remove(&b.uid);
                self.metrics.attempt("error", &self.config.scheduler_name, elapsed);
            }
            Err(e) => {
                tracing::warn!(node = %b.node, error = %e, "binding failed; retrying after a back-off");
                self.cache.unplace(&b.uid);
                self.queue.back_off(&b.uid, b.pod);
                self.metrics.attempt("error", &self.config.scheduler_name, elapsed);
            }
        }
    }
}

/// Runs the scheduling loop until a watch fails for good or `stop` resolves.
pub async fn run(client: kube::Client, config: Config, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let nodes =
        watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff().boxed();
    let pods = watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().boxed();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let retry_every = config.unschedulable_retry;
    let mut state = Loop {
        client,
        config,
        metrics: metrics.clone(),
        cache: Cache::default(),
        queue: Queue::default(),
        in_flight: 0,
        turn: 0,
        pods_seen: None,
        nodes_seen: None,
        nodes_synced: false,
        pods_synced: false,
        results: tx,
    };
    let mut nodes = nodes;
    let mut pods = pods;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_retry = Instant::now();
    loop {
        let ready = state.nodes_synced
            && state.pods_synced
            && state.queue.has_active()
            && state.in_flight < state.config.binding_concurrency;
        tokio::select! {
            biased;
            Some(b) = rx.recv() => state.on_bound(b),
            ev = nodes.next() => match ev {
                Some(Ok(ev)) => state.on_node(ev),
                Some(Err(e)) => tracing::warn!(error = %e, "node watch error; it resumes"),
                None => anyhow::bail!("the node watch ended"),
            },
            ev = pods.next() => match ev {
                Some(Ok(ev)) => state.on_pod(ev),
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error; it resumes"),
                None => anyhow::bail!("the pod watch ended"),
            },
            _ = tick.tick() => {
                state.queue.flush_backoff(Instant::now());
                if last_retry.elapsed() >= retry_every {
                    state.queue.retry_unschedulable();
                    last_retry = Instant::now();
                }
                let (a, b, u) = state.queue.sizes();
                metrics.queues(a, b, u);
            }
            _ = std::future::ready(()), if ready => {
                state.schedule_some(64);
            }
        }
    }
}
