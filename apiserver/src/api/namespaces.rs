//! Namespace deletion: a deleted namespace turns `Terminating`, everything in it is deleted,
//! and the namespace itself goes when it is empty (upstream runs this in the
//! controller-manager; here it lives beside the storage it empties, and resumes after a
//! restart).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::delete::{DeleteOptions, delete_one};
use super::storage::{self, Change};
use super::{App, Target};
use crate::store::ListRequest;

/// Empties and removes terminating namespaces, forever.
pub async fn finalize_namespaces(app: Arc<App>) {
    loop {
        let pending = match finalize_pass(&app).await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "namespace finalization failed; retrying");
                true
            }
        };
        let wait = if pending { Duration::from_secs(1) } else { Duration::from_secs(60) };
        let _ = tokio::time::timeout(wait, app.namespace_wake.notified()).await;
    }
}

/// One pass; returns whether a namespace is still waiting for its content to go.
async fn finalize_pass(app: &App) -> Result<bool, String> {
    let namespaces = app.registry.find("", "v1", "namespaces").ok_or("no namespaces resource")?;
    let list = app
        .store
        .list(ListRequest { prefix: namespaces.prefix(), ..Default::default() })
        .await
        .map_err(|e| e.to_string())?;
    let mut pending = false;
    for kv in list.items {
        let ns: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        if ns.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null) {
            continue;
        }
        let Some(name) = ns.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned) else { continue };
        if empty_namespace(app, &name).await? {
            let target = Target { resource: namespaces.clone(), namespace: None, name: Some(name.clone()), sub: None };
            let removed = storage::guaranteed_update(app, &target, None, false, |mut current| {
                if let Some(spec) = current.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("finalizers".into(), json!([]));
                }
                Ok(if storage::ready_to_remove(&namespaces, &current) {
                    Change::Remove(current)
                } else {
                    Change::Write(current)
                })
            })
            .await;
            if let Err(e) = removed
                && e.code != 404
            {
                return Err(e.to_string());
            }
            tracing::info!(namespace = %name, "namespace deleted");
        } else {
            pending = true;
        }
    }
    Ok(pending)
}

/// Deletes what is left in a namespace; true when nothing is left.
async fn empty_namespace(app: &App, namespace: &str) -> Result<bool, String> {
    let mut empty = true;
    let mut seen_storage = Vec::new();
    for resource in app.registry.all().iter().filter(|r| r.namespaced && !r.strategy.reviews()) {
        if seen_storage.contains(&resource.storage) {
            continue;
        }
        seen_storage.push(resource.storage.clone());
        let page = app
            .store
            .list(ListRequest { prefix: resource.namespace_prefix(Some(namespace)), ..Default::default() })
            .await
            .map_err(|e| e.to_string())?;
        for kv in page.items {
            empty = false;
            let name = kv.key.rsplit('/').next().unwrap_or_default().to_owned();
            let target = Target {
                resource: resource.clone(),
                namespace: Some(namespace.to_owned()),
                name: Some(name),
                sub: None,
            };
            let opts = DeleteOptions { propagation: Some("Background".into()), ..Default::default() };
            if let Err(e) = delete_one(app, &target, &opts).await
                && e.code != 404
            {
                return Err(e.to_string());
            }
        }
    }
    Ok(empty)
}
