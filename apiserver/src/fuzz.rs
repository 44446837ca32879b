//! Property tests over the code that reads input from the network: arbitrary bytes and
//! JSON never panic the decoders, selectors, patches or validation; and what they accept
//! behaves as specified: selectors parse back to what was written and match as a model of
//! upstream's rules says, patches obey their RFCs' laws, and canonical objects stay put.

use proptest::prelude::*;
use serde_json::Value;

use crate::decode::{self, FieldValidation};
use crate::patch::{PatchType, apply, strategic_merge};
use crate::registry::builtins;
use crate::selector::{FieldSelector, LabelSelector, Requirement};
use crate::structural::Structural;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        "[a-z$/.:-]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("metadata".to_owned()),
                    Just("spec".to_owned()),
                    Just("containers".to_owned()),
                    Just("name".to_owned()),
                    Just("$patch".to_owned()),
                    Just("$retainKeys".to_owned()),
                    Just("$setElementOrder/containers".to_owned()),
                    Just("selector".to_owned()),
                    Just("labels".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Structural schemas of the usual shapes: typed leaves with bounds, patterns, defaults,
/// int-or-string and preserved subtrees, nested in objects, arrays and maps.
fn structural_schema() -> impl Strategy<Value = Value> {
    use serde_json::json;
    let leaf = prop_oneof![
        Just(json!({"type": "string"})),
        Just(json!({"type": "integer", "minimum": 1, "default": 1})),
        Just(json!({"type": "string", "pattern": "^[a-z]+$", "maxLength": 3, "enum": ["a", "ab"]})),
        Just(json!({"x-kubernetes-int-or-string": true})),
        Just(json!({"type": "boolean", "default": true})),
        Just(json!({"type": "number", "nullable": true, "maximum": 5})),
        Just(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::btree_map("[a-d]", inner.clone(), 0..3)
                .prop_map(|m| json!({"type": "object", "properties": m, "required": ["a"]})),
            inner.clone().prop_map(|i| json!({"type": "array", "items": i, "maxItems": 2})),
            inner.prop_map(|i| json!({"type": "object", "additionalProperties": i})),
        ]
    })
}

