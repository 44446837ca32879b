//! Service: ClusterIP by default, TCP ports targeting themselves; a cluster IP from
//! `--service-cluster-ip-range` (unless headless or ExternalName) and node ports from
//! `--service-node-port-range` (NodePort and LoadBalancer), claimed in storage on create,
//! kept on update, given back when the service goes or no longer needs them.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use super::print::{age, label_map, n, or_none, s};
use super::{Allocator, Columns, Pool, Resource, Strategy, Sub, names};
use crate::status::{ApiError, ApiResult, Cause};
use crate::{defaults, validation};

pub fn resource() -> Resource {
    Resource {
        short_names: names(&["svc"]),
        categories: names(&["all"]),
        subresources: Cow::Borrowed(&[Sub::Status]),
        storage: "services/specs".into(),
        ..Resource::of::<Service>("", "v1", "services", "service", "Service", ServiceStrategy)
    }
}

const COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("Type", "string", 0),
    ("Cluster-IP", "string", 0),
    ("External-IP", "string", 0),
    ("Port(s)", "string", 0),
    ("Age", "string", 0),
    ("Selector", "string", 1),
];

struct ServiceStrategy;

/// `namespace/name`: who holds a service's claims.
fn owner_of(obj: &Value) -> String {
    format!("{}/{}", s(obj, "/metadata/namespace"), s(obj, "/metadata/name"))
}

/// Whether a service of this spec has node ports.
fn wants_node_ports(obj: &Value) -> bool {
    match s(obj, "/spec/type") {
        "NodePort" => true,
        "LoadBalancer" => obj.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&Value::Bool(false)),
        _ => false,
    }
}

/// The cluster IP a service holds, if it holds one.
fn cluster_ip(obj: &Value) -> Option<String> {
    Some(s(obj, "/spec/clusterIP")).filter(|ip| !ip.is_empty() && *ip != "None").map(str::to_owned)
}

/// What a service holds: its cluster IP and node ports.
fn held(obj: &Value) -> Vec<(Pool, String)> {
    let mut out: Vec<(Pool, String)> = cluster_ip(obj).map(|ip| (Pool::ServiceIp, ip)).into_iter().collect();
    for p in obj.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(port) = p.get("nodePort").and_then(Value::as_i64).filter(|p| *p > 0) {
            out.push((Pool::NodePort, port.to_string()));
        }
    }
    out
}

/// The node port an old spec gave the same port and protocol.
fn kept_node_port(old: Option<&Value>, port: &Value) -> Option<i64> {
    let key = |p: &Value| {
        (p.get("port").and_then(Value::as_i64), p.get("protocol").and_then(Value::as_str).map(str::to_owned))
    };
    old?.pointer("/spec/ports")?
        .as_array()?
        .iter()
        .find(|p| key(p) == key(port))?
        .get("nodePort")?
        .as_i64()
        .filter(|np| *np > 0)
}

/// Claims what `obj` needs and does not hold through `old`; records each claim in `taken`.
async fn claim_all(
    pools: &dyn Allocator,
    obj: &mut Value,
    old: Option<&Value>,
    taken: &mut Vec<(Pool, String)>,
) -> Result<(), Cause> {
    let owner = owner_of(obj);
    let kind = s(obj, "/spec/type").to_owned();
    let requested = Some(s(obj, "/spec/clusterIP").to_owned()).filter(|ip| !ip.is_empty());
    let wants_ports = wants_node_ports(obj);
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if kind == "ExternalName" {
        spec.remove("clusterIPs");
    } else if requested.as_deref() == Some("None") {
        spec.insert("clusterIPs".into(), json!(["None"]));
    } else {
        let ip = match (old.and_then(cluster_ip), requested) {
            (Some(kept), None) => kept,
            (Some(kept), Some(r)) if kept == r => kept,
            (_, requested) => {
                let got = pools.claim(Pool::ServiceIp, requested.as_deref(), &owner).await.map_err(|why| {
                    let message = match &requested {
                        Some(r) => format!("Invalid value: []string{{{r:?}}}: failed to allocate IP {r}: {why}"),
                        None => format!("Invalid value: []string{{}}: failed to allocate a service IP: {why}"),
                    };
                    Cause { reason: "FieldValueInvalid", field: "spec.clusterIPs".into(), message }
                })?;
                taken.push((Pool::ServiceIp, got.clone()));
                got
            }
        };
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        spec.entry("ipFamilyPolicy").or_insert_with(|| json!("SingleStack"));
    }
    let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
    for (i, port) in ports.into_iter().flatten().enumerate() {
        if !wants_ports {
            if old.is_some()
                && let Some(p) = port.as_object_mut()
            {
                p.remove("nodePort");
            }
            continue;
        }
        let requested = port.get("nodePort").and_then(Value::as_i64).filter(|p| *p > 0);
        let node_port = match (kept_node_port(old, port), requested) {
            (Some(kept), None) => kept,
            (Some(kept), Some(r)) if kept == r => kept,
            (_, requested) => {
                let asked = requested.map(|r| r.to_string());
                let got = pools.claim(Pool::NodePort, asked.as_deref(), &owner).await.map_err(|why| Cause {
                    reason: "FieldValueInvalid",
                    field: format!("spec.ports[{i}].nodePort"),
                    message: format!("Invalid value: {}: {why}", requested.unwrap_or(0)),
                })?;
                taken.push((Pool::NodePort, got.clone()));
                got.parse().unwrap_or_default()
            }
        };
        port["nodePort"] = json!(node_port);
    }
    Ok(())
}

#[async_trait::async_trait]
impl Strategy for ServiceStrategy {
    fn allocates(&self) -> bool {
        true
    }

    async fn allocate(&self, pools: &dyn Allocator, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        let mut taken = Vec::new();
        if let Err(cause) = claim_all(pools, obj, old, &mut taken).await {
            let owner = owner_of(obj);
            for (pool, value) in taken {
                pools.release(pool, &value, &owner).await;
            }
            return Err(ApiError::invalid("Service", "", s(obj, "/metadata/name"), vec![cause]));
        }
        Ok(())
    }

    async fn release(&self, pools: &dyn Allocator, obj: &Value, kept: Option<&Value>) {
        let still = kept.map(held).unwrap_or_default();
        let owner = owner_of(obj);
        for (pool, value) in held(obj) {
            if !still.contains(&(pool, value.clone())) {
                pools.release(pool, &value, &owner).await;
            }
        }
    }

    fn default(&self, obj: &mut Value) {
        defaults::service(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::service(obj, old)
    }

    /// upstream encodes the empty LoadBalancerStatus struct.
    fn initial_status(&self) -> Value {
        json!({"loadBalancer": {}})
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = json!(s(o, "/metadata/name"));
        let created = json!(age(o, "/metadata/creationTimestamp"));
        let ports = o
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let node_port =
                            p.get("nodePort").and_then(Value::as_i64).map(|np| format!(":{np}")).unwrap_or_default();
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
            json!(or_none(label_map(o.pointer("/spec/selector")))),
        ]
    }
}
