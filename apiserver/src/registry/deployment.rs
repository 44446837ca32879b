//! Deployment (apps/v1): status and scale subresources.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use super::print::{age, containers_and_images, n, s, selector};
use super::{Columns, Resource, Strategy, Sub, names};
use crate::status::Cause;
use crate::{defaults, validation};

pub fn resource() -> Resource {
    Resource {
        short_names: names(&["deploy"]),
        categories: names(&["all"]),
        subresources: Cow::Borrowed(&[Sub::Status, Sub::Scale]),
        ..Resource::of::<Deployment>("apps", "v1", "deployments", "deployment", "Deployment", DeploymentStrategy)
    }
}

const COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("Ready", "string", 0),
    ("Up-to-date", "integer", 0),
    ("Available", "integer", 0),
    ("Age", "string", 0),
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
];

struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        defaults::deployment(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::deployment(obj, old)
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
            json!(format!("{}/{}", n(o, "/status/readyReplicas"), n(o, "/spec/replicas"))),
            json!(n(o, "/status/updatedReplicas")),
            json!(n(o, "/status/availableReplicas")),
            created,
            json!(c),
            json!(i),
            json!(selector(o)),
        ]
    }
}
