//! Validation as upstream does it for the fields our components read: names, labels,
//! required fields, selectors that must match their templates, and fields that may not
//! change. Every problem becomes a [`Cause`] naming the field; the handler answers 422.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::names::{
    DNS1123_SUBDOMAIN_MAX, dns1123_label_errors, dns1123_subdomain_errors, label_key_errors, label_value_errors,
};
use crate::selector::LabelSelector;
use crate::status::Cause;

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, p| v.get(*p))?.as_str()
}

/// Which rule an object's name follows.
#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    /// Upstream's `ValidatePathSegmentName`, for RBAC's names (`system:node`): anything
    /// that can be one URL path segment.
    PathSegment,
}

fn path_segment_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"].iter().filter(|bad| name.contains(**bad)).map(|bad| format!("may not contain '{bad}'")).collect()
}

/// RBAC's kinds: names are path segments (`system:node`, `cluster-admin`).
pub fn rbac(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(obj, NameRule::PathSegment, &mut causes);
    causes
}

fn metadata(obj: &Value, rule: NameRule, causes: &mut Vec<Cause>) {
    let name = str_at(obj, &["metadata", "name"]).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required("metadata.name"));
    } else {
        let errs = match rule {
            NameRule::Subdomain => dns1123_subdomain_errors(name),
            NameRule::Label => dns1123_label_errors(name),
            NameRule::PathSegment => path_segment_errors(name),
        };
        for e in errs {
            causes.push(Cause::invalid("metadata.name", name, e));
        }
    }
    labels(obj.pointer("/metadata/labels"), "metadata.labels", causes);
    if let Some(annotations) = obj.pointer("/metadata/annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            total += k.len() + v.as_str().map_or(0, str::len);
            for e in label_key_errors(k) {
                causes.push(Cause::invalid("metadata.annotations", k, e));
            }
        }
        if total > TOTAL_ANNOTATION_SIZE {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                message: format!("Too long: must have at most {TOTAL_ANNOTATION_SIZE} bytes"),
            });
        }
    }
}

fn labels(labels: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(labels) = labels.and_then(Value::as_object) else { return };
    for (k, v) in labels {
        for e in label_key_errors(k) {
            causes.push(Cause::invalid(field, k, e));
        }
        let value = v.as_str().unwrap_or_default();
        for e in label_value_errors(value) {
            causes.push(Cause::invalid(field, value, e));
        }
    }
}

/// Objects with no rules of their own beyond metadata.
pub fn generic(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(obj, NameRule::Subdomain, &mut causes);
    causes
}

/// Namespaces: names are DNS-1123 labels.
pub fn namespace(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(obj, NameRule::Label, &mut causes);
    causes
}

/// Nodes.
pub fn node(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(obj, NameRule::Subdomain, &mut causes);
    if let Some(taints) = obj.pointer("/spec/taints").and_then(Value::as_array) {
        for (i, t) in taints.iter().enumerate() {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                causes.push(Cause::invalid(
                    format!("spec.taints[{i}].effect"),
                    effect,
                    "must be one of NoSchedule, PreferNoSchedule, NoExecute",
                ));
            }
            let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
            for e in label_key_errors(key) {
                causes.push(Cause::invalid(format!("spec.taints[{i}].key"), key, e));
            }
        }
    }
    causes
}

