//! Pod: the QoS class and `Pending` phase set on create, graceful deletion once bound to a
//! node (the kubelet confirms), and kubectl's STATUS column.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::print::{age, human_duration, n, or_none, s};
use super::{Columns, Resource, SelectableField, Strategy, Sub, names};
use crate::status::Cause;
use crate::{defaults, validation};

const FIELDS: &[SelectableField] = &[
    ("spec.nodeName", "spec.nodeName", ""),
    ("spec.restartPolicy", "spec.restartPolicy", ""),
    ("spec.schedulerName", "spec.schedulerName", ""),
    ("spec.serviceAccountName", "spec.serviceAccountName", ""),
    ("spec.hostNetwork", "spec.hostNetwork", "false"),
    ("status.phase", "status.phase", ""),
    ("status.podIP", "status.podIP", ""),
    ("status.nominatedNodeName", "status.nominatedNodeName", ""),
];

pub fn resource() -> Resource {
    Resource {
        short_names: names(&["po"]),
        categories: names(&["all"]),
        subresources: Cow::Borrowed(&[Sub::Status, Sub::Binding, Sub::Log]),
        fields: FIELDS,
        ..Resource::of::<Pod>("", "v1", "pods", "pod", "Pod", PodStrategy)
    }
}

const COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("Ready", "string", 0),
    ("Status", "string", 0),
    ("Restarts", "string", 0),
    ("Age", "string", 0),
    ("IP", "string", 1),
    ("Node", "string", 1),
    ("Nominated Node", "string", 1),
    ("Readiness Gates", "string", 1),
];

struct PodStrategy;

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        defaults::pod(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::pod(obj, old)
    }

    fn prepare_create(&self, _resource: &Resource, obj: &mut Value) {
        let qos = qos_class(obj);
        obj["status"] = json!({ "phase": "Pending", "qosClass": qos });
    }

    /// A pod bound to a node is deleted gracefully: its kubelet stops the containers and
    /// confirms. One that never ran goes at once.
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> i64 {
        let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        if !bound {
            return 0;
        }
        requested
            .unwrap_or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30))
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, pod: &Value) -> Vec<Value> {
        let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
        let total = pod.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
        let ready = statuses.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count();
        let restarts: i64 = statuses.iter().map(|c| n(c, "/restartCount")).sum();
        let last_restart = statuses
            .iter()
            .filter_map(|c| c.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str))
            .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
            .max();
        let restarts = match last_restart {
            Some(t) if restarts > 0 => {
                format!("{restarts} ({} ago)", human_duration(jiff::Timestamp::now().duration_since(t).as_secs()))
            }
            _ => restarts.to_string(),
        };
        vec![
            json!(s(pod, "/metadata/name")),
            json!(format!("{ready}/{total}")),
            json!(pod_status(pod)),
            json!(restarts),
            json!(age(pod, "/metadata/creationTimestamp")),
            json!(or_none(s(pod, "/status/podIP").to_owned())),
            json!(or_none(s(pod, "/spec/nodeName").to_owned())),
            json!(or_none(s(pod, "/status/nominatedNodeName").to_owned())),
            json!("<none>"),
        ]
    }
}

/// A pod's QoS class from its containers' requests and limits, as upstream computes it.
fn qos_class(pod: &Value) -> &'static str {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A pod's STATUS column, as kubectl computes it.
fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, "/status/reason").to_owned();
    if reason.is_empty() {
        reason = s(pod, "/status/phase").to_owned();
    }
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    let inits = pod.pointer("/status/initContainerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        if let Some(t) = c.pointer("/state/terminated") {
            if n(t, "/exitCode") == 0 {
                continue;
            }
            reason = format!("Init:{}", t.get("reason").and_then(Value::as_str).unwrap_or("Error"));
        } else if let Some(w) = c
            .pointer("/state/waiting")
            .and_then(|w| w.get("reason"))
            .and_then(Value::as_str)
            .filter(|r| *r != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{i}/{}", inits.len());
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in statuses.iter().rev() {
            if let Some(w) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
                reason = w.to_owned();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = match t.get("reason").and_then(Value::as_str) {
                    Some(r) => r.to_owned(),
                    None => format!("ExitCode:{}", n(t, "/exitCode")),
                };
            } else if c.pointer("/state/running").is_some() && c.get("ready").and_then(Value::as_bool) == Some(true) {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        reason = if s(pod, "/status/reason") == "NodeLost" { "Unknown".into() } else { "Terminating".into() };
    }
    if reason.is_empty() { "Pending".into() } else { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_reasons() {
        let running =
            json!({"status": {"phase": "Running", "containerStatuses": [{"ready": true, "state": {"running": {}}}]}});
        assert_eq!(pod_status(&running), "Running");
        let crash = json!({"status": {"phase": "Running", "containerStatuses": [{"ready": false, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&crash), "CrashLoopBackOff");
        let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(pod_status(&done), "Completed");
        let deleting =
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
        assert_eq!(pod_status(&deleting), "Terminating");
        assert_eq!(pod_status(&json!({"status": {"phase": "Pending"}})), "Pending");
    }

    #[test]
    fn qos_classes_and_grace_periods() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "1"}}))), "Burstable");
        let strategy = PodStrategy;
        let unbound = json!({"spec": {"terminationGracePeriodSeconds": 60}});
        assert_eq!(strategy.grace_period(&unbound, Some(10)), 0, "a pod no kubelet runs goes at once");
        let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 60}});
        assert_eq!(strategy.grace_period(&bound, None), 60);
        assert_eq!(strategy.grace_period(&bound, Some(0)), 0);
        assert_eq!(strategy.grace_period(&json!({"spec": {"nodeName": "n1"}}), None), 30);
    }
}
