//! Discovery (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`), `/version`, and the
//! OpenAPI v3 documents kubectl reads before `create -f`/`apply -f`: every path and verb
//! served, with the `fieldValidation` parameter on PATCH so kubectl leaves validation to us.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::value_response;
use crate::registry::{Registry, Resource, Schema, Sub};
use crate::status::{ApiError, ApiResult};

/// The Kubernetes version this apiserver speaks.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "32");

/// `/version`.
pub fn version() -> Response {
    let (major, minor) = KUBERNETES_VERSION;
    value_response(
        StatusCode::OK,
        &json!({
            "major": major,
            "minor": minor,
            "gitVersion": format!("v{major}.{minor}.0"),
            "gitCommit": env!("CARGO_PKG_VERSION"),
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
        }),
        &[],
    )
}

/// The content type of aggregated discovery documents.
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts aggregated discovery (`apidiscovery.k8s.io/v2`).
pub fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|m| {
        m.contains("as=APIGroupDiscoveryList")
            && m.contains("g=apidiscovery.k8s.io")
            && m.contains("v=v2")
            && !m.contains("v=v2beta1")
    })
}

fn discovery_resource(r: &Resource) -> Value {
    let kind = |group: &str, version: &str, kind: &str| json!({"group": group, "version": version, "kind": kind});
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (response, verbs) = match sub {
                Sub::Scale => (kind("autoscaling", "v1", "Scale"), json!(["get", "patch", "update"])),
                Sub::Binding => (kind("", "v1", "Binding"), json!(["create"])),
                Sub::Log => (kind("", "v1", "Pod"), json!(["get"])),
                Sub::Token => (kind("authentication.k8s.io", "v1", "TokenRequest"), json!(["create"])),
                Sub::Status | Sub::Approval => (kind(&r.group, &r.version, &r.kind), json!(["get", "patch", "update"])),
            };
            json!({"subresource": sub.name(), "responseKind": response, "verbs": verbs})
        })
        .collect();
    let mut entry = json!({
        "resource": &r.resource,
        "responseKind": kind(&r.group, &r.version, &r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": &r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

/// `/api` or `/apis` as one aggregated document: every group, version and resource.
pub fn aggregated(registry: &Registry, core: bool) -> Response {
    let group_versions = registry.group_versions();
    let rows = registry.all();
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in &group_versions {
        if (g.is_empty() == core) && !groups.contains(&g.as_str()) {
            groups.push(g);
        }
    }
    let items: Vec<Value> = groups
        .into_iter()
        .map(|g| {
            let versions: Vec<Value> = group_versions
                .iter()
                .filter(|(gg, _)| gg == g)
                .map(|(_, v)| {
                    let resources: Vec<Value> = rows
                        .iter()
                        .filter(|r| r.group == g && r.version == *v)
                        .map(|r| discovery_resource(r))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    let mut resp = value_response(StatusCode::OK, &body, &[]);
    if let Ok(v) = AGGREGATED.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// `/api`.
pub fn api_versions(registry: &Registry, headers: &HeaderMap) -> Response {
    if wants_aggregated(headers) {
        return aggregated(registry, true);
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:6443");
    value_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": host }],
        }),
        &[],
    )
}

fn group_entry(registry: &Registry, group: &str) -> Value {
    let versions: Vec<Value> = registry
        .group_versions()
        .into_iter()
        .filter(|(g, _)| g == group)
        .map(|(g, v)| json!({ "groupVersion": format!("{g}/{v}"), "version": v }))
        .collect();
    json!({ "name": group, "versions": versions, "preferredVersion": versions.first() })
}

/// `/apis`.
pub fn api_groups(registry: &Registry, headers: &HeaderMap) -> Response {
    if wants_aggregated(headers) {
        return aggregated(registry, false);
    }
    let mut groups: Vec<String> = Vec::new();
    for (g, _) in registry.group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    let groups: Vec<Value> = groups.iter().map(|g| group_entry(registry, g)).collect();
    value_response(StatusCode::OK, &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }), &[])
}

/// `/apis/{group}`.
pub fn group(registry: &Registry, group: &str) -> ApiResult<Response> {
    if !registry.group_versions().iter().any(|(g, _)| g == group) {
        return Err(ApiError::no_route(&format!("/apis/{group}")));
    }
    let mut entry = group_entry(registry, group);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Ok(value_response(StatusCode::OK, &entry, &[]))
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let mut entries = vec![json!({
        "name": &r.resource,
        "singularName": &r.singular,
        "namespaced": r.namespaced,
        "kind": &r.kind,
        "verbs": r.verbs(),
        "shortNames": r.short_names,
        "categories": r.categories,
    })];
    for sub in r.subresources.iter() {
        let mut e = json!({
            "name": format!("{}/{}", &r.resource, sub.name()),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": &r.kind,
            "verbs": ["get", "patch", "update"],
        });
        match sub {
            Sub::Scale => {
                e["group"] = json!("autoscaling");
                e["version"] = json!("v1");
                e["kind"] = json!("Scale");
            }
            Sub::Binding => {
                e["kind"] = json!("Binding");
                e["verbs"] = json!(["create"]);
            }
            Sub::Log => {
                e["verbs"] = json!(["get"]);
            }
            Sub::Token => {
                e["group"] = json!("authentication.k8s.io");
                e["version"] = json!("v1");
                e["kind"] = json!("TokenRequest");
                e["verbs"] = json!(["create"]);
            }
            Sub::Status | Sub::Approval => {}
        }
        entries.push(e);
    }
    for e in &mut entries {
        let empty = |k: &str| e.get(k).and_then(Value::as_array).is_some_and(Vec::is_empty);
        let (no_short, no_cat) = (empty("shortNames"), empty("categories"));
        if let Some(o) = e.as_object_mut() {
            if no_short {
                o.remove("shortNames");
            }
            if no_cat {
                o.remove("categories");
            }
        }
    }
    entries
}

/// `/api/v1` and `/apis/{group}/{version}`.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Response {
    let resources: Vec<Value> = registry
        .all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| resource_entries(r))
        .collect();
    let gv = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    value_response(
        StatusCode::OK,
        &json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
        &[],
    )
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// A stable hash of a document, so kubectl's cache notices changes.
fn hash(doc: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: the root listing each group-version's document.
pub fn openapi_root(registry: &Registry) -> Response {
    let mut paths = serde_json::Map::new();
    let docs = documents(registry);
    for (g, v) in registry.group_versions() {
        let path = gv_path(&g, &v);
        let hash = docs.v3.get(&(g, v)).map(|(_, h)| h.clone()).unwrap_or_default();
        paths.insert(path.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}") }));
    }
    value_response(StatusCode::OK, &json!({ "paths": paths }), &[])
}

fn param(name: &str, location: &str, required: bool) -> Value {
    json!({ "name": name, "in": location, "required": required, "schema": { "type": "string" }, "uniqueItems": true })
}

fn operation(r: &Resource, verb: &str, action: &str, params: &[&str]) -> Value {
    let mut op = json!({
        "operationId": format!("{verb}{}", &r.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": &r.group, "version": &r.version, "kind": r.kind },
        "responses": { "200": { "description": "OK" }, "401": { "description": "Unauthorized" } },
    });
    if !params.is_empty() {
        op["parameters"] = params.iter().map(|p| param(p, "query", false)).collect();
    }
    op
}

/// The documents, built once per state of the registry (they take a while: every type's
/// schema).
pub(super) fn documents(registry: &Registry) -> Arc<crate::registry::OpenApi> {
    registry.cached_openapi(|| {
        registry
            .group_versions()
            .into_iter()
            .map(|(g, v)| {
                let doc = build_openapi_document(registry, &g, &v);
                let h = hash(&doc);
                ((g, v), (doc, h))
            })
            .collect()
    })
}

/// The schemas of a group-version's kinds and everything they reference, each kind marked
/// with `x-kubernetes-group-version-kind` (what `kubectl explain` looks for).
fn schemas(rows: &[Arc<Resource>], group: &str, version: &str) -> serde_json::Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    let mut custom = Vec::new();
    for r in rows.iter().filter(|r| r.group == group && r.version == version) {
        match &r.schema {
            Schema::Typed { openapi, .. } => {
                let reference = openapi(&mut generator);
                if let Some(name) = reference.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()) {
                    kinds.push((name.to_owned(), r));
                }
            }
            Schema::Structural(schema) => custom.push((r, schema)),
        }
    }
    let metadata = (!custom.is_empty())
        .then(|| generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>());
    let mut defs = generator.take_definitions(true);
    for (r, schema) in custom {
        let mut def = schema.source().clone();
        if let Some(props) = def.as_object_mut().map(|d| d.entry("properties").or_insert_with(|| json!({}))) {
            props["apiVersion"] = json!({ "type": "string", "description": "APIVersion defines the versioned schema of this representation of an object." });
            props["kind"] = json!({ "type": "string", "description": "Kind is a string value representing the REST resource this object represents." });
            if let Some(meta) = &metadata {
                props["metadata"] = meta.clone().to_value();
            }
        }
        def["x-kubernetes-group-version-kind"] = json!([{ "group": &r.group, "version": &r.version, "kind": r.kind }]);
        // Upstream's definition name: the group reversed, the version, the kind.
        let reversed: Vec<&str> = r.group.split('.').rev().collect();
        defs.insert(format!("{}.{}.{}", reversed.join("."), r.version, r.kind), def);
    }
    for (name, r) in kinds {
        if let Some(schema) = defs.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{ "group": &r.group, "version": &r.version, "kind": r.kind }]),
            );
        }
    }
    defs
}

