//! `describe` in stock kubectl's layout: sections of `Key:\tvalue` lines aligned by Go's
//! tabwriter (padding 2), with the object's Events at the end. Deployments, ReplicaSets,
//! Pods and Nodes have their own sections; other kinds get metadata and their fields.

use serde_json::Value;

use crate::discovery::Resource;

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// `Mon, 02 Jan 2006 15:04:05 -0700`, as describe prints times.
pub fn time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// kubectl's short human durations (`45s`, `3m12s`, `5h`, `2d3h`).
pub fn human_age(rfc3339: &str) -> String {
    let Ok(t) = rfc3339.parse::<jiff::Timestamp>() else { return "<unknown>".into() };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", secs % 60) }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else {
        format!("{d}d")
    }
}

fn map_lines(out: &mut String, indent: &str, title: &str, map: Option<&Value>, sep: &str) {
    let entries: Vec<(String, String)> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                // Stock describe leaves client-side apply's copy of the object out.
                .filter(|(k, _)| k.as_str() != crate::threeway::LAST_APPLIED)
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if entries.is_empty() {
        out.push_str(&format!("{indent}{title}:\t<none>\n"));
        return;
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        let head = if i == 0 { format!("{indent}{title}:") } else { indent.to_owned() };
        let v = v.trim_end();
        if v.contains('\n') {
            out.push_str(&format!("{head}\t{k}:\n"));
            for line in v.lines() {
                out.push_str(&format!("{indent}\t  {line}\n"));
            }
        } else {
            out.push_str(&format!("{head}\t{k}{sep}{v}\n"));
        }
    }
}

fn meta(out: &mut String, obj: &Value, namespaced: bool) {
    out.push_str(&format!("Name:\t{}\n", s(obj, "/metadata/name")));
    if namespaced {
        out.push_str(&format!("Namespace:\t{}\n", s(obj, "/metadata/namespace")));
    }
}

fn selector_text(sel: Option<&Value>) -> String {
    let labels = sel.and_then(|s| s.get("matchLabels")).and_then(Value::as_object);
    match labels {
        Some(m) if !m.is_empty() => {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        }
        _ => "<none>".into(),
    }
}

