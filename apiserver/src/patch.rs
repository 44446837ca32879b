//! The patch formats kubectl and other clients send: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902, through `json-patch`) and Kubernetes' strategic merge patch, which merges
//! lists of objects by a key (`containers` by `name`, `ports` by `containerPort`, ...)
//! and understands the `$patch`, `$retainKeys`, `$setElementOrder` and
//! `$deleteFromPrimitiveList` directives.

use std::collections::{HashMap, HashSet};

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

/// The most operations a JSON patch may have (upstream's `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// How much a JSON patch's `copy` operations may add to a document, in total (a copy of a
/// copy doubles the document: 40 such operations of a few bytes each would need terabytes).
/// The same as the largest request body: no patch can build more than a client could send.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = crate::decode::MAX_BODY;

/// Applies a patch document to `target`.
pub fn apply(kind: PatchType, target: &mut Value, body: &[u8]) -> ApiResult<()> {
    match kind {
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is not valid: {e}")))?;
            json_patch_bounded(target, &patch.0, MAX_JSON_PATCH_COPY_BYTES)
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

/// Applies JSON patch operations all or nothing, refusing more than
/// [`MAX_JSON_PATCH_OPERATIONS`] (413, upstream's words) and `copy` operations that add more
/// than `copy_limit` bytes in all. Merge patches, strategic merge patches and apply cannot
/// grow a document beyond the sum of it and the body, so only `copy` needs counting.
pub fn json_patch_bounded(target: &mut Value, ops: &[json_patch::PatchOperation], copy_limit: usize) -> ApiResult<()> {
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::too_large(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.len()
        )));
    }
    let failed = |e: json_patch::PatchError| {
        // A failed `test` op or a missing path: upstream answers 422 for both, and clients
        // treat them as "the patch does not apply".
        ApiError { code: 422, ..ApiError::bad_request(format!("the JSON patch could not be applied: {e}")) }
    };
    // The operations go to a copy that replaces the target only when all of them applied.
    // (The crate's own all-or-nothing `patch` undoes what applied before a failure, and
    // its undo panics on some inputs: an `add` under a path that a failed `move` removed.)
    let mut work = target.clone();
    if !ops.iter().any(|op| matches!(op, json_patch::PatchOperation::Copy(_))) {
        json_patch::patch_unsafe(&mut work, ops).map_err(failed)?;
        *target = work;
        return Ok(());
    }
    let mut copied = 0usize;
    for (i, op) in ops.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(copy) = op
            && let Some(source) = work.pointer(copy.from.as_str())
        {
            copied = copied.saturating_add(encoded_len(source, copy_limit.saturating_sub(copied).saturating_add(1)));
            if copied > copy_limit {
                return Err(ApiError::too_large(format!(
                    "the JSON patch's copy operations add more than {copy_limit} bytes to the object (operation {i} copies {:?}); the limit is the largest request body",
                    copy.from.as_str()
                )));
            }
        }
        json_patch::patch_unsafe(&mut work, std::slice::from_ref(op)).map_err(failed)?;
    }
    *target = work;
    Ok(())
}

/// About how many bytes `value` takes as JSON, counting no further than `cap` (so that a
/// huge value costs no more than the limit it is checked against).
pub fn encoded_len(value: &Value, cap: usize) -> usize {
    fn walk(v: &Value, n: &mut usize, cap: usize) {
        if *n > cap {
            return;
        }
        match v {
            Value::Null => *n += 4,
            Value::Bool(_) => *n += 5,
            Value::Number(_) => *n += 8,
            Value::String(s) => *n += s.len() + 2,
            Value::Array(items) => {
                *n += 2;
                for item in items {
                    *n += 1;
                    walk(item, n, cap);
                }
            }
            Value::Object(map) => {
                *n += 2;
                for (k, item) in map {
                    *n += k.len() + 4;
                    walk(item, n, cap);
                }
            }
        }
    }
    let mut n = 0;
    walk(value, &mut n, cap);
    n
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
            let remove: HashSet<String> = remove.iter().map(id_of).collect();
            if let Some(list) = t.get_mut(field).and_then(Value::as_array_mut) {
                list.retain(|v| !remove.contains(&id_of(v)));
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
        let keep: HashSet<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(k.as_str()));
    }
    Ok(())
}

fn identity<'a>(item: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

/// A hashable form of a merge key's value (`serde_json::Value` is not `Hash`).
fn id_of(v: &Value) -> String {
    v.to_string()
}

