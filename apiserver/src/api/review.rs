//! Answers to the review kinds (see `registry::review`): the body is checked as any
//! create's is, the answer is the same object with its status filled, and nothing is
//! stored.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{App, Target, value_response, write};
use crate::authn::UserInfo;
use crate::authz::{Attributes, Decision};
use crate::decode::{self, FieldValidation};
use crate::status::{ApiError, ApiResult, Cause};

/// `POST` of a review: the answer, 201.
pub fn create(app: &App, target: &Target, user: &UserInfo, content_type: &str, body: &[u8]) -> ApiResult<Response> {
    if target.name.is_some() || target.sub.is_some() {
        return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
    }
    let mut obj = decode::decode_body(content_type, body)?;
    write::check_type(&target.resource, &mut obj)?;
    let (mut obj, _) = decode::canonicalize(&target.resource, obj, FieldValidation::Ignore)?;
    let kind = target.resource.kind.to_string();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let status = match kind.as_str() {
        "SelfSubjectReview" => json!({ "userInfo": user }),
        "SelfSubjectAccessReview" => access(app, user, &spec, &kind)?,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let subject = subject_of(&spec, &kind)?;
            if kind == "LocalSubjectAccessReview" {
                let ns = spec.pointer("/resourceAttributes/namespace").and_then(Value::as_str).unwrap_or_default();
                if ns != target.namespace.as_deref().unwrap_or_default() {
                    return Err(ApiError::invalid(
                        &kind,
                        "authorization.k8s.io",
                        "",
                        vec![Cause::invalid("spec.resourceAttributes.namespace", ns, "must match metadata.namespace")],
                    ));
                }
            }
            access(app, &subject, &spec, &kind)?
        }
        "SelfSubjectRulesReview" => rules(app, user, &spec),
        "TokenReview" => {
            let audiences: Vec<String> = spec
                .get("audiences")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            match app.authenticator.authenticate_token(text(&spec, "/token"), &audiences) {
                Ok(found) => {
                    let audiences = if audiences.is_empty() {
                        app.tokens.as_ref().map(|t| t.audiences().to_vec()).unwrap_or_default()
                    } else {
                        audiences
                    };
                    json!({"authenticated": true, "user": found, "audiences": audiences})
                }
                Err(why) => json!({"authenticated": false, "user": {}, "error": why}),
            }
        }
        other => return Err(ApiError::internal(format!("no answer for the review kind {other}"))),
    };
    obj["status"] = status;
    let meta = obj.as_object_mut().and_then(|o| {
        o.entry("metadata").or_insert_with(|| json!({}));
        o.get_mut("metadata").and_then(Value::as_object_mut)
    });
    if let Some(meta) = meta {
        meta.insert("creationTimestamp".into(), json!(crate::meta::now_rfc3339()));
    }
    Ok(value_response(StatusCode::CREATED, &obj, &[]))
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The user a `SubjectAccessReview` asks about.
fn subject_of(spec: &Value, kind: &str) -> ApiResult<UserInfo> {
    let user = text(spec, "/user").to_owned();
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if user.is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            kind,
            "authorization.k8s.io",
            "",
            vec![Cause::invalid("spec.user", "", "at least one of user or group must be specified")],
        ));
    }
    let extra: HashMap<String, Vec<String>> =
        spec.get("extra").and_then(|e| serde_json::from_value(e.clone()).ok()).unwrap_or_default();
    Ok(UserInfo { username: user, uid: text(spec, "/uid").to_owned(), groups, extra })
}

/// The status of an access review: whether `user` may do what the spec asks.
fn access(app: &App, user: &UserInfo, spec: &Value, kind: &str) -> ApiResult<Value> {
    let attributes = match (spec.get("resourceAttributes"), spec.get("nonResourceAttributes")) {
        (Some(r), None) => Attributes::resource(
            text(r, "/verb"),
            text(r, "/group"),
            text(r, "/resource"),
            text(r, "/subresource"),
            text(r, "/namespace"),
            text(r, "/name"),
        ),
        (None, Some(n)) => Attributes::path(text(n, "/verb"), text(n, "/path")),
        _ => {
            return Err(ApiError::invalid(
                kind,
                "authorization.k8s.io",
                "",
                vec![Cause::invalid(
                    "spec.resourceAttributes",
                    "",
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )],
            ));
        }
    };
    Ok(match app.authorizer.authorize(user, &attributes) {
        Decision::Allow(reason) => json!({"allowed": true, "reason": reason}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
    })
}

/// The status of a rules review: what `user` may do in the namespace asked about.
fn rules(app: &App, user: &UserInfo, spec: &Value) -> Value {
    let namespace = text(spec, "/namespace");
    let Some(rbac) = app.authorizer.rbac() else {
        // Everyone may do anything.
        return json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        });
    };
    let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
    for r in rbac.rules_for(user, namespace) {
        let value = serde_json::to_value(&r).unwrap_or_default();
        if r.non_resource_urls.is_empty() {
            resource_rules.push(value);
        } else {
            non_resource_rules.push(value);
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}
