//! create (POST), update (PUT) and patch (PATCH) of objects and of their status.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::objects::{self, Change, body_precondition, check_namespace, decide, encode_for_storage, prepare_update};
use super::{App, Params, Target, value_response};
use crate::object::{self, FieldValidation, canonicalize, decode_body, meta_mut, meta_str};
use crate::patch::{self, PatchType};
use crate::registry::{Resource, Sub};
use crate::status::{ApiError, ApiResult};

/// `dryRun=All`: validate and answer, store nothing.
pub fn dry_run(params: &Params) -> bool {
    params.get("dryRun").is_some_and(|d| d == "All")
}

/// Fills `apiVersion`/`kind` from the URL when absent; rejects a body of another kind.
pub fn check_type(resource: &Resource, obj: &mut Value) -> ApiResult<()> {
    let api_version = resource.api_version();
    for (field, expected) in [("apiVersion", api_version.as_str()), ("kind", resource.kind)] {
        match obj.get(field).and_then(Value::as_str) {
            None | Some("") => obj[field] = json!(expected),
            Some(actual) if actual == expected => {}
            Some(actual) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({api_version}), or the kind ({}) does not match the expected kind ({})",
                    obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
                    if field == "kind" { actual } else { obj.get("kind").and_then(Value::as_str).unwrap_or_default() },
                    resource.kind
                )));
            }
        }
    }
    Ok(())
}

fn check_namespace_matches(target: &Target, obj: &mut Value) -> ApiResult<()> {
    if !target.resource.namespaced {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("namespace");
        }
        return Ok(());
    }
    let Some(ns) = &target.namespace else {
        return Err(ApiError::bad_request(format!(
            "{} are namespaced: the URL must name a namespace (/namespaces/NAME/{})",
            target.resource.resource, target.resource.resource
        )));
    };
    match meta_str(obj, "namespace") {
        None | Some("") => {
            meta_mut(obj).insert("namespace".into(), json!(ns));
            Ok(())
        }
        Some(given) if given == ns => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// A pod's QoS class from its containers' requests and limits, as upstream computes it.
fn qos_class(pod: &Value) -> &'static str {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Sets what the server owns on a new object.
fn prepare_create(resource: &Resource, obj: &mut Value) -> ApiResult<()> {
    let meta = meta_mut(obj);
    if meta.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let name = format!("{prefix}{}", object::random_suffix());
                meta.insert("name".into(), json!(name));
            }
            _ => {}
        }
    }
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(field);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
    if resource.has(Sub::Status) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    match resource.kind {
        "Pod" => {
            let qos = qos_class(obj);
            obj["status"] = json!({ "phase": "Pending", "qosClass": qos });
        }
        // Kubelets register nodes with their status; namespaces default theirs.
        "Node" | "Namespace" => {}
        _ if resource.has(Sub::Status) => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        _ => {}
    }
    (resource.default)(obj);
    let causes = (resource.validate)(obj, None);
    if !causes.is_empty() {
        let name = meta_str(obj, "name").unwrap_or_default().to_owned();
        return Err(ApiError::invalid(resource.kind, resource.group, &name, causes));
    }
    Ok(())
}

