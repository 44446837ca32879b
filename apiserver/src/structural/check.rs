//! Whether a schema is structural, as upstream's `ValidateStructural` and the CRD
//! validation decide, with their reasons; a CRD with a schema that is not is refused.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use regex::Regex;
use serde_json::Value;

use super::{Node, Type, child};
use crate::status::Cause;

/// Why `schema` is not structural (empty when it is); `path` is where it sits in the CRD.
pub(super) fn check(schema: &JSONSchemaProps, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    check_node(schema, path, "", Level::Root, &mut out);
    out
}

/// Where a node sits, for upstream's wording of a missing `type`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// Checks that a schema is structural, as upstream's `ValidateStructural` and the CRD
/// validation do; `path` is where the schema sits in the CRD
/// (`spec.versions[0].schema.openAPIV3Schema`).
fn check_node(p: &JSONSchemaProps, path: &str, at: &str, level: Level, out: &mut Vec<Cause>) {
    let ty = p.type_.as_deref().unwrap_or_default();
    let int_or_string = p.x_kubernetes_int_or_string.unwrap_or(false);
    let embedded = p.x_kubernetes_embedded_resource.unwrap_or(false);
    let preserve = p.x_kubernetes_preserve_unknown_fields;
    if Type::parse(ty).is_none() {
        out.push(Cause::not_supported(
            format!("{path}.type"),
            ty,
            &["array", "boolean", "integer", "number", "object", "string"],
        ));
    }
    if ty.is_empty() && !embedded && !int_or_string && (level == Level::Root || preserve != Some(true)) {
        let why = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(Cause::required_because(format!("{path}.type"), why));
    }
    if level == Level::Root && !ty.is_empty() && ty != "object" {
        out.push(Cause::invalid(format!("{path}.type"), ty, "must be object at the root"));
    }
    if embedded && ty != "object" {
        out.push(Cause::invalid(
            format!("{path}.type"),
            ty,
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    }
    if int_or_string && !ty.is_empty() {
        out.push(Cause::invalid(format!("{path}.type"), ty, "must be empty if x-kubernetes-int-or-string is true"));
    }
    if preserve == Some(false) {
        out.push(Cause::invalid_value(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    if p.ref_path.is_some() {
        out.push(Cause::forbidden(format!("{path}.$ref"), "$ref is not supported"));
    }
    for (field, set) in [
        ("definitions", p.definitions.is_some()),
        ("dependencies", p.dependencies.is_some()),
        ("additionalItems", p.additional_items.is_some()),
        ("patternProperties", p.pattern_properties.is_some()),
    ] {
        if set {
            out.push(Cause::forbidden(format!("{path}.{field}"), format!("{field} is not supported")));
        }
    }
    if p.properties.as_ref().is_some_and(|m| !m.is_empty()) && p.additional_properties.is_some() {
        out.push(Cause::forbidden(
            format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if let Some(JSONSchemaPropsOrBool::Bool(false)) = p.additional_properties {
        out.push(Cause::forbidden(format!("{path}.additionalProperties"), "must not be false to be structural"));
    }
    if let Some(pattern) = &p.pattern
        && let Err(e) = Regex::new(pattern)
    {
        out.push(Cause::invalid(
            format!("{path}.pattern"),
            pattern,
            format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
    match &p.items {
        Some(JSONSchemaPropsOrArray::Schema(s)) => {
            check_node(s, &format!("{path}.items"), &format!("{at}[0]"), Level::Item, out)
        }
        Some(JSONSchemaPropsOrArray::Schemas(_)) => {
            out.push(Cause::forbidden(format!("{path}.items"), "items must be a schema object and not an array"))
        }
        None if ty == "array" => out.push(Cause::required_because(format!("{path}.items"), "must be specified")),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = &p.additional_properties {
        check_node(s, &format!("{path}.additionalProperties"), &child(at, "*"), Level::Field, out);
    }
    for (name, child) in p.properties.iter().flatten() {
        let child_path = format!("{path}.properties[{name}]");
        if level == Level::Root && name == "metadata" {
            check_metadata(child, &child_path, out);
        } else {
            check_node(child, &child_path, &self::child(at, name), Level::Field, out);
        }
    }
    for (field, list) in [("allOf", &p.all_of), ("anyOf", &p.any_of), ("oneOf", &p.one_of)] {
        for (i, s) in list.iter().flatten().enumerate() {
            check_value_validation(s, &format!("{path}.{field}[{i}]"), out);
        }
    }
    if let Some(n) = &p.not {
        check_value_validation(n, &format!("{path}.not"), out);
    }
    check_default(p, path, at, out);
}

/// `metadata` at the root may only constrain `name` and `generateName`, as strings.
fn check_metadata(p: &JSONSchemaProps, path: &str, out: &mut Vec<Cause>) {
    if p.type_.as_deref().is_some_and(|t| t != "object") {
        out.push(Cause::invalid(format!("{path}.type"), p.type_.as_deref().unwrap_or_default(), "must be object"));
    }
    for (name, child) in p.properties.iter().flatten() {
        if name != "name" && name != "generateName" {
            out.push(Cause::forbidden(
                format!("{path}.properties[{name}]"),
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        } else if child.type_.as_deref() != Some("string") {
            out.push(Cause::invalid(
                format!("{path}.properties[{name}].type"),
                child.type_.as_deref().unwrap_or_default(),
                "must be string",
            ));
        }
    }
}

/// Inside `allOf`, `anyOf`, `oneOf` and `not` only value validations may appear: the
/// structure (types, defaults, extensions) is the outer schema's alone.
fn check_value_validation(p: &JSONSchemaProps, path: &str, out: &mut Vec<Cause>) {
    if p.type_.as_deref().is_some_and(|t| !t.is_empty()) {
        out.push(Cause::forbidden(format!("{path}.type"), "must be empty to be structural"));
    }
    if p.nullable == Some(true) {
        out.push(Cause::forbidden(format!("{path}.nullable"), "must be false to be structural"));
    }
    for (field, set) in [
        ("default", p.default.is_some()),
        ("additionalProperties", p.additional_properties.is_some()),
        ("x-kubernetes-preserve-unknown-fields", p.x_kubernetes_preserve_unknown_fields.is_some()),
        ("x-kubernetes-embedded-resource", p.x_kubernetes_embedded_resource.is_some()),
        ("x-kubernetes-int-or-string", p.x_kubernetes_int_or_string.is_some()),
        ("$ref", p.ref_path.is_some()),
    ] {
        if set {
            out.push(Cause::forbidden(format!("{path}.{field}"), "must be undefined to be structural"));
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(s)) = &p.items {
        check_value_validation(s, &format!("{path}.items"), out);
    }
    for (name, child) in p.properties.iter().flatten() {
        check_value_validation(child, &format!("{path}.properties[{name}]"), out);
    }
    for (field, list) in [("allOf", &p.all_of), ("anyOf", &p.any_of), ("oneOf", &p.one_of)] {
        for (i, s) in list.iter().flatten().enumerate() {
            check_value_validation(s, &format!("{path}.{field}[{i}]"), out);
        }
    }
}

/// A `default` must itself be valid for its node (`at` is the field it defaults).
fn check_default(p: &JSONSchemaProps, path: &str, at: &str, out: &mut Vec<Cause>) {
    let Some(default) = &p.default else { return };
    let Ok(node) = Node::compile(p) else { return };
    let mut problems = Vec::new();
    node.validate(&default.0, at, &mut problems);
    for problem in problems {
        out.push(Cause { field: format!("{path}.default"), ..problem });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reasons(s: Value) -> Vec<String> {
        let props: JSONSchemaProps = serde_json::from_value(s).unwrap();
        check(&props, "schema").into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn non_structural_schemas_are_named_field_by_field() {
        assert!(reasons(json!({"type": "object", "properties": {"spec": {"type": "object"}}})).is_empty());
        assert_eq!(
            reasons(json!({"properties": {}})),
            vec!["schema.type: Required value: must not be empty at the root"]
        );
        assert_eq!(
            reasons(json!({"type": "string"})),
            vec!["schema.type: Invalid value: \"string\": must be object at the root"]
        );
        assert_eq!(
            reasons(json!({"type": "object", "properties": {
                "spec": {"properties": {"a": {"type": "string"}}},
                "list": {"type": "array"},
                "u": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "v": {"x-kubernetes-preserve-unknown-fields": true},
                "w": {"type": "string", "x-kubernetes-int-or-string": true},
                "x": {"type": "string", "anyOf": [{"type": "integer"}]},
                "y": {"type": "string", "pattern": "("},
                "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            }})),
            vec![
                "schema.properties[list].items: Required value: must be specified",
                "schema.properties[metadata].properties[labels]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
                "schema.properties[spec].type: Required value: must not be empty for specified object fields",
                "schema.properties[w].type: Invalid value: \"string\": must be empty if x-kubernetes-int-or-string is true",
                "schema.properties[x].anyOf[0].type: Forbidden: must be empty to be structural",
                "schema.properties[y].pattern: Invalid value: \"(\": must be a valid regular expression, but isn't: regex parse error:\n    (\n    ^\nerror: unclosed group",
            ]
        );
        assert_eq!(
            reasons(json!({"type": "object", "properties": {"r": {"type": "integer", "default": "one"}}})),
            vec![
                "schema.properties[r].default: Invalid value: \"string\": r in body must be of type integer: \"string\""
            ]
        );
    }
}
