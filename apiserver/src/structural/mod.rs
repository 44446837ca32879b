//! Structural schemas: what a CustomResourceDefinition's `openAPIV3Schema` says its objects
//! hold, compiled once per version and used on every write of a custom resource:
//!
//! - [`Structural::check`]: whether a schema is structural, with upstream's reasons when it
//!   is not (a CRD with such a schema is refused);
//! - [`Structural::prune_object`]: drops the fields the schema does not specify (unless
//!   `x-kubernetes-preserve-unknown-fields`), as upstream prunes;
//! - [`Structural::default`]: fills `default`s;
//! - [`Structural::validate`]: the OpenAPI value validations, with kube-openapi's messages
//!   (`spec.replicas in body should be greater than or equal to 1`) and upstream's field
//!   error types, so a 422 reads as upstream's does.
//!
//! Not evaluated: `format` (upstream checks a handful of string formats) and
//! `x-kubernetes-validations` (CEL rules); both are accepted and kept in the schema.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use regex::Regex;
use serde_json::Value;

use crate::status::Cause;

mod check;

/// The JSON types a schema node may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    /// No `type`: anything (int-or-string and preserved subtrees).
    Any,
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(name: &str) -> Option<Type> {
        Some(match name {
            "" => Type::Any,
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "boolean" => Type::Boolean,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Type::Any => "",
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::Boolean => "boolean",
        }
    }
}

/// One compiled schema node.
#[derive(Debug, Default)]
struct Node {
    ty: Option<Type>,
    nullable: bool,
    int_or_string: bool,
    preserve_unknown: bool,
    embedded: bool,
    properties: BTreeMap<String, Node>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
    default: Option<Value>,
    required: Vec<String>,
    enumeration: Vec<Value>,
    minimum: Option<(f64, bool)>,
    maximum: Option<(f64, bool)>,
    multiple_of: Option<f64>,
    min_length: Option<i64>,
    max_length: Option<i64>,
    pattern: Option<(String, Regex)>,
    min_items: Option<i64>,
    max_items: Option<i64>,
    unique_items: bool,
    min_properties: Option<i64>,
    max_properties: Option<i64>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
}

/// A compiled structural schema of one custom resource version.
#[derive(Debug)]
pub struct Structural {
    root: Node,
    /// The schema as written, for OpenAPI.
    source: Value,
}

impl Node {
    fn compile(p: &JSONSchemaProps) -> Result<Node, String> {
        let list = |l: &Option<Vec<JSONSchemaProps>>| -> Result<Vec<Node>, String> {
            l.iter().flatten().map(Node::compile).collect()
        };
        let pattern = match &p.pattern {
            Some(pat) => Some((pat.clone(), Regex::new(pat).map_err(|e| e.to_string())?)),
            None => None,
        };
        let mut properties = BTreeMap::new();
        for (k, v) in p.properties.iter().flatten() {
            properties.insert(k.clone(), Node::compile(v)?);
        }
        let additional = match &p.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(s)) => Some(Box::new(Node::compile(s)?)),
            Some(JSONSchemaPropsOrBool::Bool(true)) => {
                Some(Box::new(Node { preserve_unknown: true, ty: Some(Type::Any), ..<Node as Default>::default() }))
            }
            _ => None,
        };
        let items = match &p.items {
            Some(JSONSchemaPropsOrArray::Schema(s)) => Some(Box::new(Node::compile(s)?)),
            _ => None,
        };
        Ok(Node {
            ty: p.type_.as_deref().and_then(Type::parse),
            nullable: p.nullable.unwrap_or(false),
            int_or_string: p.x_kubernetes_int_or_string.unwrap_or(false),
            preserve_unknown: p.x_kubernetes_preserve_unknown_fields.unwrap_or(false),
            embedded: p.x_kubernetes_embedded_resource.unwrap_or(false),
            properties,
            additional,
            items,
            default: p.default.as_ref().map(|d| d.0.clone()),
            required: p.required.clone().unwrap_or_default(),
            enumeration: p.enum_.iter().flatten().map(|e| e.0.clone()).collect(),
            minimum: p.minimum.map(|m| (m, p.exclusive_minimum.unwrap_or(false))),
            maximum: p.maximum.map(|m| (m, p.exclusive_maximum.unwrap_or(false))),
            multiple_of: p.multiple_of,
            min_length: p.min_length,
            max_length: p.max_length,
            pattern,
            min_items: p.min_items,
            max_items: p.max_items,
            unique_items: p.unique_items.unwrap_or(false),
            min_properties: p.min_properties,
            max_properties: p.max_properties,
            all_of: list(&p.all_of)?,
            any_of: list(&p.any_of)?,
            one_of: list(&p.one_of)?,
            not: match &p.not {
                Some(n) => Some(Box::new(Node::compile(n)?)),
                None => None,
            },
        })
    }
}

