//! ReplicationController (core/v1): the replicated kind the classic `kubectl
//! rolling-update` worked on; a plain label-map selector defaulted from the template.
//! The controller-manager runs it with the ReplicaSet controller's code.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::ReplicationController;
use serde_json::{Value, json};

use super::print::{REPLICATED_COLUMNS, replicated_cells};
use super::{Columns, Resource, Strategy, Sub, names};
use crate::status::Cause;
use crate::{defaults, validation};

pub fn resource() -> Resource {
    Resource {
        short_names: names(&["rc"]),
        categories: names(&["all"]),
        subresources: Cow::Borrowed(&[Sub::Status, Sub::Scale]),
        ..Resource::of::<ReplicationController>(
            "",
            "v1",
            "replicationcontrollers",
            "replicationcontroller",
            "ReplicationController",
            Controllers,
        )
    }
}

struct Controllers;

impl Strategy for Controllers {
    fn default(&self, obj: &mut Value) {
        defaults::replication_controller(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::replication_controller(obj, old)
    }

    /// A plain label map: every pair must match.
    fn label_selector(&self, obj: &Value) -> Option<Value> {
        obj.pointer("/spec/selector").map(|labels| json!({ "matchLabels": labels }))
    }

    /// `replicas` has no `omitempty` in upstream's ReplicationControllerStatus.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_and_labels_come_from_the_template() {
        let mut rc = json!({"metadata": {"name": "web"}, "spec": {"template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        Controllers.default(&mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert_eq!(rc["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(Controllers.validate(&rc, None).is_empty(), "{:?}", Controllers.validate(&rc, None));
        assert_eq!(Controllers.cells(&rc)[7], "app=web");

        // The selector may change (unlike apps/v1's), but must still match the template.
        let mut moved = rc.clone();
        moved["spec"]["selector"] = json!({"app": "web", "track": "canary"});
        let causes = Controllers.validate(&moved, Some(&rc));
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        moved["spec"]["template"]["metadata"]["labels"]["track"] = json!("canary");
        assert!(Controllers.validate(&moved, Some(&rc)).is_empty());

        let bare = json!({"metadata": {"name": "x"}, "spec": {"selector": {}}});
        let fields: Vec<String> = Controllers.validate(&bare, None).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["spec.template", "spec.selector"]);
    }
}
