//! kubelet: registers its Node (or, with the simulated runtime, many), renews a Lease in
//! `kube-node-lease`, watches the pods bound to it, and runs one [`pod`] worker per pod
//! through a CRI-like [`runtime::Runtime`]. It serves container logs over HTTP for the
//! apiserver's `pods/log`, and Prometheus metrics.

pub mod certificate;
pub mod dns;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod projected;
pub mod runtime;
pub mod server;
pub mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus, Taint};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use parking_lot::Mutex;
use tokio::sync::watch;

/// Parses a quantity into thousandths of a unit (millicores for CPU).
pub fn quantity_milli(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let m: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((value * m * 1000.0).round() as i64)
}

/// One node this kubelet runs.
pub struct Node {
    /// Its name.
    pub name: String,
    /// The API client.
    pub client: kube::Client,
    /// The runtime its pods run in.
    pub runtime: Arc<dyn runtime::Runtime>,
    /// Where volumes and state live.
    pub root: PathBuf,
    /// The node's address (pods' `hostIP`).
    pub host_ip: String,
    /// Metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// How it registers.
    pub registration: node::Registration,
    /// What pods' `resolv.conf` is made from.
    pub dns: dns::ClusterDns,
    /// The pod network (`None`: pods are where the runtime puts them).
    pub network: Option<Arc<network::PodNetwork>>,
    /// Pod keys (`namespace/name`) to uids, for the log server.
    pub pods: Mutex<HashMap<String, String>>,
}

impl Node {
    /// Writes events about this node's pods as upstream's kubelet does
    /// (`source: {component: kubelet, host: <node>}`).
    pub fn recorder(&self) -> component_base::events::Recorder {
        component_base::events::Recorder::new(self.client.clone(), "kubelet").on_host(&self.name)
    }
}

/// What a pod worker keeps of a pod: everything but `managedFields` and the status the
/// kubelet itself wrote, except the few fields a status write carries over (condition
/// transition times, `startTime`, `qosClass`). With thousands of pods per process (the sim
/// runtime), this is most of the kubelet's memory.
pub fn trim_pod(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    if let Some(status) = pod.status.take() {
        let mut conditions = status.conditions;
        if let Some(c) = &mut conditions {
            c.shrink_to_fit();
        }
        pod.status = Some(PodStatus {
            conditions,
            start_time: status.start_time,
            qos_class: status.qos_class,
            ..Default::default()
        });
    }
    if let Some(spec) = &mut pod.spec {
        spec.containers.shrink_to_fit();
        if let Some(init) = &mut spec.init_containers {
            init.shrink_to_fit();
        }
    }
    pod
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A pod worker's handle: the node it runs on, the pod's key and uid, and the channel that
/// feeds it new versions of the pod (`None`: the pod is gone).
struct Worker {
    node: Arc<Node>,
    key: String,
    uid: String,
    tx: watch::Sender<Option<pod::PodDoc>>,
}

impl Worker {
    /// Tells the worker its pod is gone, and forgets the pod.
    fn stop(&self) {
        self.tx.send_replace(None);
        self.forget();
    }

    /// Drops the pod from its node's key → uid map (unless a newer pod took the key).
    fn forget(&self) {
        let mut pods = self.node.pods.lock();
        if pods.get(&self.key) == Some(&self.uid) {
            pods.remove(&self.key);
        }
    }
}

/// Watches the pods bound to `nodes` and keeps one worker per pod. One watch serves all the
/// nodes: a kubelet hosting many simulated nodes holds one connection, not one per node.
pub async fn run_pods(nodes: Vec<Arc<Node>>) {
    let Some(first) = nodes.first() else { return };
    let api: Api<Pod> = Api::all(first.client.clone());
    let metrics = first.metrics.clone();
    let fields = match nodes.as_slice() {
        [only] => format!("spec.nodeName={}", only.name),
        _ => "spec.nodeName!=".to_owned(),
    };
    let by_name: HashMap<String, Arc<Node>> = nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
    let mut events = watcher::watcher(api, watcher::Config::default().fields(&fields)).default_backoff().boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut relist: Option<HashSet<String>> = None;
    let mut first_list_done = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch error; it resumes");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        match event {
            Event::Init => relist = Some(HashSet::new()),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).and_then(|n| by_name.get(n))
                else {
                    continue;
                };
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(seen) = &mut relist {
                    seen.insert(uid.clone());
                }
                let key = pod_key(&pod);
                let pod = match pod::PodDoc::new(&trim_pod(pod)) {
                    Ok(doc) => doc,
                    Err(e) => {
                        tracing::error!(%key, error = %e, "serializing the pod failed");
                        continue;
                    }
                };
                match workers.get(&uid) {
                    Some(w) if !w.tx.is_closed() => {
                        w.tx.send_replace(Some(pod));
                    }
                    _ => {
                        node.pods.lock().insert(key.clone(), uid.clone());
                        let (tx, rx) = watch::channel(Some(pod));
                        workers.insert(uid.clone(), Worker { node: node.clone(), key, uid: uid.clone(), tx });
                        metrics.pod_started_worker();
                        tokio::spawn(pod::run(node.clone(), uid, rx));
                    }
                }
            }
            Event::Delete(pod) => {
                if let Some(w) = pod.metadata.uid.as_ref().and_then(|uid| workers.remove(uid)) {
                    w.stop();
                }
            }
            Event::InitDone => {
                if let Some(seen) = relist.take() {
                    workers.retain(|uid, w| {
                        let keep = seen.contains(uid);
                        if !keep {
                            w.stop();
                        }
                        keep
                    });
                    if !first_list_done {
                        first_list_done = true;
                        // Whatever the runtimes hold for pods that no longer exist goes.
                        for node in &nodes {
                            let mut orphans: HashSet<String> =
                                node.runtime.pods().await.unwrap_or_default().into_iter().collect();
                            if let Some(net) = &node.network {
                                orphans.extend(net.attached());
                            }
                            for uid in orphans.into_iter().filter(|u| !seen.contains(u)) {
                                tracing::info!(node = %node.name, %uid, "removing an orphaned pod sandbox");
                                if let Some(net) = &node.network
                                    && let Err(e) = net.detach(&uid).await
                                {
                                    tracing::warn!(%uid, error = %e, "detaching an orphaned pod from the network failed");
                                }
                                let _ = node.runtime.remove_sandbox(&uid).await;
                            }
                        }
                    }
                }
            }
        }
        workers.retain(|_, w| {
            let done = w.tx.is_closed();
            if done {
                w.forget();
            }
            !done
        });
        metrics.running_pods(workers.len());
    }
}

