//! Conversion between core/v1 Event (the stored form) and events.k8s.io/v1 Event: the same
//! objects under two schemas, renamed field by field as upstream's conversion does.

use serde_json::{Map, Value};

/// (core/v1 path, events.k8s.io/v1 path) pairs; a path of two segments is nested.
const RENAMES: &[(&[&str], &[&str])] = &[
    (&["involvedObject"], &["regarding"]),
    (&["message"], &["note"]),
    (&["reportingComponent"], &["reportingController"]),
    (&["firstTimestamp"], &["deprecatedFirstTimestamp"]),
    (&["lastTimestamp"], &["deprecatedLastTimestamp"]),
    (&["count"], &["deprecatedCount"]),
    (&["source"], &["deprecatedSource"]),
];

fn take(object: &mut Map<String, Value>, path: &[&str]) -> Option<Value> {
    match path {
        [one] => object.remove(*one),
        [first, rest @ ..] => take(object.get_mut(*first)?.as_object_mut()?, rest),
        [] => None,
    }
}

fn put(object: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [one] => {
            object.insert((*one).to_owned(), value);
        }
        [first, rest @ ..] => {
            let child = object.entry((*first).to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if let Some(child) = child.as_object_mut() {
                put(child, rest, value);
            }
        }
        [] => {}
    }
}

fn rename(mut value: Value, from_core: bool, api_version: &str) -> Value {
    if let Some(object) = value.as_object_mut() {
        for (core, v1) in RENAMES {
            let (from, to) = if from_core { (core, v1) } else { (v1, core) };
            if let Some(field) = take(object, from) {
                put(object, to, field);
            }
        }
        object.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    }
    value
}

/// events.k8s.io/v1 Event to core/v1 Event.
pub fn event_to_core(value: Value) -> Value {
    rename(value, false, "v1")
}

/// core/v1 Event to events.k8s.io/v1 Event.
pub fn event_from_core(value: Value) -> Value {
    rename(value, true, "events.k8s.io/v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_versions() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"}, "message": "pulled", "reason": "Pulled",
            "count": 3, "source": {"component": "kubelet"}, "type": "Normal",
        });
        let v1 = event_from_core(core.clone());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "web");
        assert_eq!(v1["note"], "pulled");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
        assert_eq!(event_to_core(v1), core);
    }
}
