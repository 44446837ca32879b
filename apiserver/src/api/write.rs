//! create (POST), update (PUT) and patch (PATCH) of objects and of their status.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::allocate::StoreAllocator;
use super::storage::{self, Change, body_precondition, check_namespace, decide, encode_for_storage, prepare_update};
use super::{App, Params, Target, value_response};
use crate::decode::{self, FieldValidation, canonicalize, check_duplicates, decode_body};
use crate::managed::{self, Requested};
use crate::meta::{meta_mut, meta_str};
use crate::patch::{self, PatchType};
use crate::registry::{Resource, Sub};
use crate::status::{ApiError, ApiResult, Cause};

/// Checks a write's result before it is stored (the old object, none for a create, and
/// the new one): what the writer may grant (RBAC), what a node may change
/// (NodeRestriction).
pub type Admit = std::sync::Arc<dyn Fn(Option<&Value>, &Value) -> ApiResult<()> + Send + Sync>;

/// Changes a new object before it is checked and stored (a pod's service account
/// credentials, say).
pub type Mutate = std::sync::Arc<dyn Fn(&mut Value) + Send + Sync>;

/// Who is writing, for `managedFields` and admission.
pub struct Writer {
    /// `fieldManager`, else the product of the user agent (`kubectl` of `kubectl/v1.32.0 ...`).
    pub manager: String,
    /// Whether the client named its manager. Ownership tracking starts with the first write
    /// that does (or with an apply); writes to an untracked object by unnamed clients, like
    /// the controllers' status updates of the pods they create, skip the bookkeeping.
    pub named: bool,
    /// Admission of the write's result, when the server checks it.
    pub admit: Option<Admit>,
    /// Mutating admission of a create.
    pub mutate: Option<Mutate>,
}

impl Writer {
    /// The writer of a request.
    pub fn of(params: &Params, headers: &HeaderMap) -> ApiResult<Writer> {
        match params.get("fieldManager").map(String::as_str) {
            Some(m) if m.chars().count() > 128 => {
                Err(ApiError::bad_request("fieldManager: Too long: must have at most 128 characters"))
            }
            Some(m) if m.chars().any(char::is_control) => {
                Err(ApiError::bad_request("fieldManager: Invalid value: must be printable characters"))
            }
            Some(m) if !m.is_empty() => Ok(Writer { manager: m.to_owned(), named: true, admit: None, mutate: None }),
            _ => {
                let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
                let product = agent.split('/').next().unwrap_or_default().trim();
                let manager = if product.is_empty() { "unknown" } else { product };
                Ok(Writer { manager: manager.chars().take(128).collect(), named: false, admit: None, mutate: None })
            }
        }
    }

    /// The same writer, its writes checked by `admit` and its creates changed by `mutate`.
    pub fn with_admission(self, admit: Option<Admit>, mutate: Option<Mutate>) -> Writer {
        Writer { admit, mutate, ..self }
    }

    /// Runs admission on a write's result.
    pub fn admit(&self, old: Option<&Value>, next: &Value) -> ApiResult<()> {
        match &self.admit {
            Some(admit) => admit(old, next),
            None => Ok(()),
        }
    }

    /// Records this write in `next`'s `managedFields` (`old` is `None` for a create).
    fn track(&self, resource: &Resource, old: Option<&Value>, next: &mut Value, status_only: bool) {
        let nothing = json!({});
        match managed::requested(old.unwrap_or(&nothing), next) {
            Requested::Given => return,
            Requested::Clear => {
                meta_mut(next).remove("managedFields");
                return;
            }
            Requested::Keep => {}
        }
        let previous = old.and_then(|o| o.pointer("/metadata/managedFields")).cloned();
        let tracked = previous.as_ref().and_then(Value::as_array).is_some_and(|l| !l.is_empty());
        match previous {
            Some(m) => meta_mut(next).insert("managedFields".into(), m),
            None => meta_mut(next).remove("managedFields"),
        };
        if !self.named && !tracked {
            return;
        }
        let subresource = status_only.then_some("status");
        let skip_status = resource.has(Sub::Status) && !status_only;
        managed::track_update(old, next, &self.manager, &resource.api_version(), subresource, skip_status);
    }
}

