//! The scheduling algorithm: a pure function of the cache and one pod. Filter plugins
//! remove nodes that cannot run the pod (each says why, in upstream's words); score
//! plugins rank the rest; the best node wins, ties rotating so equal nodes share the load.

use std::collections::BTreeMap;

use component_base::taints::tolerates;
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint};

use crate::snapshot::{Cache, NodeInfo, PodInfo, Readiness};

/// Why a pod fits no node: the message upstream writes into `PodScheduled=False`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {a: b}.`
    pub message: String,
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) =
                (value.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|b| b.parse::<i64>().ok()))
            else {
                return false;
            };
            if req.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// Whether a node selector term matches a node (its expressions on labels and fields all hold).
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(node.name.as_str())))
}

fn taint_text(taint: &Taint) -> String {
    format!("{{{}: {}}}", taint.key, taint.value.as_deref().unwrap_or_default())
}

/// The taints a node effectively has: its own, plus the `NoSchedule` taint upstream's node
/// lifecycle controller puts on a node by its Ready condition (`nodeConditionToTaintKeyStatusMap`
/// in pkg/controller/nodelifecycle: Ready=False is `node.kubernetes.io/not-ready`,
/// Ready=Unknown is `node.kubernetes.io/unreachable`), in case the scheduler sees the
/// condition before the taint. Upstream's scheduler reads taints only.
fn effective_taints(node: &NodeInfo) -> Vec<Taint> {
    let mut taints = node.taints.clone();
    let mut add = |key: &str| {
        if !taints.iter().any(|t| t.key == key && t.effect == "NoSchedule") {
            taints.push(Taint { key: key.into(), effect: "NoSchedule".into(), ..Default::default() });
        }
    };
    match node.ready {
        Readiness::Ready => {}
        Readiness::NotReady => add("node.kubernetes.io/not-ready"),
        Readiness::Unknown => add("node.kubernetes.io/unreachable"),
    }
    taints
}

/// Runs the filters on one node: `Ok` or the reasons it fails (the first failing plugin's).
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<String>> {
    // NodeUnschedulable.
    if node.unschedulable {
        let cordon =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if !pod.tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Err(vec!["node(s) were unschedulable".into()]);
        }
    }
    // TaintToleration: NoSchedule and NoExecute taints must be tolerated.
    for taint in effective_taints(node) {
        if taint.effect == "PreferNoSchedule" {
            continue;
        }
        if !pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
            return Err(vec![format!("node(s) had untolerated taint {}", taint_text(&taint))]);
        }
    }
    // NodeAffinity (nodeSelector and required affinity).
    let selector_ok = pod.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = pod.required_terms.is_empty() || pod.required_terms.iter().any(|t| term_matches(t, node));
    if !selector_ok || !affinity_ok {
        return Err(vec!["node(s) didn't match Pod's node affinity/selector".into()]);
    }
    // NodePorts.
    for (protocol, ip, port) in &pod.host_ports {
        let conflict = node.host_ports.iter().any(|(p, i, n)| {
            p == protocol
                && n == port
                && (i.is_empty() || ip.is_empty() || i == "0.0.0.0" || ip == "0.0.0.0" || i == ip)
        });
        if conflict {
            return Err(vec!["node(s) didn't have free ports for the requested pod ports".into()]);
        }
    }
    // NodeResourcesFit: every insufficient resource is a reason.
    let mut reasons = Vec::new();
    if node.requested.pods + 1 > node.allocatable.pods {
        reasons.push("Too many pods".to_owned());
    }
    if pod.requests.cpu > 0 && node.requested.cpu + pod.requests.cpu > node.allocatable.cpu {
        reasons.push("Insufficient cpu".to_owned());
    }
    if pod.requests.memory > 0 && node.requested.memory + pod.requests.memory > node.allocatable.memory {
        reasons.push("Insufficient memory".to_owned());
    }
    if reasons.is_empty() { Ok(()) } else { Err(reasons) }
}

/// LeastAllocated: the share of CPU and memory left after placing the pod, 0..=100.
fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> f64 {
    let share = |requested: i64, allocatable: i64| {
        if allocatable <= 0 {
            return 0.0;
        }
        ((allocatable - requested) as f64 / allocatable as f64).clamp(0.0, 1.0) * 100.0
    };
    let cpu = share(node.score_requested.cpu + pod.score_requests.cpu, node.allocatable.cpu);
    let memory = share(node.score_requested.memory + pod.score_requests.memory, node.allocatable.memory);
    (cpu + memory) / 2.0
}

