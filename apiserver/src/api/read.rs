//! get and list. Lists at `resourceVersion=0` (what reflectors and kube-rs watchers send)
//! and at a version the cache has reached come from the watch cache; consistent lists
//! (no resourceVersion), exact versions and continue tokens read storage.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

use super::storage::{self, parse_revision};
use super::{App, Params, Target, json_response, value_response};
use crate::cache::{Cached, Filter};
use crate::registry::{self, Resource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::ListRequest;

/// GET of one object (as a one-row Table when asked).
pub async fn get(app: &Arc<App>, target: &Target, table: Option<&str>) -> ApiResult<Response> {
    let (value, _) = storage::get_current(app, target).await?;
    match table {
        Some(include) => {
            let rv = value.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            let t = super::table::table(
                &target.resource,
                std::slice::from_ref(&value),
                json!({"resourceVersion": rv}),
                include,
                true,
            );
            Ok(value_response(StatusCode::OK, &t, &[]))
        }
        None => Ok(value_response(StatusCode::OK, &value, &[])),
    }
}

/// A list answer: the `{Kind}List` of the encoded items, or a Table of them.
fn list_response(
    resource: &Resource,
    revision: i64,
    cont: Option<&str>,
    items: &[Bytes],
    table: Option<&str>,
) -> Response {
    let Some(include) = table else {
        return json_response(StatusCode::OK, list_body(resource, revision, cont, items), &[]);
    };
    let objects: Vec<Value> = items.iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    value_response(StatusCode::OK, &super::table::table(resource, &objects, meta, include, true), &[])
}

/// Builds the filter a list or watch asks for.
pub fn filter(target: &Target, params: &Params) -> ApiResult<Filter> {
    let labels = LabelSelector::parse(params.get("labelSelector").map(String::as_str).unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let resource = &target.resource;
    let fields = FieldSelector::parse(params.get("fieldSelector").map(String::as_str).unwrap_or_default(), &|f| {
        crate::selector::is_selectable(resource, f)
    })
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Filter { namespace: target.namespace.clone(), labels, fields })
}

/// A continue token: where the next page starts, and the revision the list is read at.
fn encode_continue(revision: i64, next_key: &str) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": revision, "start": next_key });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}: it was not issued by this server"));
    let raw =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = value.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = value.get("start").and_then(Value::as_str).ok_or_else(bad)?.to_owned();
    Ok((rv, start))
}

/// The JSON of a cached object as served by `resource`.
pub fn served_json(resource: &Resource, obj: &Cached) -> Bytes {
    if resource.conversion.is_none() {
        return obj.json.clone();
    }
    match obj.value() {
        Some(v) => Bytes::from(serde_json::to_vec(&registry::from_storage(resource, v)).unwrap_or_default()),
        None => obj.json.clone(),
    }
}

/// Writes a `{Kind}List` around already-encoded items.
pub fn list_body(resource: &Resource, revision: i64, cont: Option<&str>, items: &[Bytes]) -> Bytes {
    let size: usize = items.iter().map(Bytes::len).sum::<usize>() + items.len() + 256;
    let mut out = BytesMut::with_capacity(size);
    let mut meta = json!({ "resourceVersion": revision.to_string() });
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    out.put_slice(
        format!(
            r#"{{"kind":"{}List","apiVersion":"{}","metadata":{},"items":["#,
            &resource.kind,
            resource.api_version(),
            meta
        )
        .as_bytes(),
    );
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(item);
    }
    out.put_slice(b"]}");
    out.freeze()
}

fn parse_limit(params: &Params) -> ApiResult<usize> {
    match params.get("limit").map(String::as_str) {
        None | Some("") => Ok(0),
        Some(l) => l
            .parse::<i64>()
            .map(|l| l.max(0) as usize)
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}: must be an integer"))),
    }
}

