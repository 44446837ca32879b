//! Reading and writing objects in storage: the stored form, the optimistic-concurrency
//! update loop every write verb shares, and the rules for the fields the server owns.

use bytes::Bytes;
use serde_json::{Value, json};

use super::allocate::StoreAllocator;
use super::{App, Target};
use crate::meta::{meta_mut, meta_str};
use crate::registry::{self, Resource, Sub};
use crate::status::{ApiError, ApiResult};
use crate::store;

/// Decodes a stored object into its served form at `revision`.
pub fn decode_stored(resource: &Resource, bytes: &[u8], revision: i64) -> ApiResult<Value> {
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored {} is not valid JSON: {e}", &resource.kind)))?;
    crate::meta::set_resource_version(&mut value, revision);
    Ok(registry::from_storage(resource, value))
}

/// Encodes a served object into its stored form (no `resourceVersion`: the revision is),
/// refusing one larger than the server stores (413, naming both sizes). Every write path
/// (create, update, each patch type, apply, subresources) comes through here.
pub fn encode_for_storage(app: &App, resource: &Resource, value: &Value) -> ApiResult<Bytes> {
    let bytes = encode(resource, value)?;
    let limit = app.limits.max_object_bytes;
    if bytes.len() > limit {
        let name = meta_str(value, "name").unwrap_or_default();
        return Err(ApiError::too_large(format!(
            "{} {name:?} would be {} bytes when stored, over the limit of {limit} bytes",
            resource.qualified(),
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn encode(resource: &Resource, value: &Value) -> ApiResult<Bytes> {
    let meta = value.get("metadata");
    let clean = meta.is_none_or(|m| m.get("resourceVersion").is_none() && m.get("selfLink").is_none());
    if resource.conversion.is_none() && clean {
        return serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(format!("encoding {}: {e}", &resource.kind)));
    }
    let mut stored = registry::to_storage(resource, value.clone());
    if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("selfLink");
    }
    serde_json::to_vec(&stored)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("encoding {}: {e}", &resource.kind)))
}

/// Reads the named object and its revision.
pub async fn get_current(app: &App, target: &Target) -> ApiResult<(Value, i64)> {
    let kv = app.store.get(&target.key()).await.map_err(|e| target.storage_error(e))?;
    let kv = kv.ok_or_else(|| target.not_found())?;
    Ok((decode_stored(&target.resource, &kv.value, kv.mod_revision)?, kv.mod_revision))
}

/// What an update function decided.
pub enum Change {
    /// Write this object.
    Write(Value),
    /// Nothing changed: answer with the current object.
    Unchanged(Value),
    /// Remove the object (the last finalizer went, or a graceful deletion completed).
    Remove(Value),
}

/// Most attempts of an update that keeps losing races to other writers.
const MAX_ATTEMPTS: usize = 32;

/// The optimistic update loop: read, compute, compare-and-swap; retried when another writer
/// got there first, unless the caller pinned a `resourceVersion` (then 409).
pub async fn guaranteed_update(
    app: &App,
    target: &Target,
    precondition: Option<i64>,
    dry_run: bool,
    mut change: impl FnMut(Value) -> ApiResult<Change>,
) -> ApiResult<Value> {
    for _ in 0..MAX_ATTEMPTS {
        let (current, revision) = get_current(app, target).await?;
        if precondition.is_some_and(|p| p != revision) {
            return Err(target.conflict());
        }
        let key = target.key();
        let strategy = &target.resource.strategy;
        // A kind that holds values from the server's pools claims what the new object
        // needs before it is written, and gives back what is no longer held after.
        let allocates = strategy.allocates();
        let old = if allocates { Some(current.clone()) } else { None };
        let pools = StoreAllocator::new(app, dry_run);
        match change(current)? {
            // Unchanged but stored under an older encryption key: written, under the new one.
            Change::Unchanged(v) if dry_run || !app.encryption.as_ref().is_some_and(|e| e.is_stale(&key)) => {
                return Ok(v);
            }
            Change::Write(mut v) if dry_run => {
                crate::meta::set_resource_version(&mut v, revision);
                return Ok(v);
            }
            Change::Remove(v) if dry_run => return Ok(v),
            Change::Unchanged(mut v) | Change::Write(mut v) => {
                if allocates {
                    strategy.allocate(&pools, &mut v, old.as_ref()).await?;
                }
                let written = match encode_for_storage(app, &target.resource, &v) {
                    Ok(bytes) => app.store.update(&key, bytes, revision).await,
                    Err(e) => {
                        if let Some(old) = &old {
                            strategy.release(&pools, &v, Some(old)).await;
                        }
                        return Err(e);
                    }
                };
                match written {
                    Ok(new_revision) => {
                        if let Some(old) = &old {
                            strategy.release(&pools, old, Some(&v)).await;
                        }
                        crate::meta::set_resource_version(&mut v, new_revision);
                        return Ok(v);
                    }
                    Err(e) => {
                        if let Some(old) = &old {
                            strategy.release(&pools, &v, Some(old)).await;
                        }
                        match e {
                            store::Error::Conflict { .. } if precondition.is_none() => continue,
                            e => return Err(target.storage_error(e)),
                        }
                    }
                }
            }
            Change::Remove(mut v) => match app.store.delete(&key, Some(revision)).await {
                Ok((rev, _)) => {
                    if let Some(old) = &old {
                        strategy.release(&pools, old, None).await;
                    }
                    crate::meta::set_resource_version(&mut v, rev);
                    return Ok(v);
                }
                Err(store::Error::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => return Err(target.storage_error(e)),
            },
        }
    }
    Err(ApiError::conflict(
        &target.resource.qualified(),
        &target.resource.group,
        &target.resource.resource,
        target.name(),
        "too many concurrent writers; try again",
    ))
}

/// Metadata fields only the server sets.
const SERVER_OWNED: &[&str] =
    &["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"];

fn without(value: &Value, fields: &[&str]) -> Value {
    let mut v = value.clone();
    if let Some(o) = v.as_object_mut() {
        for f in fields {
            o.remove(*f);
        }
    }
    v
}

/// Turns a client's new version of an object into what is stored: server-owned metadata
/// kept from `old`, `status` kept unless `status_only` (then only `status` changes),
/// `generation` bumped when the spec changed, defaults filled, and validation run.
pub fn prepare_update(resource: &Resource, old: &Value, new: Value, status_only: bool) -> ApiResult<Value> {
    // A uid in the new object is a precondition, as upstream treats it: an update or patch
    // meant for another incarnation of the name must not land on this one.
    if let (Some(want), Some(have)) = (meta_str(&new, "uid"), meta_str(old, "uid"))
        && !want.is_empty()
        && want != have
    {
        return Err(ApiError::conflict(
            &resource.qualified(),
            &resource.group,
            &resource.resource,
            meta_str(old, "name").unwrap_or_default(),
            &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {have}"),
        ));
    }
    let mut next = if status_only {
        let mut next = old.clone();
        match new.get("status") {
            Some(s) => next["status"] = s.clone(),
            None => {
                if let Some(o) = next.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        resource.strategy.prepare_status_update(old, &mut next);
        next
    } else {
        let mut next = new;
        if resource.has(Sub::Status) {
            match old.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(o) = next.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = meta_mut(&mut next);
        for field in SERVER_OWNED {
            match old_meta.get(*field) {
                Some(v) => meta.insert((*field).to_owned(), v.clone()),
                None => meta.remove(*field),
            };
        }
        for field in ["name", "namespace"] {
            if let Some(v) = old_meta.get(field) {
                meta.insert(field.to_owned(), v.clone());
            }
        }
        next
    };
    resource.strategy.default(&mut next);
    if resource.strategy.keeps_generation(resource) {
        let spec_changed = without(old, &["metadata", "status"]) != without(&next, &["metadata", "status"]);
        if spec_changed {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            meta_mut(&mut next).insert("generation".into(), json!(generation + 1));
        }
    }
    let causes = resource.strategy.validate(&next, Some(old));
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            &resource.kind,
            &resource.group,
            meta_str(&next, "name").unwrap_or_default(),
            causes,
        ));
    }
    Ok(next)
}

/// Whether an updated object should now be removed: it is being deleted, has no
/// finalizers left, and is not waiting for a graceful pod shutdown.
pub fn ready_to_remove(resource: &Resource, value: &Value) -> bool {
    let meta = value.get("metadata");
    let deleting = meta.and_then(|m| m.get("deletionTimestamp")).is_some_and(|t| !t.is_null());
    let finalizers = meta.and_then(|m| m.get("finalizers")).and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let finalizers = finalizers || resource.strategy.waits_for_finalization(value);
    let grace = meta.and_then(|m| m.get("deletionGracePeriodSeconds")).and_then(Value::as_i64).unwrap_or(0);
    deleting && !finalizers && grace == 0
}

/// The update decision shared by PUT, PATCH and the status subresource.
pub fn decide(resource: &Resource, old: Value, next: Value) -> Change {
    if ready_to_remove(resource, &next) {
        return Change::Remove(next);
    }
    let mut comparable = next.clone();
    if let Some(meta) = comparable.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), old.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null));
    }
    if comparable == old { Change::Unchanged(old) } else { Change::Write(next) }
}

