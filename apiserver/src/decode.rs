//! Request bodies: decoded from JSON, YAML or protobuf, within the size limit, checked for
//! duplicate fields, and brought to the canonical form of their kind (the typed or
//! structural schema; unknown fields found by difference and reported per
//! `fieldValidation`).

use serde_json::Value;

use crate::registry::Resource;
use crate::status::{ApiError, ApiResult};

/// The largest request body accepted, as upstream (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How unknown fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request.
    Strict,
    /// Accept it, drop the fields, and say so in a `Warning` header.
    Warn,
    /// Drop the fields silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query parameter; upstream's default is `Warn`.
    pub fn parse(value: Option<&str>) -> ApiResult<FieldValidation> {
        match value.unwrap_or("Warn") {
            "Strict" => Ok(FieldValidation::Strict),
            "Warn" | "" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
            ))),
        }
    }
}

/// Decodes a request body by its content type into a JSON object.
pub fn decode_body(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    if body.len() > MAX_BODY {
        return Err(ApiError::body_too_large(MAX_BODY));
    }
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let value: Value = match media {
        // No Content-Type is JSON, as upstream negotiates it (the Python client sends
        // creates without one). A browser cannot use that to write: every write a browser
        // sends carries an Origin, which is refused unless allowed (api::origin).
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8 YAML"))?;
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?
        }
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body).map_err(|e| {
            // A kind or field we cannot decode is the media type's fault (415, so the
            // client knows to send JSON); bytes that are not protobuf are the body's (400).
            if e.contains(crate::protobuf::SEND_JSON) {
                ApiError::unsupported_media_type(e)
            } else {
                ApiError::bad_request(format!("the protobuf body is malformed: {e}"))
            }
        })?,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            )));
        }
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(value)
}

/// Field paths present in `input` but not in `typed` (the same object decoded through its
/// schema): the unknown fields.
pub fn unknown_fields(input: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(input, typed, String::new(), &mut out);
    out
}

fn diff(input: &Value, typed: &Value, path: String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(tv) => diff(v, tv, p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, tv)) in a.iter().zip(b).enumerate() {
                diff(v, tv, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes `value` through the resource's typed schema: the canonical object, with type
/// errors as 400 and unknown fields handled per `validation`. Returns the warnings to send.
pub fn canonicalize(resource: &Resource, value: Value, validation: FieldValidation) -> ApiResult<(Value, Vec<String>)> {
    let typed = resource
        .schema
        .decode(&value)
        .map_err(|e| ApiError::bad_request(format!("error decoding {} body: {e}", resource.kind)))?;
    if validation == FieldValidation::Ignore {
        return Ok((typed, Vec::new()));
    }
    let unknown = unknown_fields(&value, &typed);
    if unknown.is_empty() {
        return Ok((typed, Vec::new()));
    }
    let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    if validation == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", messages.join(", "))));
    }
    Ok((typed, messages))
}

/// The paths of fields that appear twice in one JSON object of `body` (`metadata.name`,
/// `spec.containers[0].image`). A JSON parser keeps the last; upstream's strict decoding
/// refuses them, because the two writers of such a body disagree about what it says.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Vec<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
                if !seen.insert(key) {
                    self.found.borrow_mut().push(path.clone());
                }
                map.next_value_seed(Walk { path, found: self.found })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path), found: self.found })?.is_some() {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Walk { path: String::new(), found: &found }.deserialize(&mut de);
    found.into_inner()
}

/// Duplicate fields of a JSON body per `validation`: refused (Strict, 400 in upstream's
/// words), or the warnings to send (Warn).
pub fn check_duplicates(content_type: &str, body: &[u8], validation: FieldValidation) -> ApiResult<Vec<String>> {
    let json = content_type.split(';').next().unwrap_or_default().trim().ends_with("json");
    if validation == FieldValidation::Ignore || !json {
        return Ok(Vec::new());
    }
    let messages: Vec<String> = duplicate_fields(body).iter().map(|f| format!("duplicate field \"{f}\"")).collect();
    if validation == FieldValidation::Strict && !messages.is_empty() {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", messages.join(", "))));
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_by_difference() {
        let input = json!({"a": 1, "spec": {"x": 1, "bogus": 2, "list": [{"k": 1, "nope": 3}]}, "nul": null});
        let typed = json!({"a": 1, "spec": {"x": 1, "list": [{"k": 1}]}});
        assert_eq!(unknown_fields(&input, &typed), vec!["spec.bogus", "spec.list[0].nope"]);
    }

    #[test]
    fn bodies_decode_or_fail_clearly() {
        assert!(decode_body("application/json", b"{\"a\":1}").is_ok());
        assert_eq!(decode_body("application/json", b"{bad").unwrap_err().code, 400);
        assert_eq!(decode_body("application/json", b"[1]").unwrap_err().code, 400);
        assert!(decode_body("application/yaml", b"a: 1\nb: [x]\n").is_ok());
        assert_eq!(decode_body("application/yaml", b"a: [\n").unwrap_err().code, 400);
        assert_eq!(decode_body("application/vnd.kubernetes.protobuf", b"k8s\0").unwrap_err().code, 415);
        // Bytes that are not protobuf are the body's fault, a kind we cannot decode is not.
        assert_eq!(decode_body("application/vnd.kubernetes.protobuf", b"garbage").unwrap_err().code, 400);
        assert_eq!(decode_body("application/vnd.kubernetes.protobuf", b"k8s\0\x0a\xff").unwrap_err().code, 400);
        // No Content-Type is JSON, as upstream reads it; a form's text/plain is not.
        assert!(decode_body("", b"{}").is_ok());
        assert_eq!(decode_body("text/plain", b"{}").unwrap_err().code, 415);
        assert_eq!(decode_body("text/plain", b"x").unwrap_err().code, 415);
        assert_eq!(decode_body("application/json", &vec![b' '; MAX_BODY + 1]).unwrap_err().code, 413);
    }

    #[test]
    fn typed_decoding_rejects_wrong_types_and_reports_unknown_fields() {
        let pods = crate::registry::Registry::default().find("", "v1", "pods").expect("pods");
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "no"}});
        assert_eq!(canonicalize(&pods, bad, FieldValidation::Strict).unwrap_err().code, 400);
        let twice = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"containers": [{"name": "c", "image": "x", "image": "y"}]}}"#;
        assert_eq!(duplicate_fields(twice), vec!["metadata.name", "spec.containers[0].image"]);
        let e = check_duplicates("application/json", twice, FieldValidation::Strict).unwrap_err();
        assert_eq!(
            e.message,
            r#"strict decoding error: duplicate field "metadata.name", duplicate field "spec.containers[0].image""#
        );
        assert_eq!(check_duplicates("application/json", twice, FieldValidation::Warn).map(|w| w.len()).ok(), Some(2));
        assert!(duplicate_fields(br#"{"a": {"x": 1}, "b": {"x": 1}}"#).is_empty());
        let extra = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [], "colour": "red"}});
        let err = canonicalize(&pods, extra.clone(), FieldValidation::Strict).unwrap_err();
        assert!(err.message.contains("unknown field \"spec.colour\""), "{}", err.message);
        let (obj, warnings) = canonicalize(&pods, extra, FieldValidation::Warn).expect("warn");
        assert_eq!(warnings.len(), 1);
        assert!(obj["spec"].get("colour").is_none());
    }
}
