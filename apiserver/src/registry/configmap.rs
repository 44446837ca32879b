//! ConfigMap: data and binaryData, at most 1 MiB.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Resource, Strategy, names};
use crate::status::Cause;
use crate::validation;

pub fn resource() -> Resource {
    Resource {
        short_names: names(&["cm"]),
        ..Resource::of::<ConfigMap>("", "v1", "configmaps", "configmap", "ConfigMap", ConfigMapStrategy)
    }
}

const COLUMNS: Columns = &[("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)];

struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::config_map(obj, old)
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = json!(s(o, "/metadata/name"));
        let created = json!(age(o, "/metadata/creationTimestamp"));
        let data = o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())
            + o.get("binaryData").and_then(Value::as_object).map_or(0, |m| m.len());
        vec![name, json!(data), created]
    }
}
