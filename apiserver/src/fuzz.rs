//! Property tests over the code that reads input from the network: arbitrary bytes and
//! JSON never panic the decoders, selectors, patches or validation, and what they accept
//! behaves consistently.

use proptest::prelude::*;
use serde_json::Value;

use crate::object::{self, FieldValidation};
use crate::patch::{PatchType, apply, strategic_merge};
use crate::registry::RESOURCES;
use crate::selector::{FieldSelector, LabelSelector};

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
            let _ = object::decode_body(ct, &bytes);
        }
    }

    #[test]
    fn typed_decoding_and_validation_never_panic(value in json_value()) {
        for resource in RESOURCES {
            if let Ok((mut obj, _)) = object::canonicalize(resource, value.clone(), FieldValidation::Strict) {
                (resource.default)(&mut obj);
                let _ = (resource.validate)(&obj, Some(&value));
            }
            let _ = (resource.validate)(&value, None);
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
}
