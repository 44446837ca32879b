//! What the kinds' Table printers share: upstream's human durations and cell helpers.

use serde_json::{Value, json};

use super::Columns;

/// Upstream's `HumanDuration` (`45s`, `5m10s`, `3h`, `2d4h`, `3y`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{d}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// How long ago the timestamp at `field` was (`<unknown>` without one).
pub fn age(obj: &Value, field: &str) -> String {
    since(obj.pointer(field).and_then(Value::as_str).unwrap_or_default())
}

/// How long ago an RFC 3339 timestamp was (`<unknown>` if it is not one).
pub fn since(timestamp: &str) -> String {
    let Ok(t) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().duration_since(t).as_secs())
}

/// The string at `path`, or empty.
pub fn s<'a>(obj: &'a Value, path: &str) -> &'a str {
    obj.pointer(path).and_then(Value::as_str).unwrap_or_default()
}

/// The integer at `path`, or 0.
pub fn n(obj: &Value, path: &str) -> i64 {
    obj.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

/// `<none>` for an empty cell.
pub fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

/// A label map (`k=v,...`), empty when absent.
pub fn label_map(labels: Option<&Value>) -> String {
    labels
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// A selector's `matchLabels` (or a Service's plain selector) as `k=v,...`.
pub fn selector(obj: &Value) -> String {
    or_none(label_map(obj.pointer("/spec/selector/matchLabels").or_else(|| obj.pointer("/spec/selector"))))
}

/// The names and images of the containers at `path`, comma-separated.
pub fn containers_and_images(obj: &Value, path: &str) -> (String, String) {
    let cs = obj.pointer(path).and_then(Value::as_array).cloned().unwrap_or_default();
    let names = cs.iter().map(|c| s(c, "/name").to_owned()).collect::<Vec<_>>().join(",");
    let images = cs.iter().map(|c| s(c, "/image").to_owned()).collect::<Vec<_>>().join(",");
    (names, images)
}

/// The columns of the replicated kinds upstream prints alike (ReplicaSet,
/// ReplicationController): desired, current and ready replicas.
pub const REPLICATED_COLUMNS: Columns = &[
    ("Name", "string", 0),
    ("Desired", "integer", 0),
    ("Current", "integer", 0),
    ("Ready", "integer", 0),
    ("Age", "string", 0),
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
];

/// A row under [`REPLICATED_COLUMNS`].
pub fn replicated_cells(o: &Value) -> Vec<Value> {
    let (containers, images) = containers_and_images(o, "/spec/template/spec/containers");
    vec![
        json!(s(o, "/metadata/name")),
        json!(n(o, "/spec/replicas")),
        json!(n(o, "/status/replicas")),
        json!(n(o, "/status/readyReplicas")),
        json!(age(o, "/metadata/creationTimestamp")),
        json!(containers),
        json!(images),
        json!(selector(o)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_kubectl() {
        for (secs, text) in [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (50 * 3600, "2d2h"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs}");
        }
    }
}
