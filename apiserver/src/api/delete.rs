//! delete and deletecollection: immediate removal, graceful pod deletion (the kubelet
//! confirms), finalizers, propagation policies for the garbage collector, and namespaces
//! that empty themselves before they go.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::read::{filter, list_body};
use super::storage::{self, Change};
use super::{App, Params, Target, json_response, value_response};
use crate::cache::Cached;
use crate::decode;
use crate::meta::{meta_mut, meta_str};
use crate::status::{ApiError, ApiResult};
use crate::store::ListRequest;

/// What a DeleteOptions body and the query ask for.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace: Option<i64>,
    /// `propagationPolicy`: Orphan, Background or Foreground.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads the options from the query and an optional JSON body.
    pub fn parse(params: &Params, ct: &str, body: &[u8]) -> ApiResult<DeleteOptions> {
        let mut opts = DeleteOptions::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v = decode::decode_body(ct, body)?;
            opts.grace = v.get("gracePeriodSeconds").and_then(Value::as_i64);
            opts.propagation = v.get("propagationPolicy").and_then(Value::as_str).map(str::to_owned);
            if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) && opts.propagation.is_none() {
                opts.propagation = Some("Orphan".into());
            }
            opts.uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned);
            opts.resource_version =
                v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_owned);
            opts.dry_run = match v.get("dryRun") {
                None | Some(Value::Null) => false,
                Some(Value::Array(list)) => {
                    let values: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
                    let values = values.ok_or_else(|| ApiError::bad_request("dryRun must be a list of strings"))?;
                    super::write::dry_run_values(&values, "DeleteOptions")?
                }
                Some(_) => return Err(ApiError::bad_request("dryRun must be a list of strings")),
            };
        }
        if let Some(g) = params.get("gracePeriodSeconds") {
            opts.grace =
                Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?);
        }
        if let Some(p) = params.get("propagationPolicy") {
            opts.propagation = Some(p.clone());
        }
        if params.contains_key("dryRun") {
            opts.dry_run = super::write::dry_run(params, "DeleteOptions")?;
        }
        if let Some(p) = &opts.propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy must be one of Orphan, Background or Foreground, not {p:?}"
            )));
        }
        if opts.grace.is_some_and(|g| g < 0) {
            opts.grace = Some(0);
        }
        Ok(opts)
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Decides what deleting `obj` means, per upstream's rules.
fn deletion(target: &Target, opts: &DeleteOptions, obj: Value) -> ApiResult<Change> {
    // Upstream's storage Preconditions.Check (apiserver/pkg/storage/interfaces.go), turned
    // into a 409 by interpretStorageError.
    let preconditions = [("UID", "uid", &opts.uid), ("ResourceVersion", "resourceVersion", &opts.resource_version)];
    for (what, field, wanted) in preconditions {
        let actual = meta_str(&obj, field).unwrap_or_default();
        if let Some(wanted) = wanted
            && wanted != actual
        {
            let why = format!("Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}");
            let r = &target.resource;
            return Err(ApiError::conflict(&r.qualified(), &r.group, &r.resource, target.name(), &why));
        }
    }
    let strategy = &target.resource.strategy;
    strategy.check_delete(target.name())?;
    let grace = strategy.grace_period(&obj, opts.grace);
    let mut fins = finalizers(&obj);
    match opts.propagation.as_deref() {
        Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
        Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => fins.push("foregroundDeletion".into()),
        _ => {}
    }
    let already = obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    let current_grace = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    if let Some(marked) = strategy.begin_deletion(&obj) {
        return Ok(if already { Change::Unchanged(obj) } else { Change::Write(marked) });
    }
    if already {
        // A second delete may only shorten a grace period; a zero one finishes it.
        if current_grace.is_some_and(|g| grace < g) {
            let mut next = obj;
            meta_mut(&mut next).insert("deletionGracePeriodSeconds".into(), json!(grace));
            meta_mut(&mut next).insert("deletionTimestamp".into(), json!(crate::meta::rfc3339_in(grace)));
            if grace == 0 && finalizers(&next).is_empty() {
                return Ok(Change::Remove(next));
            }
            return Ok(Change::Write(next));
        }
        return Ok(Change::Unchanged(obj));
    }
    if fins.is_empty() && grace == 0 {
        return Ok(Change::Remove(obj));
    }
    let mut next = obj;
    let meta = meta_mut(&mut next);
    meta.insert("deletionTimestamp".into(), json!(crate::meta::rfc3339_in(grace)));
    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    if !fins.is_empty() {
        meta.insert("finalizers".into(), json!(fins));
    }
    Ok(Change::Write(next))
}

/// Deletes one object; answers with its last state.
pub async fn delete_one(app: &App, target: &Target, opts: &DeleteOptions) -> ApiResult<Value> {
    let result = storage::guaranteed_update(app, target, None, opts.dry_run, |obj| deletion(target, opts, obj)).await?;
    if target.resource.strategy.waits_for_finalization(&result) {
        // The server finishes this deletion (a namespace empties itself), and creates check
        // the namespace against the cache: make it see the deletion first.
        if let Some(rv) = meta_str(&result, "resourceVersion").and_then(|rv| rv.parse().ok()) {
            app.cache(&target.resource)?.wait_for(rv, std::time::Duration::from_secs(1)).await;
        }
        app.namespace_wake.notify_one();
    }
    Ok(result)
}

/// DELETE of one object.
pub async fn delete(app: &Arc<App>, target: &Target, params: &Params, ct: &str, body: &[u8]) -> ApiResult<Response> {
    let opts = DeleteOptions::parse(params, ct, body)?;
    let last = delete_one(app, target, &opts).await?;
    Ok(value_response(StatusCode::OK, &last, &[]))
}

/// DELETE of a collection: every object the selectors match.
pub async fn delete_collection(
    app: &Arc<App>,
    target: &Target,
    params: &Params,
    ct: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let opts = DeleteOptions::parse(params, ct, body)?;
    let filter = filter(target, params)?;
    let resource = &target.resource;
    let page = app
        .store
        .list(ListRequest { prefix: resource.namespace_prefix(target.namespace.as_deref()), ..Default::default() })
        .await
        .map_err(|e| target.storage_error(e))?;
    let mut deleted: Vec<Bytes> = Vec::new();
    for kv in &page.items {
        let Some(obj) = Cached::from_stored(kv.key.clone(), kv.mod_revision, &kv.value, resource) else { continue };
        if !filter.matches(&obj) {
            continue;
        }
        let one = Target {
            name: obj.field("metadata.name"),
            namespace: obj.field("metadata.namespace").filter(|n| !n.is_empty()),
            ..target.clone()
        };
        match delete_one(app, &one, &opts).await {
            Ok(v) => deleted.push(Bytes::from(serde_json::to_vec(&v).unwrap_or_default())),
            // Someone else deleted it first: that is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(StatusCode::OK, list_body(resource, page.revision, None, &deleted), &[]))
}
