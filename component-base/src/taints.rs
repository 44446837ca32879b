//! Taints and tolerations, shared by the scheduler (which nodes a pod may go to) and the
//! node lifecycle controller (which pods a NoExecute taint evicts).

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether a toleration tolerates a taint: upstream's `Toleration.ToleratesTaint`
/// (staging/src/k8s.io/api/core/v1/toleration.go). An empty effect or key matches any;
/// `Exists` ignores the value; an empty operator means `Equal`, where an absent value
/// equals an empty one; any other operator matches nothing.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        "Exists" => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.map(Into::into), effect: effect.into(), time_added: None }
    }

    fn t(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn upstream_toleration_rules() {
        let gpu = taint("dedicated", Some("gpu"), "NoSchedule");
        let bare = taint("node.kubernetes.io/not-ready", None, "NoExecute");
        let cases = [
            (json!({"operator": "Exists"}), true, true),
            (json!({"operator": "Exists", "effect": "NoExecute"}), false, true),
            (json!({"key": "dedicated", "operator": "Exists"}), true, false),
            (json!({"key": "dedicated", "value": "gpu"}), true, false),
            (json!({"key": "dedicated", "operator": "Equal", "value": "cpu"}), false, false),
            (json!({"key": "dedicated", "operator": "Equal"}), false, false),
            (json!({"key": "node.kubernetes.io/not-ready", "operator": "Equal", "value": ""}), false, true),
            // A key-less Equal matches any key with that value (validation refuses it on
            // create, but the rule is upstream's).
            (json!({"value": "gpu"}), true, false),
            (json!({"key": "dedicated", "operator": "Bogus"}), false, false),
            (json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}), false, false),
        ];
        for (toleration, tolerates_gpu, tolerates_bare) in cases {
            let tol = t(toleration.clone());
            assert_eq!(tolerates(&tol, &gpu), tolerates_gpu, "{toleration} vs {gpu:?}");
            assert_eq!(tolerates(&tol, &bare), tolerates_bare, "{toleration} vs {bare:?}");
        }
    }
}
