//! An object's metadata and timestamps, read and written in place on `serde_json::Value`:
//! a leaf that the decoding, the handlers and the kinds' strategies share.

use serde_json::{Map, Value};

/// `metadata` of an object, created when missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    // Only an object has metadata; anything else (a client's `3`) becomes one rather than
    // panicking on the index below. Found by the server_side_apply fuzz target.
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: i64) {
    meta_mut(obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
}

/// Sets `metadata.resourceVersion` in an encoded object without decoding it: the stored
/// form has no resourceVersion, and its top-level `metadata` follows only `apiVersion` and
/// `kind`. Returns `None` when the bytes do not have that shape (the caller re-encodes).
pub fn splice_resource_version(json: &[u8], revision: i64) -> Option<Vec<u8>> {
    const NEEDLE: &[u8] = br#""metadata":{"#;
    // apiVersion and kind come first, and are short: the needle must be within reach and no
    // object may open before it (which would make it a nested field).
    let window = &json[..json.len().min(256)];
    let at = window.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    if json.first() != Some(&b'{') || json[1..at].contains(&b'{') || json[1..at].contains(&b'[') {
        return None;
    }
    let insert_at = at + NEEDLE.len();
    let rest = &json[insert_at..];
    if rest.windows(18).take(4096).any(|w| w == br#""resourceVersion":"#) {
        return None;
    }
    let field = format!(r#""resourceVersion":"{revision}""#);
    let mut out = Vec::with_capacity(json.len() + field.len() + 1);
    out.extend_from_slice(&json[..insert_at]);
    out.extend_from_slice(field.as_bytes());
    if rest.first() != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// The current time as upstream formats timestamps (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A time `secs` from now, formatted as [`now_rfc3339`].
pub fn rfc3339_in(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Five characters from upstream's alphabet for `generateName` suffixes.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splices_the_resource_version_into_encoded_objects() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}),
        ] {
            let bytes = serde_json::to_vec(&obj).unwrap();
            let spliced = splice_resource_version(&bytes, 42).expect("spliceable");
            let mut expected = obj.clone();
            set_resource_version(&mut expected, 42);
            assert_eq!(serde_json::from_slice::<Value>(&spliced).unwrap(), expected);
        }
        // Shapes it must not touch: nested metadata first, or a resourceVersion already there.
        let nested = br#"{"spec":{"metadata":{}},"metadata":{}}"#;
        assert!(splice_resource_version(nested, 1).is_none());
        let has = br#"{"metadata":{"resourceVersion":"3"}}"#;
        assert!(splice_resource_version(has, 1).is_none());
    }
}
