//! Defaulting as upstream does it for the fields our components read, so a pod posted
//! without `restartPolicy` reads back with `Always`, a deployment without a strategy
//! rolls 25%/25%, and so on.

use serde_json::{Map, Value, json};

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let v = m.entry(key.to_owned()).or_insert_with(|| json!({}));
    if v.is_null() {
        *v = json!({});
    }
    v.as_object_mut()
}

fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    let slot = m.entry(key.to_owned()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = value;
    }
}

/// Resources with nothing to default.
pub fn none(_: &mut Value) {}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise.
fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    let Some(c) = obj(c) else { return };
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_owned();
    set_default(c, "imagePullPolicy", json!(pull_policy(&image)));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(obj) {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// A pod spec (of a pod or a template).
pub fn pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(container);
        }
    }
}

/// The DefaultTolerationSeconds admission plugin: pods tolerate a not-ready or unreachable
/// node for 300 s before the node lifecycle controller evicts them.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let present = list.iter().any(|t| {
            t.get("key").and_then(Value::as_str) == Some(key)
                && t.get("effect").and_then(Value::as_str).is_none_or(|e| e == "NoExecute")
        });
        if !present {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// Pods.
pub fn pod(v: &mut Value) {
    let Some(o) = obj(v) else { return };
    if let Some(spec) = child(o, "spec") {
        pod_spec(spec);
        default_tolerations(spec);
    }
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template").and_then(obj)
        && let Some(ts) = t.get_mut("spec").and_then(obj)
    {
        pod_spec(ts);
    }
}

/// Deployments: 1 replica, RollingUpdate 25%/25%, 10 old ReplicaSets kept, 600 s deadline.
pub fn deployment(v: &mut Value) {
    let Some(o) = obj(v) else { return };
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    if let Some(strategy) = child(spec, "strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = child(strategy, "rollingUpdate")
        {
            set_default(ru, "maxUnavailable", json!("25%"));
            set_default(ru, "maxSurge", json!("25%"));
        }
    }
    template(spec);
}

/// ReplicaSets: 1 replica.
pub fn replica_set(v: &mut Value) {
    let Some(o) = obj(v) else { return };
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "replicas", json!(1));
    template(spec);
}

/// ReplicationControllers (upstream's SetDefaults_ReplicationController): one replica, and
/// a selector and labels taken from the template's labels when absent.
pub fn replication_controller(v: &mut Value) {
    let template_labels =
        v.pointer("/spec/template/metadata/labels").filter(|l| l.as_object().is_some_and(|m| !m.is_empty())).cloned();
    let Some(o) = obj(v) else { return };
    if let Some(labels) = template_labels {
        if let Some(spec) = child(o, "spec") {
            let empty = spec.get("selector").and_then(Value::as_object).is_none_or(|m| m.is_empty());
            if empty {
                spec.insert("selector".into(), labels.clone());
            }
        }
        if let Some(meta) = child(o, "metadata") {
            let empty = meta.get("labels").and_then(Value::as_object).is_none_or(|m| m.is_empty());
            if empty {
                meta.insert("labels".into(), labels);
            }
        }
    }
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "replicas", json!(1));
    if spec.get("template").is_some_and(|t| !t.is_null()) {
        template(spec);
    }
}

/// Services: ClusterIP, no session affinity, TCP ports whose target is the port.
pub fn service(v: &mut Value) {
    let Some(o) = obj(v) else { return };
    let Some(spec) = child(o, "spec") else { return };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(obj) {
            set_default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            set_default(p, "targetPort", port);
        }
    }
}

/// Secrets: `Opaque`; `stringData` folds into base64 `data` as upstream does.
pub fn secret(v: &mut Value) {
    use base64::Engine;
    let Some(o) = obj(v) else { return };
    set_default(o, "type", json!("Opaque"));
    if let Some(Value::Object(strings)) = o.remove("stringData") {
        let data = o.entry("data").or_insert_with(|| json!({}));
        if data.is_null() {
            *data = json!({});
        }
        if let Some(data) = data.as_object_mut() {
            for (k, s) in strings {
                let text = s.as_str().unwrap_or_default();
                data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
            }
        }
    }
}

/// Namespaces: the `kubernetes` finalizer, the name label, and phase Active.
pub fn namespace(v: &mut Value) {
    let Some(o) = obj(v) else { return };
    let name = o.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default().to_owned();
    if let Some(meta) = child(o, "metadata")
        && let Some(labels) = child(meta, "labels")
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(spec) = child(o, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child(o, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults() {
        let mut p =
            json!({"spec": {"containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "web:2"}]}});
        pod(&mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(p["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(p["spec"]["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        let once = p.clone();
        pod(&mut p);
        assert_eq!(p, once, "defaulting is idempotent");
    }

    #[test]
    fn explicit_values_win() {
        let mut p = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "b", "imagePullPolicy": "Never"}]}});
        pod(&mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
    }

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "b"}]}}}});
        deployment(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        deployment(&mut recreate);
        assert!(recreate["spec"]["strategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut s = json!({"stringData": {"user": "admin"}});
        secret(&mut s);
        assert_eq!(s["data"]["user"], "YWRtaW4=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }
}
