//! The EndpointSlice controller, and the Endpoints it mirrors for older clients (upstream's
//! endpointslice-controller and endpoint-controller): for each Service with a selector,
//! the pods it selects that have an IP, grouped by the ports their names resolve to, in
//! slices of at most 100 endpoints labelled `kubernetes.io/service-name`, each endpoint with
//! its `ready`, `serving` and `terminating` conditions; and one Endpoints object with the
//! ready addresses and the not-ready ones. What to write is a pure function of the service
//! and its pods ([`desired_slices`], [`desired_subsets`]); the reconcile only compares and
//! writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use crate::Context;
use crate::workqueue::Action;

/// The label naming a slice's service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY`].
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice, as upstream's `--max-endpoints-per-slice` default.
pub const MAX_PER_SLICE: usize = 100;

/// Whether a service's selector selects a pod (a service without one selects none: its
/// endpoints are the user's to write).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    pod.metadata.namespace == svc.metadata.namespace
        && selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the controller keeps this service's endpoints.
pub fn managed(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) != Some("ExternalName")
        && spec.and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty())
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn ip_of(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).filter(|ip| !ip.is_empty())
}

/// A pod that can be an endpoint at all: it has an IP and has not finished.
fn eligible(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    ip_of(pod).is_some() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The service's ports as this pod serves them: a named `targetPort` is looked up among
/// the pod's container ports (a pod without that name does not serve that port).
fn ports_for(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    let mut out = Vec::new();
    for p in svc.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten() {
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let port = match &p.target_port {
            None => Some(p.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => match name.parse::<i32>() {
                Ok(n) => Some(n),
                Err(_) => containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| cp.name.as_deref() == Some(name) && cp.protocol.as_deref().unwrap_or("TCP") == protocol)
                    .map(|cp| cp.container_port),
            },
        };
        if let Some(port) = port {
            out.push(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol: p.app_protocol.clone(),
            });
        }
    }
    out
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The endpoint one pod is.
fn endpoint(svc: &Service, pod: &Pod) -> Endpoint {
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = is_ready(pod);
    let spec = pod.spec.as_ref();
    // A pod's hostname is published when its subdomain names this (headless) service.
    let hostname =
        spec.filter(|s| s.subdomain.is_some() && s.subdomain == svc.metadata.name).and_then(|s| s.hostname.clone());
    Endpoint {
        addresses: vec![ip_of(pod).unwrap_or_default().to_owned()],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (ready && !terminating)),
            serving: Some(publish || ready),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(target_ref(pod)),
        ..Default::default()
    }
}

