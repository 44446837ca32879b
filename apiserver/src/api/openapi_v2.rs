//! `/openapi/v2`: every served kind's schema as one Swagger 2.0 document, in JSON or in
//! the protobuf form (gnostic's `openapi.v2.Document`) that kubectl asks for.
//!
//! kubectl reads it for client-side validation where the server cannot validate for it:
//! a `List` of objects (`kubectl get ... -o json | kubectl apply -f -`) is checked item by
//! item against these definitions before anything is sent. The definitions are the ones
//! `/openapi/v3` serves, merged and with references rewritten to `#/definitions/`; the
//! paths and their parameters are in `/openapi/v3` only.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::discovery::{KUBERNETES_VERSION, documents};
use crate::protobuf::write::{bytes, varint};
use crate::registry::Registry;

/// What kubectl sends in `Accept` for the protobuf form.
const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// What upstream answers it with.
const PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`.
pub fn serve(registry: &Registry, headers: &HeaderMap) -> Response {
    let doc = document(registry);
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or_default();
    if accept.split(',').any(|a| a.split(';').next().is_some_and(|m| m.trim() == PROTOBUF)) {
        let mut out = Vec::new();
        encode_document(&doc, &mut out);
        return (StatusCode::OK, [(header::CONTENT_TYPE, PROTOBUF_CONTENT_TYPE)], out).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], doc.to_string()).into_response()
}

/// The Swagger 2.0 document of every group-version served.
pub fn document(registry: &Registry) -> Arc<Value> {
    let docs = documents(registry);
    docs.v2.get_or_init(|| {
        let mut definitions = serde_json::Map::new();
        for (doc, _) in docs.v3.values() {
            let Some(schemas) = doc.pointer("/components/schemas").and_then(Value::as_object) else { continue };
            for (name, schema) in schemas {
                let mut schema = schema.clone();
                to_v2(&mut schema);
                definitions.insert(name.clone(), schema);
            }
        }
        Arc::new(json!({
            "swagger": "2.0",
            "info": { "title": "Kubernetes", "version": format!("v{}.{}.0", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1) },
            "paths": {},
            "definitions": definitions,
        }))
    })
    .clone()
}

/// Rewrites an OpenAPI 3 schema as Swagger 2.0 has it: references under
/// `#/definitions/`, and a schema that keeps unknown fields (a custom resource's open
/// parts) left open, as upstream publishes them, so that validation does not refuse what
/// the server accepts.
fn to_v2(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    if obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        let description = obj.get("description").cloned();
        obj.clear();
        obj.insert("x-kubernetes-preserve-unknown-fields".into(), Value::Bool(true));
        if let Some(d) = description {
            obj.insert("description".into(), d);
        }
        return;
    }
    if let Some(Value::String(r)) = obj.get_mut("$ref")
        && let Some(name) = r.strip_prefix("#/components/schemas/")
    {
        *r = format!("#/definitions/{name}");
    }
    obj.remove("nullable");
    for v in obj.values_mut() {
        match v {
            Value::Object(_) => to_v2(v),
            Value::Array(items) => items.iter_mut().for_each(to_v2),
            _ => {}
        }
    }
    // `properties` is a map of schemas; walking its values above reached each one.
}

// Protobuf, gnostic's field numbers (openapiv2/OpenAPIv2.proto).

fn message(tag: u64, out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    bytes(tag, &inner, out);
}

fn encode_document(doc: &Value, out: &mut Vec<u8>) {
    bytes(1, b"2.0", out);
    message(2, out, |info| {
        for (tag, key) in [(1, "title"), (2, "version")] {
            if let Some(s) = doc.pointer(&format!("/info/{key}")).and_then(Value::as_str) {
                bytes(tag, s.as_bytes(), info);
            }
        }
    });
    message(8, out, |_| {});
    if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
        message(9, out, |d| {
            for (name, schema) in defs {
                named_schema(1, name, schema, d);
            }
        });
    }
}

