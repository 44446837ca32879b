//! `POST serviceaccounts/NAME/token`: a `TokenRequest` answered with a signed token for
//! the account, bound to a pod, secret or node when the request names one (the token
//! then dies with it), as upstream's TokenRequest API.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{App, Target, storage, value_response};
use crate::serviceaccount::Bound;
use crate::status::{ApiError, ApiResult, Cause};

/// Shortest and longest lives a client may ask for (upstream's bounds).
const MIN_SECONDS: i64 = 600;
const MAX_SECONDS: i64 = 1 << 32;
/// The life of a token whose request names none.
const DEFAULT_SECONDS: i64 = 3600;

fn invalid(field: &str, value: &str, why: &str) -> ApiError {
    ApiError::invalid("TokenRequest", "authentication.k8s.io", "", vec![Cause::invalid(field, value, why)])
}

/// The object `name` of `resource` in `namespace` (none: cluster-scoped), as stored.
async fn object(app: &App, resource: &str, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
    let resource = app.registry.find("", "v1", resource).ok_or_else(|| ApiError::internal("no such resource"))?;
    let target = Target { resource, namespace: namespace.map(str::to_owned), name: Some(name.to_owned()), sub: None };
    Ok(storage::get_current(app, &target).await?.0)
}

fn uid(v: &Value) -> String {
    v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// Answers a TokenRequest with 201.
pub async fn create(app: &Arc<App>, target: &Target, content_type: &str, body: &[u8]) -> ApiResult<Response> {
    let tokens = app.tokens.as_ref().filter(|t| t.issues()).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource (this server issues no service account tokens: it has no --service-account-signing-key-file)",
        )
    })?;
    let request = crate::decode::decode_body(content_type, body)?;
    let spec = request.get("spec").cloned().unwrap_or(Value::Null);
    let (account, _) = storage::get_current(app, &Target { sub: None, ..target.clone() }).await?;
    let namespace = target.namespace.clone().unwrap_or_default();
    let name = target.name().to_owned();
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| invalid("spec.expirationSeconds", &v.to_string(), "must be an integer"))?,
    };
    if seconds < MIN_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            &seconds.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > MAX_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            &seconds.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => tokens.audiences().to_vec(),
    };
    let mut claims = tokens.claims(&namespace, &name, &uid(&account), audiences.clone(), seconds);
    let mut spec_out = json!({"audiences": audiences, "expirationSeconds": seconds});
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or_default();
        let bound_name = bound.get("name").and_then(Value::as_str).unwrap_or_default();
        let want_uid = bound.get("uid").and_then(Value::as_str).unwrap_or_default();
        let found = match kind {
            "Pod" => object(app, "pods", Some(&namespace), bound_name).await?,
            "Secret" => object(app, "secrets", Some(&namespace), bound_name).await?,
            "Node" => object(app, "nodes", None, bound_name).await?,
            other => {
                return Err(invalid("spec.boundObjectRef.kind", other, "must be one of Pod, Secret, Node"));
            }
        };
        if !want_uid.is_empty() && uid(&found) != want_uid {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "the UID in the bound object reference ({want_uid}) does not match the UID in record ({})",
                    uid(&found)
                ),
            ));
        }
        let this = Bound { name: bound_name.to_owned(), uid: uid(&found) };
        match kind {
            "Pod" => {
                let node = found.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
                if !node.is_empty() {
                    let node_uid = object(app, "nodes", None, node).await.map(|n| uid(&n)).unwrap_or_default();
                    claims.kubernetes.node = Some(Bound { name: node.to_owned(), uid: node_uid });
                }
                claims.kubernetes.pod = Some(this.clone());
            }
            "Secret" => claims.kubernetes.secret = Some(this.clone()),
            _ => claims.kubernetes.node = Some(this.clone()),
        }
        spec_out["boundObjectRef"] = json!({"kind": kind, "apiVersion": "v1", "name": this.name, "uid": this.uid});
    }
    let token = tokens.sign(&claims).map_err(ApiError::internal)?;
    let expires = jiff::Timestamp::from_second(claims.exp).map(|t| t.to_string()).unwrap_or_default();
    let answer = json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
        "spec": spec_out,
        "status": {"token": token, "expirationTimestamp": expires},
    });
    Ok(value_response(StatusCode::CREATED, &answer, &[]))
}
