//! Endpoints: a Service's addresses. A PUT creates missing endpoints, as upstream's.

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{Value, json};

use super::print::{age, n, or_none, s};
use super::{Columns, Resource, Strategy, names};

pub fn resource() -> Resource {
    Resource {
        short_names: names(&["ep"]),
        storage: "services/endpoints".into(),
        ..Resource::of::<Endpoints>("", "v1", "endpoints", "endpoints", "Endpoints", EndpointsStrategy)
    }
}

const COLUMNS: Columns = &[("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)];

struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn creates_on_update(&self) -> bool {
        true
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = json!(s(o, "/metadata/name"));
        let created = json!(age(o, "/metadata/creationTimestamp"));
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
                        if ports.is_empty() { vec![ip] } else { ports.iter().map(|p| format!("{ip}:{p}")).collect() }
                    },
                )
            })
            .collect();
        vec![name, json!(or_none(eps.join(","))), created]
    }
}
