//! The patch formats kubectl and other clients send: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902, through `json-patch`) and Kubernetes' strategic merge patch, which merges
//! lists of objects by a key (`containers` by `name`, `ports` by `containerPort`, ...)
//! and understands the `$patch`, `$retainKeys`, `$setElementOrder` and
//! `$deleteFromPrimitiveList` directives.

use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult};

/// The patch types served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Reads the patch type from a Content-Type header.
    pub fn from_content_type(content_type: &str) -> ApiResult<PatchType> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            other => Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            ))),
        }
    }
}

/// Applies a patch document to `target`.
pub fn apply(kind: PatchType, target: &mut Value, body: &[u8]) -> ApiResult<()> {
    match kind {
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is not valid: {e}")))?;
            json_patch::patch(target, &patch).map_err(|e| {
                // A failed `test` op or a missing path: upstream answers 422 for the latter,
                // and clients treat both as "the patch does not apply".
                ApiError { code: 422, ..ApiError::bad_request(format!("the JSON patch could not be applied: {e}")) }
            })
        }
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the merge patch is not valid JSON: {e}")))?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(target, &patch);
            Ok(())
        }
        PatchType::Strategic => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the strategic merge patch is not valid JSON: {e}")))?;
            strategic_merge(target, &patch).map_err(ApiError::bad_request)
        }
        // Server-side apply is its own handler (it needs the field managers); this is the
        // scale subresource, where it is not served.
        PatchType::Apply => Err(ApiError::unsupported_media_type(
            "server-side apply (application/apply-patch+yaml) is served for objects and their status, not for this subresource; use a merge patch",
        )),
    }
}

pub(crate) use component_base::strategic::{merge_key, merges_primitives};

