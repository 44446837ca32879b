//! Node lifecycle: a node whose kubelet stops renewing its Lease in `kube-node-lease` for
//! `--node-monitor-grace-period` becomes Ready=Unknown and is tainted
//! `node.kubernetes.io/unreachable` (NoSchedule and NoExecute); its pods are marked not
//! ready and, once their toleration of the taint (at most `--pod-eviction-timeout`) runs
//! out, deleted so that their ReplicaSets replace them elsewhere. When the kubelet is back
//! and reports Ready, the taints go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::Context;
use component_base::events::Recorder;
use component_base::taints::tolerates;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// When the loop last saw each node's lease change (by resourceVersion), on its own clock.
#[derive(Default)]
struct Observed {
    /// Per node: the lease version last seen, and when it was first seen.
    leases: HashMap<String, (String, Instant)>,
    /// Per node: the Ready heartbeat the kubelet last posted, and when it was first seen.
    statuses: HashMap<String, (String, Instant)>,
}

/// Records `value` for `name` in `seen`; when it was first seen (now if it is new).
fn observe(seen: &mut HashMap<String, (String, Instant)>, name: &str, value: String) -> Instant {
    match seen.get(name) {
        Some((v, at)) if *v == value => *at,
        _ => {
            let at = Instant::now();
            seen.insert(name.to_owned(), (value, at));
            at
        }
    }
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
        // A heartbeat is a new lease version or a new Ready heartbeat the kubelet posted in
        // the node's status, whichever is later, as upstream's probe timestamps: a kubelet
        // that comes back may post its status before its lease renewal reaches this
        // controller, and that status must not be taken for a stale one and set back to
        // Unknown. (The Unknown this controller writes carries no heartbeat: not one.)
        // Judged on this controller's clock from when it saw the change, as upstream does;
        // a node first seen gets a whole grace period.
        let lease = ctx.leases.get(&format!("kube-node-lease/{name}"));
        let lease_version = lease.as_ref().and_then(|l| l.metadata.resource_version.clone()).unwrap_or_default();
        let mut seen = observe(&mut observed.leases, &name, lease_version);
        let status_heartbeat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status != "Unknown"))
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0.to_string());
        if let Some(heartbeat) = status_heartbeat {
            seen = seen.max(observe(&mut observed.statuses, &name, heartbeat));
        }
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
    observed.statuses.retain(|n, _| known.contains(n));
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
    let max = ctx.config.pod_eviction_timeout.as_secs() as i64;
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        let due = eviction_due(&no_execute, &tolerations, now, max);
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

/// When a pod must leave a node with these NoExecute taints: at once for a taint it does
/// not tolerate, else when the shortest `tolerationSeconds` of the tolerations matching
/// a taint runs out from the time the taint was added (upstream's taint eviction,
/// `getMinTolerationTime`), but never later than `max` seconds (`--pod-eviction-timeout`).
/// `None`: it tolerates them all for ever.
fn eviction_due(
    no_execute: &[&Taint],
    tolerations: &[Toleration],
    now: jiff::Timestamp,
    max: i64,
) -> Option<jiff::Timestamp> {
    let mut due: Option<jiff::Timestamp> = None;
    for taint in no_execute {
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let seconds = if matching.is_empty() {
            0
        } else {
            match matching.iter().filter_map(|t| t.toleration_seconds).min() {
                Some(s) => s.clamp(0, max),
                None => continue,
            }
        };
        let at = added + jiff::SignedDuration::from_secs(seconds);
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, added: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: "NoExecute".into(),
            time_added: Some(Time(added.parse().unwrap())),
        }
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    const T0: &str = "2026-01-01T00:00:00Z";

    fn due(taints: &[Taint], tolerations: &[serde_json::Value]) -> Option<String> {
        let refs: Vec<&Taint> = taints.iter().collect();
        let ts: Vec<Toleration> = tolerations.iter().cloned().map(toleration).collect();
        eviction_due(&refs, &ts, "2026-01-01T00:00:30Z".parse().unwrap(), 300).map(|t| t.to_string())
    }

    #[test]
    fn an_untolerated_taint_evicts_from_when_it_was_added() {
        let unreachable = [taint(UNREACHABLE, None, T0)];
        assert_eq!(due(&unreachable, &[]).as_deref(), Some(T0));
        let other = json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"});
        assert_eq!(due(&unreachable, &[other]).as_deref(), Some(T0), "a toleration of another key does not help");
        let schedule_only = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"});
        assert_eq!(due(&unreachable, &[schedule_only]).as_deref(), Some(T0), "nor one for another effect");
    }

    #[test]
    fn toleration_seconds_delay_and_the_shortest_wins() {
        let unreachable = [taint(UNREACHABLE, None, T0)];
        let t =
            |s: i64| json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s});
        assert_eq!(due(&unreachable, &[t(60)]).as_deref(), Some("2026-01-01T00:01:00Z"));
        assert_eq!(due(&unreachable, &[t(60), t(20)]).as_deref(), Some("2026-01-01T00:00:20Z"));
        assert_eq!(due(&unreachable, &[t(-5)]).as_deref(), Some(T0), "negative seconds: at once");
        assert_eq!(due(&unreachable, &[t(3600)]).as_deref(), Some("2026-01-01T00:05:00Z"), "capped at the timeout");
        let forever = json!({"key": UNREACHABLE, "operator": "Exists"});
        assert_eq!(due(&unreachable, std::slice::from_ref(&forever)), None, "no seconds: tolerated for ever");
        assert_eq!(
            due(&unreachable, &[forever, t(60)]).as_deref(),
            Some("2026-01-01T00:01:00Z"),
            "a bounded matching toleration still bounds it"
        );
    }

    #[test]
    fn keyless_exists_tolerates_every_taint_and_equal_compares_values() {
        let both = [taint(UNREACHABLE, None, T0), taint("dedicated", Some("gpu"), "2026-01-01T00:00:10Z")];
        assert_eq!(due(&both, &[json!({"operator": "Exists"})]), None);
        assert_eq!(
            due(&both, &[json!({"operator": "Exists", "tolerationSeconds": 5})]).as_deref(),
            Some("2026-01-01T00:00:05Z"),
            "each taint's own time added, the earliest wins"
        );
        let gpu = json!({"key": "dedicated", "value": "gpu", "effect": "NoExecute"});
        let cpu = json!({"key": "dedicated", "operator": "Equal", "value": "cpu"});
        let unreach = json!({"key": UNREACHABLE, "operator": "Exists"});
        assert_eq!(due(&both, &[gpu.clone(), unreach.clone()]), None);
        assert_eq!(due(&both, &[cpu, unreach]).as_deref(), Some("2026-01-01T00:00:10Z"), "another value");
        // An absent value equals an empty one.
        let bare = [taint(NOT_READY, None, T0)];
        assert_eq!(due(&bare, &[json!({"key": NOT_READY, "operator": "Equal", "value": ""})]), None);
        assert_eq!(due(&bare, &[json!({"key": NOT_READY, "operator": "Bogus"})]).as_deref(), Some(T0));
        assert_eq!(due(&[], &[]), None, "no NoExecute taint, no eviction");
    }
}
