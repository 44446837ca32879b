//! Event, served as core/v1 and as events.k8s.io/v1 (stored once, as core/v1). A PUT
//! creates a missing event, as upstream's.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::events::v1 as events;
use serde_json::{Value, json};

use super::print::{age, s};
use super::{Columns, Conversion, Resource, SelectableField, Strategy, names};

const CORE_FIELDS: &[SelectableField] = &[
    ("involvedObject.kind", "involvedObject.kind", ""),
    ("involvedObject.namespace", "involvedObject.namespace", ""),
    ("involvedObject.name", "involvedObject.name", ""),
    ("involvedObject.uid", "involvedObject.uid", ""),
    ("involvedObject.apiVersion", "involvedObject.apiVersion", ""),
    ("involvedObject.resourceVersion", "involvedObject.resourceVersion", ""),
    ("involvedObject.fieldPath", "involvedObject.fieldPath", ""),
    ("reason", "reason", ""),
    ("reportingComponent", "reportingComponent", ""),
    ("source", "source.component", ""),
    ("type", "type", ""),
];

const EVENTS_V1_FIELDS: &[SelectableField] = &[
    ("regarding.kind", "involvedObject.kind", ""),
    ("regarding.namespace", "involvedObject.namespace", ""),
    ("regarding.name", "involvedObject.name", ""),
    ("regarding.uid", "involvedObject.uid", ""),
    ("reason", "reason", ""),
    ("reportingController", "reportingComponent", ""),
    ("type", "type", ""),
];

pub fn core_v1() -> Resource {
    Resource {
        short_names: names(&["ev"]),
        fields: CORE_FIELDS,
        ..Resource::of::<core::Event>("", "v1", "events", "event", "Event", CoreEvents)
    }
}

pub fn events_v1() -> Resource {
    Resource {
        short_names: names(&["ev"]),
        storage: "events".into(),
        fields: EVENTS_V1_FIELDS,
        conversion: Some(Conversion::Typed {
            to_storage: crate::convert::event_to_core,
            from_storage: crate::convert::event_from_core,
        }),
        ..Resource::of::<events::Event>("events.k8s.io", "v1", "events", "event", "Event", EventsV1)
    }
}

const COLUMNS: Columns = &[
    ("Last Seen", "string", 0),
    ("Type", "string", 0),
    ("Reason", "string", 0),
    ("Object", "string", 0),
    ("Message", "string", 0),
];

struct CoreEvents;

impl Strategy for CoreEvents {
    fn creates_on_update(&self) -> bool {
        true
    }

    fn columns(&self) -> Columns {
        COLUMNS
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let last = ["/lastTimestamp", "/eventTime", "/metadata/creationTimestamp"]
            .iter()
            .find(|p| o.pointer(p).is_some_and(|v| !v.is_null()))
            .map_or_else(|| "<unknown>".into(), |p| age(o, p));
        let object = format!("{}/{}", s(o, "/involvedObject/kind").to_lowercase(), s(o, "/involvedObject/name"));
        vec![json!(last), json!(s(o, "/type")), json!(s(o, "/reason")), json!(object), json!(s(o, "/message"))]
    }
}

/// events.k8s.io/v1 prints with upstream's default columns.
struct EventsV1;

impl Strategy for EventsV1 {
    fn creates_on_update(&self) -> bool {
        true
    }
}