/// The slices a service should have: its pods grouped by the ports they serve, each group
/// in pod-name order and cut into slices of at most [`MAX_PER_SLICE`].
pub fn desired_slices(svc: &Service, pods: &[Arc<Pod>]) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut selected: Vec<&Arc<Pod>> = pods.iter().filter(|p| selects(svc, p) && eligible(p)).collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in selected {
        let ports = ports_for(svc, pod);
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups.entry(key).or_insert_with(|| (ports, Vec::new())).1.push(endpoint(svc, pod));
    }
    let mut out = Vec::new();
    for (ports, endpoints) in groups.into_values() {
        for chunk in endpoints.chunks(MAX_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

/// The Endpoints subsets for older clients: ready addresses, and not-ready ones (a
/// terminating pod is in neither, unless the service publishes not-ready addresses).
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let mut out = Vec::new();
    for (ports, endpoints) in desired_slices(svc, pods) {
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        for e in endpoints {
            let c = e.conditions.unwrap_or_default();
            let address = EndpointAddress {
                ip: e.addresses.first().cloned().unwrap_or_default(),
                hostname: e.hostname,
                node_name: e.node_name,
                target_ref: e.target_ref,
            };
            if c.ready == Some(true) {
                ready.push(address);
            } else if publish || c.terminating != Some(true) {
                not_ready.push(address);
            }
        }
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        let ports = ports
            .into_iter()
            .map(|p| CorePort {
                name: p.name.filter(|n| !n.is_empty()),
                port: p.port.unwrap_or_default(),
                protocol: p.protocol,
                app_protocol: p.app_protocol,
            })
            .collect();
        out.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: Some(ports),
        });
    }
    out
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The slices this controller wrote for a service, in name order.
fn existing_slices(ctx: &Context, namespace: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
    let mut out: Vec<Arc<EndpointSlice>> = ctx
        .endpoint_slices
        .in_namespace(namespace)
        .into_iter()
        .filter(|s| {
            let labels = s.metadata.labels.as_ref();
            labels.and_then(|l| l.get(SERVICE_NAME)).map(String::as_str) == Some(name)
                && labels.and_then(|l| l.get(MANAGED_BY)).map(String::as_str) == Some(CONTROLLER)
        })
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// Brings one service's slices and Endpoints (the key is `namespace/name`) in line.
pub async fn reconcile(ctx: Arc<Context>, key: String) -> anyhow::Result<Action> {
    let Some((namespace, name)) = key.split_once('/') else { return Ok(Action::Done) };
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), namespace);
    let endpoints: Api<Endpoints> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = existing_slices(&ctx, namespace, name);
    let Some(svc) = ctx.services.get(&key).filter(|s| managed(s)) else {
        // Gone, or no longer ours to keep: what we wrote goes.
        for s in existing {
            let slice = s.metadata.name.clone().unwrap_or_default();
            crate::tolerate(slices.delete(&slice, &DeleteParams::default()).await, &[404])?;
        }
        if ctx.services.get(&key).is_none() {
            crate::tolerate(endpoints.delete(name, &DeleteParams::default()).await, &[404])?;
        }
        return Ok(Action::Done);
    };
    let pods = ctx.pods.in_namespace(namespace);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME.into(), name.to_owned());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    let desired = desired_slices(&svc, &pods);
    for (i, (ports, list)) in desired.iter().enumerate() {
        let want = EndpointSlice {
            metadata: ObjectMeta {
                labels: Some(labels.clone()),
                owner_references: Some(vec![owner(&svc)]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: list.clone(),
            ports: Some(ports.clone()),
        };
        match existing.get(i) {
            Some(current)
                if current.endpoints == want.endpoints
                    && current.ports == want.ports
                    && current.metadata.labels == want.metadata.labels => {}
            Some(current) => {
                let mut next = want;
                next.metadata.name = current.metadata.name.clone();
                next.metadata.resource_version = current.metadata.resource_version.clone();
                let slice = current.metadata.name.clone().unwrap_or_default();
                crate::tolerate(slices.replace(&slice, &PostParams::default(), &next).await, &[404, 409])?;
            }
            None => {
                let mut next = want;
                next.metadata.generate_name = Some(format!("{name}-"));
                slices.create(&PostParams::default(), &next).await?;
            }
        }
    }
    for extra in existing.iter().skip(desired.len()) {
        let slice = extra.metadata.name.clone().unwrap_or_default();
        crate::tolerate(slices.delete(&slice, &DeleteParams::default()).await, &[404])?;
    }
    let subsets = desired_subsets(&svc, &pods);
    let want = Endpoints {
        metadata: ObjectMeta { name: Some(name.to_owned()), labels: svc.metadata.labels.clone(), ..Default::default() },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    match endpoints.get_opt(name).await? {
        Some(current) if current.subsets == want.subsets && current.metadata.labels == want.metadata.labels => {}
        Some(current) => {
            let mut next = want;
            next.metadata.resource_version = current.metadata.resource_version;
            crate::tolerate(endpoints.replace(name, &PostParams::default(), &next).await, &[409])?;
        }
        None => crate::tolerate(endpoints.create(&PostParams::default(), &want).await, &[409])?,
    }
    Ok(Action::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})).unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        merge(&mut p, &extra);
        Arc::new(serde_json::from_value(p).unwrap())
    }

    /// A JSON merge patch (RFC 7386).
    fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(t), Some(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }

    fn web() -> Service {
        svc(json!({"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
        ]}))
    }

    #[test]
    fn endpoints_carry_upstreams_conditions() {
        let pods = vec![
            pod("a", "10.244.0.2", true, json!({})),
            pod("b", "10.244.0.3", false, json!({})),
            pod("c", "10.244.0.4", true, json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})),
            pod("no-ip", "", true, json!({})),
            pod("done", "10.244.0.9", true, json!({"status": {"phase": "Succeeded"}})),
            pod("other", "10.244.0.5", true, json!({"metadata": {"labels": {"app": "db"}}})),
        ];
        let slices = desired_slices(&web(), &pods);
        assert_eq!(slices.len(), 1);
        let (ports, endpoints) = &slices[0];
        let resolved: Vec<(Option<String>, Option<i32>)> = ports.iter().map(|p| (p.name.clone(), p.port)).collect();
        assert_eq!(resolved, vec![(Some("http".into()), Some(8080)), (Some("metrics".into()), Some(9090))]);
        let seen: Vec<(&str, bool, bool, bool)> = endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap();
                (e.addresses[0].as_str(), c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("10.244.0.2", true, true, false),
                ("10.244.0.3", false, false, false),
                ("10.244.0.4", false, true, true)
            ]
        );
        assert_eq!(endpoints[0].node_name.as_deref(), Some("n1"));
        assert_eq!(endpoints[0].target_ref.as_ref().and_then(|r| r.name.as_deref()), Some("a"));

        // Endpoints: a ready and a not-ready address; the terminating pod is in neither.
        let subsets = desired_subsets(&web(), &pods);
        assert_eq!(subsets.len(), 1);
        let ips = |l: &Option<Vec<EndpointAddress>>| l.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(ips(&subsets[0].addresses), vec!["10.244.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.244.0.3"]);
    }

    #[test]
    fn pods_that_name_ports_differently_get_slices_of_their_own() {
        let other = pod(
            "z",
            "10.244.1.2",
            true,
            json!({"spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 9000}]}]}}),
        );
        let unnamed = pod("y", "10.244.1.3", true, json!({"spec": {"containers": [{"name": "c", "ports": []}]}}));
        let pods = vec![pod("a", "10.244.0.2", true, json!({})), other, unnamed];
        let slices = desired_slices(&web(), &pods);
        let shapes: Vec<(Vec<Option<i32>>, Vec<String>)> = slices
            .iter()
            .map(|(ports, eps)| {
                (ports.iter().map(|p| p.port).collect(), eps.iter().map(|e| e.addresses[0].clone()).collect())
            })
            .collect();
        assert_eq!(
            shapes,
            vec![
                (vec![Some(8080), Some(9090)], vec!["10.244.0.2".to_owned()]),
                (vec![Some(9000), Some(9090)], vec!["10.244.1.2".to_owned()]),
                (vec![Some(9090)], vec!["10.244.1.3".to_owned()]),
            ]
        );
    }

    #[test]
    fn slices_hold_at_most_a_hundred_and_selectorless_services_none() {
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| pod(&format!("p{i:03}"), &format!("10.244.{}.{}", i / 200, i % 200 + 1), true, json!({})))
            .collect();
        let sizes: Vec<usize> = desired_slices(&web(), &pods).iter().map(|(_, e)| e.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let manual = svc(json!({"ports": [{"port": 80}]}));
        assert!(!managed(&manual));
        assert!(desired_slices(&manual, &pods).is_empty());
        let external = svc(json!({"type": "ExternalName", "externalName": "example.com", "selector": {"app": "web"}}));
        assert!(!managed(&external));
    }

    #[test]
    fn not_ready_addresses_are_published_when_asked_and_hostnames_for_the_subdomain() {
        let mut s = web();
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let pods = vec![pod("b", "10.244.0.3", false, json!({"spec": {"hostname": "b", "subdomain": "web"}}))];
        let (_, endpoints) = &desired_slices(&s, &pods)[0];
        assert_eq!(endpoints[0].conditions.as_ref().unwrap().ready, Some(true));
        assert_eq!(endpoints[0].hostname.as_deref(), Some("b"));
    }
}
