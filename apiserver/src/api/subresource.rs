//! The scale subresource (an `autoscaling/v1` Scale view of `spec.replicas`), pod binding,
//! and a CertificateSigningRequest's approval.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::storage::{self, body_precondition};
use super::write::modify;
use super::{App, Params, Target, value_response};
use crate::decode::decode_body;
use crate::meta::meta_str;
use crate::patch::{self, PatchType};
use crate::registry::Resource;
use crate::selector::{LabelSelector, Requirement};
use crate::status::{ApiError, ApiResult, Cause, success};

/// `matchLabels`/`matchExpressions` as the string form `kubectl` and HPAs read.
fn selector_string(selector: Option<&Value>) -> String {
    let Some(sel) = selector.and_then(|s| LabelSelector::from_object(s).ok()) else { return String::new() };
    sel.0
        .iter()
        .map(|r| match r {
            Requirement::Equals(k, v) => format!("{k}={v}"),
            Requirement::NotEquals(k, v) => format!("{k}!={v}"),
            Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => k.clone(),
            Requirement::DoesNotExist(k) => format!("!{k}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The Scale view of a replicated object (a deployment, a replica set, a custom resource).
fn scale_of(resource: &Resource, obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let (spec, status) = resource.strategy.replicas_paths();
    let selector = resource
        .strategy
        .scale_selector(obj)
        .unwrap_or_else(|| selector_string(resource.strategy.label_selector(obj).as_ref()));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": { "replicas": obj.pointer(spec).and_then(Value::as_i64).unwrap_or(0) },
        "status": {
            "replicas": obj.pointer(status).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// GET .../scale.
pub async fn get_scale(app: &Arc<App>, target: &Target) -> ApiResult<Response> {
    let (obj, _) = storage::get_current(app, target).await?;
    Ok(value_response(StatusCode::OK, &scale_of(&target.resource, &obj), &[]))
}

fn replicas_of(scale: &Value, target: &Target) -> ApiResult<i64> {
    let replicas = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => {
            v.as_i64().ok_or_else(|| ApiError::bad_request(format!("spec.replicas must be an integer, not {v}")))?
        }
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            target.name(),
            vec![Cause::invalid("spec.replicas", &replicas.to_string(), "must be greater than or equal to 0")],
        ));
    }
    Ok(replicas)
}

/// Sets the desired replicas (bumping `generation`), unless they are already `replicas`.
async fn set_replicas(app: &App, target: &Target, precondition: Option<i64>, replicas: i64) -> ApiResult<Value> {
    let (spec, _) = target.resource.strategy.replicas_paths();
    modify(app, target, precondition, |old| {
        if old.pointer(spec).and_then(Value::as_i64) == Some(replicas) {
            return Ok(None);
        }
        let mut next = old.clone();
        set_pointer(&mut next, spec, json!(replicas));
        Ok(Some(storage::prepare_update(&target.resource, old, next, false)?))
    })
    .await
}

/// Sets the value at a JSON pointer, creating the objects on the way.
fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let mut at = target;
    let mut segments = pointer.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        if !at.is_object() {
            *at = json!({});
        }
        let Some(map) = at.as_object_mut() else { return };
        if segments.peek().is_none() {
            map.insert(segment.to_owned(), value);
            return;
        }
        at = map.entry(segment.to_owned()).or_insert_with(|| json!({}));
    }
}

/// PUT .../scale.
pub async fn update_scale(app: &Arc<App>, target: &Target, ct: &str, body: &[u8]) -> ApiResult<Response> {
    let scale = decode_body(ct, body)?;
    if meta_str(&scale, "name").is_some_and(|n| n != target.name()) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            meta_str(&scale, "name").unwrap_or_default(),
            target.name()
        )));
    }
    let replicas = replicas_of(&scale, target)?;
    let updated = set_replicas(app, target, body_precondition(&scale)?, replicas).await?;
    Ok(value_response(StatusCode::OK, &scale_of(&target.resource, &updated), &[]))
}

/// PATCH .../scale: the patch applies to the Scale view.
pub async fn patch_scale(app: &Arc<App>, target: &Target, ct: &str, body: &[u8]) -> ApiResult<Response> {
    let kind = PatchType::from_content_type(ct)?;
    let (current, _) = storage::get_current(app, target).await?;
    let mut scale = scale_of(&target.resource, &current);
    patch::apply(kind, &mut scale, body)?;
    let replicas = replicas_of(&scale, target)?;
    let precondition = match meta_str(&scale, "resourceVersion") {
        Some(rv) if Some(rv) != meta_str(&current, "resourceVersion") => Some(storage::parse_revision(rv)?),
        _ => None,
    };
    let updated = set_replicas(app, target, precondition, replicas).await?;
    Ok(value_response(StatusCode::OK, &scale_of(&target.resource, &updated), &[]))
}