/// Creates `obj` (already decoded and type-checked) in storage.
async fn create_object(app: &App, target: &Target, mut obj: Value, dry_run: bool) -> ApiResult<Value> {
    let resource = target.resource;
    prepare_create(resource, &mut obj)?;
    if let Some(ns) = &target.namespace {
        check_namespace(app, ns).await?;
    }
    let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
    let named = Target { name: Some(name), ..target.clone() };
    if dry_run {
        return Ok(obj);
    }
    let bytes = encode_for_storage(resource, &obj)?;
    let revision = app.store.create(&named.key(), bytes).await.map_err(|e| named.storage_error(e))?;
    object::set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// POST to a collection.
pub async fn create(app: &Arc<App>, target: &Target, params: &Params, ct: &str, body: &[u8]) -> ApiResult<Response> {
    let validation = FieldValidation::parse(params.get("fieldValidation").map(String::as_str))?;
    let mut obj = decode_body(ct, body)?;
    check_type(target.resource, &mut obj)?;
    check_namespace_matches(target, &mut obj)?;
    let (obj, warnings) = canonicalize(target.resource, obj, validation)?;
    let created = create_object(app, target, obj, dry_run(params)).await?;
    Ok(value_response(StatusCode::CREATED, &created, &warnings))
}

/// Resources whose PUT creates the object when it does not exist, as upstream's.
fn creates_on_update(resource: &Resource) -> bool {
    matches!(resource.resource, "leases" | "endpoints" | "events")
}

/// PUT of an object or its status.
pub async fn update(app: &Arc<App>, target: &Target, params: &Params, ct: &str, body: &[u8]) -> ApiResult<Response> {
    let validation = FieldValidation::parse(params.get("fieldValidation").map(String::as_str))?;
    let mut obj = decode_body(ct, body)?;
    check_type(target.resource, &mut obj)?;
    check_namespace_matches(target, &mut obj)?;
    match meta_str(&obj, "name") {
        Some(n) if n == target.name() => {}
        None | Some("") => {
            meta_mut(&mut obj).insert("name".into(), json!(target.name()));
        }
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                target.name()
            )));
        }
    }
    let precondition = body_precondition(&obj)?;
    let (obj, warnings) = canonicalize(target.resource, obj, validation)?;
    let status_only = target.sub == Some(Sub::Status);
    let result = objects::guaranteed_update(app, target, precondition, dry_run(params), |old| {
        let next = prepare_update(target.resource, &old, obj.clone(), status_only)?;
        Ok(decide(old, next))
    })
    .await;
    match result {
        Err(e) if e.code == 404 && creates_on_update(target.resource) && !status_only => {
            let created = create_object(app, target, obj, dry_run(params)).await?;
            Ok(value_response(StatusCode::CREATED, &created, &warnings))
        }
        other => Ok(value_response(StatusCode::OK, &other?, &warnings)),
    }
}

/// PATCH of an object or its status.
pub async fn patch(app: &Arc<App>, target: &Target, params: &Params, ct: &str, body: &[u8]) -> ApiResult<Response> {
    let validation = FieldValidation::parse(params.get("fieldValidation").map(String::as_str))?;
    let kind = PatchType::from_content_type(ct)?;
    if body.len() > object::MAX_BODY {
        return Err(ApiError::too_large(object::MAX_BODY));
    }
    let status_only = target.sub == Some(Sub::Status);
    let mut warnings = Vec::new();
    let updated = objects::guaranteed_update(app, target, None, dry_run(params), |old| {
        let mut patched = old.clone();
        patch::apply(kind, &mut patched, body)?;
        if meta_str(&patched, "name") != Some(target.name()) {
            return Err(ApiError::bad_request("a patch may not change metadata.name"));
        }
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            // A resourceVersion in the patch is a precondition, as upstream treats it.
            if meta_str(&patched, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
                return Err(target.conflict());
            }
        }
        check_type(target.resource, &mut patched)?;
        let (patched, w) = canonicalize(target.resource, patched, validation)?;
        warnings = w;
        let next = prepare_update(target.resource, &old, patched, status_only)?;
        Ok(decide(old, next))
    })
    .await?;
    Ok(value_response(StatusCode::OK, &updated, &warnings))
}

/// Applies `change` to the named object with retries; shared by subresources.
pub async fn modify(
    app: &App,
    target: &Target,
    precondition: Option<i64>,
    mut change: impl FnMut(&Value) -> ApiResult<Option<Value>>,
) -> ApiResult<Value> {
    objects::guaranteed_update(app, target, precondition, false, |old| match change(&old)? {
        None => Ok(Change::Unchanged(old)),
        Some(next) => Ok(decide(old, next)),
    })
    .await
}