/// How long a read at a resource version the cache has not seen yet waits for it
/// (upstream's watch cache waits 3 s too).
const FRESH_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Checks that storage has reached `revision` (waiting up to 3 s for it): a revision from
/// the future is upstream's 504 "Too large resource version", not a silent read or watch
/// of nothing. A cache behind `revision` is fine when storage is not: the revisions between
/// belong to other resources.
pub async fn fresh_enough(app: &App, target: &Target, revision: i64) -> ApiResult<()> {
    if revision <= app.cache(&target.resource)?.revision() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + FRESH_WITHIN;
    loop {
        let current = app.store.current_revision().await.map_err(|e| target.storage_error(e))?;
        if revision <= current {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::too_large_resource_version(revision, current));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// LIST of a collection.
pub async fn list(app: &Arc<App>, target: &Target, params: &Params, table: Option<&str>) -> ApiResult<Response> {
    let filter = filter(target, params)?;
    let limit = parse_limit(params)?;
    let resource = &target.resource;
    let rv = params.get("resourceVersion").map(String::as_str).unwrap_or_default();
    let rv_match = params.get("resourceVersionMatch").map(String::as_str).unwrap_or_default();
    if !matches!(rv_match, "" | "NotOlderThan" | "Exact") {
        return Err(ApiError::bad_request(format!(
            "invalid resourceVersionMatch {rv_match:?}: must be NotOlderThan or Exact"
        )));
    }
    if !rv_match.is_empty() && rv.is_empty() {
        return Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided"));
    }
    if let Some(token) = params.get("continue").filter(|c| !c.is_empty()) {
        if !rv.is_empty() {
            return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
        }
        let (revision, start) = decode_continue(token)?;
        // -1: the token a 410 handed out, going on at the latest revision (upstream's
        // handleCompactedErrorForPaging).
        return list_from_store(app, target, &filter, limit, revision.max(0), start, table).await;
    }
    let cache = app.cache(resource)?;
    let from_cache = match (rv, rv_match) {
        ("", _) => false,
        (_, "Exact") => false,
        (rv, _) => {
            let rv = parse_revision(rv)?;
            fresh_enough(app, target, rv).await?;
            rv <= cache.revision()
        }
    };
    if from_cache {
        let (items, revision) = cache.list(&filter).map_err(|e| ApiError::timeout(e.to_string()))?;
        let (items, cont) = if limit > 0 && items.len() > limit {
            let next = format!("{}\0", items[limit - 1].key);
            (&items[..limit], Some(encode_continue(revision, &next)))
        } else {
            (&items[..], None)
        };
        let encoded: Vec<Bytes> = items.iter().map(|o| served_json(resource, o)).collect();
        return Ok(list_response(resource, revision, cont.as_deref(), &encoded, table));
    }
    let revision = if rv_match == "Exact" { parse_revision(rv)? } else { 0 };
    list_from_store(app, target, &filter, limit, revision, String::new(), table).await
}

/// The 410 for a list at a compacted revision, in upstream's words (storage/etcd3
/// `interpretListError`): a page of a paged list gets a token that goes on at the latest
/// revision, an `Exact` list is just too old.
fn expired_list(start: &str) -> ApiError {
    if start.is_empty() {
        return ApiError::expired("The resourceVersion for the provided list is too old.");
    }
    let mut err = ApiError::expired(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list \
         without the continue parameter, or use the continue token in this response to retrieve the remainder of the \
         results. Continuing with the provided token results in an inconsistent list - objects that were created, \
         modified, or deleted between the time the first chunk was returned and now may show up in the list.",
    );
    err.continue_token = Some(encode_continue(-1, start));
    err
}

/// Lists from storage, page by page, until `limit` objects pass the filter.
async fn list_from_store(
    app: &App,
    target: &Target,
    filter: &Filter,
    limit: usize,
    revision: i64,
    mut start: String,
    table: Option<&str>,
) -> ApiResult<Response> {
    let resource = &target.resource;
    let prefix = resource.namespace_prefix(target.namespace.as_deref());
    let mut items = Vec::new();
    let mut revision = revision;
    let mut cont = None;
    loop {
        let want = if limit > 0 { (limit - items.len()).max(1) } else { 0 };
        let page = app
            .store
            .list(ListRequest { prefix: prefix.clone(), start: start.clone(), limit: want, revision })
            .await
            .map_err(|e| match e {
                crate::store::Error::Compacted { .. } => expired_list(&start),
                other => target.storage_error(other),
            })?;
        revision = page.revision;
        for kv in &page.items {
            if let Some(obj) = Cached::from_stored(kv.key.clone(), kv.mod_revision, &kv.value, resource)
                && filter.matches(&obj)
            {
                items.push(served_json(resource, &obj));
            }
        }
        let Some(last) = page.items.last() else { break };
        start = format!("{}\0", last.key);
        if !page.more {
            break;
        }
        if limit > 0 && items.len() >= limit {
            cont = Some(encode_continue(revision, &start));
            break;
        }
    }
    Ok(list_response(resource, revision, cont.as_deref(), &items, table))
}
