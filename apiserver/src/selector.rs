//! Label and field selectors, parsed from query strings as upstream parses them
//! (`app=web,tier!=db,env in (prod,staging),!canary`) and matched against objects.

use std::collections::BTreeMap;

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`.
    Equals(String, String),
    /// `key!=value` (also true when the key is absent).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (also true when the key is absent).
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed label selector: every requirement must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

/// A selector that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unable to parse requirement: {0}")]
pub struct ParseError(pub String);

fn valid_label_key(key: &str) -> bool {
    crate::names::label_key_errors(key).is_empty()
}

fn valid_label_value(value: &str) -> bool {
    crate::names::label_value_errors(value).is_empty()
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

/// `key in (...)` / `key notin (...)`, the operator a word of its own after the key
/// (upstream's lexer ends a word at whitespace or a parenthesis: `a in(x)` is a set too).
fn set_requirement(part: &str) -> Option<(&str, bool, &str)> {
    let key_end = part.find(|c: char| c.is_whitespace() || c == '(')?;
    let (key, rest) = part.split_at(key_end);
    let rest = rest.trim_start();
    for (word, notin) in [("notin", true), ("in", false)] {
        if let Some(after) = rest.strip_prefix(word)
            && after.trim_start().starts_with('(')
        {
            return Some((key, notin, after));
        }
    }
    None
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, ParseError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ParseError(format!("{whole:?}: expected a parenthesised set of values")))?;
    if inner.trim().is_empty() {
        return Err(ParseError(format!("{whole:?}: for 'in', 'notin' operators, values set can't be empty")));
    }
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    for v in &values {
        if !valid_label_value(v) {
            return Err(ParseError(format!("{whole:?}: invalid label value {v:?}")));
        }
    }
    Ok(values)
}

impl LabelSelector {
    /// Parses `labelSelector` syntax.
    pub fn parse(input: &str) -> Result<LabelSelector, ParseError> {
        let mut reqs = Vec::new();
        if input.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                return Err(ParseError(format!("{input:?}: empty requirement")));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("==") {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once('=') {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, notin, rest)) = set_requirement(part) {
                let values = parse_set(rest, part)?;
                if notin { Requirement::NotIn(key.to_owned(), values) } else { Requirement::In(key.to_owned(), values) }
            } else {
                Requirement::Exists(part.to_owned())
            };
            let (key, value) = match &req {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, Some(v)),
                Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::DoesNotExist(k) => (k, None),
            };
            if !valid_label_key(key) {
                return Err(ParseError(format!("{part:?}: invalid label key {key:?}")));
            }
            if let Some(v) = value
                && !valid_label_value(v)
            {
                return Err(ParseError(format!("{part:?}: invalid label value {v:?}")));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Builds the selector of a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions`).
    pub fn from_object(selector: &serde_json::Value) -> Result<LabelSelector, ParseError> {
        let mut reqs = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(|m| m.as_object()) {
            for (k, v) in labels {
                reqs.push(Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().to_owned()));
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(|m| m.as_array()) {
            for e in exprs {
                let key = e.get("key").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(|v| v.as_array())
                    .map(|vs| vs.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let op = e.get("operator").and_then(|o| o.as_str()).unwrap_or_default();
                reqs.push(match op {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => return Err(ParseError(format!("{other:?} is not a valid label selector operator"))),
                });
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the selector selects nothing in particular (matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// A parsed field selector: `field=value` and `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `fieldSelector` syntax, accepting only the fields in `supported`.
    pub fn parse(input: &str, supported: &dyn Fn(&str) -> bool) -> Result<FieldSelector, ParseError> {
        let mut terms = Vec::new();
        if input.trim().is_empty() {
            return Ok(FieldSelector(terms));
        }
        for part in input.split(',') {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ParseError(format!(
                    "invalid field selector: {part:?}: expected field=value or field!=value"
                )));
            };
            let field = field.trim();
            if !supported(field) {
                return Err(ParseError(format!("field label not supported: {field}")));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's selectable fields satisfy every term.
    pub fn matches(&self, fields: &dyn Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = fields(field).unwrap_or_default();
            (actual == *value) == *equal
        })
    }

    /// The value a term pins a field to, if any (`spec.nodeName=n1` gives `n1`).
    pub fn pinned(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, equal, _)| f == field && *equal).map(|(_, _, v)| v.as_str())
    }
}

/// The labels of an object as a map.
pub fn labels(obj: &Value) -> std::collections::BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

/// The value at a dotted path (`spec.nodeName`), as a field selector compares it.
pub fn field_value(obj: &Value, path: &str) -> Option<String> {
    let v = path.split('.').try_fold(obj, |v, p| v.get(p))?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The selectable fields of an object of `resource`: `metadata.name`, `metadata.namespace`
/// and the resource's own.
pub fn selectable_fields(resource: &crate::registry::Resource, obj: &Value) -> Vec<(&'static str, String)> {
    let mut fields = Vec::with_capacity(2 + resource.fields.len());
    fields.push(("metadata.name", crate::meta::meta_str(obj, "name").unwrap_or_default().to_owned()));
    fields.push(("metadata.namespace", crate::meta::meta_str(obj, "namespace").unwrap_or_default().to_owned()));
    for (name, path, default) in resource.fields {
        fields.push((name, field_value(obj, path).unwrap_or_else(|| (*default).to_owned())));
    }
    fields
}

/// Whether `field` is selectable on `resource`.
pub fn is_selectable(resource: &crate::registry::Resource, field: &str) -> bool {
    field == "metadata.name" || field == "metadata.namespace" || resource.fields.iter().any(|(n, _, _)| *n == field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selector_operators() {
        let s =
            LabelSelector::parse("app=web,tier!=db,env in (prod, staging),track notin (canary),run,!legacy").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod"), ("run", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod")])), "run must exist");
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "dev"), ("run", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("run", "x"), ("legacy", "")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("run", "x"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("run", "x"), ("track", "canary")])));
        assert!(LabelSelector::parse("").unwrap().matches(&labels(&[])));
        assert!(LabelSelector::parse("a==b").unwrap().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn label_selector_rejects_garbage() {
        for bad in
            ["a=b,", "=b", "a in b", "a in (b", "bad key!=x", "a=b c", "a=-x", ",", "a in (@)", "a in ()", "ain(x)"]
        {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn label_selector_from_object() {
        let obj = serde_json::json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["a"]}]});
        let s = LabelSelector::from_object(&obj).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "a")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        let bad = serde_json::json!({"matchExpressions": [{"key": "env", "operator": "Like"}]});
        assert!(LabelSelector::from_object(&bad).is_err());
    }

    #[test]
    fn field_selector_terms() {
        let supported = |f: &str| f == "spec.nodeName" || f == "status.phase";
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed", &supported).unwrap();
        let get = |f: &str| match f {
            "spec.nodeName" => Some("n1".to_owned()),
            "status.phase" => Some("Running".to_owned()),
            _ => None,
        };
        assert!(s.matches(&get));
        assert_eq!(s.pinned("spec.nodeName"), Some("n1"));
        assert!(FieldSelector::parse("spec.nodeName=", &supported).unwrap().matches(&|_| None));
        assert_eq!(
            FieldSelector::parse("spec.foo=x", &supported),
            Err(ParseError("field label not supported: spec.foo".into()))
        );
        assert!(FieldSelector::parse("nonsense", &supported).is_err());
    }
}