/// `dryRun=All`: validate and answer, store nothing. Any other value is refused as
/// upstream's `ValidateDryRun` refuses it (`options` names the kind: `CreateOptions`, ...).
pub fn dry_run(params: &Params, options: &str) -> ApiResult<bool> {
    match params.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some(value) => dry_run_values(&[value], options),
    }
}

/// The `dryRun` list of an options object (query or body): empty, or exactly `["All"]`.
pub fn dry_run_values(values: &[&str], options: &str) -> ApiResult<bool> {
    match values {
        [] => Ok(false),
        ["All"] => Ok(true),
        other => {
            let listed = other.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ");
            Err(ApiError::invalid_options(
                options,
                vec![Cause {
                    reason: "FieldValueNotSupported",
                    field: "dryRun".into(),
                    message: format!("Unsupported value: []string{{{listed}}}: supported values: \"All\""),
                }],
            ))
        }
    }
}

/// Fills `apiVersion`/`kind` from the URL when absent; rejects a body of another kind.
pub fn check_type(resource: &Resource, obj: &mut Value) -> ApiResult<()> {
    let api_version = resource.api_version();
    for (field, expected) in [("apiVersion", api_version.as_str()), ("kind", &resource.kind)] {
        match obj.get(field).and_then(Value::as_str) {
            None | Some("") => obj[field] = json!(expected),
            Some(actual) if actual == expected => {}
            Some(actual) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({api_version}), or the kind ({}) does not match the expected kind ({})",
                    obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
                    if field == "kind" { actual } else { obj.get("kind").and_then(Value::as_str).unwrap_or_default() },
                    &resource.kind
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
            &target.resource.resource, &target.resource.resource
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

/// Fills `metadata.name` from the URL when absent; rejects a body naming another object.
fn check_name_matches(target: &Target, obj: &mut Value) -> ApiResult<()> {
    match meta_str(obj, "name") {
        Some(n) if n == target.name() => Ok(()),
        None | Some("") => {
            meta_mut(obj).insert("name".into(), json!(target.name()));
            Ok(())
        }
        Some(n) => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            target.name()
        ))),
    }
}

/// Sets what the server owns on a new object.
fn prepare_create(resource: &Resource, obj: &mut Value) -> ApiResult<()> {
    let meta = meta_mut(obj);
    if meta.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let name = format!("{prefix}{}", crate::meta::random_suffix());
                meta.insert("name".into(), json!(name));
            }
            _ => {}
        }
    }
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(field);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(crate::meta::now_rfc3339()));
    if resource.strategy.keeps_generation(resource) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    resource.strategy.prepare_create(resource, obj);
    resource.strategy.default(obj);
    let causes = resource.strategy.validate(obj, None);
    if !causes.is_empty() {
        let name = meta_str(obj, "name").unwrap_or_default().to_owned();
        return Err(ApiError::invalid(&resource.kind, &resource.group, &name, causes));
    }
    Ok(())
}

