//! ReplicaSet (apps/v1): status and scale subresources.

use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{Value, json};

use super::print::{age, containers_and_images, n, s, selector};
use super::{Columns, Resource, Strategy, Sub};
use crate::status::Cause;
use crate::{defaults, validation};

pub const RESOURCE: Resource = Resource {
    short_names: &["rs"],
    categories: &["all"],
    subresources: &[Sub::Status, Sub::Scale],
    fields: &[("status.replicas", "status.replicas", "0")],
    ..Resource::of::<ReplicaSet>("apps", "v1", "replicasets", "replicaset", "ReplicaSet", &ReplicaSetStrategy)
};

const COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("Desired", "integer", 0),
    ("Current", "integer", 0),
    ("Ready", "integer", 0),
    ("Age", "string", 0),
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
];

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
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = json!(s(o, "/metadata/name"));
        let created = json!(age(o, "/metadata/creationTimestamp"));
        let (c, i) = containers_and_images(o, "/spec/template/spec/containers");
        vec![
            name,
            json!(n(o, "/spec/replicas")),
            json!(n(o, "/status/replicas")),
            json!(n(o, "/status/readyReplicas")),
            created,
            json!(c),
            json!(i),
            json!(selector(o)),
        ]
    }
}
