//! Namespace (cluster-scoped): the `kubernetes` finalizer and phase Active on create; a
//! deleted namespace turns Terminating and goes once the server has emptied it
//! (`api/namespaces.rs`); the system's own namespaces are never deleted.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Namespace;
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Resource, Strategy, Sub, names};
use crate::meta::{meta_mut, now_rfc3339};
use crate::status::{ApiError, ApiResult, Cause};
use crate::{defaults, validation};

/// Namespaces the system needs: never deleted, and recreated if missing (upstream's
/// immortal namespaces).
pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        short_names: names(&["ns"]),
        subresources: Cow::Borrowed(&[Sub::Status]),
        fields: &[("status.phase", "status.phase", "")],
        ..Resource::of::<Namespace>("", "v1", "namespaces", "namespace", "Namespace", NamespaceStrategy)
    }
}

const COLUMNS: Columns = &[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)];

struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn default(&self, obj: &mut Value) {
        defaults::namespace(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        validation::namespace(obj, old)
    }

    /// A new namespace's status is defaulted (phase Active), not cleared.
    fn prepare_create(&self, _resource: &Resource, _obj: &mut Value) {}

    /// Upstream's NamespaceLifecycle admission: the system's own namespaces stay.
    fn check_delete(&self, name: &str) -> ApiResult<()> {
        if SYSTEM_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespaces {name:?} is forbidden: this namespace may not be deleted"
            )));
        }
        Ok(())
    }

    fn begin_deletion(&self, obj: &Value) -> Option<Value> {
        let mut next = obj.clone();
        meta_mut(&mut next).insert("deletionTimestamp".into(), json!(now_rfc3339()));
        meta_mut(&mut next).insert("deletionGracePeriodSeconds".into(), json!(0));
        next["status"]["phase"] = json!("Terminating");
        Some(next)
    }

    fn waits_for_finalization(&self, obj: &Value) -> bool {
        obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
    }

    /// Upstream serves no `deletecollection` for namespaces: each goes through its own
    /// finalization.
    fn deletes_as_collection(&self) -> bool {
        false
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![json!(s(o, "/metadata/name")), json!(s(o, "/status/phase")), json!(age(o, "/metadata/creationTimestamp"))]
    }
}
