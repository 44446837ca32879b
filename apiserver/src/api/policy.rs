//! Writing the bootstrap policy (`authz::bootstrap`) at start: each role and binding is
//! created if missing, and given back the rules or subjects it lost if it still carries
//! the autoupdate annotation.

use std::sync::Arc;

use serde_json::Value;

use super::{App, Target, storage, write};
use crate::authz::bootstrap;
use crate::registry::rbac::GROUP;

/// Creates or reconciles every bootstrap role and binding; a failure is logged and the
/// next start tries again.
pub async fn ensure_bootstrap_policy(app: &Arc<App>) {
    let sets = [
        ("clusterroles", bootstrap::cluster_roles(), "rules"),
        ("clusterrolebindings", bootstrap::cluster_role_bindings(), "subjects"),
    ];
    for (resource, objects, key) in sets {
        let Some(resource) = app.registry.find(GROUP, "v1", resource) else { continue };
        for desired in objects {
            let name = desired.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let target = Target { resource: resource.clone(), namespace: None, name: Some(name.clone()), sub: None };
            if let Err(e) = ensure(app, &target, desired, key).await {
                tracing::warn!(name, error = %e, "writing the bootstrap policy failed");
            }
        }
    }
}

async fn ensure(app: &Arc<App>, target: &Target, desired: Value, key: &str) -> crate::status::ApiResult<()> {
    let collection = Target { name: None, ..target.clone() };
    match write::create_object(app, &collection, desired.clone(), false, None).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    let (current, _) = storage::get_current(app, target).await?;
    if bootstrap::reconciled(&current, &desired, key).is_none() {
        return Ok(());
    }
    write::modify(app, target, None, |old| Ok(bootstrap::reconciled(old, &desired, key))).await?;
    Ok(())
}
