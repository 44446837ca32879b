//! ReplicaSet (apps/v1): status and scale subresources.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{Value, json};

use super::print::{REPLICATED_COLUMNS, replicated_cells};
use super::{Columns, Resource, Strategy, Sub, names};
use crate::status::Cause;
use crate::{defaults, validation};

pub fn resource() -> Resource {
    Resource {
        short_names: names(&["rs"]),
        categories: names(&["all"]),
        subresources: Cow::Borrowed(&[Sub::Status, Sub::Scale]),
        fields: &[("status.replicas", "status.replicas", "0")],
        ..Resource::of::<ReplicaSet>("apps", "v1", "replicasets", "replicaset", "ReplicaSet", ReplicaSetStrategy)
    }
}

struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        defaults::replica_set(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::replica_set(obj, old)
    }

    /// `replicas` has no `omitempty` in upstream's ReplicaSetStatus.
    fn initial_status(&self) -> Value {
        json!({"replicas": 0})
    }

    fn columns(&self) -> Columns {
        REPLICATED_COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        replicated_cells(o)
    }
}