/// Runs one node: its heartbeat and its pods, until the returned tasks are aborted (a
/// stopped kubelet leaves its containers running for the next one to adopt).
pub fn start(node: Arc<Node>) -> Vec<tokio::task::JoinHandle<()>> {
    start_all(vec![node])
}

/// Runs several nodes (the sim runtime's): a heartbeat each, and one pod watch for all.
pub fn start_all(nodes: Vec<Arc<Node>>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = nodes.iter().map(|n| tokio::spawn(node::heartbeat(n.clone()))).collect();
    for n in &nodes {
        if let Some(net) = &n.network {
            tasks.push(tokio::spawn(network::run(n.clone(), net.clone())));
        }
    }
    tasks.push(tokio::spawn(run_pods(nodes)));
    tasks
}

/// Parses `--register-with-taints` (`key=value:Effect,key:Effect`).
pub fn parse_taints(text: &str) -> Result<Vec<Taint>, String> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (kv, effect) =
            part.rsplit_once(':').ok_or_else(|| format!("taint {part:?}: expected key[=value]:Effect"))?;
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            return Err(format!("taint {part:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"));
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (kv, None),
        };
        out.push(Taint { key: key.to_owned(), value, effect: effect.to_owned(), time_added: None });
    }
    Ok(out)
}

/// Parses `--node-labels` (`k=v,k2=v2`).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("label {p:?}: expected key=value"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trimmed_pod_keeps_what_its_worker_reads() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u1", "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "web:1", "env": [{"name": "A", "value": "1"}]}]},
            "status": {"phase": "Running", "qosClass": "BestEffort", "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}],
                "containerStatuses": [{"name": "app", "image": "web:1", "imageID": "", "ready": true, "restartCount": 0}]}
        }))
        .unwrap();
        let trimmed = trim_pod(pod.clone());
        assert_eq!(trimmed.metadata.managed_fields, None);
        assert_eq!(trimmed.metadata.labels, pod.metadata.labels);
        assert_eq!(trimmed.spec, pod.spec);
        let (old, new) = (pod.status.unwrap(), trimmed.status.clone().unwrap());
        assert_eq!((new.conditions, new.start_time, new.qos_class), (old.conditions, old.start_time, old.qos_class));
        assert_eq!((new.container_statuses, new.phase), (None, None));
        // The worker's copy decodes to the same pod.
        let doc = pod::PodDoc::new(&trimmed).unwrap();
        assert_eq!(doc.decode().unwrap(), trimmed);
    }
}
