//! Custom resources: the registry rows a CustomResourceDefinition adds (one per served
//! version), and their strategy: the version's structural schema prunes, defaults and
//! validates; `status` and `scale` subresources at the CRD's paths; the CRD's
//! `additionalPrinterColumns` in tables.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use serde_json::{Value, json};

use super::print::since;
use super::{Conversion, Name, Resource, Schema, Strategy, Sub};
use crate::status::Cause;
use crate::structural::Structural;
use crate::validation;

/// The rows a CustomResourceDefinition serves: one per served version, all stored under
/// `/registry/{group}/{plural}/` in the storage version. Fails on a schema that does not
/// compile (validation refuses such CRDs; one stored before is not served).
pub fn resources(crd: &CustomResourceDefinition) -> Result<Vec<Resource>, String> {
    let spec = &crd.spec;
    let names = &spec.names;
    let storage_version =
        spec.versions.iter().find(|v| v.storage).map(|v| v.name.clone()).ok_or("no storage version")?;
    let group = spec.group.clone();
    let owned = |l: &Option<Vec<String>>| -> Cow<'static, [Name]> {
        l.iter().flatten().map(|n| Cow::Owned(n.clone())).collect::<Vec<Name>>().into()
    };
    let mut rows = Vec::new();
    for version in spec.versions.iter().filter(|v| v.served) {
        let schema = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or_else(|| format!("version {} has no schema", version.name))?;
        let schema = Arc::new(Structural::compile(schema)?);
        let mut subresources = Vec::new();
        let subs = version.subresources.as_ref();
        if subs.is_some_and(|s| s.status.is_some()) {
            subresources.push(Sub::Status);
        }
        if subs.is_some_and(|s| s.scale.is_some()) {
            subresources.push(Sub::Scale);
        }
        let conversion = (version.name != storage_version).then(|| Conversion::ApiVersion {
            served: Cow::Owned(format!("{group}/{}", version.name)),
            stored: Cow::Owned(format!("{group}/{storage_version}")),
        });
        rows.push(Resource {
            group: Cow::Owned(group.clone()),
            version: Cow::Owned(version.name.clone()),
            resource: Cow::Owned(names.plural.clone()),
            singular: Cow::Owned(names.singular.clone().unwrap_or_else(|| names.kind.to_lowercase())),
            kind: Cow::Owned(names.kind.clone()),
            namespaced: spec.scope == "Namespaced",
            short_names: owned(&names.short_names),
            categories: owned(&names.categories),
            subresources: subresources.into(),
            storage: Cow::Owned(storage_of(&group, &names.plural)),
            fields: &[],
            schema: Schema::Structural(schema.clone()),
            strategy: Arc::new(CustomStrategy::new(version, schema)),
            conversion,
        });
    }
    Ok(rows)
}

/// Where a custom resource's objects are stored: `/registry/{group}/{plural}/`, as upstream.
pub fn storage_of(group: &str, plural: &str) -> String {
    format!("{group}/{plural}")
}

/// A printer column: its definition and where its cell comes from.
struct Column {
    definition: Value,
    kind: String,
    path: Vec<Step>,
}

struct CustomStrategy {
    schema: Arc<Structural>,
    columns: Vec<Column>,
    /// JSON pointers to the desired and observed replicas, and the selector's JSON path.
    scale: Option<(String, String, Option<Vec<Step>>)>,
}

impl CustomStrategy {
    fn new(version: &CustomResourceDefinitionVersion, schema: Arc<Structural>) -> CustomStrategy {
        let age = CustomResourceColumnDefinition {
            name: "Age".into(),
            type_: "date".into(),
            json_path: ".metadata.creationTimestamp".into(),
            description: Some(
                "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
            ),
            ..Default::default()
        };
        let declared = version.additional_printer_columns.clone().unwrap_or_default();
        let declared = if declared.is_empty() { vec![age] } else { declared };
        let columns = declared
            .iter()
            .map(|c| Column {
                definition: json!({
                    "name": c.name, "type": c.type_, "format": c.format.clone().unwrap_or_default(),
                    "description": c.description.clone().unwrap_or_default(), "priority": c.priority.unwrap_or(0),
                }),
                kind: c.type_.clone(),
                path: parse_path(&c.json_path).unwrap_or_default(),
            })
            .collect();
        let scale = version.subresources.as_ref().and_then(|s| s.scale.as_ref()).map(|s| {
            (
                pointer_of(&s.spec_replicas_path),
                pointer_of(&s.status_replicas_path),
                s.label_selector_path.as_deref().and_then(parse_path),
            )
        });
        CustomStrategy { schema, columns, scale }
    }
}

/// `.spec.replicas` as a JSON pointer (`/spec/replicas`).
fn pointer_of(path: &str) -> String {
    path.split('.').filter(|s| !s.is_empty()).map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect()
}

