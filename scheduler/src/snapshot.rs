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
