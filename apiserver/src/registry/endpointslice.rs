//! EndpointSlice (discovery.k8s.io/v1): a Service's endpoints in slices of at most 100,
//! written by the controller-manager's EndpointSlice controller and read by kube-proxy.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Resource, Strategy};
use crate::status::Cause;
use crate::validation;

pub fn resource() -> Resource {
    Resource {
        ..Resource::of::<EndpointSlice>(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "endpointslice",
            "EndpointSlice",
            EndpointSliceStrategy,
        )
    }
}

const COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("AddressType", "string", 0),
    ("Ports", "string", 0),
    ("Endpoints", "string", 0),
    ("Age", "string", 0),
];

/// Upstream's limit of endpoints in one slice.
const MAX_ENDPOINTS: usize = 1000;

struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validation::generic(obj, old);
        let kind = s(obj, "/addressType");
        if !["IPv4", "IPv6", "FQDN"].contains(&kind) {
            causes.push(Cause::not_supported("addressType", kind, &["FQDN", "IPv4", "IPv6"]));
        }
        if let Some(old) = old
            && s(old, "/addressType") != kind
        {
            causes.push(Cause::invalid("addressType", kind, "field is immutable"));
        }
        let endpoints = obj.get("endpoints").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if endpoints.len() > MAX_ENDPOINTS {
            causes.push(Cause::too_many("endpoints", endpoints.len() as i64, MAX_ENDPOINTS as i64));
        }
        for (i, e) in endpoints.iter().enumerate() {
            let addresses = e.get("addresses").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            if addresses != 1 {
                causes.push(Cause::invalid_value(
                    format!("endpoints[{i}].addresses"),
                    &json!(addresses),
                    "must contain exactly 1 address",
                ));
            }
            if kind == "IPv4"
                && let Some(a) = e.pointer("/addresses/0").and_then(Value::as_str)
                && a.parse::<std::net::Ipv4Addr>().is_err()
            {
                causes.push(Cause::invalid(format!("endpoints[{i}].addresses[0]"), a, "must be a valid IPv4 address"));
            }
        }
        causes
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let ports: Vec<String> = o
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| p.get("port").and_then(Value::as_i64).map_or("<unset>".to_owned(), |p| p.to_string()))
            .collect();
        let addresses: Vec<&str> = o
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.pointer("/addresses/0").and_then(Value::as_str))
            .collect();
        let endpoints = match addresses.len() {
            0 => "<none>".to_owned(),
            n if n > 3 => format!("{} + {} more...", addresses[..3].join(","), n - 3),
            _ => addresses.join(","),
        };
        vec![
            json!(s(o, "/metadata/name")),
            json!(s(o, "/addressType")),
            json!(if ports.is_empty() { "<unset>".to_owned() } else { ports.join(",") }),
            json!(endpoints),
            json!(age(o, "/metadata/creationTimestamp")),
        ]
    }
}