/// PUT or PATCH certificatesigningrequests/NAME/approval: only the conditions change
/// (`Approved`, `Denied`, final once set), checked as every write is.
pub async fn update_approval(
    app: &Arc<App>,
    target: &Target,
    writer: &super::write::Writer,
    (ct, is_patch): (&str, bool),
    body: &[u8],
) -> ApiResult<Response> {
    let (sent, kind) =
        if is_patch { (None, Some(PatchType::from_content_type(ct)?)) } else { (Some(decode_body(ct, body)?), None) };
    if let Some(sent) = &sent
        && meta_str(sent, "name").is_some_and(|n| n != target.name())
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            meta_str(sent, "name").unwrap_or_default(),
            target.name()
        )));
    }
    let precondition = match &sent {
        Some(sent) => body_precondition(sent)?,
        None => None,
    };
    let resource = &target.resource;
    let updated = storage::guaranteed_update(app, target, precondition, false, |old| {
        let sent = match (&sent, kind) {
            (Some(sent), _) => sent.clone(),
            (None, Some(kind)) => {
                let mut patched = old.clone();
                patch::apply(kind, &mut patched, body)?;
                patched
            }
            (None, None) => old.clone(),
        };
        let next = crate::registry::certificatesigningrequest::with_approval(&old, &sent);
        let causes = resource.strategy.validate(&next, Some(&old));
        if !causes.is_empty() {
            return Err(ApiError::invalid(&resource.kind, &resource.group, target.name(), causes));
        }
        writer.admit(Some(&old), &next)?;
        Ok(storage::decide(resource, old, next))
    })
    .await?;
    Ok(value_response(StatusCode::OK, &updated, &[]))
}

/// POST pods/NAME/binding: assigns the pod to a node, once.
pub async fn bind(app: &Arc<App>, target: &Target, ct: &str, body: &[u8]) -> ApiResult<Response> {
    let binding = decode_body(ct, body)?;
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    if node.is_empty() {
        return Err(ApiError::invalid("Binding", "", target.name(), vec![Cause::required("target.name")]));
    }
    if meta_str(&binding, "name").is_some_and(|n| n != target.name()) {
        return Err(ApiError::bad_request("the binding's metadata.name must be the pod's name"));
    }
    let uid = binding.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_owned);
    modify(app, target, None, |pod| {
        if uid.as_deref().is_some_and(|u| Some(u) != meta_str(pod, "uid")) {
            return Err(target.conflict());
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
            return Err(ApiError::conflict("pods", "", "pods", target.name(), "the pod is being deleted"));
        }
        match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            Some(current) if !current.is_empty() => {
                return Err(ApiError::conflict(
                    "pods",
                    "",
                    "pods",
                    target.name(),
                    &format!("pod {} is already assigned to node {current:?}", target.name()),
                ));
            }
            _ => {}
        }
        let mut next = pod.clone();
        next["spec"]["nodeName"] = json!(node);
        let condition = json!({
            "type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": crate::meta::now_rfc3339(),
        });
        let conditions = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conditions: Vec<Value> =
            conditions.into_iter().filter(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled")).collect();
        conditions.push(condition);
        next["status"]["conditions"] = Value::Array(conditions);
        Ok(Some(next))
    })
    .await?;
    Ok(value_response(StatusCode::CREATED, &success(201), &[]))
}

/// GET pods/NAME/log: proxied from the kubelet of the pod's node, streamed as it comes.
pub async fn logs(app: &Arc<App>, target: &Target, params: &Params) -> ApiResult<Response> {
    let (pod, _) = storage::get_current(app, target).await?;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
        .unwrap_or_default();
    let container = match params.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {}, choose one of: [{}]",
                target.name(),
                containers.join(" ")
            )));
        }
    };
    let init: Vec<String> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
        .unwrap_or_default();
    if !containers.contains(&container) && !init.contains(&container) {
        return Err(ApiError::bad_request(format!("container {container} is not valid for pod {}", target.name())));
    }
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {} does not have a host assigned", target.name())));
    }
    let nodes = app.registry.find("", "v1", "nodes").ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let node_target = Target { resource: nodes, namespace: None, name: Some(node_name.to_owned()), sub: None };
    let (node, _) = storage::get_current(app, &node_target).await?;
    let ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .ok_or_else(|| ApiError::internal(format!("node {node_name:?} has no InternalIP address")))?
        .to_owned();
    let port = node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_i64).unwrap_or(10250);
    let mut query: Vec<(String, String)> = Vec::new();
    for key in ["follow", "previous", "tailLines", "timestamps", "limitBytes", "sinceSeconds"] {
        if let Some(v) = params.get(key) {
            query.push((key.to_owned(), v.clone()));
        }
    }
    let ns = target.namespace.clone().unwrap_or_default();
    let url = app.kubelet.url(&ip, port, &format!("/containerLogs/{ns}/{}/{container}", target.name()));
    let resp =
        app.kubelet.http().get(&url).query(&query).send().await.map_err(|e| {
            ApiError::internal(format!("the kubelet of node {node_name:?} did not answer at {url}: {e}"))
        })?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        return Err(if code == 400 {
            ApiError::bad_request(text)
        } else {
            ApiError::internal(format!("kubelet: {text}"))
        });
    }
    let body = axum::body::Body::from_stream(resp.bytes_stream());
    Ok(axum::response::Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "text/plain")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}
