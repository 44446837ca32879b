//! RBAC, evaluated from memory: an index of the roles and bindings, rebuilt from their
//! watch caches whenever one of them changes (they change rarely; requests are many), so
//! a request costs a few hash lookups and a walk over the rules of the roles bound to
//! its user, and never a storage read.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use super::{Attributes, Decision};
use crate::authn::UserInfo;
use crate::cache::{Filter, WatchCache};

/// One rule of a role (`PolicyRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Verbs (`*` for all).
    pub verbs: Vec<String>,
    /// API groups (`""` core, `*` all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `pods/log`, `*`, `*/scale`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Names the rule is limited to (none: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Paths (`/healthz`, `/api/*`).
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

impl Rule {
    /// A rule from its JSON.
    pub fn from_value(v: &Value) -> Rule {
        Rule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// The rules of a role object.
    pub fn of_role(role: &Value) -> Vec<Rule> {
        role.get("rules")
            .and_then(Value::as_array)
            .map(|rs| rs.iter().map(Rule::from_value).collect())
            .unwrap_or_default()
    }

    fn resource_matches(&self, a: &Attributes) -> bool {
        let combined = a.combined_resource();
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
        })
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls
            .iter()
            .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix)))
    }

    /// Whether the rule allows the request (upstream's `RuleAllows`).
    pub fn allows(&self, a: &Attributes) -> bool {
        if !has(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.url_matches(&a.path);
        }
        has(&self.api_groups, &a.api_group)
            && self.resource_matches(a)
            && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }
}

/// Who a binding grants to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Group(String),
}

#[derive(Debug, Clone)]
enum RoleRef {
    Role(String),
    ClusterRole(String),
}

#[derive(Debug, Clone)]
struct Grant {
    /// `ClusterRoleBinding "x"` or `RoleBinding "ns/x"`.
    binding: String,
    role: RoleRef,
}

#[derive(Default)]
struct Index {
    cluster_roles: HashMap<String, Arc<Vec<Rule>>>,
    roles: HashMap<(String, String), Arc<Vec<Rule>>>,
    cluster_grants: HashMap<Subject, Vec<Grant>>,
    grants: HashMap<(String, Subject), Vec<Grant>>,
}

fn subjects_of(binding: &Value, namespace: &str) -> Vec<Subject> {
    let list = binding.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
    list.iter()
        .filter_map(|s| {
            let name = s.get("name").and_then(Value::as_str)?.to_owned();
            match s.get("kind").and_then(Value::as_str)? {
                "User" => Some(Subject::User(name)),
                "Group" => Some(Subject::Group(name)),
                "ServiceAccount" => {
                    let ns = s.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or(namespace);
                    Some(Subject::User(format!("system:serviceaccount:{ns}:{name}")))
                }
                _ => None,
            }
        })
        .collect()
}

fn name_ns(obj: &Value) -> (String, String) {
    let meta = |k: &str| obj.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or_default().to_owned();
    (meta("namespace"), meta("name"))
}

impl Index {
    fn build(roles: &[Value], bindings: &[Value], cluster_roles: &[Value], cluster_bindings: &[Value]) -> Index {
        let mut index = Index::default();
        for r in cluster_roles {
            index.cluster_roles.insert(name_ns(r).1, Arc::new(Rule::of_role(r)));
        }
        for r in roles {
            index.roles.insert(name_ns(r), Arc::new(Rule::of_role(r)));
        }
        let role_ref = |b: &Value| {
            let name = b.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or_default().to_owned();
            match b.pointer("/roleRef/kind").and_then(Value::as_str) {
                Some("Role") => RoleRef::Role(name),
                _ => RoleRef::ClusterRole(name),
            }
        };
        for b in cluster_bindings {
            let grant = Grant { binding: format!("ClusterRoleBinding {:?}", name_ns(b).1), role: role_ref(b) };
            for s in subjects_of(b, "") {
                index.cluster_grants.entry(s).or_default().push(grant.clone());
            }
        }
        for b in bindings {
            let (ns, name) = name_ns(b);
            let grant = Grant { binding: format!("RoleBinding {:?}", format!("{ns}/{name}")), role: role_ref(b) };
            for s in subjects_of(b, &ns) {
                index.grants.entry((ns.clone(), s)).or_default().push(grant.clone());
            }
        }
        index
    }