impl Strategy for CustomStrategy {
    fn default(&self, obj: &mut Value) {
        self.schema.default(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validation::generic(obj, old);
        causes.extend(self.schema.validate(obj));
        causes
    }

    /// With a status subresource, a new object's status is the controllers' to write:
    /// whatever the client sent is dropped.
    fn prepare_create(&self, resource: &Resource, obj: &mut Value) {
        if resource.has(Sub::Status)
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
    }

    fn keeps_generation(&self, _resource: &Resource) -> bool {
        true
    }

    fn strategic_merge(&self) -> bool {
        false
    }

    fn label_selector(&self, _obj: &Value) -> Option<Value> {
        None
    }

    fn scale_selector(&self, obj: &Value) -> Option<String> {
        let path = self.scale.as_ref()?.2.as_ref()?;
        Some(evaluate(obj, path).first().and_then(|v| v.as_str()).unwrap_or_default().to_owned())
    }

    fn replicas_paths(&self) -> (&str, &str) {
        match &self.scale {
            Some((spec, status, _)) => (spec, status),
            None => ("/spec/replicas", "/status/replicas"),
        }
    }

    fn column_definitions(&self) -> Vec<Value> {
        let name = json!({
            "name": "Name", "type": "string", "format": "name", "priority": 0,
            "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        });
        std::iter::once(name).chain(self.columns.iter().map(|c| c.definition.clone())).collect()
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let name = json!(obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default());
        std::iter::once(name)
            .chain(self.columns.iter().map(|c| cell(&c.kind, evaluate(obj, &c.path).first().copied())))
            .collect()
    }
}

/// A cell as upstream's CRD table convertor makes one: the first value the path finds,
/// kept only if it has the column's type (dates shown as ages, strings printed).
fn cell(kind: &str, value: Option<&Value>) -> Value {
    let Some(value) = value else { return Value::Null };
    match (kind, value) {
        ("string", Value::String(s)) => json!(s),
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            None => n.as_f64().filter(|f| f.fract() == 0.0).map_or(Value::Null, |f| json!(f as i64)),
        },
        ("number", Value::Number(n)) => json!(n),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) => json!(since(s)),
        _ => Value::Null,
    }
}

/// One step of the simple JSONPath printer columns use.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `.name` or `['name']`.
    Field(String),
    /// `[2]`.
    Index(usize),
    /// `[*]`.
    All,
    /// `[?(@.a.b=="v")]`: the list items whose field at the path equals the value.
    Filter(Vec<String>, Value),
}

/// Parses `.status.conditions[?(@.type=="Ready")].status`, with or without `{}` around it;
/// `None` for what it does not understand (the CRD's validation refuses such paths).
pub fn parse_path(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path.strip_prefix('{').and_then(|p| p.strip_suffix('}')).unwrap_or(path);
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Field(r[..end].to_owned()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(i) = inner.parse::<usize>() {
                steps.push(Step::Index(i));
            } else if let Some(name) = inner.strip_prefix('\'').and_then(|n| n.strip_suffix('\'')) {
                steps.push(Step::Field(name.to_owned()));
            } else if let Some(cond) = inner.strip_prefix("?(@.").and_then(|c| c.strip_suffix(')')) {
                let (field, value) = cond.split_once("==")?;
                let value = value.trim();
                let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(s) => json!(s),
                    None => serde_json::from_str(value).ok()?,
                };
                steps.push(Step::Filter(field.trim().split('.').map(str::to_owned).collect(), value));
            } else {
                return None;
            }
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The values a path finds in `obj`, in order.
fn evaluate<'a>(obj: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![obj];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name)),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(field, want) => {
                    for item in v.as_array().into_iter().flatten() {
                        let found = field.iter().try_fold(item, |at, f| at.get(f));
                        if found == Some(want) {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths_find_what_kubectl_would() {
        let obj = json!({
            "metadata": {"name": "a"},
            "spec": {"replicas": 3, "image": "nginx", "ports": [{"port": 80}, {"port": 443}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
        });
        let find = |p: &str| evaluate(&obj, &parse_path(p).unwrap()).into_iter().cloned().collect::<Vec<_>>();
        assert_eq!(find(".spec.replicas"), vec![json!(3)]);
        assert_eq!(find("{.spec.image}"), vec![json!("nginx")]);
        assert_eq!(find(".spec.ports[1].port"), vec![json!(443)]);
        assert_eq!(find(".spec.ports[*].port"), vec![json!(80), json!(443)]);
        assert_eq!(find(".status.conditions[?(@.type==\"Ready\")].status"), vec![json!("True")]);
        assert_eq!(find(".metadata['name']"), vec![json!("a")]);
        assert!(find(".spec.missing").is_empty());
        assert!(parse_path(".spec..x").is_none());
        assert!(parse_path("spec").is_none());
    }

    #[test]
    fn cells_keep_only_values_of_the_columns_type() {
        assert_eq!(cell("integer", Some(&json!(3))), json!(3));
        assert_eq!(cell("integer", Some(&json!("3"))), Value::Null);
        assert_eq!(cell("string", Some(&json!(3))), json!("3"));
        assert_eq!(cell("boolean", Some(&json!(true))), json!(true));
        assert_eq!(cell("number", Some(&json!(1.5))), json!(1.5));
        assert_eq!(cell("date", Some(&json!("not a date"))), json!("<unknown>"));
        assert_eq!(cell("string", None), Value::Null);
        assert_eq!(pointer_of(".spec.replicas"), "/spec/replicas");
    }
}