/// Upstream's default plugin weights.
const WEIGHT_LEAST_ALLOCATED: f64 = 1.0;
const WEIGHT_SPREAD: f64 = 2.0;
const WEIGHT_AFFINITY: f64 = 2.0;
const WEIGHT_TAINT: f64 = 3.0;

/// Picks a node for `pod`, or says why none fits. `turn` rotates among equally good nodes.
pub fn schedule(cache: &Cache, pod: &PodInfo, turn: usize) -> Result<String, Unschedulable> {
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for node in cache.nodes() {
        match filter(pod, node) {
            Ok(()) => feasible.push(node),
            Err(why) => {
                for r in why {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    if feasible.is_empty() {
        let total = cache.node_count();
        let message = if total == 0 {
            // ErrNoNodesAvailable in upstream's pkg/scheduler/schedule_one.go.
            "no nodes available to schedule pods".to_owned()
        } else {
            let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            format!("0/{total} nodes are available: {}.", parts.join(", "))
        };
        return Err(Unschedulable { message });
    }
    let owner_counts: Vec<u32> =
        feasible.iter().map(|n| pod.owner.as_ref().and_then(|o| n.owners.get(o)).copied().unwrap_or(0)).collect();
    let max_owned = owner_counts.iter().copied().max().unwrap_or(0);
    let affinity: Vec<i64> = feasible
        .iter()
        .map(|n| pod.preferred_terms.iter().filter(|(_, t)| term_matches(t, n)).map(|(w, _)| i64::from(*w)).sum())
        .collect();
    let max_affinity = affinity.iter().copied().max().unwrap_or(0);
    let intolerable: Vec<usize> = feasible
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule" && !pod.tolerations.iter().any(|tol| tolerates(tol, t)))
                .count()
        })
        .collect();
    let max_intolerable = intolerable.iter().copied().max().unwrap_or(0);

    let mut best: Vec<usize> = Vec::new();
    let mut best_score = f64::MIN;
    for (i, node) in feasible.iter().enumerate() {
        let spread =
            if max_owned == 0 { 100.0 } else { f64::from(max_owned - owner_counts[i]) / f64::from(max_owned) * 100.0 };
        let preferred = if max_affinity == 0 { 0.0 } else { affinity[i] as f64 / max_affinity as f64 * 100.0 };
        let taint = if max_intolerable == 0 {
            100.0
        } else {
            (max_intolerable - intolerable[i]) as f64 / max_intolerable as f64 * 100.0
        };
        let score = WEIGHT_LEAST_ALLOCATED * least_allocated(pod, node)
            + WEIGHT_SPREAD * spread
            + WEIGHT_AFFINITY * preferred
            + WEIGHT_TAINT * taint;
        if score > best_score + 1e-9 {
            best_score = score;
            best.clear();
            best.push(i);
        } else if (score - best_score).abs() <= 1e-9 {
            best.push(i);
        }
    }
    let pick = best[turn % best.len()];
    Ok(feasible[pick].name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    fn node(name: &str, cpu: &str, extra: serde_json::Value) -> Node {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        });
        json_patch::merge(&mut n, &extra);
        serde_json::from_value(n).unwrap()
    }

    fn pod(name: &str, cpu: &str, extra: serde_json::Value) -> PodInfo {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]},
        });
        json_patch::merge(&mut p, &extra);
        PodInfo::new(&serde_json::from_value::<Pod>(p).unwrap())
    }

    fn cache(nodes: &[Node]) -> Cache {
        let mut c = Cache::default();
        for n in nodes {
            c.upsert_node(n);
        }
        c
    }

    #[test]
    fn resources_must_fit_and_the_message_counts_reasons() {
        let mut c = cache(&[
            node("a", "1", json!({})),
            node("b", "2", json!({})),
            node("c", "4", json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}})),
        ]);
        assert_eq!(schedule(&c, &pod("p", "1500m", json!({})), 0), Ok("b".into()));
        c.place("b", pod("q", "1", json!({})));
        let err = schedule(&c, &pod("p", "1500m", json!({})), 0).unwrap_err();
        assert_eq!(
            err.message,
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu."
        );
        c.unplace("uid-q");
        assert_eq!(schedule(&c, &pod("p", "1500m", json!({})), 0), Ok("b".into()), "unplacing frees the cpu");
    }

    #[test]
    fn tolerations_node_selector_and_affinity() {
        let c = cache(&[
            node("plain", "4", json!({})),
            node(
                "gpu",
                "4",
                json!({"metadata": {"labels": {"gpu": "yes", "zone": "z1"}}, "spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}}),
            ),
            node("z2", "4", json!({"metadata": {"labels": {"zone": "z2", "size": "8"}}})),
        ]);
        let tolerant =
            json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}], "nodeSelector": {"gpu": "yes"}}});
        assert_eq!(schedule(&c, &pod("p", "1", tolerant), 0), Ok("gpu".into()));
        let intolerant = json!({"spec": {"nodeSelector": {"gpu": "yes"}}});
        assert!(schedule(&c, &pod("p", "1", intolerant), 0).is_err());
        let affinity = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2", "z3"]}, {"key": "size", "operator": "Gt", "values": ["4"]}]}]}}}}});
        assert_eq!(schedule(&c, &pod("p", "1", affinity), 0), Ok("z2".into()));
        let by_name = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["plain"]}]}]}}}}});
        assert_eq!(schedule(&c, &pod("p", "1", by_name), 0), Ok("plain".into()));
        let preferred = json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}}]}}}});
        for turn in 0..4 {
            assert_eq!(schedule(&c, &pod("p", "1", preferred.clone()), turn), Ok("z2".into()));
        }
    }

    #[test]
    fn cordoned_and_not_ready_nodes_are_skipped() {
        let c = cache(&[
            node("cordoned", "4", json!({"spec": {"unschedulable": true}})),
            node("lost", "4", json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})),
            node("sick", "4", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
        ]);
        let err = schedule(&c, &pod("p", "1", json!({})), 0).unwrap_err();
        // Ready=Unknown is unreachable, Ready=False not-ready (nodeConditionToTaintKeyStatusMap,
        // pkg/controller/nodelifecycle); the reasons sorted as upstream's FitError prints them.
        assert_eq!(
            err.message,
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable."
        );
        // ErrNoNodesAvailable (pkg/scheduler/schedule_one.go), not a "0/0 nodes" FitError.
        assert_eq!(
            schedule(&Cache::default(), &pod("p", "1", json!({})), 0).unwrap_err().message,
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn least_allocated_and_prefer_no_schedule_and_no_execute() {
        let mut c = cache(&[node("busy", "4", json!({})), node("idle", "4", json!({}))]);
        c.place("busy", pod("load", "3", json!({})));
        for turn in 0..4 {
            assert_eq!(
                schedule(&c, &pod("p", "100m", json!({})), turn),
                Ok("idle".into()),
                "the less allocated node wins"
            );
        }
        let c = cache(&[
            node("soft", "4", json!({"spec": {"taints": [{"key": "maint", "effect": "PreferNoSchedule"}]}})),
            node("clean", "4", json!({})),
            node("evicting", "4", json!({"spec": {"taints": [{"key": "bad", "effect": "NoExecute"}]}})),
        ]);
        for turn in 0..4 {
            assert_eq!(schedule(&c, &pod("p", "100m", json!({})), turn), Ok("clean".into()));
        }
        let only_soft =
            cache(&[node("soft", "4", json!({"spec": {"taints": [{"key": "maint", "effect": "PreferNoSchedule"}]}}))]);
        assert_eq!(
            schedule(&only_soft, &pod("p", "100m", json!({})), 0),
            Ok("soft".into()),
            "PreferNoSchedule only scores"
        );
        let tolerates_bad =
            json!({"spec": {"tolerations": [{"key": "bad", "operator": "Exists", "effect": "NoExecute"}]}});
        let only_evicting =
            cache(&[node("evicting", "4", json!({"spec": {"taints": [{"key": "bad", "effect": "NoExecute"}]}}))]);
        assert!(schedule(&only_evicting, &pod("p", "100m", json!({})), 0).is_err());
        assert_eq!(schedule(&only_evicting, &pod("p", "100m", tolerates_bad), 0), Ok("evicting".into()));
    }

    #[test]
    fn host_ports_conflict() {
        let mut c = cache(&[node("a", "4", json!({})), node("b", "4", json!({}))]);
        let web = |n: &str| {
            pod(
                n,
                "1",
                json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
            )
        };
        let first = schedule(&c, &web("w1"), 0).unwrap();
        c.place(&first, web("w1"));
        let second = schedule(&c, &web("w2"), 0).unwrap();
        assert_ne!(first, second);
        c.place(&second, web("w2"));
        assert_eq!(
            schedule(&c, &web("w3"), 0).unwrap_err().message,
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
        );
    }

    #[test]
    fn replicas_of_one_owner_spread_across_nodes() {
        let nodes: Vec<Node> =
            (0..7).map(|i| node(&format!("n{i}"), "64", json!({"status": {"allocatable": {"pods": "500"}}}))).collect();
        let mut c = cache(&nodes);
        // Another workload already fills n0 unevenly: spreading must still hold per owner.
        for i in 0..5 {
            c.place("n0", pod(&format!("other{i}"), "1", json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "o", "uid": "other", "controller": true}]}})));
        }
        let owned = json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]}});
        let total = 1000;
        for i in 0..total {
            let p = pod(&format!("p{i}"), "10m", owned.clone());
            let n = schedule(&c, &p, i).unwrap();
            c.place(&n, p);
        }
        let limit = total.div_ceil(7) as u32 + 1;
        for n in c.nodes() {
            let count = n.owners.get("rs-1").copied().unwrap_or(0);
            assert!(count <= limit, "{} holds {count} > {limit}", n.name);
        }
    }
    #[test]
    fn pod_count_and_memory_reasons_in_upstream_words() {
        // NodeResourcesFit's reasons (pkg/scheduler/framework/plugins/noderesources/fit.go).
        let mut c = cache(&[
            node("full", "8", json!({"status": {"allocatable": {"pods": "1"}}})),
            node("small", "8", json!({"status": {"allocatable": {"memory": "1Gi"}}})),
        ]);
        c.place("full", pod("resident", "100m", json!({})));
        let big = json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"memory": "2Gi"}}}]}});
        let err = schedule(&c, &pod("p", "0", big.clone()), 0).unwrap_err();
        assert_eq!(err.message, "0/2 nodes are available: 1 Insufficient memory, 1 Too many pods.");
        // Every failing resource of one node is a reason of its own.
        let c = cache(&[node("tiny", "1", json!({"status": {"allocatable": {"memory": "1Gi"}}}))]);
        let both = json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}]}});
        let err = schedule(&c, &pod("p", "0", both), 0).unwrap_err();
        assert_eq!(err.message, "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.");
    }

    #[test]
    fn init_containers_count_by_their_largest_request_not_their_sum() {
        // The effective request is max(sum of containers, largest init container) + overhead
        // (upstream's resource.PodRequests).
        let c = cache(&[node("two", "2", json!({}))]);
        let inits = |cpus: &[&str]| {
            let list: Vec<_> = cpus
                .iter()
                .enumerate()
                .map(|(i, cpu)| json!({"name": format!("init{i}"), "image": "i", "resources": {"requests": {"cpu": cpu}}}))
                .collect();
            json!({"spec": {"initContainers": list}})
        };
        assert_eq!(schedule(&c, &pod("p", "500m", inits(&["2", "1500m"])), 0), Ok("two".into()), "2 + 1.5 is not 3.5");
        assert!(schedule(&c, &pod("p", "500m", inits(&["2500m"])), 0).is_err(), "the largest init container counts");
        let info = pod("p", "1500m", inits(&["1"]));
        assert_eq!(info.requests.cpu, 1500, "the containers' sum when it is larger");
        let overhead = pod("p", "1500m", json!({"spec": {"overhead": {"cpu": "600m"}}}));
        assert_eq!(overhead.requests.cpu, 2100);
        assert!(schedule(&c, &overhead, 0).is_err(), "overhead counts");
    }

    #[test]
    fn a_keyless_exists_toleration_tolerates_every_taint_and_the_cordon() {
        let c = cache(&[node(
            "cordoned",
            "4",
            json!({"spec": {"unschedulable": true, "taints": [
                {"key": "a", "value": "x", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]}}),
        )]);
        assert!(schedule(&c, &pod("p", "1", json!({})), 0).is_err());
        let everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(schedule(&c, &pod("p", "1", everything), 0), Ok("cordoned".into()));
        let only_no_execute = json!({"spec": {"tolerations": [{"operator": "Exists", "effect": "NoExecute"}]}});
        let err = schedule(&c, &pod("p", "1", only_no_execute), 0).unwrap_err();
        assert_eq!(err.message, "0/1 nodes are available: 1 node(s) were unschedulable.");
    }
}