    fn rules(&self, namespace: &str, role: &RoleRef) -> Option<Arc<Vec<Rule>>> {
        match role {
            RoleRef::ClusterRole(name) => self.cluster_roles.get(name).cloned(),
            RoleRef::Role(name) => self.roles.get(&(namespace.to_owned(), name.clone())).cloned(),
        }
    }

    /// Every (grant, rules) that applies to `user` in `namespace` (cluster-wide ones
    /// first), stopping when `visit` returns true.
    fn visit(&self, user: &UserInfo, namespace: &str, mut visit: impl FnMut(&Grant, &[Rule]) -> bool) -> bool {
        let mut subjects = vec![Subject::User(user.username.clone())];
        subjects.extend(user.groups.iter().map(|g| Subject::Group(g.clone())));
        for s in &subjects {
            for g in self.cluster_grants.get(s).into_iter().flatten() {
                if let Some(rules) = self.rules("", &g.role)
                    && visit(g, &rules)
                {
                    return true;
                }
            }
        }
        if namespace.is_empty() {
            return false;
        }
        for s in subjects {
            for g in self.grants.get(&(namespace.to_owned(), s)).into_iter().flatten() {
                if let Some(rules) = self.rules(namespace, &g.role)
                    && visit(g, &rules)
                {
                    return true;
                }
            }
        }
        false
    }
}

/// The RBAC authorizer.
#[derive(Default)]
pub struct Rbac {
    index: RwLock<Arc<Index>>,
}

impl Rbac {
    /// An authorizer with no roles yet ([`Rbac::run`] fills it).
    pub fn new() -> Arc<Rbac> {
        Arc::new(Rbac::default())
    }

