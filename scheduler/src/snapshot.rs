//! What the scheduler knows about nodes and pods, reduced to what its plugins read, and the
//! cache that keeps node totals current as pods are bound, assumed and deleted.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Node, NodeSelectorTerm, Pod, Taint, Toleration};

use crate::quantity::{parse_milli, parse_units};

/// CPU (millicores), memory (bytes) and pod count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Pods.
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, other: Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }

    fn sub(&mut self, other: Resources) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }
}

/// A host port a pod asks for.
pub type HostPort = (String, String, i32);

/// A pod, as the plugins see it.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: String,
    /// The pod's uid.
    pub uid: String,
    /// Requested resources (containers summed, init containers as a maximum); `pods` is 1.
    pub requests: Resources,
    /// Requests with upstream's non-zero defaults for scoring (100m CPU, 200Mi memory).
    pub score_requests: Resources,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: one of these terms must match.
    pub required_terms: Vec<NodeSelectorTerm>,
    /// Preferred node affinity: (weight, term).
    pub preferred_terms: Vec<(i32, NodeSelectorTerm)>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Host ports.
    pub host_ports: Vec<HostPort>,
    /// The uid of the controlling owner (a ReplicaSet), for spreading.
    pub owner: Option<String>,
}

fn quantity_milli(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
) -> i64 {
    map.and_then(|m| m.get(name)).and_then(|q| parse_milli(&q.0)).unwrap_or(0)
}

fn quantity_units(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
) -> i64 {
    map.and_then(|m| m.get(name)).and_then(|q| parse_units(&q.0)).unwrap_or(0)
}

const DEFAULT_CPU_REQUEST: i64 = 100;
const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

impl PodInfo {
    /// Reads what the plugins need from a pod.
    pub fn new(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let key =
            format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default());
        let mut info = PodInfo { key, uid: meta.uid.clone().unwrap_or_default(), ..Default::default() };
        info.owner = meta
            .owner_references
            .as_ref()
            .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)).or(refs.first()).map(|r| r.uid.clone()));
        let Some(spec) = &pod.spec else { return info };
        let (mut cpu, mut memory, mut score_cpu, mut score_memory) = (0, 0, 0, 0);
        for c in &spec.containers {
            let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            let c_cpu = quantity_milli(requests, "cpu");
            let c_mem = quantity_units(requests, "memory");
            cpu += c_cpu;
            memory += c_mem;
            score_cpu += if c_cpu == 0 { DEFAULT_CPU_REQUEST } else { c_cpu };
            score_memory += if c_mem == 0 { DEFAULT_MEMORY_REQUEST } else { c_mem };
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|hp| *hp > 0) {
                    let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                    info.host_ports.push((protocol, p.host_ip.clone().unwrap_or_default(), hp));
                }
            }
        }
        for c in spec.init_containers.iter().flatten() {
            let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            cpu = cpu.max(quantity_milli(requests, "cpu"));
            memory = memory.max(quantity_units(requests, "memory"));
        }
        if let Some(overhead) = &spec.overhead {
            cpu += quantity_milli(Some(overhead), "cpu");
            memory += quantity_units(Some(overhead), "memory");
        }
        info.requests = Resources { cpu, memory, pods: 1 };
        info.score_requests = Resources { cpu: score_cpu.max(cpu), memory: score_memory.max(memory), pods: 1 };
        info.node_selector = spec.node_selector.clone().unwrap_or_default();
        if let Some(na) = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()) {
            if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
                info.required_terms = req.node_selector_terms.clone();
            }
            for p in na.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
                info.preferred_terms.push((p.weight, p.preference.clone()));
            }
        }
        info.tolerations = spec.tolerations.clone().unwrap_or_default();
        info
    }
}

/// A node, as the plugins see it, with the totals of the pods on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its taints.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Its Ready condition's status: `True`, `False` or `Unknown` (also when missing).
    pub ready: Readiness,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// What the pods on it request.
    pub requested: Resources,
    /// The same with non-zero defaults, for scoring.
    pub score_requested: Resources,
    /// Host ports in use.
    pub host_ports: HashSet<HostPort>,
    /// Pods on it per owner uid.
    pub owners: HashMap<String, u32>,
}

/// A node's Ready condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readiness {
    /// `True`.
    Ready,
    /// `False`: the kubelet says it cannot run pods.
    NotReady,
    /// `Unknown` or missing: the kubelet has not been heard from.
    #[default]
    Unknown,
}

