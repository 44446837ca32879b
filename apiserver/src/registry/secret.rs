//! Secret: base64 data, `stringData` folded in, a type that may not change.

use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Resource, Strategy};
use crate::status::Cause;
use crate::{defaults, validation};

pub fn resource() -> Resource {
    Resource {
        fields: &[("type", "type", "")],
        ..Resource::of::<Secret>("", "v1", "secrets", "secret", "Secret", SecretStrategy)
    }
}

const COLUMNS: Columns = &[("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)];

struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        defaults::secret(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::secret(obj, old)
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = json!(s(o, "/metadata/name"));
        let created = json!(age(o, "/metadata/creationTimestamp"));
        vec![
            name,
            json!(s(o, "/type")),
            json!(o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())),
            created,
        ]
    }
}