    /// RBAC's answer: allowed by a binding, or no opinion.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        let index = self.index.read().clone();
        let mut by = None;
        let found = index.visit(user, &a.namespace, |grant, rules| {
            if rules.iter().any(|r| r.allows(a)) {
                by = Some(grant.binding.clone());
                return true;
            }
            false
        });
        match by {
            Some(binding) if found => Decision::Allow(format!("RBAC: allowed by {binding}")),
            _ => Decision::NoOpinion(String::new()),
        }
    }

    /// Every rule that applies to `user` in `namespace` (for `SelfSubjectRulesReview`
    /// and for checking what a writer may grant).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        let index = self.index.read().clone();
        let mut out = Vec::new();
        index.visit(user, namespace, |_, rules| {
            out.extend(rules.iter().cloned());
            false
        });
        out
    }

    /// The rules of a Role (in `namespace`) or ClusterRole named `name`; none if unknown.
    pub fn role_rules(&self, namespace: &str, role: bool, name: &str) -> Vec<Rule> {
        let index = self.index.read().clone();
        let r = if role { RoleRef::Role(name.to_owned()) } else { RoleRef::ClusterRole(name.to_owned()) };
        index.rules(namespace, &r).map(|rules| rules.to_vec()).unwrap_or_default()
    }

    /// Rebuilds the index from the caches of roles, rolebindings, clusterroles and
    /// clusterrolebindings.
    pub fn rebuild(&self, caches: &[Arc<WatchCache>; 4]) {
        let values = |c: &Arc<WatchCache>| -> Vec<Value> {
            c.list(&Filter::default())
                .map(|(items, _)| items.iter().filter_map(|o| o.value()).collect())
                .unwrap_or_default()
        };
        let index = Index::build(&values(&caches[0]), &values(&caches[1]), &values(&caches[2]), &values(&caches[3]));
        *self.index.write() = Arc::new(index);
    }

    /// Keeps the index current: rebuilt at start and after every change to a role or
    /// binding (changes that come in a burst are taken together).
    pub async fn run(self: Arc<Self>, caches: [Arc<WatchCache>; 4]) {
        for c in &caches {
            c.wait_ready().await;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut feeds = Vec::new();
        for c in &caches {
            let Ok(mut subscription) = c.subscribe(None) else { continue };
            let tx = tx.clone();
            feeds.push(tokio::spawn(async move {
                loop {
                    match subscription.live.recv().await {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let _ = tx.try_send(());
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
        }
        drop(tx);
        self.rebuild(&caches);
        while rx.recv().await.is_some() {
            self.rebuild(&caches);
        }
        for f in feeds {
            f.abort();
        }
    }

    /// An index of these objects, for tests.
    pub fn with_objects(
        roles: &[Value],
        bindings: &[Value],
        cluster_roles: &[Value],
        cluster_bindings: &[Value],
    ) -> Rbac {
        Rbac { index: RwLock::new(Arc::new(Index::build(roles, bindings, cluster_roles, cluster_bindings))) }
    }
}

/// The rules of `wanted` that `held` does not cover, each broken down to one verb, one
/// group, one resource and one name, or one verb and one path (upstream's `Covers`).
pub fn uncovered(held: &[Rule], wanted: &[Rule]) -> Vec<Rule> {
    let mut missing = Vec::new();
    for w in wanted {
        for verb in &w.verbs {
            if !w.non_resource_urls.is_empty() {
                for url in &w.non_resource_urls {
                    let covered = held.iter().any(|h| {
                        has(&h.verbs, verb)
                            && h.non_resource_urls.iter().any(|u| {
                                u == "*" || u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p))
                            })
                    });
                    if !covered {
                        missing.push(Rule {
                            verbs: vec![verb.clone()],
                            non_resource_urls: vec![url.clone()],
                            ..Default::default()
                        });
                    }
                }
                continue;
            }
            for group in &w.api_groups {
                for resource in &w.resources {
                    let names: Vec<Option<&String>> = if w.resource_names.is_empty() {
                        vec![None]
                    } else {
                        w.resource_names.iter().map(Some).collect()
                    };
                    for name in names {
                        let covered = held.iter().any(|h| {
                            has(&h.verbs, verb)
                                && has(&h.api_groups, group)
                                && (h.resources.iter().any(|r| {
                                    r == "*"
                                        || r == resource
                                        || resource
                                            .split_once('/')
                                            .is_some_and(|(_, sub)| r.strip_prefix("*/") == Some(sub))
                                }))
                                && (h.resource_names.is_empty()
                                    || name.is_some_and(|n| h.resource_names.iter().any(|x| x == n)))
                        });
                        if !covered {
                            missing.push(Rule {
                                verbs: vec![verb.clone()],
                                api_groups: vec![group.clone()],
                                resources: vec![resource.clone()],
                                resource_names: name.into_iter().cloned().collect(),
                                ..Default::default()
                            });
                        }
                    }
                }
            }
        }
    }
    missing
}

/// A rule as upstream prints it in escalation errors:
/// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["delete"]}`.
pub fn describe(rule: &Rule) -> String {
    let list = |v: &[String]| format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "));
    let mut parts = Vec::new();
    if !rule.api_groups.is_empty() {
        parts.push(format!("APIGroups:{}", list(&rule.api_groups)));
    }
    if !rule.resources.is_empty() {
        parts.push(format!("Resources:{}", list(&rule.resources)));
    }
    if !rule.resource_names.is_empty() {
        parts.push(format!("ResourceNames:{}", list(&rule.resource_names)));
    }
    if !rule.non_resource_urls.is_empty() {
        parts.push(format!("NonResourceURLs:{}", list(&rule.non_resource_urls)));
    }
    parts.push(format!("Verbs:{}", list(&rule.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn rbac() -> Rbac {
        let view = json!({"metadata": {"name": "view"}, "rules": [
            {"apiGroups": ["", "apps"], "resources": ["pods", "pods/log", "deployments"], "verbs": ["get", "list", "watch"]}]});
        let health = json!({"metadata": {"name": "health"}, "rules": [{"nonResourceURLs": ["/healthz", "/api/*"], "verbs": ["get"]}]});
        let one_cm = json!({"metadata": {"name": "one-cm", "namespace": "shop"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get", "update"]}]});
        let view_in_shop = json!({"metadata": {"name": "alice-view", "namespace": "shop"},
            "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}]});
        let cm = json!({"metadata": {"name": "devs-cm", "namespace": "shop"},
            "roleRef": {"kind": "Role", "name": "one-cm", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "Group", "name": "devs"}]});
        let everyone = json!({"metadata": {"name": "health"},
            "roleRef": {"kind": "ClusterRole", "name": "health", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "Group", "name": "system:authenticated"}]});
        Rbac::with_objects(&[one_cm], &[view_in_shop, cm], &[view, health], &[everyone])
    }

    fn allowed(r: &Rbac, u: &UserInfo, a: Attributes) -> bool {
        matches!(r.authorize(u, &a), Decision::Allow(_))
    }

    #[test]
    fn bindings_grant_their_roles_where_they_are() {
        let r = rbac();
        let alice = user("alice", &["system:authenticated"]);
        assert!(allowed(&r, &alice, Attributes::resource("list", "", "pods", "", "shop", "")));
        assert!(allowed(&r, &alice, Attributes::resource("get", "", "pods", "log", "shop", "web")));
        assert!(allowed(&r, &alice, Attributes::resource("watch", "apps", "deployments", "", "shop", "")));
        assert!(!allowed(&r, &alice, Attributes::resource("list", "", "pods", "", "default", "")), "only in shop");
        assert!(!allowed(&r, &alice, Attributes::resource("list", "", "pods", "", "", "")), "not cluster-wide");
        assert!(!allowed(&r, &alice, Attributes::resource("delete", "", "pods", "", "shop", "web")), "no writes");
        assert!(
            !allowed(&r, &alice, Attributes::resource("get", "", "pods", "exec", "shop", "web")),
            "other subresource"
        );
        assert!(allowed(&r, &alice, Attributes::path("get", "/healthz")));
        assert!(allowed(&r, &alice, Attributes::path("get", "/api/v1")));
        assert!(!allowed(&r, &alice, Attributes::path("get", "/metrics")));
        let bot = user("system:serviceaccount:shop:bot", &[]);
        assert!(
            allowed(&r, &bot, Attributes::resource("list", "", "pods", "", "shop", "")),
            "a service account subject"
        );
        let dev = user("bob", &["devs"]);
        assert!(allowed(&r, &dev, Attributes::resource("update", "", "configmaps", "", "shop", "settings")));
        assert!(
            !allowed(&r, &dev, Attributes::resource("update", "", "configmaps", "", "shop", "other")),
            "names limit"
        );
        assert!(
            !allowed(&r, &dev, Attributes::resource("list", "", "configmaps", "", "shop", "")),
            "a list has no name"
        );
    }

    #[test]
    fn a_writer_cannot_grant_what_it_does_not_hold() {
        let held = vec![Rule::from_value(
            &json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get", "list"]}),
        )];
        let ok =
            vec![Rule::from_value(&json!({"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["get"]}))];
        assert!(uncovered(&held, &ok).is_empty());
        let more =
            vec![Rule::from_value(&json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}))];
        let missing = uncovered(&held, &more);
        assert_eq!(missing.len(), 1);
        assert_eq!(describe(&missing[0]), "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}");
        let star = vec![Rule {
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: vec!["*".into()],
            ..Default::default()
        }];
        assert!(uncovered(&star, &more).is_empty());
    }
}
