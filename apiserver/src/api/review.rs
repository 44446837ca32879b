//! Answers to the review kinds (see `registry::review`): the body is checked as any
//! create's is, the answer is the same object with its status filled, and nothing is
//! stored.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Target, value_response, write};
use crate::authn::UserInfo;
use crate::decode::{self, FieldValidation};
use crate::status::{ApiError, ApiResult};

/// `POST` of a review: the answer, 201.
pub fn create(target: &Target, user: &UserInfo, content_type: &str, body: &[u8]) -> ApiResult<Response> {
    if target.name.is_some() || target.sub.is_some() {
        return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
    }
    let mut obj = decode::decode_body(content_type, body)?;
    write::check_type(&target.resource, &mut obj)?;
    let (mut obj, _) = decode::canonicalize(&target.resource, obj, FieldValidation::Ignore)?;
    match &*target.resource.kind {
        "SelfSubjectReview" => {
            obj["status"] = json!({ "userInfo": user });
        }
        other => return Err(ApiError::internal(format!("no answer for the review kind {other}"))),
    }
    let meta = obj.as_object_mut().and_then(|o| {
        o.entry("metadata").or_insert_with(|| json!({}));
        o.get_mut("metadata").and_then(Value::as_object_mut)
    });
    if let Some(meta) = meta {
        meta.insert("creationTimestamp".into(), json!(crate::meta::now_rfc3339()));
    }
    Ok(value_response(StatusCode::CREATED, &obj, &[]))
}