/// JSON whose keys are the schema's (`a`-`d`), so that the schema has something to say.
fn schema_shaped_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..8).prop_map(|n| Value::Number(n.into())),
        "[a-c]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn structural_schemas_prune_idempotently_and_keep_their_defaults(
        props in prop::collection::btree_map("[a-d]", structural_schema(), 0..4),
        spec in schema_shaped_value(),
    ) {
        let schema = serde_json::json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}});
        let schema: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps =
            serde_json::from_value(schema).expect("a schema");
        prop_assert!(Structural::check(&schema, "s").is_empty(), "{:?}", Structural::check(&schema, "s"));
        let schema = Structural::compile(&schema).expect("compiles");
        let object = serde_json::json!({"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "x"}, "spec": spec});
        let pruned = schema.prune_object(&object).expect("prunes");
        prop_assert_eq!(schema.prune_object(&pruned).expect("prunes"), pruned.clone());
        let mut defaulted = pruned.clone();
        schema.default(&mut defaulted);
        prop_assert_eq!(schema.prune_object(&defaulted).expect("prunes"), defaulted.clone(), "defaults are never pruned");
        let mut again = defaulted.clone();
        schema.default(&mut again);
        prop_assert_eq!(again, defaulted.clone(), "defaulting is idempotent");
        let _ = schema.validate(&defaulted);
        let _ = schema.validate(&object);
    }

    #[test]
    fn label_selectors_never_panic(input in "[a-z0-9=!,() .:/_-]{0,40}") {
        let _ = LabelSelector::parse(&input);
    }

    #[test]
    fn field_selectors_never_panic(input in "[a-zA-Z.=!,]{0,40}") {
        let _ = FieldSelector::parse(&input, &|f| f == "metadata.name");
    }

    #[test]
    fn bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for ct in ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "text/x"] {
            let _ = decode::decode_body(ct, &bytes);
        }
    }

    #[test]
    fn typed_decoding_and_validation_never_panic(value in json_value()) {
        for resource in &builtins() {
            if let Ok((mut obj, _)) = decode::canonicalize(resource, value.clone(), FieldValidation::Strict) {
                resource.strategy.default(&mut obj);
                let _ = resource.strategy.validate(&obj, Some(&value));
            }
            let _ = resource.strategy.validate(&value, None);
        }
    }

    #[test]
    fn patches_never_panic(target in json_value(), patch in json_value()) {
        let mut t = target.clone();
        let _ = strategic_merge(&mut t, &patch);
        let body = serde_json::to_vec(&patch).unwrap_or_default();
        for kind in [PatchType::Merge, PatchType::Json, PatchType::Strategic] {
            let mut t = target.clone();
            let _ = apply(kind, &mut t, &body);
        }
    }

    #[test]
    fn equality_selectors_match_the_labels_they_were_built_from(
        labels in prop::collection::btree_map("[a-z][a-z0-9]{0,6}", "[a-z0-9]{0,6}", 0..5),
        other in "[a-z]{1,3}",
    ) {
        let text = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let sel = LabelSelector::parse(&text).expect("built from valid labels");
        prop_assert!(sel.matches(&labels));
        if let Some((k, v)) = labels.iter().next() {
            let mut changed = labels.clone();
            changed.insert(k.clone(), format!("{v}{other}"));
            prop_assert!(!sel.matches(&changed));
        }
    }

    #[test]
    fn label_selectors_parse_to_what_was_written_and_match_like_the_model(
        reqs in prop::collection::vec(requirement(), 0..5),
        labels in prop::collection::btree_map(prop_oneof![Just("a"), Just("b"), Just("c")], small_value(), 0..3),
        spaced in any::<bool>(),
    ) {
        let labels: std::collections::BTreeMap<String, String> =
            labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let text = reqs.iter().map(|r| render(r, spaced)).collect::<Vec<_>>().join(if spaced { ", " } else { "," });
        let parsed = LabelSelector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&parsed.0, &reqs, "{:?}", text);
        // The model: upstream's labels.Requirement.Matches, written out independently.
        let model = reqs.iter().all(|r| {
            let got = |k: &str| labels.get(k).map(String::as_str);
            match r {
                Requirement::Equals(k, v) => got(k) == Some(v.as_str()),
                Requirement::NotEquals(k, v) => got(k) != Some(v.as_str()),
                Requirement::In(k, vs) => got(k).is_some_and(|l| vs.iter().any(|v| v == l)),
                Requirement::NotIn(k, vs) => !got(k).is_some_and(|l| vs.iter().any(|v| v == l)),
                Requirement::Exists(k) => got(k).is_some(),
                Requirement::DoesNotExist(k) => got(k).is_none(),
            }
        });
        prop_assert_eq!(parsed.matches(&labels), model, "{:?} on {:?}", text, labels);
        // The same selector as a metav1.LabelSelector object matches alike.
        if let Some(object) = as_object(&reqs) {
            let built = LabelSelector::from_object(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(built.matches(&labels), model);
        }
    }

    #[test]
    fn a_merge_patch_applied_twice_changes_nothing_more(target in json_value(), patch in json_value()) {
        // RFC 7386: merge patches are idempotent.
        prop_assume!(patch.is_object());
        let body = serde_json::to_vec(&patch).unwrap_or_default();
        let mut once = target.clone();
        apply(PatchType::Merge, &mut once, &body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut twice = once.clone();
        apply(PatchType::Merge, &mut twice, &body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn a_json_patch_of_the_difference_turns_one_document_into_the_other(a in json_value(), b in json_value()) {
        // RFC 6902 through our bounded applier: the diff of a and b, applied to a, is b.
        let ops = json_patch::diff(&a, &b);
        let body = serde_json::to_vec(&ops).unwrap_or_default();
        let mut patched = a.clone();
        apply(PatchType::Json, &mut patched, &body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(patched, b);
    }

    #[test]
    fn without_lists_or_directives_a_strategic_merge_is_a_merge(target in plain_object(), patch in plain_object()) {
        // Strategic merge differs from RFC 7386 only in lists and `$` directives.
        let mut strategic = target.clone();
        strategic_merge(&mut strategic, &patch).map_err(TestCaseError::fail)?;
        let mut merged = target.clone();
        json_patch::merge(&mut merged, &patch);
        prop_assert_eq!(strategic, merged);
    }

    #[test]
    fn canonical_objects_are_a_fixed_point(value in json_value()) {
        // What canonicalize accepts, it accepts again unchanged: a stored object read back
        // and written again is not rewritten.
        for resource in &builtins() {
            if let Ok((once, _)) = decode::canonicalize(resource, value.clone(), FieldValidation::Strict) {
                let (twice, _) = decode::canonicalize(resource, once.clone(), FieldValidation::Strict)
                    .map_err(|e| TestCaseError::fail(format!("{}: {e}", resource.kind)))?;
                prop_assert_eq!(&once, &twice, "{}", resource.kind);
            }
        }
    }
}

fn small_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just("x".to_owned()), Just("y".to_owned()), Just("z1".to_owned())]
}

fn requirement() -> impl Strategy<Value = Requirement> {
    let key = prop_oneof![Just("a".to_owned()), Just("b".to_owned()), Just("c".to_owned())];
    let values =
        prop::collection::vec(prop_oneof![Just("x".to_owned()), Just("y".to_owned()), Just("z1".to_owned())], 1..3);
    (key, 0..6u8, small_value(), values).prop_map(|(k, op, v, vs)| match op {
        0 => Requirement::Equals(k, v),
        1 => Requirement::NotEquals(k, v),
        2 => Requirement::In(k, vs),
        3 => Requirement::NotIn(k, vs),
        4 => Requirement::Exists(k),
        _ => Requirement::DoesNotExist(k),
    })
}

/// A requirement as a person would type it, with or without spaces.
fn render(r: &Requirement, spaced: bool) -> String {
    let sp = if spaced { " " } else { "" };
    match r {
        Requirement::Equals(k, v) => format!("{k}{sp}={sp}{v}"),
        Requirement::NotEquals(k, v) => format!("{k}{sp}!={sp}{v}"),
        Requirement::In(k, vs) => format!("{k} in{sp}({})", vs.join(if spaced { ", " } else { "," })),
        Requirement::NotIn(k, vs) => format!("{k} notin{sp}({})", vs.join(",")),
        Requirement::Exists(k) => k.clone(),
        Requirement::DoesNotExist(k) => format!("!{k}"),
    }
}

/// The requirements as a `metav1.LabelSelector`, when they fit one (`!=` has no form there).
fn as_object(reqs: &[Requirement]) -> Option<Value> {
    let mut exprs = Vec::new();
    for r in reqs {
        exprs.push(match r {
            Requirement::Equals(k, v) => serde_json::json!({"key": k, "operator": "In", "values": [v]}),
            Requirement::In(k, vs) => serde_json::json!({"key": k, "operator": "In", "values": vs}),
            Requirement::NotIn(k, vs) => serde_json::json!({"key": k, "operator": "NotIn", "values": vs}),
            Requirement::Exists(k) => serde_json::json!({"key": k, "operator": "Exists"}),
            Requirement::DoesNotExist(k) => serde_json::json!({"key": k, "operator": "DoesNotExist"}),
            Requirement::NotEquals(..) => return None,
        });
    }
    Some(serde_json::json!({"matchExpressions": exprs}))
}

/// JSON objects with no arrays and no `$` keys.
fn plain_object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| Value::Number(n.into())),
        "[a-z]{0,4}".prop_map(Value::String),
    ];
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::btree_map("[a-d]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    });
    prop::collection::btree_map("[a-d]", tree, 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
}
