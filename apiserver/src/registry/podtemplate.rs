//! PodTemplate: a pod template stored for others to use, printed as upstream prints it.

use k8s_openapi::api::core::v1::PodTemplate;
use serde_json::{Value, json};

use super::print::{containers_and_images, label_map, or_none, s};
use super::{Columns, Resource, Strategy};

pub fn resource() -> Resource {
    Resource::of::<PodTemplate>("", "v1", "podtemplates", "podtemplate", "PodTemplate", PodTemplateStrategy)
}

const COLUMNS: Columns =
    &[("Name", "string", 0), ("Containers", "string", 0), ("Images", "string", 0), ("Pod Labels", "string", 0)];

struct PodTemplateStrategy;

impl Strategy for PodTemplateStrategy {
    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let (containers, images) = containers_and_images(o, "/template/spec/containers");
        let labels = label_map(o.pointer("/template/metadata/labels"));
        vec![json!(s(o, "/metadata/name")), json!(containers), json!(images), json!(or_none(labels))]
    }
}
