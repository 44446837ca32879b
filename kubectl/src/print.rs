//! Output: server-side tables laid out as kubectl's tabwriter does, and the
//! `-o yaml|json|name|wide|jsonpath=...|custom-columns=...` formats.

use serde_json::{Value, json};

use crate::discovery::Resource;
use crate::jsonpath::{Template, text_of};

/// An `-o` format.
#[derive(Debug, Clone)]
pub enum Format {
    /// The server's table (`wide` shows every column).
    Table { wide: bool },
    /// YAML.
    Yaml,
    /// JSON, indented by four spaces.
    Json,
    /// `kind.group/name`.
    Name,
    /// A JSONPath template.
    JsonPath(Template),
    /// `HEADER:.path,...`.
    CustomColumns(Vec<(String, Template)>),
}

impl Format {
    /// Parses `-o`.
    pub fn parse(output: Option<&str>) -> anyhow::Result<Format> {
        let Some(o) = output else { return Ok(Format::Table { wide: false }) };
        Ok(match o {
            "" => Format::Table { wide: false },
            "wide" => Format::Table { wide: true },
            "yaml" => Format::Yaml,
            "json" => Format::Json,
            "name" => Format::Name,
            _ => {
                if let Some(t) = o.strip_prefix("jsonpath=").or_else(|| o.strip_prefix("jsonpath-as-json=")) {
                    Format::JsonPath(Template::parse(t).map_err(anyhow::Error::msg)?)
                } else if let Some(spec) = o.strip_prefix("custom-columns=") {
                    let mut cols = Vec::new();
                    for col in spec.split(',') {
                        let (header, path) = col.split_once(':').ok_or_else(|| {
                            anyhow::anyhow!("custom-columns format specified but no custom columns given: expected HEADER:PATH, got {col:?}")
                        })?;
                        cols.push((header.to_owned(), Template::parse(path).map_err(anyhow::Error::msg)?));
                    }
                    Format::CustomColumns(cols)
                } else {
                    anyhow::bail!(
                        "unable to match a printer suitable for the output format \"{o}\", allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"
                    )
                }
            }
        })
    }
}

/// Lays rows out as kubectl's tables (Go's tabwriter, min width 6, padding 3).
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let text: String = rows.iter().map(|r| format!("{}\n", r.join("\t"))).collect();
    crate::tabwriter::format(&text, 6, 3)
}

/// A table cell as kubectl prints it.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Options of table printing.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// Every column, not only priority 0.
    pub wide: bool,
    /// A NAMESPACE column first (`-A`).
    pub namespace: bool,
    /// Names as `kind.group/name` (several types in one command).
    pub kind_prefix: bool,
    /// The labels as a last column.
    pub show_labels: bool,
    /// Leave the header out (watch events after the first).
    pub no_headers: bool,
}

/// Rows of a server `Table` as text rows, the header first unless `no_headers`.
pub fn table_rows(table: &Value, resource: &Resource, opts: TableOptions) -> Vec<Vec<String>> {
    let defs = table.get("columnDefinitions").and_then(Value::as_array).cloned().unwrap_or_default();
    let shown: Vec<usize> = defs
        .iter()
        .enumerate()
        .filter(|(_, d)| opts.wide || d.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let mut rows = Vec::new();
    if !opts.no_headers {
        let mut header: Vec<String> = Vec::new();
        if opts.namespace {
            header.push("NAMESPACE".into());
        }
        header.extend(
            shown.iter().map(|i| defs[*i].get("name").and_then(Value::as_str).unwrap_or_default().to_uppercase()),
        );
        if opts.show_labels {
            header.push("LABELS".into());
        }
        rows.push(header);
    }
    for row in table.get("rows").and_then(Value::as_array).into_iter().flatten() {
        let cells = row.get("cells").and_then(Value::as_array).cloned().unwrap_or_default();
        let object = row.get("object").cloned().unwrap_or(Value::Null);
        let mut line = Vec::new();
        if opts.namespace {
            line.push(object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_owned());
        }
        for (n, i) in shown.iter().enumerate() {
            let mut text = cells.get(*i).map(cell).unwrap_or_default();
            if n == 0 && opts.kind_prefix {
                text = format!("{}/{text}", resource.kind_prefix());
            }
            line.push(text);
        }
        if opts.show_labels {
            line.push(labels_text(&object));
        }
        rows.push(line);
    }
    rows
}

/// `k=v,k2=v2`, or `<none>`.
pub fn labels_text(obj: &Value) -> String {
    match obj.pointer("/metadata/labels").and_then(Value::as_object) {
        Some(m) if !m.is_empty() => {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        }
        _ => "<none>".into(),
    }
}

/// Drops `metadata.managedFields`, as kubectl does unless `--show-managed-fields`.
pub fn hide_managed_fields(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if let Some(items) = obj.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(hide_managed_fields);
    }
}