fn containers(out: &mut String, indent: &str, spec: &Value, status: Option<&Value>) {
    out.push_str(&format!("{indent}Containers:\n"));
    for c in spec.get("containers").and_then(Value::as_array).into_iter().flatten() {
        let name = s(c, "/name");
        out.push_str(&format!("{indent} {name}:\n"));
        let i = format!("{indent}  ");
        if let Some(st) = status
            .and_then(|st| st.get("containerStatuses"))
            .and_then(Value::as_array)
            .and_then(|l| l.iter().find(|x| s(x, "/name") == name))
        {
            let id = s(st, "/containerID");
            out.push_str(&format!("{i}Container ID:\t{id}\n"));
            out.push_str(&format!("{i}Image:\t{}\n", s(c, "/image")));
            let state = st.get("state").and_then(Value::as_object).and_then(|m| m.iter().next());
            match state {
                Some((k, v)) => {
                    let title = format!("{}{}", k[..1].to_uppercase(), &k[1..]);
                    out.push_str(&format!("{i}State:\t{title}\n"));
                    if let Some(r) = v.get("reason").and_then(Value::as_str) {
                        out.push_str(&format!("{i}  Reason:\t{r}\n"));
                    }
                    if let Some(t) = v.get("startedAt").and_then(Value::as_str) {
                        out.push_str(&format!("{i}  Started:\t{}\n", time(t)));
                    }
                    if let Some(code) = v.get("exitCode") {
                        out.push_str(&format!("{i}  Exit Code:\t{code}\n"));
                    }
                }
                None => out.push_str(&format!("{i}State:\tWaiting\n")),
            }
            out.push_str(&format!(
                "{i}Ready:\t{}\n",
                if st.get("ready") == Some(&Value::Bool(true)) { "True" } else { "False" }
            ));
            out.push_str(&format!("{i}Restart Count:\t{}\n", n(st, "/restartCount")));
        } else {
            out.push_str(&format!("{i}Image:\t{}\n", s(c, "/image")));
        }
        let ports: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                format!("{}/{}", n(p, "/containerPort"), p.get("protocol").and_then(Value::as_str).unwrap_or("TCP"))
            })
            .collect();
        out.push_str(&format!("{i}Port:\t{}\n", if ports.is_empty() { "<none>".into() } else { ports.join(", ") }));
        let host: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| format!("{}/{}", n(p, "/hostPort"), p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")))
            .collect();
        out.push_str(&format!("{i}Host Port:\t{}\n", if host.is_empty() { "<none>".into() } else { host.join(", ") }));
        for (field, title) in [("command", "Command"), ("args", "Args")] {
            if let Some(list) = c.get(field).and_then(Value::as_array) {
                out.push_str(&format!("{i}{title}:\n"));
                for a in list {
                    out.push_str(&format!("{i}  {}\n", a.as_str().unwrap_or_default()));
                }
            }
        }
        let env: Vec<String> = c
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}:\t{}",
                    s(e, "/name"),
                    e.get("value").and_then(Value::as_str).unwrap_or("<set from a source>")
                )
            })
            .collect();
        if env.is_empty() {
            out.push_str(&format!("{i}Environment:\t<none>\n"));
        } else {
            out.push_str(&format!("{i}Environment:\n"));
            for e in env {
                out.push_str(&format!("{i}  {e}\n"));
            }
        }
        let mounts: Vec<String> = c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|m| format!("{} from {}", s(m, "/mountPath"), s(m, "/name")))
            .collect();
        if mounts.is_empty() {
            out.push_str(&format!("{i}Mounts:\t<none>\n"));
        } else {
            out.push_str(&format!("{i}Mounts:\n"));
            for m in mounts {
                out.push_str(&format!("{i}  {m}\n"));
            }
        }
    }
    let volumes: Vec<&str> =
        spec.get("volumes").and_then(Value::as_array).into_iter().flatten().map(|v| s(v, "/name")).collect();
    if volumes.is_empty() {
        out.push_str(&format!("{indent}Volumes:\t<none>\n"));
    } else {
        out.push_str(&format!("{indent}Volumes:\n"));
        for v in volumes {
            out.push_str(&format!("{indent} {v}\n"));
        }
    }
}

fn conditions(out: &mut String, obj: &Value, with_reason: bool) {
    let list = obj.pointer("/status/conditions").and_then(Value::as_array);
    let Some(list) = list.filter(|l| !l.is_empty()) else { return };
    out.push_str("Conditions:\n");
    if with_reason {
        out.push_str("  Type\tStatus\tReason\n  ----\t------\t------\n");
        for c in list {
            out.push_str(&format!("  {}\t{}\t{}\n", s(c, "/type"), s(c, "/status"), s(c, "/reason")));
        }
    } else {
        out.push_str("  Type\tStatus\n");
        for c in list {
            out.push_str(&format!("  {} \t{} \n", s(c, "/type"), s(c, "/status")));
        }
    }
}

fn events(out: &mut String, events: &[Value]) {
    if events.is_empty() {
        out.push_str("Events:\t<none>\n");
        return;
    }
    out.push_str("Events:\n  Type\tReason\tAge\tFrom\tMessage\n  ----\t------\t----\t----\t-------\n");
    for e in events {
        let when = e
            .get("lastTimestamp")
            .and_then(Value::as_str)
            .or_else(|| e.get("eventTime").and_then(Value::as_str))
            .unwrap_or_default();
        let from = e
            .pointer("/source/component")
            .and_then(Value::as_str)
            .or_else(|| e.get("reportingComponent").and_then(Value::as_str))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}\t{}\t{}\t{}\t{}\n",
            s(e, "/type"),
            s(e, "/reason"),
            human_age(when),
            from,
            s(e, "/message").trim()
        ));
    }
}