/// Creates `obj` (already decoded and type-checked) in storage.
pub(super) async fn create_object(
    app: &App,
    target: &Target,
    mut obj: Value,
    dry_run: bool,
    writer: Option<&Writer>,
) -> ApiResult<Value> {
    let resource = &target.resource;
    if let Some(mutate) = writer.and_then(|w| w.mutate.as_ref()) {
        mutate(&mut obj);
    }
    prepare_create(resource, &mut obj)?;
    if let Some(writer) = writer {
        writer.admit(None, &obj)?;
        writer.track(resource, None, &mut obj, false);
    }
    if let Some(ns) = &target.namespace {
        check_namespace(app, ns).await?;
    }
    let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
    let named = Target { name: Some(name), ..target.clone() };
    let pools = StoreAllocator::new(app, dry_run);
    if resource.strategy.allocates() {
        resource.strategy.allocate(&pools, &mut obj, None).await?;
    }
    if dry_run {
        return Ok(obj);
    }
    let stored = match encode_for_storage(app, resource, &obj) {
        Ok(bytes) => app.store.create(&named.key(), bytes).await.map_err(|e| named.storage_error(e)),
        Err(e) => Err(e),
    };
    let revision = match stored {
        Ok(revision) => revision,
        Err(e) => {
            if resource.strategy.allocates() {
                resource.strategy.release(&pools, &obj, None).await;
            }
            return Err(e);
        }
    };
    crate::meta::set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// POST to a collection.
pub async fn create(
    app: &Arc<App>,
    target: &Target,
    params: &Params,
    writer: &Writer,
    ct: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let validation = FieldValidation::parse(params.get("fieldValidation").map(String::as_str))?;
    let duplicates = check_duplicates(ct, body, validation)?;
    let mut obj = decode_body(ct, body)?;
    check_type(&target.resource, &mut obj)?;
    check_namespace_matches(target, &mut obj)?;
    let (obj, mut warnings) = canonicalize(&target.resource, obj, validation)?;
    warnings.extend(duplicates);
    let created = create_object(app, target, obj, dry_run(params, "CreateOptions")?, Some(writer)).await?;
    Ok(value_response(StatusCode::CREATED, &created, &warnings))
}

/// PUT of an object or its status.
pub async fn update(
    app: &Arc<App>,
    target: &Target,
    params: &Params,
    writer: &Writer,
    ct: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let validation = FieldValidation::parse(params.get("fieldValidation").map(String::as_str))?;
    let duplicates = check_duplicates(ct, body, validation)?;
    let mut obj = decode_body(ct, body)?;
    check_type(&target.resource, &mut obj)?;
    check_namespace_matches(target, &mut obj)?;
    check_name_matches(target, &mut obj)?;
    let precondition = body_precondition(&obj)?;
    let dry_run = dry_run(params, "UpdateOptions")?;
    let (obj, mut warnings) = canonicalize(&target.resource, obj, validation)?;
    warnings.extend(duplicates);
    let status_only = target.sub == Some(Sub::Status);
    let result = storage::guaranteed_update(app, target, precondition, dry_run, |old| {
        let mut next = prepare_update(&target.resource, &old, obj.clone(), status_only)?;
        writer.admit(Some(&old), &next)?;
        writer.track(&target.resource, Some(&old), &mut next, status_only);
        Ok(decide(&target.resource, old, next))
    })
    .await;
    match result {
        Err(e) if e.code == 404 && target.resource.strategy.creates_on_update() && !status_only => {
            let created = create_object(app, target, obj, dry_run, Some(writer)).await?;
            Ok(value_response(StatusCode::CREATED, &created, &warnings))
        }
        other => Ok(value_response(StatusCode::OK, &other?, &warnings)),
    }
}

/// PATCH of an object or its status.
pub async fn patch(
    app: &Arc<App>,
    target: &Target,
    params: &Params,
    writer: &Writer,
    ct: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let validation = FieldValidation::parse(params.get("fieldValidation").map(String::as_str))?;
    let kind = PatchType::from_content_type(ct)?;
    if kind == PatchType::Strategic && !target.resource.strategy.strategic_merge() {
        // Upstream's answer for custom resources, which have no patch strategies.
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let dry_run = dry_run(params, "PatchOptions")?;
    if body.len() > decode::MAX_BODY {
        return Err(ApiError::body_too_large(decode::MAX_BODY));
    }
    if kind == PatchType::Apply {
        return server_side_apply(app, target, params, writer, (validation, dry_run), body).await;
    }
    let status_only = target.sub == Some(Sub::Status);
    let duplicates = check_duplicates(ct, body, validation)?;
    let mut warnings = Vec::new();
    let updated = storage::guaranteed_update(app, target, None, dry_run, |old| {
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
        check_type(&target.resource, &mut patched)?;
        let (patched, w) = canonicalize(&target.resource, patched, validation)?;
        warnings = w;
        let mut next = prepare_update(&target.resource, &old, patched, status_only)?;
        writer.admit(Some(&old), &next)?;
        writer.track(&target.resource, Some(&old), &mut next, status_only);
        Ok(decide(&target.resource, old, next))
    })
    .await?;
    warnings.extend(duplicates);
    Ok(value_response(StatusCode::OK, &updated, &warnings))
}

/// Decodes an applied configuration: YAML, or JSON (which kubectl sends).
fn decode_applied(body: &[u8]) -> ApiResult<Value> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the applied configuration is not UTF-8"))?;
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("the applied configuration is not valid JSON: {e}")))?
    } else {
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("the applied configuration is not valid YAML: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the applied configuration must be an object"));
    }
    Ok(value)
}

