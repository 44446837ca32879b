//! YAML output in stock kubectl's layout (go-yaml through sigs.k8s.io/yaml): keys sorted,
//! block style, list items at their key's indentation, strings quoted only when they
//! would read as another type or break the syntax, multi-line strings as `|` blocks.

use serde_json::Value;

/// Renders a value as a YAML document.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => map(&mut out, value, 0),
        Value::Array(a) if !a.is_empty() => list(&mut out, value, 0),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn map(out: &mut String, value: &Value, indent: usize) {
    let Value::Object(m) = value else { return };
    let mut first = true;
    for (k, v) in m {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str(&string(k, indent));
        out.push(':');
        entry(out, v, indent, true);
    }
}

/// Writes what follows `key:` or `- `.
fn entry(out: &mut String, v: &Value, indent: usize, in_map: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            map(out, v, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            // go-yaml writes a map's list at the map's indentation.
            let at = if in_map { indent } else { indent + 2 };
            pad(out, at);
            list(out, v, at);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent));
            out.push('\n');
        }
    }
}

fn list(out: &mut String, value: &Value, indent: usize) {
    let Value::Array(items) = value else { return };
    let mut first = true;
    for item in items {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => map(out, item, indent + 2),
            Value::Array(a) if !a.is_empty() => list(out, item, indent + 2),
            other => {
                out.push_str(&scalar(other, indent));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, indent),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Whether a plain scalar would read as something other than this string.
fn resolves_to_other_type(s: &str) -> bool {
    const WORDS: &[&str] =
        &["true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".inf", "-.inf", "+.inf", ".nan"];
    if WORDS.contains(&s.to_lowercase().as_str()) {
        return true;
    }
    if s.parse::<f64>().is_ok() || s.starts_with("0x") || s.starts_with("0o") {
        return true;
    }
    // Timestamps (2026-11-21, 2026-11-21T09:10:15Z).
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
}

fn needs_quotes(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    s.is_empty()
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
            && !(first == '-' && s.len() > 1 && !s[1..].starts_with(' ') && s != "-")
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.contains('\t')
        || s.chars().any(|c| c.is_control() && c != '\n')
}

fn string(s: &str, indent: usize) -> String {
    if resolves_to_other_type(s) || s.is_empty() {
        return serde_json::to_string(s).unwrap_or_default();
    }
    if s.contains('\n') {
        if s.chars().any(|c| c.is_control() && c != '\n') || s.lines().any(|l| l.ends_with(' ')) {
            return serde_json::to_string(s).unwrap_or_default();
        }
        let header = if s.ends_with('\n') { "|" } else { "|-" };
        let mut out = String::from(header);
        for line in s.trim_end_matches('\n').split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.extend(std::iter::repeat_n(' ', indent + 2));
                out.push_str(line);
            }
        }
        return out;
    }
    if needs_quotes(s) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lays_out_like_stock_kubectl() {
        let v = json!({
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "resourceVersion": "10", "creationTimestamp": "2026-11-21T09:10:15Z",
                          "annotations": {"note": "a: b", "json": "{\"a\":1}", "multi": "x\ny\n"}, "labels": {}},
            "spec": {"replicas": 3, "paused": false, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx", "args": ["-c", "echo hi"], "ports": [{"containerPort": 80}]}
            ]}}}
        });
        let expected = "\
apiVersion: apps/v1
metadata:
  annotations:
    json: '{\"a\":1}'
    multi: |
      x
      y
    note: 'a: b'
  creationTimestamp: \"2026-11-21T09:10:15Z\"
  labels: {}
  name: web
  resourceVersion: \"10\"
spec:
  paused: false
  replicas: 3
  template:
    spec:
      containers:
      - args:
        - -c
        - echo hi
        image: nginx
        name: web
        ports:
        - containerPort: 80
";
        assert_eq!(to_string(&v), expected);
        // What it writes reads back as the same value.
        let back: Value = serde_saphyr::from_str(expected).expect("yaml");
        assert_eq!(back, v);
    }
}
