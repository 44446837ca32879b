//! Node lifecycle: a node whose kubelet stops renewing its Lease in `kube-node-lease` for
//! `--node-monitor-grace-period` becomes Ready=Unknown and is tainted
//! `node.kubernetes.io/unreachable` (NoSchedule and NoExecute); its pods are marked not
//! ready and, once their toleration of the taint (at most `--pod-eviction-timeout`) runs
//! out, deleted so that their ReplicaSets replace them elsewhere. When the kubelet is back
//! and reports Ready, the taints go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::Context;
use component_base::events::Recorder;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// When the loop last saw each node's lease change (by resourceVersion), on its own clock.
#[derive(Default)]
struct Observed {
    leases: HashMap<String, (String, Instant)>,
}

fn ready_status(node: &Node) -> Option<String> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

/// Runs the monitor forever.
pub async fn run(ctx: Arc<Context>) {
    let mut observed = Observed::default();
    let period = (ctx.config.node_monitor_grace_period / 8).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        tokio::time::sleep(period).await;
        if let Err(e) = monitor(&ctx, &mut observed).await {
            tracing::warn!(error = %e, "node lifecycle pass failed");
        }
    }
}

async fn monitor(ctx: &Context, observed: &mut Observed) -> anyhow::Result<()> {
    let nodes_api: Api<Node> = Api::all(ctx.client.clone());
    let recorder = Recorder::new(ctx.client.clone(), "node-controller");
    let grace = ctx.config.node_monitor_grace_period;
    let now = jiff::Timestamp::now();
    let mut pods_by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in ctx.pods.list() {
        if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            pods_by_node.entry(n).or_default().push(pod);
        }
    }
    for node in ctx.nodes.list() {
        let name = node.name_any();
        // A renewal is a new lease version; without a lease, a new Ready heartbeat.
        let lease = ctx.leases.get(&format!("kube-node-lease/{name}"));
        let version = match lease.as_ref().and_then(|l| l.metadata.resource_version.clone()) {
            Some(v) => v,
            None => node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        };
        // Judged on this controller's clock from when it saw the change, as upstream does;
        // a node first seen gets a whole grace period.
        let seen = match observed.leases.get(&name) {
            Some((v, at)) if *v == version => *at,
            _ => {
                let at = Instant::now();
                observed.leases.insert(name.clone(), (version, at));
                at
            }
        };
        let stale = seen.elapsed() > grace;
        let ready = ready_status(&node);
        let mut taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let before = taints.clone();
        if stale {
            if ready.as_deref() != Some("Unknown") {
                let conditions = json!([{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.", "lastTransitionTime": Time(now), "lastHeartbeatTime": null}]);
                nodes_api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Strategic(json!({"status": {"conditions": conditions}})),
                    )
                    .await?;
                recorder.record(
                    node.as_ref(),
                    false,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
                mark_pods_not_ready(ctx, pods_by_node.get(&name).map(Vec::as_slice).unwrap_or_default()).await;
            }
            for effect in ["NoSchedule", "NoExecute"] {
                if !has_taint(&node, UNREACHABLE, effect) {
                    taints.push(Taint {
                        key: UNREACHABLE.into(),
                        effect: effect.into(),
                        time_added: Some(Time(now)),
                        value: None,
                    });
                }
            }
            taints.retain(|t| t.key != NOT_READY);
        } else {
            taints.retain(|t| t.key != UNREACHABLE);
            match ready.as_deref() {
                Some("True") => taints.retain(|t| t.key != NOT_READY),
                Some("False") => {
                    for effect in ["NoSchedule", "NoExecute"] {
                        if !has_taint(&node, NOT_READY, effect) {
                            taints.push(Taint {
                                key: NOT_READY.into(),
                                effect: effect.into(),
                                time_added: Some(Time(now)),
                                value: None,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if taints != before {
            let patch =
                json!({"spec": {"taints": taints}, "metadata": {"resourceVersion": node.metadata.resource_version}});
            nodes_api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        evict(ctx, &recorder, &taints, pods_by_node.get(&name).map(Vec::as_slice).unwrap_or_default(), now).await;
    }
    let known: std::collections::HashSet<String> = ctx.nodes.list().iter().map(|n| n.name_any()).collect();
    observed.leases.retain(|n, _| known.contains(n));
    Ok(())
}

async fn mark_pods_not_ready(ctx: &Context, pods: &[Arc<Pod>]) {
    for pod in pods {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "NodeUnreachable",
            "lastTransitionTime": Time(jiff::Timestamp::now())}]}});
        if let Err(e) = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await {
            tracing::debug!(pod = %pod.name_any(), error = %e, "marking the pod not ready failed");
        }
    }
}

/// Deletes the pods whose toleration of a NoExecute taint has run out.
async fn evict(ctx: &Context, recorder: &Recorder, taints: &[Taint], pods: &[Arc<Pod>], now: jiff::Timestamp) {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return;
    }
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        // The pod must go once any taint is not tolerated or its tolerationSeconds passed.
        let mut due: Option<jiff::Timestamp> = None;
        for taint in &no_execute {
            let added = taint.time_added.as_ref().map_or(now, |t| t.0);
            let matching: Vec<_> = tolerations
                .iter()
                .filter(|t| {
                    let key_ok = match t.operator.as_deref() {
                        Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key),
                        _ => t.key.as_deref() == Some(taint.key.as_str()) && t.value == taint.value,
                    };
                    key_ok && t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "NoExecute")
                })
                .collect();
            let allowed = if matching.is_empty() {
                Some(0)
            } else {
                matching.iter().map(|t| t.toleration_seconds).min_by_key(|s| s.unwrap_or(i64::MAX)).flatten()
            };
            let Some(seconds) = allowed else { continue };
            let seconds = seconds.clamp(0, ctx.config.pod_eviction_timeout.as_secs() as i64);
            let at = added + jiff::SignedDuration::from_secs(seconds);
            due = Some(due.map_or(at, |d| d.min(at)));
        }
        if due.is_some_and(|d| d <= now) {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => recorder.record(
                    pod.as_ref(),
                    false,
                    "TaintManagerEviction",
                    format!("Marking for deletion Pod {}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
                ),
                Err(e) => tracing::debug!(pod = %pod.name_any(), error = %e, "eviction failed"),
            }
        }
    }
}
