//! API errors as Kubernetes `Status` objects: the code, reason and message stock clients
//! read (`Error from server (NotFound): deployments.apps "web" not found`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One field-level problem in an `Invalid` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Upstream's cause type (`FieldValueRequired`, `FieldValueInvalid`, ...).
    pub reason: &'static str,
    /// The field path, as upstream spells it (`spec.containers[0].image`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Cause {
    /// A required field is missing.
    pub fn required(field: impl Into<String>) -> Cause {
        Cause { reason: "FieldValueRequired", field: field.into(), message: "Required value".into() }
    }

    /// A field has a value that is not allowed.
    pub fn invalid(field: impl Into<String>, value: &str, why: impl std::fmt::Display) -> Cause {
        Cause { reason: "FieldValueInvalid", field: field.into(), message: format!("Invalid value: {value:?}: {why}") }
    }

    /// A field may not change.
    pub fn forbidden(field: impl Into<String>, why: impl Into<String>) -> Cause {
        Cause { reason: "FieldValueForbidden", field: field.into(), message: format!("Forbidden: {}", why.into()) }
    }

    /// A value appears twice where it must be unique.
    pub fn duplicate(field: impl Into<String>, value: &str) -> Cause {
        Cause { reason: "FieldValueDuplicate", field: field.into(), message: format!("Duplicate value: {value:?}") }
    }

    /// A value is longer than allowed (upstream's `field.TooLong` with a byte limit).
    pub fn too_long(field: impl Into<String>, limit: usize) -> Cause {
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: must have at most {limit} bytes"),
        }
    }

    /// A required field is missing, and why it is required.
    pub fn required_because(field: impl Into<String>, why: &str) -> Cause {
        Cause { reason: "FieldValueRequired", field: field.into(), message: format!("Required value: {why}") }
    }

    /// A field has a value that is not allowed, printed as Go prints it (numbers and
    /// booleans bare, strings quoted).
    pub fn invalid_value(field: impl Into<String>, value: &Value, why: impl std::fmt::Display) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {why}", go_value(value)),
        }
    }

    /// A field's value has the wrong JSON type (`actual` names the type it has).
    pub fn type_invalid(field: impl Into<String>, actual: &str, why: impl std::fmt::Display) -> Cause {
        Cause {
            reason: "FieldValueTypeInvalid",
            field: field.into(),
            message: format!("Invalid value: {actual:?}: {why}"),
        }
    }

    /// A value outside a fixed set.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Cause {
        let supported: Vec<String> = supported.iter().map(|s| (*s).to_owned()).collect();
        Cause::not_supported_value(field, &Value::String(value.to_owned()), &supported)
    }

    /// A value outside a fixed set, the value printed as Go prints it.
    pub fn not_supported_value(field: impl Into<String>, value: &Value, supported: &[String]) -> Cause {
        let list = supported.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {}: supported values: {list}", go_value(value)),
        }
    }

    /// A list or map with more entries than allowed.
    pub fn too_many(field: impl Into<String>, actual: i64, limit: i64) -> Cause {
        Cause {
            reason: "FieldValueTooMany",
            field: field.into(),
            message: format!("Too many: {actual}: must have at most {limit} items"),
        }
    }

    fn text(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// A value as Go's field errors print one: strings quoted, numbers and booleans bare.
fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"null\"".to_owned(),
        other => other.to_string(),
    }
}