fn build_openapi_document(registry: &Registry, group: &str, version: &str) -> Value {
    let rows = registry.all();
    let mut paths = serde_json::Map::new();
    let base = format!("/{}", gv_path(group, version));
    for r in rows.iter().filter(|r| r.group == group && r.version == version) {
        let scope = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", &r.resource)
        } else {
            format!("{base}/{}", &r.resource)
        };
        let mut path_params = vec![param("name", "path", true)];
        if r.namespaced {
            path_params.push(param("namespace", "path", true));
        }
        let write_params = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
        let mut collection = json!({
            "get": operation(r, "list", "list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "watch", "allowWatchBookmarks", "sendInitialEvents", "timeoutSeconds"]),
            "post": operation(r, "create", "post", &write_params),
            "parameters": if r.namespaced { json!([param("namespace", "path", true)]) } else { json!([]) },
        });
        if r.deletes_as_collection() {
            collection["delete"] = operation(
                r,
                "deletecollection",
                "deletecollection",
                &["labelSelector", "fieldSelector", "gracePeriodSeconds", "propagationPolicy", "dryRun"],
            );
        }
        paths.insert(scope.clone(), collection);
        paths.insert(format!("{scope}/{{name}}"), json!({
            "get": operation(r, "read", "get", &[]),
            "put": operation(r, "replace", "put", &write_params),
            "patch": operation(r, "patch", "patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
            "delete": operation(r, "delete", "delete", &["gracePeriodSeconds", "propagationPolicy", "dryRun"]),
            "parameters": path_params.clone(),
        }));
        for sub in r.subresources.iter() {
            let mut ops = match sub {
                Sub::Binding => json!({ "post": operation(r, "createBinding", "post", &["dryRun", "fieldManager"]) }),
                Sub::Token => json!({ "post": operation(r, "createToken", "post", &["dryRun", "fieldManager"]) }),
                Sub::Log => {
                    json!({ "get": operation(r, "readLog", "get", &["container", "follow", "previous", "tailLines", "timestamps"]) })
                }
                _ => json!({
                    "get": operation(r, &format!("read{}", sub.name()), "get", &[]),
                    "put": operation(r, &format!("replace{}", sub.name()), "put", &write_params),
                    "patch": operation(r, &format!("patch{}", sub.name()), "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
                }),
            };
            // Every path names its parameters: schema-driven clients and fuzzers fill them.
            ops["parameters"] = json!(path_params);
            paths.insert(format!("{scope}/{{name}}/{}", sub.name()), ops);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v{}.{}.0", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1) },
        "paths": paths,
        "components": { "schemas": schemas(&rows, group, version) },
    })
}

/// `/openapi/v3/{api/v1 | apis/group/version}`.
pub fn openapi_group_version(registry: &Registry, path: &str) -> Response {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let gv = match parts.as_slice() {
        ["api", v] => Some(("", *v)),
        ["apis", g, v] => Some((*g, *v)),
        _ => None,
    };
    let docs = documents(registry);
    match gv.and_then(|(g, v)| docs.v3.get(&(g.to_owned(), v.to_owned()))) {
        Some((doc, _)) => value_response(StatusCode::OK, doc, &[]),
        None => ApiError::no_route(&format!("/openapi/v3/{path}")).into_response(),
    }
}
