//! Field ownership: `metadata.managedFields` and server-side apply.
//!
//! A field set is a set of paths in upstream's `fieldsV1` spelling: `f:spec` names a
//! field, `k:{"name":"web"}` an item of a list merged by key, `v:"x"` an item of a set of
//! primitives. Lists without a merge key are atomic: they are owned whole, like a scalar.
//! Every writer that names itself (`fieldManager`) owns the fields it last set; server-side
//! apply compares the fields a manager applies with what others own to find conflicts and
//! removes the fields it applied before and no longer does.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::patch::{merge_key, merges_primitives};
use crate::status::{ApiError, Cause};

/// One field path, element by element, in `fieldsV1` form.
pub type Path = Vec<String>;

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

/// Metadata fields the server sets; nobody owns them.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// What is found at a path of an object: a value (a scalar, an atomic list, an empty map)
/// or an item of a keyed list or set, whose own fields are paths of their own.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Node<'a> {
    Leaf(&'a Value),
    Item,
}

/// Every owned path of an object with what is there; `status` left out when `skip_status`.
fn flatten(obj: &Value, skip_status: bool) -> BTreeMap<Path, Node<'_>> {
    let mut out = BTreeMap::new();
    let Some(map) = obj.as_object() else { return out };
    let mut prefix = Vec::new();
    for (field, value) in map {
        match field.as_str() {
            "apiVersion" | "kind" => continue,
            "status" if skip_status => continue,
            "metadata" => {
                let Some(meta) = value.as_object() else { continue };
                prefix.push("f:metadata".to_owned());
                for (k, v) in meta.iter().filter(|(k, _)| !SERVER_METADATA.contains(&k.as_str())) {
                    walk(v, "metadata", k, &mut prefix, &mut out);
                }
                prefix.pop();
            }
            _ => walk(value, "", field, &mut prefix, &mut out),
        }
    }
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

/// The element naming an item of a list merged by `key`.
fn key_element(key: &str, item: &Value) -> Option<String> {
    let id = item.get(key)?;
    Some(format!("k:{}", json!({ key: id })))
}

fn walk<'a>(value: &'a Value, parent: &str, field: &str, prefix: &mut Path, out: &mut BTreeMap<Path, Node<'a>>) {
    if value.is_null() {
        return;
    }
    prefix.push(format!("f:{field}"));
    let path = join(parent, field);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                walk(v, &path, k, prefix, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let keyed = merge_key(parent, field).filter(|key| items.iter().all(|i| i.get(*key).is_some()));
            if let Some(key) = keyed {
                for item in items {
                    let Some(element) = key_element(key, item) else { continue };
                    prefix.push(element);
                    out.insert(prefix.clone(), Node::Item);
                    if let Some(fields) = item.as_object() {
                        for (k, v) in fields {
                            walk(v, &path, k, prefix, out);
                        }
                    }
                    prefix.pop();
                }
            } else if merges_primitives(field) {
                for item in items {
                    prefix.push(format!("v:{item}"));
                    out.insert(prefix.clone(), Node::Item);
                    prefix.pop();
                }
            } else {
                out.insert(prefix.clone(), Node::Leaf(value));
            }
        }
        _ => {
            out.insert(prefix.clone(), Node::Leaf(value));
        }
    }
    prefix.pop();
}

impl FieldSet {
    /// The fields an object sets (what an applied configuration claims).
    pub fn of(obj: &Value, skip_status: bool) -> FieldSet {
        FieldSet(flatten(obj, skip_status).into_keys().collect())
    }

    /// Reads a `fieldsV1` tree.
    pub fn from_fields_v1(tree: &Value) -> FieldSet {
        fn read(node: &Map<String, Value>, prefix: &mut Path, out: &mut BTreeSet<Path>) {
            for (element, child) in node {
                if element == "." {
                    out.insert(prefix.clone());
                    continue;
                }
                prefix.push(element.clone());
                match child.as_object() {
                    Some(c) if !c.is_empty() => read(c, prefix, out),
                    _ => {
                        out.insert(prefix.clone());
                    }
                }
                prefix.pop();
            }
        }
        let mut out = BTreeSet::new();
        if let Some(root) = tree.as_object() {
            read(root, &mut Vec::new(), &mut out);
        }
        FieldSet(out)
    }