/// An error answered as a Kubernetes `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Upstream's `StatusReason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// The sentence a person reads.
    pub message: String,
    /// `details.name`, `details.group`, `details.kind`.
    pub details: Option<Box<(String, String, String)>>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds` (with 429 and some 5xx answers).
    pub retry_after: Option<u32>,
    /// `metadata.continue`: where a list whose continue token expired may go on from.
    pub continue_token: Option<String>,
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
            retry_after: None,
            continue_token: None,
        }
    }

    /// The same error with `details.name`, `details.group` and `details.kind`.
    pub fn with_details(mut self, name: &str, group: &str, kind: &str) -> ApiError {
        self.details = Some(Box::new((name.to_owned(), group.to_owned(), kind.to_owned())));
        self
    }

    /// `pods "web" not found` (`qualified` is `pods` or `deployments.apps`).
    pub fn not_found(qualified: &str, group: &str, resource: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{qualified} {name:?} not found")).with_details(name, group, resource)
    }

    /// `pods "web" already exists`.
    pub fn already_exists(qualified: &str, group: &str, resource: &str, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{qualified} {name:?} already exists"))
            .with_details(name, group, resource)
    }

    /// A write lost an optimistic-concurrency race or failed a precondition.
    pub fn conflict(qualified: &str, group: &str, resource: &str, name: &str, why: &str) -> ApiError {
        ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {qualified} {name:?}: {why}"))
            .with_details(name, group, resource)
    }

    /// The object failed validation: 422 with one cause per field.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let list = causes.iter().map(Cause::text).collect::<Vec<_>>();
        let summary = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let mut err = ApiError::new(422, "Invalid", format!("{kind} {name:?} is invalid: {summary}"))
            .with_details(name, group, kind);
        err.causes = causes;
        err
    }

    /// The request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// The request is not allowed in the object's current state.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// The URL names nothing this server serves.
    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    /// The verb is not supported on the resource.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// The body's content type cannot be decoded here.
    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// The body is larger than the server accepts.
    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::too_large(format!("the request body is larger than the limit of {limit} bytes"))
    }

    /// The request would take more than the server allows (operations, bytes).
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    /// A request option (`CreateOptions`, `DeleteOptions`, ...) is invalid: upstream's
    /// 422 for the options kind in `meta.k8s.io`, with no object name.
    pub fn invalid_options(options: &str, causes: Vec<Cause>) -> ApiError {
        let list = causes.iter().map(Cause::text).collect::<Vec<_>>();
        let summary = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let mut err = ApiError::new(422, "Invalid", format!("{options}.meta.k8s.io \"\" is invalid: {summary}"))
            .with_details("", "meta.k8s.io", options);
        err.causes = causes;
        err
    }

    /// The requested resource version or continue token is too old.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// A read or watch asked for a resource version the server has not reached, and did not
    /// reach it within the wait (upstream's words and cause).
    pub fn too_large_resource_version(requested: i64, current: i64) -> ApiError {
        let mut err =
            ApiError::new(504, "Timeout", format!("Too large resource version: {requested}, current: {current}"));
        err.causes = vec![Cause {
            reason: "ResourceVersionTooLarge",
            field: String::new(),
            message: "Too large resource version".into(),
        }];
        err.retry_after = Some(1);
        err
    }

    /// The server timed out or is not ready.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    /// Something failed inside the server (storage unreachable, corrupt data).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// The Status object sent to clients, with its fields in upstream's order (clients and
    /// their test suites compare error bodies as text): `kind`, `apiVersion`, `metadata`,
    /// `status`, `message`, `reason`, `details` (`name`, `group`, `kind`, `causes`,
    /// `retryAfterSeconds`), `code`.
    pub fn body(&self) -> StatusBody<'_> {
        let (name, group, kind) = match self.details.as_deref() {
            Some((name, group, kind)) => {
                ((!name.is_empty()).then_some(name.as_str()), group.as_str(), Some(kind.as_str()))
            }
            None => (None, "", None),
        };
        let causes: Vec<CauseBody<'_>> =
            self.causes.iter().map(|c| CauseBody { reason: c.reason, message: &c.message, field: &c.field }).collect();
        let details = (name.is_some() || !causes.is_empty() || self.retry_after.is_some()).then_some(DetailsBody {
            name,
            group,
            kind,
            causes,
            retry_after_seconds: self.retry_after,
        });
        StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: StatusMeta { continue_: self.continue_token.as_deref() },
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details,
            code: self.code,
        }
    }

    /// The Status as JSON, in upstream's field order.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body()).unwrap_or_default()
    }
}

/// A `Status` as upstream serializes it (field order matters to clients comparing text).
#[derive(Debug, serde::Serialize)]
pub struct StatusBody<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: StatusMeta<'a>,
    status: &'static str,
    message: &'a str,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<DetailsBody<'a>>,
    code: u16,
}

/// `metadata`: `{}` but for a list's expired continue token.
#[derive(Debug, serde::Serialize)]
pub struct StatusMeta<'a> {
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_: Option<&'a str>,
}

/// `details`, in upstream's field order.
#[derive(Debug, serde::Serialize)]
pub struct DetailsBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<CauseBody<'a>>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u32>,
}

/// One cause, in upstream's field order.
#[derive(Debug, serde::Serialize)]
pub struct CauseBody<'a> {
    reason: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    field: &'a str,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Upstream's encoder ends the body with a newline.
        let mut body = self.encode();
        body.push(b'\n');
        (code, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// A successful `Status`, as upstream answers some deletes and bindings.
pub fn success(code: u16) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_encoded_in_upstreams_field_order() {
        // As upstream's apiserver writes them (metav1.Status's field order; a trailing
        // newline from its JSON encoder is added by the response).
        let not_found = ApiError::not_found("deployments.apps", "apps", "deployments", "web");
        assert_eq!(
            String::from_utf8(not_found.encode()).expect("utf-8"),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" not found","reason":"NotFound","details":{"name":"web","group":"apps","kind":"deployments"},"code":404}"#
        );
        let invalid = ApiError::invalid("Pod", "", "p", vec![Cause::required("spec.containers")]);
        assert_eq!(
            String::from_utf8(invalid.encode()).expect("utf-8"),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Pod \"p\" is invalid: spec.containers: Required value","reason":"Invalid","details":{"name":"p","kind":"Pod","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers"}]},"code":422}"#
        );
        let plain = ApiError::bad_request("bad");
        assert_eq!(
            String::from_utf8(plain.encode()).expect("utf-8"),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"bad","reason":"BadRequest","code":400}"#
        );
    }

    #[tokio::test]
    async fn a_response_body_ends_with_a_newline() {
        let response = ApiError::bad_request("bad").into_response();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        assert!(body.ends_with(b"}\n"));
    }
}
