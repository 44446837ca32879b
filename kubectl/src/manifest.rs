//! Manifests from `-f FILE|DIR|-`: multi-document YAML or JSON, `List`s expanded, and
//! parse errors that name the file, the document and the line.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// One object from a manifest, with where it came from.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The file (`-` for stdin).
    pub source: String,
    /// The object.
    pub object: Value,
}

/// Reads every `-f` source (files, directories of `.yaml`/`.yml`/`.json`, or `-`).
pub fn read(sources: &[String], recursive: bool) -> anyhow::Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
            docs.extend(parse(&text, "STDIN")?.into_iter().map(|object| Doc { source: "-".into(), object }));
            continue;
        }
        let path = Path::new(source);
        if path.is_dir() {
            for file in files_in(path, recursive)? {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                let name = file.display().to_string();
                docs.extend(parse(&text, &name)?.into_iter().map(|object| Doc { source: name.clone(), object }));
            }
            continue;
        }
        if !path.exists() {
            bail!("the path \"{source}\" does not exist");
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {source}"))?;
        docs.extend(parse(&text, source)?.into_iter().map(|object| Doc { source: source.clone(), object }));
    }
    if docs.is_empty() {
        bail!("no objects passed to apply");
    }
    Ok(docs)
}

fn files_in(dir: &Path, recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                out.extend(files_in(&p, true)?);
            }
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            out.push(p);
        }
    }
    Ok(out)
}

/// Splits a YAML stream into documents with the line each starts on.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") && line[3..].trim().is_empty() || line.starts_with("--- ") {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs
}

/// Parses a manifest's text into objects.
pub fn parse(text: &str, source: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for (n, (start, doc)) in documents(text).into_iter().enumerate() {
        if doc.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            continue;
        }
        let value: Value = serde_saphyr::from_str(&doc).map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default().to_owned();
            // serde-saphyr reports lines within the document; make them the file's.
            let line = first
                .split("line ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|l| l.parse::<usize>().ok());
            match line {
                Some(l) => anyhow::anyhow!(
                    "error parsing {source}: document {}, line {}: {}",
                    n + 1,
                    start + l - 1,
                    first.trim_start_matches("error: ")
                ),
                None => anyhow::anyhow!("error parsing {source}: document {}: {first}", n + 1),
            }
        })?;
        match value {
            Value::Null => {}
            Value::Object(ref m)
                if m.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))
                    && m.contains_key("items") =>
            {
                out.extend(m.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
            }
            Value::Object(ref m) => {
                for field in ["apiVersion", "kind"] {
                    if m.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                        bail!("error validating data from {source} (document {}): {field} not set", n + 1);
                    }
                }
                out.push(value);
            }
            _ => bail!("error parsing {source}: document {} is not an object", n + 1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_files_parse_with_located_errors() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# comment only\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
        let docs = parse(text, "m.yaml").expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["metadata"]["name"], "b");
        let bad = "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: [\n";
        let err = parse(bad, "bad.yaml").unwrap_err().to_string();
        assert!(err.starts_with("error parsing bad.yaml: document 2, line 6"), "{err}");
        let err = parse("metadata: {name: x}\n", "k.yaml").unwrap_err().to_string();
        assert!(err.contains("apiVersion not set"), "{err}");
    }
}