/// PATCH with `application/apply-patch+yaml`: the fields the manager applies are merged
/// into the object (created when absent), fields it applied before and no longer does
/// are removed, and a field another manager owns with another value is a 409 unless
/// `force=true`.
async fn server_side_apply(
    app: &Arc<App>,
    target: &Target,
    params: &Params,
    writer: &Writer,
    (validation, dry_run): (FieldValidation, bool),
    body: &[u8],
) -> ApiResult<Response> {
    let resource = &target.resource;
    if !writer.named {
        // Upstream's ValidatePatchOptions.
        return Err(ApiError::invalid_options(
            "PatchOptions",
            vec![Cause {
                reason: "FieldValueRequired",
                field: "fieldManager".into(),
                message: "Required value: is required for apply patch".into(),
            }],
        ));
    }
    let force = match params.get("force").map(String::as_str) {
        None | Some("false") | Some("") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("force must be true or false, not {other:?}"))),
    };
    let mut applied = decode_applied(body)?;
    check_type(resource, &mut applied)?;
    check_namespace_matches(target, &mut applied)?;
    check_name_matches(target, &mut applied)?;
    if applied.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil in an applied configuration"));
    }
    let precondition = body_precondition(&applied)?;
    meta_mut(&mut applied).remove("resourceVersion");
    let status_only = target.sub == Some(Sub::Status);
    let skip_status = resource.has(Sub::Status) && !status_only;
    let api_version = resource.api_version();
    let merge = |live: &Value| -> ApiResult<(Value, Vec<String>)> {
        let merged = match managed::apply(live, &applied, &writer.manager, &api_version, force, skip_status) {
            Ok(merged) => merged,
            Err(conflicts) => {
                // Bad input is reported before conflicts, as upstream decodes before it merges.
                let forced = managed::apply(live, &applied, &writer.manager, &api_version, true, skip_status);
                if let Ok(forced) = forced {
                    canonicalize(resource, forced, validation)?;
                }
                return Err(managed::conflict_error(&conflicts));
            }
        };
        canonicalize(resource, merged, validation)
    };
    let mut warnings = Vec::new();
    // Two rounds at most: an update that finds no object creates it, and a create that
    // loses the race to another creator updates.
    for _ in 0..2 {
        let updated = storage::guaranteed_update(app, target, precondition, dry_run, |old| {
            let (merged, w) = merge(&old)?;
            warnings = w;
            let next = prepare_update(resource, &old, merged, status_only)?;
            writer.admit(Some(&old), &next)?;
            Ok(decide(&target.resource, old, next))
        })
        .await;
        match updated {
            Err(e) if e.code == 404 && !status_only && precondition.is_none() => {
                let (obj, w) = merge(&json!({}))?;
                writer.admit(None, &obj)?;
                match create_object(app, target, obj, dry_run, None).await {
                    Ok(created) => return Ok(value_response(StatusCode::CREATED, &created, &w)),
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            other => return Ok(value_response(StatusCode::OK, &other?, &warnings)),
        }
    }
    Err(target.conflict())
}

/// Applies `change` to the named object with retries; shared by subresources.
pub async fn modify(
    app: &App,
    target: &Target,
    precondition: Option<i64>,
    mut change: impl FnMut(&Value) -> ApiResult<Option<Value>>,
) -> ApiResult<Value> {
    storage::guaranteed_update(app, target, precondition, false, |old| match change(&old)? {
        None => Ok(Change::Unchanged(old)),
        Some(next) => Ok(decide(&target.resource, old, next)),
    })
    .await
}
