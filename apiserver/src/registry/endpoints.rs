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
        // As upstream's printer: the first three, then a count of the rest.
        let shown =
            if eps.len() > 3 { format!("{} + {} more...", eps[..3].join(","), eps.len() - 3) } else { eps.join(",") };
        vec![name, json!(or_none(shown)), created]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_three_addresses_and_counts_the_rest() {
        let addresses: Vec<Value> = (1..=5).map(|i| json!({"ip": format!("10.244.0.{i}")})).collect();
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": addresses, "ports": [{"port": 8080}]}]});
        let cells = EndpointsStrategy.cells(&ep);
        assert_eq!(cells[1], "10.244.0.1:8080,10.244.0.2:8080,10.244.0.3:8080 + 2 more...");
        assert_eq!(EndpointsStrategy.cells(&json!({"metadata": {"name": "web"}}))[1], "<none>");
    }
}
