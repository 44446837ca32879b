//! CustomResourceDefinition (apiextensions.k8s.io/v1, cluster-scoped): upstream's defaults
//! and validation, including that every version's schema is structural. Serving the
//! resources a CRD defines, its conditions and its deletion are `api/crds.rs`.

use std::borrow::Cow;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::custom::parse_path;
use super::print::s;
use super::{Columns, Resource, Strategy, Sub, names};
use crate::names::{dns1035_label_errors, dns1123_subdomain_errors};
use crate::status::Cause;
use crate::structural::Structural;
use crate::validation;

/// The finalizer that keeps a deleted CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        short_names: names(&["crd", "crds"]),
        categories: names(&["api-extensions"]),
        subresources: Cow::Borrowed(&[Sub::Status]),
        storage: "apiextensions.k8s.io/customresourcedefinitions".into(),
        ..Resource::of::<CustomResourceDefinition>(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            CrdStrategy,
        )
    }
}

const COLUMNS: Columns = &[("Name", "string", 0), ("Created At", "date", 0)];

struct CrdStrategy;

impl Strategy for CrdStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
            if names.get("singular").and_then(Value::as_str).is_none_or(str::is_empty) {
                names.insert("singular".into(), json!(kind.to_lowercase()));
            }
            if names.get("listKind").and_then(Value::as_str).is_none_or(str::is_empty) && !kind.is_empty() {
                names.insert("listKind".into(), json!(format!("{kind}List")));
            }
        }
        spec.entry("conversion").or_insert_with(|| json!({"strategy": "None"}));
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validation::generic(obj, old);
        match serde_json::from_value::<CustomResourceDefinition>(obj.clone()) {
            Ok(crd) => check(&crd, old, &mut causes),
            Err(e) => causes.push(Cause::invalid("spec", "", e.to_string())),
        }
        causes
    }

    /// A new CRD keeps its status for the server to fill, and the finalizer that deletes
    /// its objects before it goes.
    fn prepare_create(&self, _resource: &Resource, obj: &mut Value) {
        let storage = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|v| v["storage"] == true);
        let stored: Vec<Value> = storage.and_then(|v| v.get("name")).cloned().into_iter().collect();
        obj["status"] = json!({ "acceptedNames": { "plural": "", "kind": "" }, "storedVersions": stored });
        let meta = crate::meta::meta_mut(obj);
        let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == CLEANUP_FINALIZER)
        {
            list.push(json!(CLEANUP_FINALIZER));
        }
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![json!(s(o, "/metadata/name")), json!(s(o, "/metadata/creationTimestamp"))]
    }
}

/// Upstream's CRD validation, in its words.
fn check(crd: &CustomResourceDefinition, old: Option<&Value>, out: &mut Vec<Cause>) {
    let spec = &crd.spec;
    let names = &spec.names;
    let name = crd.metadata.name.as_deref().unwrap_or_default();
    if name != format!("{}.{}", names.plural, spec.group) {
        out.push(Cause::invalid("metadata.name", name, "must be spec.names.plural+\".\"+spec.group"));
    }
    if spec.group.is_empty() {
        out.push(Cause::required("spec.group"));
    } else {
        for e in dns1123_subdomain_errors(&spec.group) {
            out.push(Cause::invalid("spec.group", &spec.group, e));
        }
        if !spec.group.contains('.') {
            out.push(Cause::invalid("spec.group", &spec.group, "should be a domain with at least one dot"));
        }
        let protected =
            ["k8s.io", "kubernetes.io"].iter().any(|d| spec.group == *d || spec.group.ends_with(&format!(".{d}")));
        let approved = crd.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("api-approved.kubernetes.io"));
        if protected && !approved {
            out.push(Cause::required_because(
                "metadata.annotations[api-approved.kubernetes.io]",
                "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
            ));
        }
    }
    match spec.scope.as_str() {
        "Cluster" | "Namespaced" => {}
        "" => out.push(Cause::required("spec.scope")),
        other => out.push(Cause::not_supported("spec.scope", other, &["Cluster", "Namespaced"])),
    }
    check_names(crd, out);
    check_versions(crd, out);
    if let Some(c) = &spec.conversion
        && c.strategy != "None"
    {
        out.push(Cause::not_supported("spec.conversion.strategy", &c.strategy, &["None"]));
    }
    if let Some(old) = old.and_then(|o| serde_json::from_value::<CustomResourceDefinition>(o.clone()).ok()) {
        if old.spec.scope != spec.scope {
            out.push(Cause::invalid("spec.scope", &spec.scope, "field is immutable"));
        }
        if old.spec.group != spec.group {
            out.push(Cause::invalid("spec.group", &spec.group, "field is immutable"));
        }
    }
}

