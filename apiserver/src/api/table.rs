//! Server-side printing: `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` answered with
//! a `meta.k8s.io/v1` Table carrying upstream's columns for each resource (what
//! `kubectl get` shows: READY, STATUS, RESTARTS, AGE, ...), in lists, gets and watches.

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::registry::Resource;

/// Whether the client asked for a Table.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers.get_all(axum::http::header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |media| {
            media.contains("as=Table")
                && media.contains("g=meta.k8s.io")
                && media.contains("v=v1")
                && !media.contains("v=v1beta1")
        },
    )
}

/// Upstream's `HumanDuration` (`45s`, `5m10s`, `3h`, `2d4h`, `3y`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{d}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(obj: &Value, field: &str) -> String {
    let Some(t) = obj.pointer(field).and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().duration_since(t).as_secs())
}

fn s<'a>(obj: &'a Value, path: &str) -> &'a str {
    obj.pointer(path).and_then(Value::as_str).unwrap_or_default()
}

fn n(obj: &Value, path: &str) -> i64 {
    obj.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn selector(obj: &Value) -> String {
    let labels =
        obj.pointer("/spec/selector/matchLabels").or_else(|| obj.pointer("/spec/selector")).and_then(Value::as_object);
    or_none(
        labels
            .map(|m| {
                m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
            })
            .unwrap_or_default(),
    )
}

fn containers_and_images(obj: &Value, path: &str) -> (String, String) {
    let cs = obj.pointer(path).and_then(Value::as_array).cloned().unwrap_or_default();
    let names = cs.iter().map(|c| s(c, "/name").to_owned()).collect::<Vec<_>>().join(",");
    let images = cs.iter().map(|c| s(c, "/image").to_owned()).collect::<Vec<_>>().join(",");
    (names, images)
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

fn pod_row(pod: &Value) -> Vec<Value> {
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

fn node_row(node: &Value) -> Vec<Value> {
    let conds = node.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    // As upstream's printer: any Ready status but True (False or Unknown) is NotReady;
    // no Ready condition at all is Unknown.
    let mut status = match conds.iter().find(|c| s(c, "/type") == "Ready").map(|c| s(c, "/status").to_owned()) {
        Some(st) if st == "True" => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| l.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(str::to_owned)).collect())
        .unwrap_or_default();
    let addr = |kind: &str| {
        node.pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| s(x, "/type") == kind))
            .map(|x| s(x, "/address").to_owned())
            .unwrap_or_else(|| "<none>".into())
    };
    vec![
        json!(s(node, "/metadata/name")),
        json!(status),
        json!(or_none(roles.join(","))),
        json!(age(node, "/metadata/creationTimestamp")),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(or_none(s(node, "/status/nodeInfo/osImage").to_owned())),
        json!(or_none(s(node, "/status/nodeInfo/kernelVersion").to_owned())),
        json!(or_none(s(node, "/status/nodeInfo/containerRuntimeVersion").to_owned())),
    ]
}

type Columns = &'static [(&'static str, &'static str, i32)];

