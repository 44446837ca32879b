//! kubelet: registers its Node (or, with the simulated runtime, many), renews a Lease in
//! `kube-node-lease`, watches the pods bound to it, and runs one [`pod`] worker per pod
//! through a CRI-like [`runtime::Runtime`]. It serves container logs over HTTP for the
//! apiserver's `pods/log`, and Prometheus metrics.

pub mod metrics;
pub mod node;
pub mod pod;
pub mod probe;
pub mod runtime;
pub mod server;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Taint};
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
    /// Pod keys (`namespace/name`) to uids, for the log server.
    pub pods: Mutex<HashMap<String, String>>,
}

/// Watches the pods bound to `node` and keeps one worker per pod.
pub async fn run_pods(node: Arc<Node>) {
    let api: Api<Pod> = Api::all(node.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut relist: Option<HashSet<String>> = None;
    let mut first_list_done = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "pod watch error; it resumes");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        match event {
            Event::Init => relist = Some(HashSet::new()),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(seen) = &mut relist {
                    seen.insert(uid.clone());
                }
                let key = format!(
                    "{}/{}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                node.pods.lock().insert(key, uid.clone());
                let pod = Arc::new(pod);
                match workers.get(&uid) {
                    Some(tx) if !tx.is_closed() => {
                        tx.send_replace(Some(pod));
                    }
                    _ => {
                        let (tx, rx) = watch::channel(Some(pod));
                        workers.insert(uid.clone(), tx);
                        node.metrics.pod_started_worker();
                        tokio::spawn(pod::run(node.clone(), uid, rx));
                    }
                }
            }
            Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(tx) = workers.remove(&uid) {
                    tx.send_replace(None);
                }
            }
            Event::InitDone => {
                if let Some(seen) = relist.take() {
                    workers.retain(|uid, tx| {
                        let keep = seen.contains(uid);
                        if !keep {
                            tx.send_replace(None);
                        }
                        keep
                    });
                    if !first_list_done {
                        first_list_done = true;
                        // Whatever the runtime holds for pods that no longer exist goes.
                        if let Ok(uids) = node.runtime.pods().await {
                            for uid in uids.into_iter().filter(|u| !seen.contains(u)) {
                                tracing::info!(%uid, "removing an orphaned pod sandbox");
                                let _ = node.runtime.remove_sandbox(&uid).await;
                            }
                        }
                    }
                }
            }
        }
        workers.retain(|_, tx| !tx.is_closed());
        node.metrics.running_pods(workers.len());
    }
}

/// Runs one node: its heartbeat and its pods, until the returned tasks are aborted (a
/// stopped kubelet leaves its containers running for the next one to adopt).
pub fn start(node: Arc<Node>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![tokio::spawn(node::heartbeat(node.clone())), tokio::spawn(run_pods(node))]
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