fn containers(spec: &Value, field: &str, list: &str, required: bool, causes: &mut Vec<Cause>) {
    let items = spec.get(list).and_then(Value::as_array);
    let Some(items) = items.filter(|c| !c.is_empty()) else {
        if required {
            causes.push(Cause::required(format!("{field}.{list}")));
        }
        return;
    };
    let mut names = HashSet::new();
    for (i, c) in items.iter().enumerate() {
        let at = format!("{field}.{list}[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        } else {
            for e in dns1123_label_errors(name) {
                causes.push(Cause::invalid(format!("{at}.name"), name, e));
            }
            if !names.insert(name) {
                causes.push(Cause::duplicate(format!("{at}.name"), name));
            }
        }
        if c.get("image").and_then(Value::as_str).unwrap_or_default().trim().is_empty() {
            causes.push(Cause::required(format!("{at}.image")));
        }
        if let Some(ports) = c.get("ports").and_then(Value::as_array) {
            for (j, p) in ports.iter().enumerate() {
                let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(Cause::invalid(
                        format!("{at}.ports[{j}].containerPort"),
                        &port.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
}

fn pod_spec(spec: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec else {
        causes.push(Cause::required(field));
        return;
    };
    containers(spec, field, "containers", true, causes);
    containers(spec, field, "initContainers", false, causes);
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        causes.push(Cause::invalid(
            format!("{field}.restartPolicy"),
            policy,
            "supported values: \"Always\", \"OnFailure\", \"Never\"",
        ));
    }
    if let Some(g) = spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64)
        && g < 0
    {
        causes.push(Cause::invalid(
            format!("{field}.terminationGracePeriodSeconds"),
            &g.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    labels(spec.get("nodeSelector"), &format!("{field}.nodeSelector"), causes);
}

/// The pod spec fields upstream lets an update change.
fn mutable_pod_spec(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(obj) = spec.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(cs) = obj.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("image");
                    }
                }
            }
        }
        for field in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"] {
            obj.remove(field);
        }
    }
    spec
}

/// Pods: containers with names and images, and a spec that only changes where upstream
/// allows (images, tolerations, deadlines) once created.
pub fn pod(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(obj, NameRule::Subdomain, &mut causes);
    pod_spec(obj.get("spec"), "spec", &mut causes);
    if let (Some(old), Some(spec)) = (old, obj.get("spec")) {
        let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
        if mutable_pod_spec(spec) != mutable_pod_spec(&old_spec) {
            causes.push(Cause::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        }
    }
    causes
}

/// Services: DNS-1123 label names and valid ports.
pub fn service(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(obj, NameRule::Label, &mut causes);
    let spec = obj.get("spec");
    let kind = spec.and_then(|s| s.get("type")).and_then(Value::as_str).unwrap_or("ClusterIP");
    let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
    if ports.is_none_or(|p| p.is_empty()) && kind != "ExternalName" {
        let headless = spec.and_then(|s| s.get("clusterIP")).and_then(Value::as_str) == Some("None");
        if !headless {
            causes.push(Cause::required("spec.ports"));
        }
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if ports.is_some_and(|p| p.len() > 1) && p.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        }
        let node_port = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 && old.is_none() && !matches!(kind, "NodePort" | "LoadBalancer") {
            causes.push(Cause::forbidden(
                format!("spec.ports[{i}].nodePort"),
                format!("may not be used when `type` is '{kind}'"),
            ));
        }
    }
    if let Some(old) = old {
        let ip = |v: &Value| v.pointer("/spec/clusterIP").and_then(Value::as_str).map(str::to_owned);
        if ip(old).is_some() && ip(obj) != ip(old) {
            causes.push(Cause::invalid("spec.clusterIP", &ip(obj).unwrap_or_default(), "field is immutable"));
        }
    }
    causes
}