const POD: Columns = &[
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
const DEPLOYMENT: Columns = &[
    ("Name", "string", 0),
    ("Ready", "string", 0),
    ("Up-to-date", "integer", 0),
    ("Available", "integer", 0),
    ("Age", "string", 0),
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
];
const REPLICASET: Columns = &[
    ("Name", "string", 0),
    ("Desired", "integer", 0),
    ("Current", "integer", 0),
    ("Ready", "integer", 0),
    ("Age", "string", 0),
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
];
const NODE: Columns = &[
    ("Name", "string", 0),
    ("Status", "string", 0),
    ("Roles", "string", 0),
    ("Age", "string", 0),
    ("Version", "string", 0),
    ("Internal-IP", "string", 1),
    ("External-IP", "string", 1),
    ("OS-Image", "string", 1),
    ("Kernel-Version", "string", 1),
    ("Container-Runtime", "string", 1),
];
const SERVICE: Columns = &[
    ("Name", "string", 0),
    ("Type", "string", 0),
    ("Cluster-IP", "string", 0),
    ("External-IP", "string", 0),
    ("Port(s)", "string", 0),
    ("Age", "string", 0),
    ("Selector", "string", 1),
];
const NAMESPACE: Columns = &[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)];
const CONFIGMAP: Columns = &[("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)];
const SECRET: Columns = &[("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)];
const EVENT: Columns = &[
    ("Last Seen", "string", 0),
    ("Type", "string", 0),
    ("Reason", "string", 0),
    ("Object", "string", 0),
    ("Message", "string", 0),
];
const ENDPOINTS: Columns = &[("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)];
const LEASE: Columns = &[("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)];
const DEFAULT: Columns = &[("Name", "string", 0), ("Age", "string", 0)];

fn columns(resource: &Resource) -> Columns {
    match (resource.group, resource.resource) {
        ("", "pods") => POD,
        ("apps", "deployments") => DEPLOYMENT,
        ("apps", "replicasets") => REPLICASET,
        ("", "nodes") => NODE,
        ("", "services") => SERVICE,
        ("", "namespaces") => NAMESPACE,
        ("", "configmaps") => CONFIGMAP,
        ("", "secrets") => SECRET,
        ("", "events") => EVENT,
        ("", "endpoints") => ENDPOINTS,
        ("coordination.k8s.io", "leases") => LEASE,
        _ => DEFAULT,
    }
}

fn cells(resource: &Resource, o: &Value) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    let created = json!(age(o, "/metadata/creationTimestamp"));
    match (resource.group, resource.resource) {
        ("", "pods") => pod_row(o),
        ("apps", "deployments") => {
            let (c, i) = containers_and_images(o, "/spec/template/spec/containers");
            vec![
                name,
                json!(format!("{}/{}", n(o, "/status/readyReplicas"), n(o, "/spec/replicas"))),
                json!(n(o, "/status/updatedReplicas")),
                json!(n(o, "/status/availableReplicas")),
                created,
                json!(c),
                json!(i),
                json!(selector(o)),
            ]
        }
        ("apps", "replicasets") => {
            let (c, i) = containers_and_images(o, "/spec/template/spec/containers");
            vec![
                name,
                json!(n(o, "/spec/replicas")),
                json!(n(o, "/status/replicas")),
                json!(n(o, "/status/readyReplicas")),
                created,
                json!(c),
                json!(i),
                json!(selector(o)),
            ]
        }
        ("", "nodes") => node_row(o),
        ("", "services") => {
            let ports = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let node_port = p
                                .get("nodePort")
                                .and_then(Value::as_i64)
                                .map(|np| format!(":{np}"))
                                .unwrap_or_default();
                            format!(
                                "{}{node_port}/{}",
                                n(p, "/port"),
                                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let external = o
                .pointer("/spec/externalIPs")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                name,
                json!(s(o, "/spec/type")),
                json!(or_none(s(o, "/spec/clusterIP").to_owned())),
                json!(or_none(external)),
                json!(or_none(ports)),
                created,
                json!(or_none(
                    o.pointer("/spec/selector")
                        .and_then(Value::as_object)
                        .map(|m| m
                            .iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default()
                )),
            ]
        }
        ("", "namespaces") => vec![name, json!(s(o, "/status/phase")), created],
        ("", "configmaps") => {
            let data = o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())
                + o.get("binaryData").and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(data), created]
        }
        ("", "secrets") => vec![
            name,
            json!(s(o, "/type")),
            json!(o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())),
            created,
        ],
        ("", "events") => {
            let last = ["/lastTimestamp", "/eventTime", "/metadata/creationTimestamp"]
                .iter()
                .find(|p| o.pointer(p).is_some_and(|v| !v.is_null()))
                .map_or_else(|| "<unknown>".into(), |p| age(o, p));
            let object = format!("{}/{}", s(o, "/involvedObject/kind").to_lowercase(), s(o, "/involvedObject/name"));
            vec![json!(last), json!(s(o, "/type")), json!(s(o, "/reason")), json!(object), json!(s(o, "/message"))]
        }
        ("", "endpoints") => {
            let eps: Vec<String> = o
                .get("subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|ss| {
                    let ports: Vec<i64> = ss
                        .get("ports")
                        .and_then(Value::as_array)
                        .map(|p| p.iter().map(|x| n(x, "/port")).collect())
                        .unwrap_or_default();
                    ss.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default().into_iter().flat_map(
                        move |a| {
                            let ip = s(&a, "/ip").to_owned();
                            if ports.is_empty() {
                                vec![ip]
                            } else {
                                ports.iter().map(|p| format!("{ip}:{p}")).collect()
                            }
                        },
                    )
                })
                .collect();
            vec![name, json!(or_none(eps.join(","))), created]
        }
        ("coordination.k8s.io", "leases") => {
            vec![name, json!(or_none(s(o, "/spec/holderIdentity").to_owned())), created]
        }
        _ => vec![name, created],
    }
}

fn row(resource: &Resource, obj: &Value, include: &str) -> Value {
    let object = match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
        }
    };
    json!({"cells": cells(resource, obj), "object": object})
}

/// A Table of `objects`; `with_columns` false leaves the column definitions out (later watch events).
pub fn table(resource: &Resource, objects: &[Value], meta: Value, include: &str, with_columns: bool) -> Value {
    let defs: Vec<Value> = if with_columns {
        columns(resource)
            .iter()
            .map(|(name, kind, priority)| {
                let format = if *name == "Name" { "name" } else { "" };
                json!({"name": name, "type": kind, "format": format, "description": name, "priority": priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": objects.iter().map(|o| row(resource, o, include)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_kubectl() {
        for (secs, text) in [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (50 * 3600, "2d2h"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs}");
        }
    }

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
}
