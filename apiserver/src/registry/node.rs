//! Node (cluster-scoped): kubelets register them with their status.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use super::print::{age, or_none, s};
use super::{Columns, Resource, Strategy, Sub, names};
use crate::status::Cause;
use crate::validation;

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        short_names: names(&["no"]),
        subresources: Cow::Borrowed(&[Sub::Status]),
        storage: "minions".into(),
        fields: &[("spec.unschedulable", "spec.unschedulable", "false")],
        ..Resource::of::<Node>("", "v1", "nodes", "node", "Node", NodeStrategy)
    }
}

const COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("Status", "string", 0),
    ("Roles", "string", 0),
    ("Age", "string", 0),
    ("Version", "string", 0),
    ("Internal-IP", "string", 1),
    ("External-IP", "string", 1),
    ("OS-Image", "string", 1),
    ("Kernel-Version", "string", 1),
    ("Container-Runtime", "string", 1),
];

struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::node(obj, old)
    }

    /// A kubelet registers its node with the status it observed.
    fn prepare_create(&self, _resource: &Resource, _obj: &mut Value) {}

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, node: &Value) -> Vec<Value> {
        let conds = node.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        // As upstream's printer: any Ready status but True (False or Unknown) is NotReady;
        // no Ready condition at all is Unknown.
        let mut status = match conds.iter().find(|c| s(c, "/type") == "Ready").map(|c| s(c, "/status").to_owned()) {
            Some(st) if st == "True" => "Ready".to_owned(),
            Some(_) => "NotReady".to_owned(),
            None => "Unknown".to_owned(),
        };
        if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push_str(",SchedulingDisabled");
        }
        let roles: Vec<String> = node
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|l| l.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(str::to_owned)).collect())
            .unwrap_or_default();
        let addr = |kind: &str| {
            node.pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| s(x, "/type") == kind))
                .map(|x| s(x, "/address").to_owned())
                .unwrap_or_else(|| "<none>".into())
        };
        vec![
            json!(s(node, "/metadata/name")),
            json!(status),
            json!(or_none(roles.join(","))),
            json!(age(node, "/metadata/creationTimestamp")),
            json!(s(node, "/status/nodeInfo/kubeletVersion")),
            json!(addr("InternalIP")),
            json!(addr("ExternalIP")),
            json!(or_none(s(node, "/status/nodeInfo/osImage").to_owned())),
            json!(or_none(s(node, "/status/nodeInfo/kernelVersion").to_owned())),
            json!(or_none(s(node, "/status/nodeInfo/containerRuntimeVersion").to_owned())),
        ]
    }
}