/// Puts the items `order` names first, in that order, then the rest as they were: linear
/// in the list and the order (a patch may carry tens of thousands of items).
fn set_order(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let mut by_id: HashMap<String, Vec<usize>> = HashMap::with_capacity(list.len());
    for (i, item) in list.iter().enumerate().rev() {
        if let Some(id) = identity(item, key) {
            by_id.entry(id_of(id)).or_default().push(i);
        }
    }
    let mut slots: Vec<Option<Value>> = std::mem::take(list).into_iter().map(Some).collect();
    let mut ordered = Vec::with_capacity(slots.len());
    for wanted in order {
        let Some(wanted) = identity(wanted, key) else { continue };
        if let Some(i) = by_id.get_mut(&id_of(wanted)).and_then(Vec::pop)
            && let Some(item) = slots[i].take()
        {
            ordered.push(item);
        }
    }
    ordered.extend(slots.into_iter().flatten());
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
            let mut merged = target.as_array().cloned().unwrap_or_default();
            let mut seen: HashSet<String> = merged.iter().map(id_of).collect();
            for p in patch {
                if seen.insert(id_of(p)) {
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
    // Each item's position by its merge key: one pass, then O(1) per patch item.
    let mut index: HashMap<String, Vec<usize>> = HashMap::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        if let Some(id) = t.get(key) {
            index.entry(id_of(id)).or_default().push(i);
        }
    }
    let mut deleted = vec![false; list.len()];
    for item in patch {
        let Some(p) = item.as_object() else {
            return Err(format!("{child_path}: list items must be objects keyed by {key:?}"));
        };
        let id = id_of(p.get(key).ok_or_else(|| format!("{child_path}: an item has no merge key {key:?}"))?);
        if p.get("$patch").and_then(Value::as_str) == Some("delete") {
            for i in index.remove(&id).unwrap_or_default() {
                deleted[i] = true;
            }
            continue;
        }
        match index.get(&id).and_then(|positions| positions.first()) {
            Some(&i) => merge_map(&mut list[i], p, &child_path)?,
            None => {
                index.insert(id, vec![list.len()]);
                list.push(strip_directives(item.clone()));
                deleted.push(false);
            }
        }
    }
    if deleted.iter().any(|d| *d) {
        let mut i = 0;
        list.retain(|_| {
            i += 1;
            !deleted[i - 1]
        });
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
    fn json_patch_copies_are_bounded_and_atomic() {
        let ops = |n: usize| -> Vec<json_patch::PatchOperation> {
            let ops: Vec<Value> =
                (0..n).map(|i| json!({"op": "copy", "from": "/d", "path": format!("/d/k{i}")})).collect();
            serde_json::from_value(json!(ops)).expect("ops")
        };
        let mut v = json!({"d": {"a": "x".repeat(100)}});
        // Each copy doubles /d: 10 copies are about 100 KB, 30 would be 100 GB.
        json_patch_bounded(&mut v, &ops(10), 1 << 20).expect("small enough");
        assert!(encoded_len(&v, usize::MAX) > 100 << 10);
        let before = v.clone();
        let e = json_patch_bounded(&mut v, &ops(30), 1 << 20).expect_err("too much");
        assert_eq!(e.code, 413);
        assert_eq!(v, before, "a refused patch changes nothing");
        let e = json_patch_bounded(&mut v, &vec![ops(1)[0].clone(); MAX_JSON_PATCH_OPERATIONS + 1], usize::MAX)
            .expect_err("too many");
        assert_eq!(e.message, "The allowed maximum operations in a JSON patch is 10000, got 10001");
    }

    /// Found by the fuzzer: the crate's undo of an `add` under a path a failed `move`
    /// removed panicked. A failed patch is a 422 and leaves the object as it was.
    #[test]
    fn a_patch_that_fails_after_a_move_changes_nothing() {
        let ops: Vec<json_patch::PatchOperation> = serde_json::from_value(json!([
            {"op": "add", "path": "/metadata/labels/x", "value": "1"},
            {"op": "move", "from": "/metadata/labels", "path": "/spec/containers/5/image"},
        ]))
        .expect("ops");
        let mut v = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}});
        let before = v.clone();
        let e = json_patch_bounded(&mut v, &ops, usize::MAX).expect_err("the move's target does not exist");
        assert_eq!(e.code, 422);
        assert_eq!(v, before);
    }

    #[test]
    fn encoded_len_is_close_and_capped() {
        let v = json!({"a": [1, "xyz", null, true], "bb": {"c": "d"}});
        let real = serde_json::to_string(&v).expect("json").len();
        let est = encoded_len(&v, usize::MAX);
        assert!(est >= real && est <= real * 2, "{est} vs {real}");
        assert!(encoded_len(&json!(vec!["x".repeat(1000); 1000]), 5000) < 10_000, "stops near the cap");
    }

    #[test]
    fn long_lists_merge_by_key_with_deletes_and_order() {
        let n = 20_000;
        let list: Vec<Value> = (0..n).map(|i| json!({"name": format!("c{i}"), "image": "one"})).collect();
        let target = json!({"spec": {"containers": list}});
        let mut patch_items: Vec<Value> =
            (0..n).rev().map(|i| json!({"name": format!("c{i}"), "image": "two"})).collect();
        patch_items.push(json!({"name": "c5", "$patch": "delete"}));
        patch_items.push(json!({"name": "new", "image": "three"}));
        let order: Vec<Value> = (0..n).rev().map(|i| json!({"name": format!("c{i}")})).collect();
        let out = smp(target, json!({"spec": {"containers": patch_items, "$setElementOrder/containers": order}}));
        let cs = out["spec"]["containers"].as_array().expect("list");
        assert_eq!(cs.len(), n, "one deleted, one added");
        assert_eq!(cs[0]["name"], format!("c{}", n - 1));
        assert!(!cs.iter().any(|c| c["name"] == "c5"));
        assert_eq!(cs[n - 1], json!({"name": "new", "image": "three"}), "not in the order: last");
        assert!(cs[..n - 1].iter().all(|c| c["image"] == "two"));
    }

    #[test]
    fn a_deleted_key_added_back_in_the_same_patch_stays() {
        let target = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "a", "image": "2"}]}});
        assert_eq!(smp(target, patch)["spec"]["containers"], json!([{"name": "b"}, {"name": "a", "image": "2"}]));
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