impl Structural {
    /// Compiles a schema; the error says why it cannot be used. Call [`Structural::check`]
    /// first for upstream's field-by-field reasons.
    pub fn compile(schema: &JSONSchemaProps) -> Result<Structural, String> {
        Ok(Structural {
            root: Node::compile(schema)?,
            source: serde_json::to_value(schema).map_err(|e| e.to_string())?,
        })
    }

    /// Why `schema` is not structural (empty when it is); `path` is where it sits in the CRD.
    pub fn check(schema: &JSONSchemaProps, path: &str) -> Vec<Cause> {
        check::check(schema, path)
    }

    /// The schema as written (JSON), for the OpenAPI documents.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// The object as stored: unknown fields pruned, `metadata` canonical. Fails only on a
    /// `metadata` that is not an ObjectMeta.
    pub fn prune_object(&self, value: &Value) -> Result<Value, String> {
        let mut out = value.clone();
        if let Some(meta) = value.get("metadata") {
            let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
                serde_json::from_value(meta.clone()).map_err(|e| format!("metadata: {e}"))?;
            out["metadata"] = serde_json::to_value(typed).map_err(|e| e.to_string())?;
        }
        self.root.prune(&mut out, true);
        Ok(out)
    }

    /// Fills the schema's defaults where a field is absent (or null and not nullable).
    pub fn default(&self, value: &mut Value) {
        self.root.default(value);
    }

