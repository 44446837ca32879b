//! Service: ClusterIP by default, TCP ports targeting themselves.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use super::print::{age, label_map, n, or_none, s};
use super::{Columns, Resource, Strategy, Sub, names};
use crate::status::Cause;
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

impl Strategy for ServiceStrategy {
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
