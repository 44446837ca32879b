//! Server-side printing: `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` answered with
//! a `meta.k8s.io/v1` Table carrying upstream's columns for each resource (what
//! `kubectl get` shows: READY, STATUS, RESTARTS, AGE, ...), in lists, gets and watches. The
//! columns and cells are each kind's own ([`crate::registry::Strategy`]).

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::registry::Resource;

/// Whether the client asked for a Table.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers.get_all(axum::http::header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |media| {
            media.contains("as=Table")
                && media.contains("g=meta.k8s.io")
                && media.contains("v=v1")
                && !media.contains("v=v1beta1")
        },
    )
}

fn row(resource: &Resource, obj: &Value, include: &str) -> Value {
    let object = match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
        }
    };
    json!({"cells": resource.strategy.cells(obj), "object": object})
}

/// A Table of `objects`; `with_columns` false leaves the column definitions out (later watch events).
pub fn table(resource: &Resource, objects: &[Value], meta: Value, include: &str, with_columns: bool) -> Value {
    let defs: Vec<Value> = if with_columns { resource.strategy.column_definitions() } else { Vec::new() };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": objects.iter().map(|o| row(resource, o, include)).collect::<Vec<_>>(),
    })
}