    /// The value validations; one cause per problem, in upstream's words.
    pub fn validate(&self, value: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let mut body = value.clone();
        // apiVersion, kind and metadata are the server's to check.
        if let Some(o) = body.as_object_mut() {
            for f in ["apiVersion", "kind", "metadata"] {
                if !self.root.properties.contains_key(f) {
                    o.remove(f);
                }
            }
            o.remove("metadata");
        }
        self.root.validate(&body, "", &mut out);
        out
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

/// The JSON type of a value, as kube-openapi names it in messages.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Equality as JSON means it: `1` and `1.0` are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A float as Go's `%v` prints it (`1`, `1.5`).
fn number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 { format!("{}", f as i64) } else { f.to_string() }
}

impl Node {
    fn prune(&self, value: &mut Value, root: bool) {
        match value {
            Value::Object(map) => {
                let keep_meta = root || self.embedded;
                if !self.preserve_unknown && self.additional.is_none() {
                    map.retain(|k, _| {
                        self.properties.contains_key(k)
                            || (keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                    });
                }
                for (k, v) in map.iter_mut() {
                    if keep_meta && k == "metadata" {
                        continue;
                    }
                    if let Some(p) = self.properties.get(k) {
                        p.prune(v, false);
                    } else if let Some(a) = &self.additional {
                        a.prune(v, false);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(schema) = &self.items {
                    for item in items {
                        schema.prune(item, false);
                    }
                }
            }
            _ => {}
        }
    }

    fn default(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, p) in &self.properties {
                    let Some(d) = &p.default else { continue };
                    match map.get_mut(k) {
                        None => {
                            map.insert(k.clone(), d.clone());
                        }
                        Some(v) if v.is_null() && !p.nullable => *v = d.clone(),
                        Some(_) => {}
                    }
                }
                for (k, v) in map.iter_mut() {
                    if let Some(p) = self.properties.get(k) {
                        p.default(v);
                    } else if let Some(a) = &self.additional {
                        a.default(v);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(schema) = &self.items {
                    for item in items {
                        schema.default(item);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether `value` passes, without collecting why.
    fn accepts(&self, value: &Value) -> bool {
        let mut out = Vec::new();
        self.validate(value, "", &mut out);
        out.is_empty()
    }

    fn validate(&self, value: &Value, path: &str, out: &mut Vec<Cause>) {
        let actual = type_of(value);
        if value.is_null() && (self.nullable || (self.ty.is_none_or(|t| t == Type::Any) && !self.int_or_string)) {
            return;
        }
        let expected = if self.int_or_string { Some("integer,string") } else { self.ty.map(Type::name) };
        let type_ok = match self.ty {
            _ if self.int_or_string => actual == "integer" || actual == "string",
            None | Some(Type::Any) => true,
            Some(Type::Number) => actual == "number" || actual == "integer",
            Some(t) => actual == t.name(),
        };
        if !type_ok {
            let expected = expected.unwrap_or_default();
            out.push(Cause::type_invalid(
                path,
                actual,
                format!("{path} in body must be of type {expected}: \"{actual}\""),
            ));
            return;
        }
        match value {
            Value::String(s) => self.validate_string(s, value, path, out),
            Value::Number(n) => self.validate_number(n.as_f64().unwrap_or_default(), value, path, out),
            Value::Array(items) => self.validate_array(items, path, out),
            Value::Object(map) => self.validate_object(map, path, out),
            _ => {}
        }
        if !self.enumeration.is_empty() && !self.enumeration.iter().any(|e| json_eq(e, value)) {
            let supported: Vec<String> = self
                .enumeration
                .iter()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push(Cause::not_supported_value(path, value, &supported));
        }
        if !self.all_of.is_empty() {
            let before = out.len();
            for s in &self.all_of {
                s.validate(value, path, out);
            }
            if out.len() > before {
                out.push(Cause::invalid(path, "", format!("{path} in body must validate all the schemas (allOf)")));
            }
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(|s| s.accepts(value)) {
            out.push(Cause::invalid(path, "", format!("{path} in body must validate at least one schema (anyOf)")));
        }
        if !self.one_of.is_empty() && self.one_of.iter().filter(|s| s.accepts(value)).count() != 1 {
            out.push(Cause::invalid(path, "", format!("{path} in body must validate one and only one schema (oneOf)")));
        }
        if let Some(not) = &self.not
            && not.accepts(value)
        {
            out.push(Cause::invalid(path, "", format!("{path} in body must not validate the schema (not)")));
        }
    }

    fn validate_string(&self, s: &str, value: &Value, path: &str, out: &mut Vec<Cause>) {
        let chars = s.chars().count() as i64;
        if let Some(max) = self.max_length
            && chars > max
        {
            out.push(Cause::too_long(path, max.max(0) as usize));
        }
        if let Some(min) = self.min_length
            && chars < min
        {
            out.push(Cause::invalid_value(path, value, format!("{path} in body should be at least {min} chars long")));
        }
        if let Some((pattern, re)) = &self.pattern
            && !re.is_match(s)
        {
            out.push(Cause::invalid_value(path, value, format!("{path} in body should match '{pattern}'")));
        }
    }

    fn validate_number(&self, n: f64, value: &Value, path: &str, out: &mut Vec<Cause>) {
        if let Some(m) = self.multiple_of
            && m != 0.0
            && (n / m).fract() != 0.0
        {
            out.push(Cause::invalid_value(
                path,
                value,
                format!("{path} in body should be a multiple of {}", number(m)),
            ));
        }
        if let Some((max, exclusive)) = self.maximum
            && (n > max || (exclusive && n == max))
        {
            let how = if exclusive { "less than" } else { "less than or equal to" };
            out.push(Cause::invalid_value(path, value, format!("{path} in body should be {how} {}", number(max))));
        }
        if let Some((min, exclusive)) = self.minimum
            && (n < min || (exclusive && n == min))
        {
            let how = if exclusive { "greater than" } else { "greater than or equal to" };
            out.push(Cause::invalid_value(path, value, format!("{path} in body should be {how} {}", number(min))));
        }
    }

    fn validate_array(&self, items: &[Value], path: &str, out: &mut Vec<Cause>) {
        let size = items.len() as i64;
        if let Some(min) = self.min_items
            && size < min
        {
            out.push(Cause::invalid_value(
                path,
                &size.into(),
                format!("{path} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = self.max_items
            && size > max
        {
            out.push(Cause::too_many(path, size, max));
        }
        if self.unique_items {
            let duplicated = items.iter().enumerate().any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b)));
            if duplicated {
                out.push(Cause::invalid(path, "", format!("{path} in body shouldn't contain duplicates")));
            }
        }
        if let Some(schema) = &self.items {
            for (i, item) in items.iter().enumerate() {
                schema.validate(item, &format!("{path}[{i}]"), out);
            }
        }
    }

    fn validate_object(&self, map: &serde_json::Map<String, Value>, path: &str, out: &mut Vec<Cause>) {
        let size = map.len() as i64;
        if let Some(max) = self.max_properties
            && size > max
        {
            out.push(Cause::too_many(path, size, max));
        }
        if let Some(min) = self.min_properties
            && size < min
        {
            out.push(Cause::invalid_value(
                path,
                &size.into(),
                format!("{path} in body should have at least {min} properties"),
            ));
        }
        for name in &self.required {
            if !map.contains_key(name) {
                out.push(Cause::required(child(path, name)));
            }
        }
        for (k, v) in map {
            if let Some(p) = self.properties.get(k) {
                p.validate(v, &child(path, k), out);
            } else if let Some(a) = &self.additional {
                a.validate(v, &child(path, k), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(s: Value) -> Structural {
        Structural::compile(&serde_json::from_value(s).unwrap()).unwrap()
    }

    fn messages(s: &Structural, v: Value) -> Vec<String> {
        s.validate(&v).into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn crontab() -> Structural {
        schema(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["cronSpec"],
                    "properties": {
                        "cronSpec": { "type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$" },
                        "image": { "type": "string", "minLength": 1, "maxLength": 20 },
                        "replicas": { "type": "integer", "minimum": 1, "maximum": 10, "default": 1 },
                        "policy": { "type": "string", "enum": ["Allow", "Forbid"] },
                        "port": { "x-kubernetes-int-or-string": true },
                        "tags": { "type": "array", "items": { "type": "string" }, "maxItems": 2, "minItems": 1 },
                        "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                        "note": { "type": "string", "nullable": true },
                        "free": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                    },
                },
                "status": { "type": "object", "properties": { "replicas": { "type": "integer" } } },
            },
        }))
    }

    #[test]
    fn violations_read_as_upstreams() {
        let s = crontab();
        let good = json!({"spec": {"cronSpec": "* * * * */5", "replicas": 3}});
        assert!(messages(&s, good).is_empty());
        let bad = json!({"spec": {
            "cronSpec": "nonsense", "image": "", "replicas": 0, "policy": "Maybe",
            "tags": ["a", 1, "c"], "labels": {"a": 1}, "port": true,
        }});
        assert_eq!(
            messages(&s, bad),
            vec![
                "spec.cronSpec: Invalid value: \"nonsense\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
                "spec.image: Invalid value: \"\": spec.image in body should be at least 1 chars long",
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
                "spec.policy: Unsupported value: \"Maybe\": supported values: \"Allow\", \"Forbid\"",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
                "spec.tags: Too many: 3: must have at most 2 items",
                "spec.tags[1]: Invalid value: \"integer\": spec.tags[1] in body must be of type string: \"integer\"",
            ]
        );
        assert_eq!(messages(&s, json!({"spec": {}})), vec!["spec.cronSpec: Required value"]);
        assert_eq!(
            messages(&s, json!({"spec": {"cronSpec": "* * * * *", "replicas": "3", "image": "x".repeat(21)}})),
            vec![
                "spec.image: Too long: must have at most 20 bytes",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ]
        );
        // Nullable fields take null; others do not.
        assert!(messages(&s, json!({"spec": {"cronSpec": "* * * * *", "note": null}})).is_empty());
        assert_eq!(
            messages(&s, json!({"spec": {"cronSpec": "* * * * *", "image": null}})),
            vec!["spec.image: Invalid value: \"null\": spec.image in body must be of type string: \"null\""]
        );
        // 2.0 is an integer, as JSON says; 2.5 is not.
        assert!(messages(&s, json!({"spec": {"cronSpec": "* * * * *", "replicas": 2.0}})).is_empty());
        assert_eq!(messages(&s, json!({"spec": {"cronSpec": "* * * * *", "replicas": 2.5}})).len(), 1);
    }

    #[test]
    fn pruning_keeps_what_the_schema_names_and_preserved_subtrees() {
        let s = crontab();
        let pruned = s
            .prune_object(&json!({
                "apiVersion": "stable.example.com/v1", "kind": "CronTab",
                "metadata": {"name": "a", "bogus": 1},
                "spec": {"cronSpec": "x", "extra": 1, "labels": {"k": "v"}, "free": {"any": {"thing": 1}},
                         "tags": ["a"]},
                "other": true,
            }))
            .unwrap();
        assert_eq!(
            pruned,
            json!({
                "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "a"},
                "spec": {"cronSpec": "x", "labels": {"k": "v"}, "free": {"any": {"thing": 1}}, "tags": ["a"]},
            })
        );
        assert!(s.prune_object(&json!({"metadata": {"name": 5}})).is_err());
    }

    #[test]
    fn defaults_fill_absent_and_null_fields_then_nested_ones() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "default": {}, "properties": {
                "replicas": {"type": "integer", "default": 1},
                "note": {"type": "string", "nullable": true, "default": "n"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"w": {"type": "integer", "default": 5}}}},
            }}},
        }));
        let mut v = json!({});
        s.default(&mut v);
        assert_eq!(v, json!({"spec": {"replicas": 1, "note": "n"}}));
        let mut v = json!({"spec": {"replicas": null, "note": null, "items": [{}, {"w": 2}]}});
        s.default(&mut v);
        assert_eq!(v, json!({"spec": {"replicas": 1, "note": null, "items": [{"w": 5}, {"w": 2}]}}));
    }

    #[test]
    fn composites_and_numbers() {
        let s = schema(json!({"type": "object", "properties": {
            "a": {"type": "number", "maximum": 5, "exclusiveMaximum": true, "multipleOf": 0.5},
            "b": {"type": "string", "anyOf": [{"pattern": "^x"}, {"pattern": "^y"}]},
            "c": {"type": "integer", "not": {"enum": [13]}},
            "d": {"type": "array", "uniqueItems": true, "items": {"type": "integer"}},
        }}));
        assert!(messages(&s, json!({"a": 4.5, "b": "yes", "c": 12, "d": [1, 2]})).is_empty());
        assert_eq!(
            messages(&s, json!({"a": 5, "b": "no", "c": 13, "d": [1, 1]})),
            vec![
                "a: Invalid value: 5: a in body should be less than 5",
                "b: Invalid value: \"\": b in body must validate at least one schema (anyOf)",
                "c: Invalid value: \"\": c in body must not validate the schema (not)",
                "d: Invalid value: \"\": d in body shouldn't contain duplicates",
            ]
        );
        assert_eq!(
            messages(&s, json!({"a": 1.2})),
            vec!["a: Invalid value: 1.2: a in body should be a multiple of 0.5"]
        );
    }
}