/// Fails unless the namespace exists and is not being deleted.
pub async fn check_namespace(app: &App, namespace: &str) -> ApiResult<()> {
    let namespaces =
        app.registry.find("", "v1", "namespaces").ok_or_else(|| ApiError::internal("no namespaces resource"))?;
    let key = namespaces.key(None, namespace);
    // The cache answers almost always; a namespace created a moment ago may not be in it
    // yet, so a miss asks storage before saying 404.
    let ns: Value = match app.cache(&namespaces)?.get(&key).and_then(|c| c.value()) {
        Some(ns) => ns,
        None => {
            let kv = app.store.get(&key).await.map_err(|e| ApiError::internal(e.to_string()))?;
            let Some(kv) = kv else {
                return Err(ApiError::not_found("namespaces", "", "namespaces", namespace));
            };
            serde_json::from_slice(&kv.value).unwrap_or_default()
        }
    };
    if ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        )));
    }
    Ok(())
}

/// Parses a `resourceVersion` given by a client.
pub fn parse_revision(value: &str) -> ApiResult<i64> {
    value.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| {
        ApiError::bad_request(format!("invalid resourceVersion {value:?}: must be a non-negative integer"))
    })
}

/// The precondition a body's `metadata.resourceVersion` sets, if any.
pub fn body_precondition(body: &Value) -> ApiResult<Option<i64>> {
    match meta_str(body, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(rv) => parse_revision(rv).map(Some),
    }
}