fn named_schema(tag: u64, name: &str, schema: &Value, out: &mut Vec<u8>) {
    message(tag, out, |n| {
        bytes(1, name.as_bytes(), n);
        message(2, n, |s| encode_schema(schema, s));
    });
}

/// A JSON Schema as gnostic's `Schema`: what kubectl's validation reads (`$ref`, type,
/// format, required, properties, items, additionalProperties, the `x-` extensions),
/// with descriptions for `kubectl explain` against older servers.
fn encode_schema(schema: &Value, out: &mut Vec<u8>) {
    let Some(obj) = schema.as_object() else { return };
    let string = |tag: u64, key: &str, out: &mut Vec<u8>| {
        if let Some(s) = obj.get(key).and_then(Value::as_str) {
            bytes(tag, s.as_bytes(), out);
        }
    };
    string(1, "$ref", out);
    string(2, "format", out);
    string(4, "description", out);
    for r in obj.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        bytes(19, r.as_bytes(), out);
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(b)) => message(21, out, |a| {
            varint(2 << 3, a);
            varint(u64::from(*b), a);
        }),
        Some(s @ Value::Object(_)) => message(21, out, |a| message(1, a, |inner| encode_schema(s, inner))),
        _ => {}
    }
    match obj.get("type") {
        Some(Value::String(t)) => message(22, out, |ty| bytes(1, t.as_bytes(), ty)),
        Some(Value::Array(ts)) => message(22, out, |ty| {
            ts.iter().filter_map(Value::as_str).for_each(|t| bytes(1, t.as_bytes(), ty));
        }),
        _ => {}
    }
    match obj.get("items") {
        Some(s @ Value::Object(_)) => message(23, out, |i| message(1, i, |inner| encode_schema(s, inner))),
        Some(Value::Array(list)) => message(23, out, |i| {
            list.iter().for_each(|s| message(1, i, |inner| encode_schema(s, inner)));
        }),
        _ => {}
    }
    for s in obj.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        message(24, out, |inner| encode_schema(s, inner));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        message(25, out, |p| {
            for (name, s) in props {
                named_schema(1, name, s, p);
            }
        });
    }
    for (name, value) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        // JSON is YAML: gnostic keeps an extension's value as YAML text.
        message(31, out, |n| {
            bytes(1, name.as_bytes(), n);
            message(2, n, |any| bytes(2, value.to_string().as_bytes(), any));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_point_at_definitions_and_open_schemas_stay_open() {
        let mut s = json!({
            "type": "object",
            "nullable": true,
            "properties": {
                "a": { "$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec" },
                "b": { "type": "array", "items": { "$ref": "#/components/schemas/X" } },
                "open": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": { "k": {} } },
            },
        });
        to_v2(&mut s);
        assert_eq!(s["properties"]["a"]["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert_eq!(s["properties"]["b"]["items"]["$ref"], "#/definitions/X");
        assert_eq!(s["properties"]["open"], json!({ "x-kubernetes-preserve-unknown-fields": true }));
        assert!(s.get("nullable").is_none());
    }

    #[test]
    fn every_kind_has_a_definition_and_every_reference_resolves() {
        let registry = Registry::default();
        let doc = document(&registry);
        let defs = doc["definitions"].as_object().expect("definitions");
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(defs.contains_key("io.k8s.api.apps.v1.Deployment"));
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        out.push(r.clone());
                    }
                    o.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc["definitions"], &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/definitions/").unwrap_or_else(|| panic!("{r} is not a v2 reference"));
            assert!(defs.contains_key(name), "{r} does not resolve");
        }
        // The protobuf form starts with `swagger: "2.0"` (field 1, a string).
        let mut out = Vec::new();
        encode_document(&doc, &mut out);
        assert_eq!(&out[..5], b"\x0a\x032.0");
        assert!(out.len() > 10_000);
    }
}