fn check_names(crd: &CustomResourceDefinition, out: &mut Vec<Cause>) {
    let names = &crd.spec.names;
    let lowercase_label = |field: &str, value: &str, out: &mut Vec<Cause>| {
        for e in dns1035_label_errors(value) {
            out.push(Cause::invalid(field, value, e));
        }
    };
    if names.plural.is_empty() {
        out.push(Cause::required("spec.names.plural"));
    } else {
        lowercase_label("spec.names.plural", &names.plural, out);
    }
    if let Some(singular) = names.singular.as_deref().filter(|s| !s.is_empty()) {
        lowercase_label("spec.names.singular", singular, out);
    }
    if names.kind.is_empty() {
        out.push(Cause::required("spec.names.kind"));
    } else if !names.kind.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        || !names.kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        out.push(Cause::invalid(
            "spec.names.kind",
            &names.kind,
            "may have mixed case, but should otherwise match: ^[a-zA-Z][a-zA-Z0-9]*$",
        ));
    }
    for (i, short) in names.short_names.iter().flatten().enumerate() {
        lowercase_label(&format!("spec.names.shortNames[{i}]"), short, out);
    }
}

fn check_versions(crd: &CustomResourceDefinition, out: &mut Vec<Cause>) {
    let versions = &crd.spec.versions;
    if versions.is_empty() {
        out.push(Cause::required_because("spec.versions", "must have exactly one version marked as storage version"));
        return;
    }
    let listed = || json!(versions.iter().map(|v| &v.name).collect::<Vec<_>>());
    if versions.iter().filter(|v| v.storage).count() != 1 {
        out.push(Cause::invalid_value(
            "spec.versions",
            &listed(),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions.iter().any(|v| v.served) {
        out.push(Cause::invalid_value("spec.versions", &listed(), "must have at least one served version"));
    }
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        for e in dns1035_label_errors(&v.name) {
            out.push(Cause::invalid(format!("{at}.name"), &v.name, e));
        }
        if versions[..i].iter().any(|w| w.name == v.name) {
            out.push(Cause::duplicate(format!("{at}.name"), &v.name));
        }
        match v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) {
            None => out.push(Cause::required_because(format!("{at}.schema.openAPIV3Schema"), "schemas are required")),
            Some(schema) => out.extend(Structural::check(schema, &format!("{at}.schema.openAPIV3Schema"))),
        }
        if let Some(scale) = v.subresources.as_ref().and_then(|s| s.scale.as_ref()) {
            let at = format!("{at}.subresources.scale");
            check_scale_path(&format!("{at}.specReplicasPath"), &scale.spec_replicas_path, &[".spec."], out);
            check_scale_path(&format!("{at}.statusReplicasPath"), &scale.status_replicas_path, &[".status."], out);
            if let Some(p) = &scale.label_selector_path {
                check_scale_path(&format!("{at}.labelSelectorPath"), p, &[".spec.", ".status."], out);
            }
        }
        for (j, c) in v.additional_printer_columns.iter().flatten().enumerate() {
            let at = format!("{at}.additionalPrinterColumns[{j}]");
            if c.name.is_empty() {
                out.push(Cause::required(format!("{at}.name")));
            }
            if !["integer", "number", "string", "boolean", "date"].contains(&c.type_.as_str()) {
                out.push(Cause::not_supported(
                    format!("{at}.type"),
                    &c.type_,
                    &["integer", "number", "string", "boolean", "date"],
                ));
            }
            if c.json_path.is_empty() {
                out.push(Cause::required(format!("{at}.jsonPath")));
            } else if parse_path(&c.json_path).is_none() {
                out.push(Cause::invalid(format!("{at}.jsonPath"), &c.json_path, "must be a simple json path"));
            }
        }
    }
}

fn check_scale_path(field: &str, path: &str, under: &[&str], out: &mut Vec<Cause>) {
    if path.is_empty() {
        out.push(Cause::required(field));
        return;
    }
    let simple = path
        .split('.')
        .skip(1)
        .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if !path.starts_with('.') || !simple {
        out.push(Cause::invalid(field, path, "must be a simple json path starting with ."));
    } else if !under.iter().any(|u| path.starts_with(u)) {
        let parent = under.iter().map(|u| u.trim_end_matches('.')).collect::<Vec<_>>().join(" or ");
        out.push(Cause::invalid(field, path, format!("should be a json path under {parent}")));
    }
}
