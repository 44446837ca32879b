//! The strategic merge patch client-side `kubectl apply` sends: a three-way diff of the
//! last applied configuration (`original`), the new one (`modified`) and the live object
//! (`current`). Fields the user set change, fields the user dropped from the file are
//! deleted, and fields set by others (defaults, controllers) stay. Lists with a merge key
//! are diffed item by item, with `$patch: delete` for dropped items and
//! `$setElementOrder` for the order.

use component_base::strategic::merge_key;
use serde_json::{Map, Value, json};

/// The annotation holding the last applied configuration.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Computes the patch; an empty object means nothing changes.
pub fn three_way(original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    let empty = Map::new();
    let (Some(m), Some(c)) = (modified.as_object(), current.as_object()) else { return modified.clone() };
    let o = original.and_then(Value::as_object);
    Value::Object(diff_map(o, m, c, "", &empty))
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

fn diff_map(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    current: &Map<String, Value>,
    path: &str,
    empty: &Map<String, Value>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (k, m) in modified {
        let c = current.get(k);
        let o = original.and_then(|o| o.get(k));
        match (m, c) {
            (Value::Object(mm), Some(Value::Object(cm))) => {
                let sub = diff_map(o.and_then(Value::as_object), mm, cm, &join(path, k), empty);
                if !sub.is_empty() {
                    patch.insert(k.clone(), Value::Object(sub));
                }
            }
            (Value::Array(ml), Some(Value::Array(cl))) if merge_key(path, k).is_some() => {
                let key = merge_key(path, k).unwrap_or_default();
                let ol = o.and_then(Value::as_array);
                let items = diff_list(ol, ml, cl, key, &join(path, k), empty);
                if !items.is_empty() {
                    patch.insert(k.clone(), Value::Array(items));
                    let order: Vec<Value> = ml.iter().filter_map(|i| i.get(key)).map(|id| json!({ key: id })).collect();
                    patch.insert(format!("$setElementOrder/{k}"), Value::Array(order));
                }
            }
            _ if Some(m) != c => {
                patch.insert(k.clone(), m.clone());
            }
            _ => {}
        }
    }
    if let Some(original) = original {
        for k in original.keys() {
            if !modified.contains_key(k) && current.contains_key(k) {
                patch.insert(k.clone(), Value::Null);
            }
        }
    }
    patch
}

fn find<'a>(list: &'a [Value], key: &str, id: &Value) -> Option<&'a Value> {
    list.iter().find(|i| i.get(key) == Some(id))
}

fn diff_list(
    original: Option<&Vec<Value>>,
    modified: &[Value],
    current: &[Value],
    key: &str,
    path: &str,
    empty: &Map<String, Value>,
) -> Vec<Value> {
    let mut items = Vec::new();
    for m in modified {
        let Some(id) = m.get(key) else {
            items.push(m.clone());
            continue;
        };
        match (m.as_object(), find(current, key, id).and_then(Value::as_object)) {
            (Some(mm), Some(cm)) => {
                let o = original.and_then(|o| find(o, key, id)).and_then(Value::as_object);
                let mut sub = diff_map(o, mm, cm, path, empty);
                if !sub.is_empty() {
                    sub.insert(key.to_owned(), id.clone());
                    items.push(Value::Object(sub));
                }
            }
            _ => items.push(m.clone()),
        }
    }
    for o in original.into_iter().flatten() {
        let Some(id) = o.get(key) else { continue };
        if find(modified, key, id).is_none() && find(current, key, id).is_some() {
            items.push(json!({ key: id, "$patch": "delete" }));
        }
    }
    items
}

/// The configuration with its own last-applied annotation, as apply stores it.
pub fn annotated(config: &Value) -> Value {
    let mut out = config.clone();
    if !out.get("metadata").is_some_and(Value::is_object) {
        out["metadata"] = json!({});
    }
    if !out["metadata"].get("annotations").is_some_and(Value::is_object) {
        out["metadata"]["annotations"] = json!({});
    }
    // Like stock kubectl, the stored configuration has the (now empty) annotations map.
    if let Some(annotations) = out["metadata"]["annotations"].as_object_mut() {
        annotations.remove(LAST_APPLIED);
    }
    let text = out.to_string();
    out["metadata"]["annotations"][LAST_APPLIED] = Value::String(format!("{text}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_way_changes_what_the_user_changed_and_keeps_the_rest() {
        let original = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "web:1", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "s:1"}
        ]}}}, "metadata": {"labels": {"a": "1", "b": "2"}}});
        let current = json!({"spec": {"replicas": 5, "revisionHistoryLimit": 10, "template": {"spec": {"containers": [
            {"name": "web", "image": "web:1", "ports": [{"containerPort": 80, "protocol": "TCP"}], "terminationMessagePath": "/dev/termination-log"},
            {"name": "side", "image": "s:1"}
        ]}}}, "metadata": {"labels": {"a": "1", "b": "2"}}});
        let modified = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "web:2", "ports": [{"containerPort": 8080}]}
        ]}}}, "metadata": {"labels": {"a": "1"}}});
        let patch = three_way(Some(&original), &modified, &current);
        assert_eq!(
            patch,
            json!({
                "metadata": {"labels": {"b": null}},
                "spec": {"replicas": 2, "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [
                        {"name": "web", "image": "web:2",
                         "$setElementOrder/ports": [{"containerPort": 8080}],
                         "ports": [{"containerPort": 8080}, {"containerPort": 80, "$patch": "delete"}]},
                        {"name": "side", "$patch": "delete"}
                    ]
                }}}
            })
        );
        // Nothing changed: an empty patch.
        assert_eq!(three_way(Some(&modified), &modified, &modified), json!({}));
    }

    #[test]
    fn the_annotation_holds_the_configuration_without_itself() {
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        let a = annotated(&config);
        let text = a["metadata"]["annotations"][LAST_APPLIED].as_str().expect("annotation");
        let back: Value = serde_json::from_str(text).expect("json");
        assert_eq!(back["metadata"], json!({"annotations": {}, "name": "a"}));
        assert_eq!(annotated(&a), a, "re-annotating is stable");
    }
}
