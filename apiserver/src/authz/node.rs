//! The Node authorizer, as upstream's: a kubelet (`system:node:NAME` in `system:nodes`)
//! may read a secret, configmap, persistent volume claim or service account only when a
//! pod bound to its node uses it, may touch only its own Lease, and otherwise has the
//! fixed set of rights a kubelet needs (upstream's `NodeRules`). Which objects a node's
//! pods use is a graph kept from the pods' watch cache, so a decision reads memory only.
//! NodeRestriction (`admission`) then limits its writes to its own Node and its own pods.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::Value;

use super::rbac::Rule;
use super::{Attributes, Decision};
use crate::authn::UserInfo;
use crate::cache::{CacheEvent, Cached, Filter, Initial, Kind, WatchCache};

/// The group of every node.
pub const NODES_GROUP: &str = "system:nodes";

/// The node a user is, if it is one.
pub fn node_name(user: &UserInfo) -> Option<&str> {
    let name = user.username.strip_prefix("system:node:")?;
    (!name.is_empty() && user.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

/// An object a pod uses: kind, namespace, name.
type Ref = (&'static str, String, String);

/// What each pod's node is and what it uses, and per node how many of its pods use each.
#[derive(Default)]
struct Graph {
    pods: HashMap<String, (String, Vec<Ref>)>,
    nodes: HashMap<String, HashMap<Ref, usize>>,
}

impl Graph {
    fn remove(&mut self, key: &str) {
        let Some((node, refs)) = self.pods.remove(key) else { return };
        if let Some(used) = self.nodes.get_mut(&node) {
            for r in refs {
                if let Some(n) = used.get_mut(&r) {
                    *n -= 1;
                    if *n == 0 {
                        used.remove(&r);
                    }
                }
            }
            if used.is_empty() {
                self.nodes.remove(&node);
            }
        }
    }

    fn put(&mut self, key: &str, node: &str, refs: Vec<Ref>) {
        self.remove(key);
        if node.is_empty() {
            return;
        }
        let used = self.nodes.entry(node.to_owned()).or_default();
        for r in &refs {
            *used.entry(r.clone()).or_default() += 1;
        }
        self.pods.insert(key.to_owned(), (node.to_owned(), refs));
    }

    /// A pod from the cache: its node from the cache's selectable field, and what it uses
    /// read from its JSON only when it is bound (most pod events, at creation, are not).
    fn put_cached(&mut self, pod: &Cached) {
        let node = pod.field("spec.nodeName").unwrap_or_default();
        let refs = if node.is_empty() { Vec::new() } else { PodRefs::read(&pod.json).uses() };
        self.put(&pod.key, &node, refs);
    }
}

// The fields of a pod that name what it uses, read without decoding the rest of it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PodRefs {
    metadata: MetaRefs,
    spec: SpecRefs,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MetaRefs {
    namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpecRefs {
    service_account_name: Option<String>,
    image_pull_secrets: Vec<Named>,
    volumes: Vec<VolumeRefs>,
    containers: Vec<ContainerRefs>,
    init_containers: Vec<ContainerRefs>,
    ephemeral_containers: Vec<ContainerRefs>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Named {
    name: Option<String>,
    secret_name: Option<String>,
    claim_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct VolumeRefs {
    secret: Option<Named>,
    config_map: Option<Named>,
    persistent_volume_claim: Option<Named>,
    projected: Option<ProjectedRefs>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ProjectedRefs {
    sources: Vec<SourceRefs>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SourceRefs {
    secret: Option<Named>,
    config_map: Option<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ContainerRefs {
    env: Vec<EnvRefs>,
    env_from: Vec<EnvFromRefs>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct EnvRefs {
    value_from: Option<ValueFromRefs>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ValueFromRefs {
    secret_key_ref: Option<Named>,
    config_map_key_ref: Option<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct EnvFromRefs {
    secret_ref: Option<Named>,
    config_map_ref: Option<Named>,
}

impl PodRefs {
    /// Reads a pod's JSON; one that does not read uses nothing (its node is refused).
    fn read(json: &[u8]) -> PodRefs {
        serde_json::from_slice(json).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a pod's references could not be read; its node gets none of them");
            PodRefs::default()
        })
    }

    fn uses(&self) -> Vec<Ref> {
        let ns = &self.metadata.namespace;
        let mut out: Vec<Ref> = Vec::new();
        let mut add = |kind: &'static str, name: Option<&String>| {
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                let r = (kind, ns.clone(), name.clone());
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        };
        let spec = &self.spec;
        let default_account = "default".to_owned();
        add("serviceaccounts", Some(spec.service_account_name.as_ref().unwrap_or(&default_account)));
        for p in &spec.image_pull_secrets {
            add("secrets", p.name.as_ref());
        }
        for v in &spec.volumes {
            add("secrets", v.secret.as_ref().and_then(|s| s.secret_name.as_ref()));
            add("configmaps", v.config_map.as_ref().and_then(|c| c.name.as_ref()));
            add("persistentvolumeclaims", v.persistent_volume_claim.as_ref().and_then(|c| c.claim_name.as_ref()));
            for src in v.projected.iter().flat_map(|p| &p.sources) {
                add("secrets", src.secret.as_ref().and_then(|s| s.name.as_ref()));
                add("configmaps", src.config_map.as_ref().and_then(|c| c.name.as_ref()));
            }
        }
        for c in spec.containers.iter().chain(&spec.init_containers).chain(&spec.ephemeral_containers) {
            for e in c.env.iter().filter_map(|e| e.value_from.as_ref()) {
                add("secrets", e.secret_key_ref.as_ref().and_then(|r| r.name.as_ref()));
                add("configmaps", e.config_map_key_ref.as_ref().and_then(|r| r.name.as_ref()));
            }
            for e in &c.env_from {
                add("secrets", e.secret_ref.as_ref().and_then(|r| r.name.as_ref()));
                add("configmaps", e.config_map_ref.as_ref().and_then(|r| r.name.as_ref()));
            }
        }
        out
    }
}

/// The secrets, configmaps, claims and service account a pod uses.
pub fn uses(pod: &Value) -> Vec<Ref> {
    PodRefs::read(pod.to_string().as_bytes()).uses()
}

/// What every node may do besides reading what its pods use (upstream's `NodeRules`,
/// for the resources this server has).
fn node_rules() -> Vec<Rule> {
    let rule = |verbs: &[&str], groups: &[&str], resources: &[&str]| Rule {
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        api_groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    vec![
        rule(&["get", "list", "watch"], &[""], &["services", "endpoints"]),
        rule(&["get", "list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
        rule(&["create", "get", "list", "watch", "update", "patch", "delete"], &[""], &["nodes"]),
        rule(&["update", "patch"], &[""], &["nodes/status"]),
        rule(&["create", "update", "patch"], &["", "events.k8s.io"], &["events"]),
        rule(&["get", "list", "watch"], &[""], &["pods"]),
        rule(&["create", "delete"], &[""], &["pods"]),
        rule(&["update", "patch"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(&["get", "list", "watch"], &[""], &["namespaces"]),
        rule(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews", "localsubjectaccessreviews"]),
    ]
}

/// The Node authorizer.
pub struct NodeAuthorizer {
    graph: RwLock<Graph>,
    rules: Vec<Rule>,
}

impl Default for NodeAuthorizer {
    fn default() -> Self {
        NodeAuthorizer { graph: RwLock::new(Graph::default()), rules: node_rules() }
    }
}

impl NodeAuthorizer {
    /// An authorizer with an empty graph ([`NodeAuthorizer::run`] fills it).
    pub fn new() -> Arc<NodeAuthorizer> {
        Arc::new(NodeAuthorizer::default())
    }

    /// Its answer for `user`: no opinion unless it is a node.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        let Some(node) = node_name(user) else { return Decision::NoOpinion(String::new()) };
        if !a.resource_request {
            return Decision::NoOpinion(String::new());
        }
        let kind: Option<&'static str> = match (a.api_group.as_str(), a.resource.as_str(), a.subresource.as_str()) {
            ("", "secrets", "") => Some("secrets"),
            ("", "configmaps", "") => Some("configmaps"),
            ("", "persistentvolumeclaims", "") => Some("persistentvolumeclaims"),
            ("", "serviceaccounts", "token") => Some("serviceaccounts"),
            ("", "serviceaccounts", "") => Some("serviceaccounts"),
            _ => None,
        };
        if let Some(kind) = kind {
            let verbs: &[&str] = if a.subresource == "token" { &["create"] } else { &["get", "list", "watch"] };
            if !verbs.contains(&a.verb.as_str()) {
                return Decision::NoOpinion(format!("can only {} {kind}", verbs.join("/")));
            }
            if a.name.is_empty() {
                return Decision::NoOpinion("No Object name found".into());
            }
            let r: Ref = (kind, a.namespace.clone(), a.name.clone());
            let used = self.graph.read().nodes.get(node).is_some_and(|u| u.contains_key(&r));
            return if used {
                Decision::Allow(format!("node '{node}' has a pod that uses this object"))
            } else {
                Decision::NoOpinion(format!("no relationship found between node '{node}' and this object"))
            };
        }
        if a.api_group == "coordination.k8s.io" && a.resource == "leases" {
            return if a.namespace == "kube-node-lease" && (a.name == node || (a.name.is_empty() && a.verb == "create"))
            {
                Decision::Allow("a node's own lease".into())
            } else {
                Decision::NoOpinion(format!(
                    "can only access node lease with the same name as the requesting node '{node}'"
                ))
            };
        }
        if self.rules.iter().any(|r| r.allows(a)) {
            return Decision::Allow("a node's rights".into());
        }
        Decision::NoOpinion(String::new())
    }

    fn rebuild(&self, cache: &WatchCache) {
        let mut graph = Graph::default();
        if let Ok((pods, _)) = cache.list(&Filter::default()) {
            for p in pods {
                graph.put_cached(&p);
            }
        }
        *self.graph.write() = graph;
    }

    fn apply(&self, event: &CacheEvent) {
        match event.kind {
            Kind::Deleted => self.graph.write().remove(&event.object.key),
            Kind::Added | Kind::Modified => {
                // Read outside the lock: the authorizer keeps deciding meanwhile.
                let node = event.object.field("spec.nodeName").unwrap_or_default();
                let refs = if node.is_empty() { Vec::new() } else { PodRefs::read(&event.object.json).uses() };
                self.graph.write().put(&event.object.key, &node, refs);
            }
        }
    }

    /// Keeps the graph current from the pods' watch cache; a watch that falls behind
    /// starts over from the cache's contents.
    pub async fn run(self: Arc<Self>, pods: Arc<WatchCache>) {
        pods.wait_ready().await;
        loop {
            let Ok(subscription) = pods.subscribe(None) else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let mut graph = Graph::default();
            if let Initial::Objects(objects) = &subscription.initial {
                for p in objects.iter() {
                    graph.put_cached(p);
                }
            }
            *self.graph.write() = graph;
            let mut live = subscription.live;
            loop {
                match live.recv().await {
                    Ok(weak) => match Weak::upgrade(&weak) {
                        Some(event) => self.apply(&event),
                        None => {
                            self.rebuild(&pods);
                        }
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    /// Adds a pod to the graph, for tests.
    pub fn add_pod(&self, key: &str, pod: &Value) {
        let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
        self.graph.write().put(key, node, uses(pod));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str) -> UserInfo {
        UserInfo {
            username: format!("system:node:{name}"),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_node_reads_only_what_its_pods_use() {
        let authz = NodeAuthorizer::default();
        authz.add_pod(
            "/registry/pods/shop/web",
            &json!({"metadata": {"namespace": "shop", "name": "web"}, "spec": {"nodeName": "a",
                "volumes": [{"name": "v", "secret": {"secretName": "tls"}}],
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "settings"}}]}]}}),
        );
        let get = |what: &str, name: &str| Attributes::resource("get", "", what, "", "shop", name);
        let allowed = |u: &UserInfo, a: Attributes| matches!(authz.authorize(u, &a), Decision::Allow(_));
        assert!(allowed(&node("a"), get("secrets", "tls")));
        assert!(allowed(&node("a"), get("configmaps", "settings")));
        assert!(allowed(&node("a"), get("serviceaccounts", "default")));
        assert!(!allowed(&node("b"), get("secrets", "tls")), "node b runs no pod that uses it");
        assert!(!allowed(&node("a"), get("secrets", "other")));
        assert!(!allowed(&node("a"), Attributes::resource("list", "", "secrets", "", "shop", "")));
        assert!(!allowed(&node("a"), Attributes::resource("update", "", "secrets", "", "shop", "tls")));
        assert!(allowed(
            &node("a"),
            Attributes::resource("update", "coordination.k8s.io", "leases", "", "kube-node-lease", "a")
        ));
        assert!(!allowed(
            &node("a"),
            Attributes::resource("update", "coordination.k8s.io", "leases", "", "kube-node-lease", "b")
        ));
        assert!(allowed(&node("a"), Attributes::resource("patch", "", "nodes", "status", "", "a")));
        let alice = UserInfo { username: "alice".into(), ..Default::default() };
        assert_eq!(authz.authorize(&alice, &get("secrets", "tls")), Decision::NoOpinion(String::new()));
        authz.graph.write().remove("/registry/pods/shop/web");
        assert!(!allowed(&node("a"), get("secrets", "tls")), "gone with the pod");
    }
}