/// JSON as kubectl indents it.
pub fn json_text(v: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    let _ = serde::Serialize::serialize(v, &mut ser);
    let mut s = String::from_utf8(out).unwrap_or_default();
    s.push('\n');
    s
}

/// The `List` kubectl prints for several objects.
pub fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
}

/// `kind.group/name` of an object.
pub fn name_of(resource: &Resource, obj: &Value) -> String {
    format!("{}/{}", resource.kind_prefix(), obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default())
}

/// Prints objects (not tables) in a non-table format. `single` prints one object rather
/// than a `List`.
pub fn objects(format: &Format, resources: &[(&Resource, Value)], single: bool) -> anyhow::Result<String> {
    let values: Vec<Value> = resources.iter().map(|(_, v)| v.clone()).collect();
    let doc = if single && values.len() == 1 { values[0].clone() } else { list_of(values) };
    Ok(match format {
        Format::Yaml => crate::yaml::to_string(&doc),
        Format::Json => json_text(&doc),
        Format::Name => resources.iter().map(|(r, v)| format!("{}\n", name_of(r, v))).collect(),
        Format::JsonPath(t) => t.render(&doc).map_err(anyhow::Error::msg)?,
        Format::CustomColumns(cols) => {
            let mut rows = vec![cols.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>()];
            for (_, v) in resources {
                rows.push(
                    cols.iter()
                        .map(|(_, t)| {
                            let found = t.values(v);
                            if found.is_empty() {
                                "<none>".to_owned()
                            } else {
                                found.into_iter().map(text_of).collect::<Vec<_>>().join(",")
                            }
                        })
                        .collect(),
                );
            }
            tabulate(&rows)
        }
        Format::Table { .. } => anyhow::bail!("tables are printed from the server's Table"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_layout_matches_kubectl() {
        let rows = vec![
            vec!["NAME".into(), "READY".into(), "AGE".into()],
            vec!["web-1".into(), "1/1".into(), "5s".into()],
            vec!["a-much-longer-name".into(), "0/1".into(), "10m".into()],
        ];
        assert_eq!(
            tabulate(&rows),
            "NAME                 READY   AGE\nweb-1                1/1     5s\na-much-longer-name   0/1     10m\n"
        );
        // Narrow columns are still six wide.
        assert_eq!(tabulate(&[vec!["A".into(), "B".into()]]), "A     B\n");
    }

    #[test]
    fn formats_parse_or_say_what_is_allowed() {
        assert!(matches!(Format::parse(Some("wide")).unwrap(), Format::Table { wide: true }));
        assert!(matches!(Format::parse(Some("jsonpath={.a}")).unwrap(), Format::JsonPath(_)));
        assert!(matches!(Format::parse(Some("custom-columns=N:.metadata.name")).unwrap(), Format::CustomColumns(_)));
        let err = Format::parse(Some("xml")).unwrap_err().to_string();
        assert!(err.contains("allowed formats are"), "{err}");
        assert_eq!(json_text(&json!({"a": [1]})), "{\n    \"a\": [\n        1\n    ]\n}\n");
    }
}
