//! The service ports kube-proxy programs, read from Services and their EndpointSlices.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::rules::{Endpoint, Protocol, ServicePort};

/// The label naming a slice's service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// Every port of every service with a cluster IP, with the endpoints its slices list.
/// Linear in services plus slices: the slices are indexed by their service first.
pub fn service_ports(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Vec<ServicePort> {
    let mut by_service: HashMap<(&str, &str), Vec<&Arc<EndpointSlice>>> = HashMap::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) else { continue };
        let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
        by_service.entry((namespace, service.as_str())).or_default().push(slice);
    }
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mine: &[&Arc<EndpointSlice>] =
            by_service.get(&(namespace.as_str(), name.as_str())).map_or(&[], Vec::as_slice);
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else { continue };
            let Ok(service_port) = u16::try_from(port.port) else { continue };
            let port_name = port.name.clone().unwrap_or_default();
            let mut endpoints = Vec::new();
            for slice in mine {
                let Some(target) = slice.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or_default() == port_name
                        && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
                }) else {
                    continue;
                };
                let Some(target) = target.port.and_then(|p| u16::try_from(p).ok()) else { continue };
                for e in &slice.endpoints {
                    let Some(ip) = e.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else { continue };
                    let c = e.conditions.clone().unwrap_or_default();
                    // Upstream: an unset `ready` is ready, an unset `serving` is `ready`.
                    let ready = c.ready.unwrap_or(true);
                    endpoints.push(Endpoint {
                        ip,
                        port: target,
                        ready,
                        serving: c.serving.unwrap_or(ready),
                        terminating: c.terminating.unwrap_or(false),
                        node: e.node_name.clone(),
                    });
                }
            }
            endpoints.sort();
            endpoints.dedup();
            out.push(ServicePort {
                namespace: namespace.clone(),
                name: name.clone(),
                port_name,
                protocol,
                cluster_ip: Some(cluster_ip),
                port: service_port,
                node_port: port.node_port.and_then(|p| u16::try_from(p).ok()),
                affinity_seconds: affinity,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                endpoints,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_find_their_endpoints_by_name_and_protocol() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "type": "NodePort", "sessionAffinity": "ClientIP",
                "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                          {"name": "dns", "port": 53, "protocol": "UDP"}]},
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.244.1.2"], "conditions": {"ready": true}, "nodeName": "n1"},
                {"addresses": ["10.244.1.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            ],
        }))
        .unwrap();
        let other: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "db-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 1}], "endpoints": [{"addresses": ["10.9.9.9"]}],
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "h", "namespace": "default"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
        }))
        .unwrap();
        let ports = service_ports(&[Arc::new(svc), Arc::new(headless)], &[Arc::new(slice), Arc::new(other)]);
        assert_eq!(ports.len(), 2);
        let http = &ports[0];
        assert_eq!((http.port_name.as_str(), http.port, http.node_port), ("http", 80, Some(30080)));
        assert_eq!(http.affinity_seconds, Some(10800));
        assert!(http.external_local && !http.internal_local);
        let eps: Vec<(String, u16, bool, bool)> =
            http.endpoints.iter().map(|e| (e.ip.to_string(), e.port, e.ready, e.terminating)).collect();
        assert_eq!(eps, vec![("10.244.1.2".into(), 8080, true, false), ("10.244.1.3".into(), 8080, false, true)]);
        let dns = &ports[1];
        assert_eq!((dns.protocol, dns.endpoints[0].port), (Protocol::Udp, 5353));
    }
}