fn data_keys(obj: &Value, field: &str, causes: &mut Vec<Cause>) {
    let Some(data) = obj.get(field).and_then(Value::as_object) else { return };
    for key in data.keys() {
        let ok = !key.is_empty()
            && key.len() <= DNS1123_SUBDOMAIN_MAX
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && key != "."
            && key != "..";
        if !ok {
            causes.push(Cause::invalid(field, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
        }
    }
}

/// The most data a ConfigMap or Secret may hold (upstream's `MaxSecretSize`, 1 MiB).
pub const MAX_DATA_BYTES: usize = 1 << 20;

/// The bytes of the values of `obj[field]`; `base64` ones count decoded, as upstream
/// counts them (it sees `[]byte`).
fn data_bytes(obj: &Value, field: &str, base64: bool) -> usize {
    let Some(data) = obj.get(field).and_then(Value::as_object) else { return 0 };
    data.values()
        .filter_map(Value::as_str)
        .map(|v| if base64 { v.trim_end_matches('=').len() * 3 / 4 } else { v.len() })
        .sum()
}

/// ConfigMaps: valid keys, at most 1 MiB of data.
pub fn config_map(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(obj, NameRule::Subdomain, &mut causes);
    data_keys(obj, "data", &mut causes);
    data_keys(obj, "binaryData", &mut causes);
    if data_bytes(obj, "data", false) + data_bytes(obj, "binaryData", true) > MAX_DATA_BYTES {
        // Upstream names no field here ("[]"): the limit is on the whole object's data.
        causes.push(Cause::too_long("[]", MAX_DATA_BYTES));
    }
    causes
}

/// Secrets: valid keys, at most 1 MiB of data, and a type that does not change.
pub fn secret(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(obj, NameRule::Subdomain, &mut causes);
    data_keys(obj, "data", &mut causes);
    data_keys(obj, "stringData", &mut causes);
    if data_bytes(obj, "data", true) + data_bytes(obj, "stringData", false) > MAX_DATA_BYTES {
        causes.push(Cause::too_long("data", MAX_DATA_BYTES));
    }
    if let Some(old) = old
        && old.get("type") != obj.get("type")
    {
        let t = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        causes.push(Cause::invalid("type", t, "field is immutable"));
    }
    causes
}

/// Deployments and ReplicaSets share this shape: a selector that matches the template's
/// labels, a valid pod template, non-negative replicas, and an immutable selector.
/// How a replicated kind's selector is written and whether it may change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Selector {
    /// apps/v1: a `metav1.LabelSelector`, immutable.
    Apps,
    /// core/v1 ReplicationController: a plain label map, mutable.
    PlainMap,
}

fn replicated(obj: &Value, old: Option<&Value>, kind: Selector, causes: &mut Vec<Cause>) {
    metadata(obj, NameRule::Subdomain, causes);
    let spec = obj.get("spec");
    if let Some(r) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64)
        && r < 0
    {
        causes.push(Cause::invalid("spec.replicas", &r.to_string(), "must be greater than or equal to 0"));
    }
    let raw = spec.and_then(|s| s.get("selector")).filter(|s| !s.is_null());
    let wrapped = raw.map(|sel| json!({ "matchLabels": sel }));
    let selector = if kind == Selector::PlainMap { wrapped.as_ref() } else { raw };
    let template_labels = spec.and_then(|s| s.pointer("/template/metadata/labels"));
    let no_template = spec.and_then(|s| s.get("template")).is_none_or(Value::is_null);
    if kind == Selector::PlainMap && no_template {
        causes.push(Cause::required("spec.template"));
    }
    match selector {
        None => causes.push(Cause::required("spec.selector")),
        Some(_) if kind == Selector::PlainMap && raw.and_then(Value::as_object).is_none_or(|m| m.is_empty()) => {
            causes.push(Cause::required("spec.selector"))
        }
        Some(sel) => match LabelSelector::from_object(sel) {
            Err(e) => causes.push(Cause::invalid("spec.selector", &sel.to_string(), e)),
            Ok(s) if s.is_empty() => {
                causes.push(Cause::invalid("spec.selector", "{}", "empty selector is invalid for deployment"))
            }
            Ok(s) => {
                let labels = template_labels
                    .and_then(Value::as_object)
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                    .unwrap_or_default();
                if !s.matches(&labels) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &template_labels.map(Value::to_string).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    labels(template_labels, "spec.template.metadata.labels", causes);
    if !(kind == Selector::PlainMap && no_template) {
        pod_spec(spec.and_then(|s| s.pointer("/template/spec")), "spec.template.spec", causes);
    }
    if let Some(policy) = spec.and_then(|s| s.pointer("/template/spec/restartPolicy")).and_then(Value::as_str)
        && policy != "Always"
    {
        causes.push(Cause::invalid("spec.template.spec.restartPolicy", policy, "supported values: \"Always\""));
    }
    if let Some(old) = old
        && kind == Selector::Apps
        && old.pointer("/spec/selector") != obj.pointer("/spec/selector")
    {
        causes.push(Cause::invalid(
            "spec.selector",
            &selector.map(Value::to_string).unwrap_or_default(),
            "field is immutable",
        ));
    }
}

/// Deployments: the replicated rules plus a valid strategy.
pub fn deployment(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    replicated(obj, old, Selector::Apps, &mut causes);
    if let Some(kind) = obj.pointer("/spec/strategy/type").and_then(Value::as_str) {
        if !["RollingUpdate", "Recreate"].contains(&kind) {
            causes.push(Cause::invalid(
                "spec.strategy.type",
                kind,
                "supported values: \"Recreate\", \"RollingUpdate\"",
            ));
        }
        if kind == "Recreate" && obj.pointer("/spec/strategy/rollingUpdate").is_some() {
            causes.push(Cause::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
    }
    let surge = obj.pointer("/spec/strategy/rollingUpdate/maxSurge");
    let unavailable = obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable");
    let is_zero = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::String(s)) => s == "0%" || s == "0",
        _ => false,
    };
    for (name, v) in [("maxSurge", surge), ("maxUnavailable", unavailable)] {
        if let Some(Value::String(s)) = v {
            let ok = s.strip_suffix('%').is_some_and(|n| n.parse::<u32>().is_ok());
            if !ok {
                causes.push(Cause::invalid(format!("spec.strategy.rollingUpdate.{name}"), s, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
            }
        }
        if let Some(Value::Number(n)) = v
            && n.as_i64().is_none_or(|n| n < 0)
        {
            causes.push(Cause::invalid(
                format!("spec.strategy.rollingUpdate.{name}"),
                &n.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    if surge.is_some() && is_zero(surge) && is_zero(unavailable) {
        causes.push(Cause::invalid(
            "spec.strategy.rollingUpdate.maxUnavailable",
            "0",
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    causes
}

/// ReplicaSets: the replicated rules.
pub fn replica_set(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    replicated(obj, old, Selector::Apps, &mut causes);
    causes
}

/// ReplicationControllers: the replicated rules with a plain, mutable selector map and a
/// required template (upstream's ValidateReplicationControllerSpec).
pub fn replication_controller(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    replicated(obj, old, Selector::PlainMap, &mut causes);
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(dns1123_subdomain_errors("web-1.example").is_empty());
        for bad in ["", "Web", "-web", "web-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!dns1123_subdomain_errors(bad).is_empty(), "{bad:?}");
        }
        assert!(dns1123_label_errors("kube-system").is_empty());
        assert!(!dns1123_label_errors("a.b").is_empty());
        assert!(!dns1123_label_errors(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key_errors("app.kubernetes.io/name").is_empty());
        assert!(label_key_errors("Run").is_empty());
        assert!(!label_key_errors("a/b/c").is_empty());
        assert!(!label_key_errors("/x").is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(!label_value_errors("-x").is_empty());
        assert!(!label_value_errors(&"v".repeat(64)).is_empty());
    }

    fn pod_obj(image: &str) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    #[test]
    fn pod_needs_containers_with_images_and_unique_names() {
        assert!(pod(&pod_obj("busybox"), None).is_empty());
        let causes = pod(&pod_obj(""), None);
        assert_eq!(causes, vec![Cause::required("spec.containers[0].image")]);
        let dup = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "c", "image": "i"}]}});
        assert_eq!(pod(&dup, None)[0].reason, "FieldValueDuplicate");
        let none = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        assert_eq!(pod(&none, None), vec![Cause::required("spec.containers")]);
    }

    #[test]
    fn pod_spec_is_immutable_except_images() {
        assert!(pod(&pod_obj("b:2"), Some(&pod_obj("b:1"))).is_empty());
        let mut changed = pod_obj("b:1");
        changed["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(pod(&changed, Some(&pod_obj("b:1")))[0].reason, "FieldValueForbidden");
    }

    fn deploy(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": selector, "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let ok = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        assert!(deployment(&ok, None).is_empty());
        let bad = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "db"}));
        assert_eq!(deployment(&bad, None)[0].field, "spec.template.metadata.labels");
        let changed = deploy(json!({"matchLabels": {"app": "web", "x": "y"}}), json!({"app": "web", "x": "y"}));
        assert!(deployment(&changed, Some(&ok)).iter().any(|c| c.message.contains("immutable")));
    }
}
