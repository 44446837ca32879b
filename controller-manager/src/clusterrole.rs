//! The ClusterRole aggregation controller (upstream's clusterrole-aggregation): a
//! ClusterRole with an `aggregationRule` holds the rules of every ClusterRole its
//! selectors match, kept current as those change (`admin`, `edit` and `view` are built
//! so from the `system:aggregate-to-*` roles).

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};

use crate::informer::Informer;
use crate::workqueue::{Action, WorkQueue};

/// Whether `selector` matches `labels` (matchLabels, and matchExpressions' In, NotIn,
/// Exists, DoesNotExist).
pub fn matches(selector: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let by_labels = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The rules an aggregated role should hold: those of every other role a selector
/// matches, in name order, each once.
pub fn aggregate(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let Some(rule) = &role.aggregation_rule else { return role.rules.clone().unwrap_or_default() };
    let selectors = rule.cluster_role_selectors.clone().unwrap_or_default();
    let mut sources: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|r| r.metadata.name != role.metadata.name)
        .filter(|r| {
            let labels = r.metadata.labels.clone().unwrap_or_default();
            selectors.iter().any(|s| matches(s, &labels))
        })
        .collect();
    sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for s in sources {
        for r in s.rules.iter().flatten() {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
    }
    rules
}

/// Starts the controller; it runs until `tasks` is dropped.
pub fn start(client: kube::Client, tasks: &crate::Tasks, metrics: Arc<crate::metrics::Metrics>) {
    let queue = WorkQueue::new("clusterrole-aggregation", metrics);
    let q = queue.clone();
    // Any change may change what an aggregated role holds: all of them are looked at.
    let roles = Informer::start(tasks, Api::<ClusterRole>::all(client.clone()), vec![Box::new(move |_| q.add("all"))]);
    queue.run(tasks, 1, move |_| reconcile(client.clone(), roles.clone()));
}

async fn reconcile(client: kube::Client, roles: Arc<Informer<ClusterRole>>) -> anyhow::Result<Action> {
    roles.wait_synced().await;
    let all = roles.list();
    let api: Api<ClusterRole> = Api::all(client);
    for role in all.iter().filter(|r| r.aggregation_rule.is_some()) {
        let want = aggregate(role, &all);
        if role.rules.clone().unwrap_or_default() == want {
            continue;
        }
        let name = role.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({"rules": want});
        crate::tolerate(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await, &[404, 409])?;
        tracing::info!(role = name, rules = want.len(), "aggregated");
    }
    Ok(Action::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str]) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
                resources: Some(vec!["pods".into()]),
                api_groups: Some(vec!["".into()]),
                ..Default::default()
            }]),
            ..Default::default()
        })
    }

    #[test]
    fn an_aggregated_role_holds_the_rules_of_the_roles_it_selects() {
        let view: ClusterRole = serde_json::from_value(serde_json::json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-view": "true"}}]}}))
        .expect("role");
        let all = vec![
            role("b", &[("agg-view", "true")], &["list"]),
            role("a", &[("agg-view", "true")], &["get"]),
            role("c", &[("other", "true")], &["delete"]),
        ];
        let rules = aggregate(&view, &all);
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["get", "list"]);
    }
}
