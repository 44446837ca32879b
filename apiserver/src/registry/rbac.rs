//! RBAC (rbac.authorization.k8s.io/v1): Role and RoleBinding in a namespace, ClusterRole
//! and ClusterRoleBinding for the cluster. The authorizer (`authz::rbac`) reads them from
//! their watch caches; what a writer may grant is checked at admission
//! (`authz::escalation`).

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Resource, Strategy};
use crate::status::Cause;
use crate::validation;

pub const GROUP: &str = "rbac.authorization.k8s.io";

pub fn resources() -> Vec<Resource> {
    vec![
        Resource::of::<Role>(GROUP, "v1", "roles", "role", "Role", RoleStrategy),
        Resource::of::<RoleBinding>(GROUP, "v1", "rolebindings", "rolebinding", "RoleBinding", BindingStrategy),
        Resource {
            namespaced: false,
            ..Resource::of::<ClusterRole>(GROUP, "v1", "clusterroles", "clusterrole", "ClusterRole", RoleStrategy)
        },
        Resource {
            namespaced: false,
            ..Resource::of::<ClusterRoleBinding>(
                GROUP,
                "v1",
                "clusterrolebindings",
                "clusterrolebinding",
                "ClusterRoleBinding",
                BindingStrategy,
            )
        },
    ]
}

const ROLE_COLUMNS: Columns = &[("Name", "string", 0), ("Created At", "date", 0)];
const BINDING_COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("Role", "string", 0),
    ("Age", "string", 0),
    ("Users", "string", 1),
    ("Groups", "string", 1),
    ("ServiceAccounts", "string", 1),
];

struct RoleStrategy;

impl Strategy for RoleStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validation::rbac(obj, old);
        let rules = obj.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
        let cluster = obj.get("kind").and_then(Value::as_str) == Some("ClusterRole");
        for (i, rule) in rules.iter().enumerate() {
            causes.extend(validate_rule(rule, &format!("rules[{i}]"), cluster));
        }
        causes
    }

    fn columns(&self) -> Columns {
        ROLE_COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![json!(s(o, "/metadata/name")), json!(s(o, "/metadata/creationTimestamp"))]
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Upstream's `ValidatePolicyRule`: verbs always; resource rules name API groups and
/// resources; non-resource URLs only in cluster roles and never with resources.
fn validate_rule(rule: &Value, path: &str, cluster: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    if strings(rule, "verbs").is_empty() {
        causes.push(Cause::required(format!("{path}.verbs")));
    }
    let urls = strings(rule, "nonResourceURLs");
    if !urls.is_empty() {
        if !cluster {
            causes.push(Cause::invalid(
                format!("{path}.nonResourceURLs"),
                &format!("{urls:?}"),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !strings(rule, "apiGroups").is_empty() || !strings(rule, "resources").is_empty() {
            causes.push(Cause::invalid(
                format!("{path}.nonResourceURLs"),
                &format!("{urls:?}"),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return causes;
    }
    if strings(rule, "apiGroups").is_empty() {
        causes.push(Cause::required_because(
            format!("{path}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if strings(rule, "resources").is_empty() {
        causes.push(Cause::required_because(
            format!("{path}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
    causes
}

struct BindingStrategy;

impl Strategy for BindingStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validation::rbac(obj, old);
        let cluster = obj.get("kind").and_then(Value::as_str) == Some("ClusterRoleBinding");
        let role_ref = obj.get("roleRef").cloned().unwrap_or(Value::Null);
        let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or_default();
        let allowed: &[&str] = if cluster { &["ClusterRole"] } else { &["Role", "ClusterRole"] };
        if !allowed.contains(&kind) {
            causes.push(Cause::not_supported("roleRef.kind", kind, allowed));
        }
        if role_ref.get("apiGroup").and_then(Value::as_str) != Some(GROUP) {
            let group = role_ref.get("apiGroup").and_then(Value::as_str).unwrap_or_default();
            causes.push(Cause::not_supported("roleRef.apiGroup", group, &[GROUP]));
        }
        if role_ref.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
            causes.push(Cause::required("roleRef.name"));
        }
        if let Some(old) = old
            && old.get("roleRef") != obj.get("roleRef")
        {
            causes.push(Cause::invalid_value("roleRef", &role_ref, "cannot change roleRef"));
        }
        let subjects = obj.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, subject) in subjects.iter().enumerate() {
            let kind = subject.get("kind").and_then(Value::as_str).unwrap_or_default();
            let name = subject.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                causes.push(Cause::required(format!("subjects[{i}].name")));
            }
            match kind {
                "ServiceAccount" => {
                    if subject.get("namespace").and_then(Value::as_str).unwrap_or_default().is_empty() && cluster {
                        causes.push(Cause::required(format!("subjects[{i}].namespace")));
                    }
                }
                "User" | "Group" => {}
                other => causes.push(Cause::not_supported(
                    format!("subjects[{i}].kind"),
                    other,
                    &["ServiceAccount", "User", "Group"],
                )),
            }
        }
        causes
    }

    fn columns(&self) -> Columns {
        BINDING_COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let subjects = o.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
        let of = |kind: &str| {
            subjects
                .iter()
                .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
                .map(|s| {
                    let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
                    match s.get("namespace").and_then(Value::as_str) {
                        Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                        _ => name.to_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            json!(s(o, "/metadata/name")),
            json!(format!("{}/{}", s(o, "/roleRef/kind"), s(o, "/roleRef/name"))),
            json!(age(o, "/metadata/creationTimestamp")),
            json!(of("User")),
            json!(of("Group")),
            json!(of("ServiceAccount")),
        ]
    }
}