    /// The `fieldsV1` tree: a member with members below it is marked with `"."`.
    pub fn to_fields_v1(&self) -> Value {
        let parents: BTreeSet<&[String]> = self.0.iter().flat_map(|p| (0..p.len()).map(move |i| &p[..i])).collect();
        let mut root = Map::new();
        let dot = ".".to_owned();
        for path in &self.0 {
            let marked = parents.contains(path.as_slice()).then_some(&dot);
            let mut node = &mut root;
            for element in path.iter().chain(marked) {
                let child = node.entry(element.clone()).or_insert_with(|| json!({}));
                if !child.is_object() {
                    *child = json!({});
                }
                let Value::Object(next) = child else { unreachable!("made an object above") };
                node = next;
            }
        }
        Value::Object(root)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `path` is in the set.
    pub fn contains(&self, path: &Path) -> bool {
        self.0.contains(path)
    }

    fn remove_all<'p>(&mut self, paths: impl IntoIterator<Item = &'p Path>) {
        for p in paths {
            self.0.remove(p);
        }
    }
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="web"].image`.
pub fn display_path(path: &Path) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        }
    }
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The manager's name (`kubectl`, `kube-controller-manager`).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version the fields were written in.
    pub api_version: String,
    /// `status` for writes through the status subresource.
    pub subresource: Option<String>,
    /// When the manager last changed its set.
    pub time: Option<String>,
    /// The fields it owns.
    pub fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.as_deref() == subresource
    }

    fn to_value(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(t) = &self.time {
            v["time"] = json!(t);
        }
        if let Some(s) = &self.subresource {
            v["subresource"] = json!(s);
        }
        v
    }

    fn from_value(v: &Value) -> Option<Entry> {
        let text = |f: &str| v.get(f).and_then(Value::as_str).map(str::to_owned);
        Some(Entry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation")?,
            api_version: text("apiVersion").unwrap_or_default(),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            time: text("time"),
            fields: v.get("fieldsV1").map(FieldSet::from_fields_v1).unwrap_or_default(),
        })
    }
}

/// The entries of an object's `managedFields`.
pub fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Entry::from_value).collect())
        .unwrap_or_default()
}

fn set_entries(obj: &mut Value, entries: &[Entry]) {
    let meta = crate::meta::meta_mut(obj);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(entries.iter().map(Entry::to_value).collect()));
    }
}

/// How an update's `managedFields` relate to the stored ones.
#[derive(Debug, PartialEq, Eq)]
pub enum Requested {
    /// Left alone (absent, empty, or unchanged): the server keeps tracking.
    Keep,
    /// `[{}]`: the client resets them.
    Clear,
    /// The client wrote its own; they are stored as given.
    Given,
}

/// What an update did to `managedFields`, comparing the new object with the old one.
pub fn requested(old: &Value, new: &Value) -> Requested {
    let given = new.pointer("/metadata/managedFields");
    match given.and_then(Value::as_array) {
        None => Requested::Keep,
        Some(list) if list.is_empty() => Requested::Keep,
        Some(list) if list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty) => Requested::Clear,
        Some(_) if given == old.pointer("/metadata/managedFields") => Requested::Keep,
        Some(_) => Requested::Given,
    }
}

/// Records a non-apply write by `manager`: it now owns every field it changed or added, no
/// other manager keeps those, and fields that are gone leave every set. `old` is `None`
/// for a create. Sets `managedFields` on `new` from those of `old`.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    skip_status: bool,
) {
    let mut list = old.map(entries).unwrap_or_default();
    let before = old.map(|o| flatten(o, skip_status)).unwrap_or_default();
    let after = flatten(new, skip_status);
    let changed: Vec<&Path> = after.iter().filter(|(p, n)| before.get(*p) != Some(n)).map(|(p, _)| p).collect();
    let removed: Vec<&Path> = before.keys().filter(|p| !after.contains_key(*p)).collect();
    let mut found = false;
    for entry in &mut list {
        entry.fields.remove_all(removed.iter().copied());
        if entry.is(manager, "Update", subresource) {
            found = true;
            if !changed.is_empty() {
                entry.fields.0.extend(changed.iter().map(|p| (*p).clone()));
                entry.time = Some(crate::meta::now_rfc3339());
                entry.api_version = api_version.to_owned();
            }
        } else {
            entry.fields.remove_all(changed.iter().copied());
        }
    }
    if !found && !changed.is_empty() {
        list.push(Entry {
            manager: manager.to_owned(),
            operation: "Update".into(),
            api_version: api_version.to_owned(),
            subresource: subresource.map(str::to_owned),
            time: Some(crate::meta::now_rfc3339()),
            fields: FieldSet(changed.into_iter().cloned().collect()),
        });
    }
    list.retain(|e| !e.fields.is_empty());
    set_entries(new, &list);
}

/// A field another manager owns with a different value than the one applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// How it came to own the field: `Apply` or `Update`.
    pub operation: String,
    /// The API version it wrote in.
    pub api_version: String,
    /// The subresource it wrote through, if any.
    pub subresource: Option<String>,
    /// When it last changed its fields (`Update` entries carry one).
    pub time: Option<String>,
    /// The field.
    pub path: Path,
}

impl Conflict {
    /// The manager as upstream's apply conflicts name it (`printManager` in the
    /// apiserver's `fieldmanager/internal/conflict.go`): `"alice"` for an Apply manager,
    /// `"kubectl-edit" using apps/v1 at 2026-11-29T10:00:00Z` for an Update manager, with
    /// ` with subresource "status"` after the name for a subresource's.
    pub fn manager_text(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if let Some(sub) = self.subresource.as_deref().filter(|s| !s.is_empty()) {
            text.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            text.push_str(&format!(" using {}", self.api_version));
            if let Some(time) = &self.time {
                text.push_str(&format!(" at {time}"));
            }
        }
        text
    }
}

/// The 409 a refused apply answers, worded as upstream's (`getConflictMessage` in the
/// apiserver's `fieldmanager/internal/conflict.go`): one conflict on one line; several
/// grouped by manager, managers in sorted order, one `- .path` line per field.
pub fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    let detail = if let [only] = conflicts {
        format!("conflict with {}: {}", only.manager_text(), display_path(&only.path))
    } else {
        // Upstream sorts by the encoded manager entry; by name is the same order for the
        // names people use.
        let mut by_manager: BTreeMap<(&str, String), Vec<String>> = BTreeMap::new();
        for c in conflicts {
            by_manager.entry((c.manager.as_str(), c.manager_text())).or_default().push(display_path(&c.path));
        }
        let mut lines = Vec::new();
        for ((_, manager), paths) in &by_manager {
            lines.push(format!("conflicts with {manager}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        lines.join("\n")
    };
    let n = conflicts.len();
    let mut err = ApiError::new(
        409,
        "Conflict",
        format!("Apply failed with {n} conflict{}: {detail}", if n == 1 { "" } else { "s" }),
    );
    err.causes = conflicts
        .iter()
        .map(|c| Cause {
            reason: "FieldManagerConflict",
            field: display_path(&c.path),
            message: format!("conflict with {}", c.manager_text()),
        })
        .collect();
    err
}

/// Merges an applied configuration into `live`: maps field by field, keyed lists item by
/// item, sets as unions, everything else replaced.
fn merge(live: &mut Value, applied: &Value, path: &str) {
    let (Some(l), Some(a)) = (live.as_object_mut(), applied.as_object()) else {
        *live = applied.clone();
        return;
    };
    for (field, value) in a {
        if value.is_null() {
            continue;
        }
        let Some(slot) = l.get_mut(field) else {
            l.insert(field.clone(), without_nulls(value));
            continue;
        };
        let child = join(path, field);
        match (slot, value) {
            (Value::Array(existing), Value::Array(items)) => {
                if let Some(key) = merge_key(path, field) {
                    for item in items {
                        match existing.iter_mut().find(|e| e.get(key).is_some() && e.get(key) == item.get(key)) {
                            Some(e) => merge(e, item, &child),
                            None => existing.push(without_nulls(item)),
                        }
                    }
                } else if merges_primitives(field) {
                    for item in items {
                        if !existing.contains(item) {
                            existing.push(item.clone());
                        }
                    }
                } else {
                    *existing = items.iter().map(without_nulls).collect();
                }
            }
            (slot @ Value::Object(_), Value::Object(_)) => merge(slot, value, &child),
            (slot, _) => *slot = without_nulls(value),
        }
    }
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn child_mut<'a>(node: &'a mut Value, element: &str) -> Option<&'a mut Value> {
    if let Some(field) = element.strip_prefix("f:") {
        node.get_mut(field)
    } else if let Some(key) = element.strip_prefix("k:") {
        let wanted: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
        node.as_array_mut()?.iter_mut().find(|i| matches_key(i, &wanted))
    } else {
        None
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(obj, |node, element| child_mut(node, element))
}

/// Removes the field at `path` from `obj`, if it is there.
fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    // A key field of a list item goes only with the item.
    let key_of_item = parents.last().and_then(|p| p.strip_prefix("k:")).is_some_and(|key| {
        let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
        last.strip_prefix("f:").is_some_and(|f| fields.contains_key(f))
    });
    if key_of_item {
        return;
    }
    let Some(node) = value_at_mut(obj, parents) else { return };
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(m) = node.as_object_mut() {
            m.remove(field);
        }
    } else if let Some(key) = last.strip_prefix("k:") {
        let wanted: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
        if let Some(items) = node.as_array_mut() {
            items.retain(|i| !matches_key(i, &wanted));
        }
    } else if let Some(value) = last.strip_prefix("v:") {
        let wanted: Value = serde_json::from_str(value).unwrap_or(Value::Null);
        if let Some(items) = node.as_array_mut() {
            items.retain(|i| *i != wanted);
        }
    }
}

fn is_empty_container(value: &Value) -> bool {
    value.as_object().is_some_and(Map::is_empty) || value.as_array().is_some_and(Vec::is_empty)
}

fn matches_key(item: &Value, wanted: &Map<String, Value>) -> bool {
    !wanted.is_empty() && wanted.iter().all(|(k, v)| item.get(k) == Some(v))
}

/// Server-side apply of `applied` by `manager` onto `live` (an empty object when the object
/// does not exist yet). Returns the merged object with its new `managedFields`, or the
/// conflicts when another manager owns a field this apply would change and `force` is off.
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    skip_status: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut list = entries(live);
    let claimed = FieldSet::of(applied, skip_status);
    let previous = list.iter().find(|e| e.is(manager, "Apply", None)).map(|e| e.fields.clone()).unwrap_or_default();
    let mut merged = live.clone();
    merge(&mut merged, applied, "");
    // Fields this manager applied before and no longer does go, unless someone else owns them.
    let owned_by_others: BTreeSet<&Path> =
        list.iter().filter(|e| !e.is(manager, "Apply", None)).flat_map(|e| e.fields.0.iter()).collect();
    let dropped: Vec<&Path> =
        previous.0.iter().filter(|p| !claimed.contains(p) && !owned_by_others.contains(p)).collect();
    for path in dropped.iter().rev() {
        remove_path(&mut merged, path);
        // A map or list left empty goes too, unless someone owns it as a value.
        for len in (1..path.len()).rev() {
            let parent = &path[..len];
            if claimed.0.iter().chain(owned_by_others.iter().copied()).any(|p| p.as_slice() == parent) {
                break;
            }
            match value_at_mut(&mut merged, parent) {
                Some(v) if is_empty_container(v) => remove_path(&mut merged, parent),
                _ => break,
            }
        }
    }
    // A conflict is a claimed field whose value changes while another manager owns it.
    let before = flatten(live, skip_status);
    let after = flatten(&merged, skip_status);
    let changed: BTreeSet<&Path> = claimed.0.iter().filter(|p| before.get(*p) != after.get(*p)).collect();
    let conflicts: Vec<Conflict> = list
        .iter()
        .filter(|e| e.manager != manager)
        .flat_map(|e| {
            e.fields.0.iter().filter(|p| changed.contains(p)).map(|p| Conflict {
                manager: e.manager.clone(),
                operation: e.operation.clone(),
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
                time: e.time.clone(),
                path: p.clone(),
            })
        })
        .collect();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for entry in list.iter_mut().filter(|e| !e.is(manager, "Apply", None)) {
        entry.fields.remove_all(changed.iter().copied());
        // Fields removed from the object leave every set.
        entry.fields.0.retain(|p| after.contains_key(p));
    }
    let applier = Entry {
        manager: manager.to_owned(),
        operation: "Apply".into(),
        api_version: api_version.to_owned(),
        subresource: None,
        time: Some(crate::meta::now_rfc3339()),
        fields: claimed,
    };
    match list.iter_mut().find(|e| e.is(manager, "Apply", None)) {
        Some(e) => *e = applier,
        None => list.push(applier),
    }
    list.retain(|e| !e.fields.is_empty());
    set_entries(&mut merged, &list);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}
                }
            }
        })
    }

    fn paths(set: &FieldSet) -> Vec<String> {
        set.0.iter().map(display_path).collect()
    }

    #[test]
    fn field_sets_use_upstream_spelling_and_round_trip() {
        let set = FieldSet::of(&deployment("nginx", 3), true);
        let tree = set.to_fields_v1();
        let container = &tree["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:image"], json!({}));
        assert_eq!(container["f:ports"]["k:{\"containerPort\":80}"]["f:containerPort"], json!({}));
        assert!(tree["f:metadata"].get("f:name").is_none(), "the server owns the name");
        assert_eq!(FieldSet::from_fields_v1(&tree), set);
        assert!(paths(&set).contains(&".spec.template.spec.containers[name=\"web\"].image".to_owned()));
    }

    #[test]
    fn apply_creates_then_takes_over_and_removes_what_it_no_longer_applies() {
        let created =
            apply(&json!({}), &deployment("nginx", 3), "alice", "apps/v1", false, true).expect("no conflicts");
        assert_eq!(created["spec"]["replicas"], 3);
        assert_eq!(entries(&created).len(), 1);
        // Alice stops applying the label and the port: both go.
        let mut smaller = deployment("nginx", 3);
        smaller["metadata"]["labels"] = json!({});
        smaller["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("ports");
        let next = apply(&created, &smaller, "alice", "apps/v1", false, true).expect("no conflicts");
        assert!(next["metadata"]["labels"].get("app").is_none());
        assert!(next["spec"]["template"]["spec"]["containers"][0].get("ports").is_none(), "{next:#}");
        assert_eq!(next["spec"]["template"]["spec"]["containers"][0]["image"], "nginx");
    }

    #[test]
    fn another_manager_changing_an_owned_field_conflicts_unless_forced() {
        let live = apply(&json!({}), &deployment("nginx", 3), "alice", "apps/v1", false, true).expect("create");
        // The same value is shared, not a conflict.
        let same = apply(&live, &deployment("nginx", 3), "bob", "apps/v1", false, true).expect("shared");
        assert_eq!(entries(&same).len(), 2);
        let conflicts = apply(&live, &deployment("nginx:2", 3), "bob", "apps/v1", false, true).unwrap_err();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(display_path(&conflicts[0].path), ".spec.template.spec.containers[name=\"web\"].image");
        let err = conflict_error(&conflicts);
        assert_eq!(err.code, 409);
        // An Apply manager is named alone (upstream's printManager, fieldmanager/internal/conflict.go).
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.template.spec.containers[name=\"web\"].image"
        );
        let forced = apply(&live, &deployment("nginx:2", 3), "bob", "apps/v1", true, true).expect("forced");
        assert_eq!(forced["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
        let alice = entries(&forced).into_iter().find(|e| e.manager == "alice").expect("alice keeps the rest");
        assert!(!paths(&alice.fields).iter().any(|p| p.ends_with(".image")));
        assert!(alice.fields.contains(&vec!["f:spec".into(), "f:replicas".into()]));
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager_in_upstreams_layout() {
        let c = |manager: &str, operation: &str, path: &[&str]| Conflict {
            manager: manager.into(),
            operation: operation.into(),
            api_version: "apps/v1".into(),
            subresource: None,
            time: (operation == "Update").then(|| "2026-11-29T10:00:00Z".into()),
            path: path.iter().map(|s| s.to_string()).collect(),
        };
        let err = conflict_error(&[
            c("scaler", "Update", &["f:spec", "f:replicas"]),
            c("bob", "Apply", &["f:metadata", "f:labels", "f:app"]),
            c("bob", "Apply", &["f:spec", "f:paused"]),
        ]);
        // getConflictMessage in the apiserver's fieldmanager/internal/conflict.go.
        assert_eq!(
            err.message,
            "Apply failed with 3 conflicts: conflicts with \"bob\":\n- .metadata.labels.app\n- .spec.paused\nconflicts with \"scaler\" using apps/v1 at 2026-11-29T10:00:00Z:\n- .spec.replicas"
        );
        assert_eq!(err.causes[0].message, "conflict with \"scaler\" using apps/v1 at 2026-11-29T10:00:00Z");
    }

    #[test]
    fn updates_take_the_fields_they_change_from_appliers() {
        let live = apply(&json!({}), &deployment("nginx", 3), "alice", "apps/v1", false, true).expect("create");
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        track_update(Some(&live), &mut scaled, "kubectl-scale", "apps/v1", None, true);
        let list = entries(&scaled);
        let scaler = list.iter().find(|e| e.manager == "kubectl-scale").expect("the scaler owns replicas");
        assert_eq!(paths(&scaler.fields), vec![".spec.replicas"]);
        // Alice applying 3 again is now a conflict over replicas.
        let conflicts = apply(&scaled, &deployment("nginx", 3), "alice", "apps/v1", false, true).unwrap_err();
        assert_eq!(conflicts[0].manager, "kubectl-scale");
        // An Update manager is named with its API version and time (upstream's printManager).
        let time = scaler.time.clone().expect("update entries have a time");
        assert_eq!(
            conflict_error(&conflicts).message,
            format!(
                "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1 at {time}: .spec.replicas"
            )
        );
        // Alice no longer applying replicas leaves it with the scaler, untouched.
        let mut without = deployment("nginx", 3);
        without["spec"].as_object_mut().unwrap().remove("replicas");
        let kept = apply(&scaled, &without, "alice", "apps/v1", false, true).expect("no conflict");
        assert_eq!(kept["spec"]["replicas"], 5);
    }

    #[test]
    fn sets_merge_as_unions_and_requested_managed_fields_are_classified() {
        let live = json!({"metadata": {"finalizers": ["a"]}});
        let merged = apply(&live, &json!({"metadata": {"finalizers": ["b"]}}), "m", "v1", false, false).expect("ok");
        assert_eq!(merged["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(requested(&merged, &json!({"metadata": {}})), Requested::Keep);
        assert_eq!(requested(&merged, &json!({"metadata": {"managedFields": [{}]}})), Requested::Clear);
        assert_eq!(requested(&merged, &merged), Requested::Keep);
        assert_eq!(requested(&merged, &json!({"metadata": {"managedFields": [{"manager": "x"}]}})), Requested::Given);
    }
}