/// The describe text of one object.
pub fn describe(resource: &Resource, obj: &Value, object_events: &[Value]) -> String {
    let mut out = String::new();
    meta(&mut out, obj, resource.namespaced);
    match resource.kind.as_str() {
        "Deployment" => {
            out.push_str(&format!("CreationTimestamp:\t{}\n", time(s(obj, "/metadata/creationTimestamp"))));
            map_lines(&mut out, "", "Labels", obj.pointer("/metadata/labels"), "=");
            map_lines(&mut out, "", "Annotations", obj.pointer("/metadata/annotations"), ": ");
            out.push_str(&format!("Selector:\t{}\n", selector_text(obj.pointer("/spec/selector"))));
            let replicas = n(obj, "/spec/replicas");
            out.push_str(&format!(
                "Replicas:\t{replicas} desired | {} updated | {} total | {} available | {} unavailable\n",
                n(obj, "/status/updatedReplicas"),
                n(obj, "/status/replicas"),
                n(obj, "/status/availableReplicas"),
                n(obj, "/status/unavailableReplicas")
            ));
            let strategy = s(obj, "/spec/strategy/type");
            out.push_str(&format!("StrategyType:\t{strategy}\n"));
            out.push_str(&format!("MinReadySeconds:\t{}\n", n(obj, "/spec/minReadySeconds")));
            if strategy == "RollingUpdate" {
                let text = |p: &str| {
                    obj.pointer(p)
                        .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                        .unwrap_or_default()
                };
                out.push_str(&format!(
                    "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
                    text("/spec/strategy/rollingUpdate/maxUnavailable"),
                    text("/spec/strategy/rollingUpdate/maxSurge")
                ));
            }
            out.push_str("Pod Template:\n");
            map_lines(&mut out, "  ", "Labels", obj.pointer("/spec/template/metadata/labels"), "=");
            if let Some(spec) = obj.pointer("/spec/template/spec") {
                containers(&mut out, "  ", spec, None);
            }
            conditions(&mut out, obj, true);
        }
        "ReplicaSet" => {
            out.push_str(&format!("Selector:\t{}\n", selector_text(obj.pointer("/spec/selector"))));
            map_lines(&mut out, "", "Labels", obj.pointer("/metadata/labels"), "=");
            map_lines(&mut out, "", "Annotations", obj.pointer("/metadata/annotations"), ": ");
            if let Some(owner) = obj.pointer("/metadata/ownerReferences/0") {
                out.push_str(&format!("Controlled By:\t{}/{}\n", s(owner, "/kind"), s(owner, "/name")));
            }
            out.push_str(&format!(
                "Replicas:\t{} current / {} desired\n",
                n(obj, "/status/replicas"),
                n(obj, "/spec/replicas")
            ));
            out.push_str(&format!(
                "Pods Status:\t{} Running / 0 Waiting / 0 Succeeded / 0 Failed\n",
                n(obj, "/status/readyReplicas")
            ));
            out.push_str("Pod Template:\n");
            map_lines(&mut out, "  ", "Labels", obj.pointer("/spec/template/metadata/labels"), "=");
            if let Some(spec) = obj.pointer("/spec/template/spec") {
                containers(&mut out, "  ", spec, None);
            }
        }
        "Pod" => {
            out.push_str(&format!("Priority:\t{}\n", n(obj, "/spec/priority")));
            out.push_str(&format!(
                "Service Account:\t{}\n",
                obj.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default")
            ));
            let node = s(obj, "/spec/nodeName");
            let host_ip = s(obj, "/status/hostIP");
            out.push_str(&format!(
                "Node:\t{}\n",
                if node.is_empty() {
                    "<none>".into()
                } else if host_ip.is_empty() {
                    node.to_owned()
                } else {
                    format!("{node}/{host_ip}")
                }
            ));
            if let Some(t) = obj.pointer("/status/startTime").and_then(Value::as_str) {
                out.push_str(&format!("Start Time:\t{}\n", time(t)));
            }
            map_lines(&mut out, "", "Labels", obj.pointer("/metadata/labels"), "=");
            map_lines(&mut out, "", "Annotations", obj.pointer("/metadata/annotations"), ": ");
            out.push_str(&format!("Status:\t{}\n", s(obj, "/status/phase")));
            let ip = s(obj, "/status/podIP");
            out.push_str(&format!("IP:\t{ip}\n"));
            if let Some(owner) = obj.pointer("/metadata/ownerReferences/0") {
                out.push_str(&format!("Controlled By:\t{}/{}\n", s(owner, "/kind"), s(owner, "/name")));
            }
            if let Some(spec) = obj.get("spec") {
                containers(&mut out, "", spec, obj.get("status"));
            }
            conditions(&mut out, obj, false);
            out.push_str(&format!("QoS Class:\t{}\n", s(obj, "/status/qosClass")));
            let selectors = obj.pointer("/spec/nodeSelector").and_then(Value::as_object).filter(|m| !m.is_empty());
            out.push_str(&format!(
                "Node-Selectors:\t{}\n",
                selectors
                    .map(|m| m
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_else(|| "<none>".into())
            ));
        }
        "Node" => {
            map_lines(&mut out, "", "Labels", obj.pointer("/metadata/labels"), "=");
            map_lines(&mut out, "", "Annotations", obj.pointer("/metadata/annotations"), ": ");
            out.push_str(&format!("CreationTimestamp:\t{}\n", time(s(obj, "/metadata/creationTimestamp"))));
            let taints: Vec<String> = obj
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| format!("{}={}:{}", s(t, "/key"), s(t, "/value"), s(t, "/effect")).replace("=:", ":"))
                .collect();
            out.push_str(&format!(
                "Taints:\t{}\n",
                if taints.is_empty() { "<none>".into() } else { taints.join("\n\t") }
            ));
            out.push_str(&format!(
                "Unschedulable:\t{}\n",
                obj.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false)
            ));
            conditions(&mut out, obj, true);
            out.push_str("Addresses:\n");
            for a in obj.pointer("/status/addresses").and_then(Value::as_array).into_iter().flatten() {
                out.push_str(&format!("  {}:\t{}\n", s(a, "/type"), s(a, "/address")));
            }
            map_lines(&mut out, "", "Capacity", obj.pointer("/status/capacity"), ":  ");
            out.push_str(&format!("PodCIDR:\t{}\n", s(obj, "/spec/podCIDR")));
        }
        _ => {
            map_lines(&mut out, "", "Labels", obj.pointer("/metadata/labels"), "=");
            map_lines(&mut out, "", "Annotations", obj.pointer("/metadata/annotations"), ": ");
            for (field, value) in obj.as_object().into_iter().flatten() {
                if matches!(field.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let title = format!("{}{}", field[..1].to_uppercase(), &field[1..]);
                let yaml = crate::yaml::to_string(value);
                if value.is_object() || value.is_array() {
                    out.push_str(&format!("{title}:\n"));
                    for line in yaml.lines() {
                        out.push_str(&format!("  {line}\n"));
                    }
                } else {
                    out.push_str(&format!("{title}:\t{}", yaml));
                }
            }
        }
    }
    events(&mut out, object_events);
    crate::tabwriter::format(&out, 0, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployments_describe_in_sections() {
        let resource = Resource {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            singular: "deployment".into(),
            short_names: vec![],
            categories: vec![],
            namespaced: true,
            verbs: vec![],
        };
        let d = json!({"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-11-21T09:10:15Z", "labels": {"run": "web"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"run": "web"}}, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": {"run": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
            "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}});
        let text = describe(&resource, &d, &[]);
        assert!(text.starts_with("Name:                   web\nNamespace:              default\nCreationTimestamp:      Sat, 21 Nov 2026 09:10:15 +0000\n"), "{text}");
        assert!(
            text.contains("Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable\n"),
            "{text}"
        );
        assert!(text.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge\n"), "{text}");
        assert!(text.contains("    Port:         80/TCP\n"), "{text}");
        assert!(text.contains("  Available  True    MinimumReplicasAvailable\n"), "{text}");
        // Go's tabwriter aligns the last lines with the conditions block above them.
        assert!(text.ends_with("  Available  True    MinimumReplicasAvailable\nEvents:      <none>\n"), "{text}");
    }
}