impl NodeInfo {
    /// Reads what the plugins need from a node (pod totals start empty).
    pub fn new(node: &Node) -> NodeInfo {
        let status = node.status.as_ref();
        let allocatable = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let ready = match status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str())
        {
            Some("True") => Readiness::Ready,
            Some("False") => Readiness::NotReady,
            _ => Readiness::Unknown,
        };
        let spec = node.spec.as_ref();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready,
            allocatable: Resources {
                cpu: quantity_milli(allocatable, "cpu"),
                memory: quantity_units(allocatable, "memory"),
                pods: quantity_units(allocatable, "pods"),
            },
            ..Default::default()
        }
    }

    fn add_pod(&mut self, pod: &PodInfo) {
        self.requested.add(pod.requests);
        self.score_requested.add(pod.score_requests);
        for hp in &pod.host_ports {
            self.host_ports.insert(hp.clone());
        }
        if let Some(owner) = &pod.owner {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
    }

    fn remove_pod(&mut self, pod: &PodInfo) {
        self.requested.sub(pod.requests);
        self.score_requested.sub(pod.score_requests);
        for hp in &pod.host_ports {
            self.host_ports.remove(hp);
        }
        if let Some(owner) = &pod.owner
            && let Some(n) = self.owners.get_mut(owner)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.owners.remove(owner);
            }
        }
    }
}

/// Nodes and the pods placed on them: the single-writer state the scheduling loop owns.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<String, NodeInfo>,
    /// Placed pods (bound, or assumed while their binding is in flight) by uid.
    placed: HashMap<String, (String, PodInfo)>,
}

impl Cache {
    /// Adds or updates a node, keeping the totals of its pods. Returns whether anything a
    /// filter reads changed (a heartbeat does not; a new taint or more capacity does).
    pub fn upsert_node(&mut self, node: &Node) -> bool {
        let mut info = NodeInfo::new(node);
        match self.nodes.get_mut(&info.name) {
            Some(old) => {
                let changed = old.labels != info.labels
                    || old.taints != info.taints
                    || old.unschedulable != info.unschedulable
                    || old.ready != info.ready
                    || old.allocatable != info.allocatable;
                if changed {
                    old.labels = info.labels;
                    old.taints = info.taints;
                    old.unschedulable = info.unschedulable;
                    old.ready = info.ready;
                    old.allocatable = info.allocatable;
                }
                changed
            }
            None => {
                for (node_name, pod) in self.placed.values() {
                    if *node_name == info.name {
                        info.add_pod(pod);
                    }
                }
                self.nodes.insert(info.name.clone(), info);
                true
            }
        }
    }

    /// Removes a node.
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Keeps only the nodes named in `keep` (after a relist).
    pub fn retain_nodes(&mut self, keep: &HashSet<String>) {
        self.nodes.retain(|name, _| keep.contains(name));
    }

    /// Records a pod on a node (bound, or assumed by the scheduler).
    pub fn place(&mut self, node: &str, pod: PodInfo) {
        self.unplace(&pod.uid);
        if let Some(n) = self.nodes.get_mut(node) {
            n.add_pod(&pod);
        }
        self.placed.insert(pod.uid.clone(), (node.to_owned(), pod));
    }