/// Applies a strategic merge patch.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(patch) = patch else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    merge_map(target, patch, "")
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>, path: &str) -> Result<(), String> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        replaced.remove("$patch");
        *target = strip_directives(Value::Object(replaced));
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else { return Ok(()) };
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().ok_or_else(|| format!("{key} must be a list"))?;
            if let Some(list) = t.get_mut(field).and_then(Value::as_array_mut) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with("$setElementOrder/") {
            continue;
        }
        if key.starts_with('$') {
            return Err(format!("unknown patch directive {key:?} at {}", join(path, key)));
        }
        let child_path = join(path, key);
        match value {
            Value::Null => {
                t.remove(key);
            }
            Value::Object(p) if p.get("$patch").and_then(Value::as_str) == Some("delete") => {
                t.remove(key);
            }
            Value::Object(p) => {
                let slot = t.entry(key.clone()).or_insert(Value::Null);
                merge_map(slot, p, &child_path)?;
            }
            Value::Array(items) => {
                let slot = t.entry(key.clone()).or_insert(Value::Null);
                merge_list(slot, items, path, key)?;
            }
            other => {
                t.insert(key.clone(), other.clone());
            }
        }
    }
    // Orders are applied after the merge so that they can place new elements too.
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            let order = value.as_array().ok_or_else(|| format!("{key} must be a list"))?;
            if let Some(list) = t.get_mut(field).and_then(Value::as_array_mut) {
                set_order(list, order, merge_key(path, field));
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys") {
        let keep = keep.as_array().ok_or("$retainKeys must be a list")?;
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn identity<'a>(item: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

fn set_order(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let mut ordered = Vec::with_capacity(list.len());
    for wanted in order {
        let wanted = identity(wanted, key);
        if let Some(pos) = list.iter().position(|item| identity(item, key) == wanted) {
            ordered.push(list.remove(pos));
        }
    }
    ordered.append(list);
    *list = ordered;
}

fn merge_list(target: &mut Value, patch: &[Value], path: &str, field: &str) -> Result<(), String> {
    let key = merge_key(path, field);
    let replace = patch.iter().any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"));
    if replace {
        let kept = patch.iter().filter(|p| p.get("$patch").is_none()).cloned().map(strip_directives).collect();
        *target = Value::Array(kept);
        return Ok(());
    }
    let Some(key) = key else {
        if merges_primitives(field) {
            let list = target.as_array().cloned().unwrap_or_default();
            let mut merged = list;
            for p in patch {
                if !merged.contains(p) {
                    merged.push(p.clone());
                }
            }
            *target = Value::Array(merged);
        } else {
            *target = Value::Array(patch.iter().cloned().map(strip_directives).collect());
        }
        return Ok(());
    };
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let Some(list) = target.as_array_mut() else { return Ok(()) };
    let child_path = join(path, field);
    for item in patch {
        let Some(p) = item.as_object() else {
            return Err(format!("{child_path}: list items must be objects keyed by {key:?}"));
        };
        let id = p.get(key).ok_or_else(|| format!("{child_path}: an item has no merge key {key:?}"))?;
        let pos = list.iter().position(|t| t.get(key) == Some(id));
        if p.get("$patch").and_then(Value::as_str) == Some("delete") {
            list.retain(|t| t.get(key) != Some(id));
            continue;
        }
        match pos {
            Some(i) => merge_map(&mut list[i], p, &child_path)?,
            None => list.push(strip_directives(item.clone())),
        }
    }
    Ok(())
}

/// Removes `$` directives and null fields from a value that is inserted whole.
fn strip_directives(value: Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k, strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_directives).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut target: Value, patch: Value) -> Value {
        strategic_merge(&mut target, &patch).expect("patch applies");
        target
    }

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let target = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "b", "image": "b:1"}]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "ports": [{"containerPort": 443}]},
            {"name": "c", "image": "c:1"}]}});
        let out = smp(target, patch);
        let cs = out["spec"]["containers"].as_array().expect("list");
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0]["image"], "a:2");
        assert_eq!(cs[0]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]));
        assert_eq!(cs[1]["image"], "b:1");
        assert_eq!(cs[2]["name"], "c");
    }

    #[test]
    fn patch_delete_and_null_remove() {
        let target = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch =
            json!({"metadata": {"labels": {"a": null}}, "spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        assert_eq!(
            smp(target, patch),
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"containers": [{"name": "b"}]}})
        );
    }

    #[test]
    fn retain_keys_on_strategy() {
        let target = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(smp(target, patch), json!({"spec": {"strategy": {"type": "Recreate"}}}));
    }

    #[test]
    fn set_element_order_orders_the_merged_list() {
        let target = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            "containers": [{"name": "c", "image": "c"}]}});
        let out = smp(target, patch);
        let names: Vec<_> =
            out["spec"]["containers"].as_array().expect("list").iter().map(|c| c["name"].clone()).collect();
        assert_eq!(names, vec![json!("c"), json!("b"), json!("a")]);
    }

    #[test]
    fn replace_directive_and_unkeyed_lists() {
        let target = json!({"spec": {"containers": [{"name": "a"}], "tolerations": [{"key": "x"}], "args": ["1"]}});
        let patch = json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z"}], "tolerations": [{"key": "y"}], "args": ["2"]}});
        assert_eq!(
            smp(target, patch),
            json!({"spec": {"containers": [{"name": "z"}], "tolerations": [{"key": "y"}], "args": ["2"]}})
        );
    }

    #[test]
    fn delete_from_primitive_list_and_finalizers_merge() {
        let target = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(target.clone(), json!({"metadata": {"finalizers": ["c"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = smp(target, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn service_ports_merge_by_port_and_bad_patches_fail() {
        let target = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        let out = smp(target.clone(), json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}));
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "name": "http", "targetPort": 8080}]));
        let mut t = target;
        assert!(strategic_merge(&mut t, &json!({"spec": {"ports": [1]}})).is_err());
        assert!(strategic_merge(&mut t, &json!({"$bogus": 1})).is_err());
        assert!(strategic_merge(&mut t, &json!([1])).is_err());
    }

    #[test]
    fn json_patch_and_merge_patch() {
        let mut v = json!({"spec": {"replicas": 1, "x": 1}});
        apply(PatchType::Merge, &mut v, br#"{"spec":{"replicas":3,"x":null}}"#).expect("merge");
        assert_eq!(v, json!({"spec": {"replicas": 3}}));
        apply(
            PatchType::Json,
            &mut v,
            br#"[{"op":"test","path":"/spec/replicas","value":3},{"op":"replace","path":"/spec/replicas","value":5}]"#,
        )
        .expect("json");
        assert_eq!(v["spec"]["replicas"], 5);
        let failed = apply(PatchType::Json, &mut v, br#"[{"op":"test","path":"/spec/replicas","value":1}]"#);
        assert_eq!(failed.unwrap_err().code, 422);
        assert_eq!(apply(PatchType::Json, &mut v, b"{").unwrap_err().code, 400);
    }
}