    /// Forgets a pod's placement (deleted, finished, or a failed binding).
    pub fn unplace(&mut self, uid: &str) -> bool {
        match self.placed.remove(uid) {
            Some((node, pod)) => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.remove_pod(&pod);
                }
                true
            }
            None => false,
        }
    }

    /// Where a pod is placed, if it is.
    pub fn placement(&self, uid: &str) -> Option<&str> {
        self.placed.get(uid).map(|(n, _)| n.as_str())
    }

    /// Keeps only the placed pods whose uids are in `keep` (after a relist).
    pub fn retain_pods(&mut self, keep: &HashSet<String>) {
        let gone: Vec<String> = self.placed.keys().filter(|uid| !keep.contains(*uid)).cloned().collect();
        for uid in gone {
            self.unplace(&uid);
        }
    }

    /// The nodes, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// How many nodes are known.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// One node.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, extra: serde_json::Value) -> Node {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"zone": "a"}},
            "spec": {},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        });
        json_patch::merge(&mut n, &extra);
        serde_json::from_value(n).unwrap()
    }

    fn pod(uid: &str, requests: serde_json::Value, owner: Option<&str>) -> PodInfo {
        let refs: Vec<_> = owner
            .into_iter()
            .map(|o| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": o, "controller": true}))
            .collect();
        PodInfo::new(
            &serde_json::from_value::<Pod>(json!({
                "metadata": {"name": uid, "namespace": "default", "uid": uid, "ownerReferences": refs},
                "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": requests},
                    "ports": [{"containerPort": 80, "hostPort": 8080}]}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn requests_default_for_scoring_only() {
        let bare = pod("p", json!({}), None);
        assert_eq!(bare.requests, Resources { cpu: 0, memory: 0, pods: 1 });
        assert_eq!(bare.score_requests, Resources { cpu: 100, memory: 200 * 1024 * 1024, pods: 1 });
        let sized = pod("q", json!({"cpu": "250m", "memory": "1Gi"}), None);
        assert_eq!(sized.requests, Resources { cpu: 250, memory: 1 << 30, pods: 1 });
        assert_eq!(sized.score_requests, sized.requests);
    }

    #[test]
    fn placing_and_unplacing_keep_every_total_exact() {
        let mut c = Cache::default();
        assert!(c.upsert_node(&node("n1", json!({}))));
        let a = pod("a", json!({"cpu": "500m", "memory": "1Gi"}), Some("rs-1"));
        let b = pod("b", json!({}), Some("rs-1"));
        c.place("n1", a.clone());
        c.place("n1", b.clone());
        let n = c.node("n1").unwrap();
        assert_eq!(n.requested, Resources { cpu: 500, memory: 1 << 30, pods: 2 });
        assert_eq!(n.score_requested, Resources { cpu: 600, memory: (1 << 30) + 200 * 1024 * 1024, pods: 2 });
        assert_eq!(n.owners.get("rs-1"), Some(&2));
        assert!(n.host_ports.contains(&("TCP".into(), String::new(), 8080)));
        assert_eq!(c.placement("a"), Some("n1"));

        assert!(c.unplace("a"));
        let n = c.node("n1").unwrap();
        assert_eq!(n.requested, Resources { cpu: 0, memory: 0, pods: 1 });
        assert_eq!(n.score_requested, b.score_requests);
        assert_eq!(n.owners.get("rs-1"), Some(&1));
        assert!(!c.unplace("a"), "twice is a no-op");
        assert_eq!(c.placement("a"), None);

        // Placing again moves, never double counts.
        c.place("n1", b.clone());
        assert_eq!(c.node("n1").unwrap().requested.pods, 1);
        c.retain_pods(&HashSet::new());
        let n = c.node("n1").unwrap();
        assert_eq!((n.requested, n.score_requested), (Resources::default(), Resources::default()));
        assert!(n.owners.is_empty() && n.host_ports.is_empty());
        assert_eq!(c.placement("b"), None);
    }

    #[test]
    fn a_node_seen_after_its_pods_counts_them() {
        let mut c = Cache::default();
        c.place("late", pod("a", json!({"cpu": "1"}), None));
        c.place("other", pod("b", json!({"cpu": "2"}), None));
        c.upsert_node(&node("late", json!({})));
        assert_eq!(c.node("late").unwrap().requested, Resources { cpu: 1000, memory: 0, pods: 1 });
    }

    #[test]
    fn only_what_filters_read_counts_as_a_change() {
        let mut c = Cache::default();
        assert!(c.upsert_node(&node("n1", json!({}))), "a new node");
        let heartbeat = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]}});
        assert!(!c.upsert_node(&node("n1", heartbeat)), "a heartbeat is not a change");
        for (what, extra) in [
            ("labels", json!({"metadata": {"labels": {"zone": "b"}}})),
            ("taints", json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})),
            ("cordon", json!({"spec": {"unschedulable": true}})),
            ("readiness", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
            ("capacity", json!({"status": {"allocatable": {"cpu": "8"}}})),
        ] {
            let mut c = Cache::default();
            c.upsert_node(&node("n1", json!({})));
            c.place("n1", pod("a", json!({"cpu": "1"}), None));
            assert!(c.upsert_node(&node("n1", extra.clone())), "{what}");
            assert!(!c.upsert_node(&node("n1", extra)), "{what} again");
            let n = c.node("n1").unwrap();
            assert_eq!(n.requested.cpu, 1000, "{what}: the pods' totals stay");
        }
        let mut c = Cache::default();
        c.upsert_node(&node("n1", json!({})));
        c.upsert_node(&node("n1", json!({"spec": {"unschedulable": true}, "status": {"allocatable": {"cpu": "8"}}})));
        let n = c.node("n1").unwrap();
        assert!(n.unschedulable);
        assert_eq!(n.allocatable.cpu, 8000);
    }

    #[test]
    fn nodes_go_by_name_or_by_relist() {
        let mut c = Cache::default();
        for name in ["a", "b", "c"] {
            c.upsert_node(&node(name, json!({})));
        }
        c.remove_node("b");
        assert!(c.node("b").is_none());
        assert_eq!(c.node_count(), 2);
        c.retain_nodes(&["c".to_owned()].into());
        assert_eq!(c.nodes().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["c"]);
        assert_eq!(c.node("c").unwrap().labels.get("zone").map(String::as_str), Some("a"));
    }
}
