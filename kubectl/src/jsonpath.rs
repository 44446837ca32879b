//! kubectl's JSONPath templates (`-o jsonpath=...`, `custom-columns`): text with `{...}`
//! expressions — fields (`.metadata.name`), indexes (`[0]`, `[-1]`), wildcards (`[*]`),
//! filters (`[?(@.type=="Ready")]`), string literals (`{"\n"}`) and `{range ...}{end}`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter { path: Vec<Step>, op: Option<(String, Value)> },
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Node>);

fn err(template: &str, why: impl std::fmt::Display) -> String {
    format!("error parsing jsonpath {template}, {why}")
}

impl Template {
    /// Parses a template as kubectl does (a bare path without braces is accepted too).
    pub fn parse(template: &str) -> Result<Template, String> {
        let text = if template.contains('{') { template.to_owned() } else { format!("{{{template}}}") };
        let mut tokens = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = closing(rest).ok_or_else(|| err(template, "unclosed action"))?;
                    tokens.push((true, rest[1..end].trim().to_owned()));
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    tokens.push((false, rest[..i].to_owned()));
                    rest = &rest[i..];
                }
                None => {
                    tokens.push((false, rest.to_owned()));
                    rest = "";
                }
            }
        }
        let mut iter = tokens.into_iter();
        let nodes = parse_nodes(&mut iter, template, false)?;
        Ok(Template(nodes))
    }

    /// Renders the template over `value`.
    pub fn render(&self, value: &Value) -> Result<String, String> {
        let mut out = String::new();
        render(&self.0, value, &mut out)?;
        Ok(out)
    }

    /// The values a single-path template selects (for custom columns).
    pub fn values<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        match self.0.as_slice() {
            [Node::Path(steps)] => eval(steps, vec![value]),
            _ => Vec::new(),
        }
    }
}

/// The index of the `}` closing the action that opens at 0, skipping quoted strings.
fn closing(s: &str) -> Option<usize> {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in s.char_indices().skip(1) {
        match quote {
            Some(q) if c == q && prev != '\\' => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '}' => return Some(i),
            None => {}
        }
        prev = c;
    }
    None
}

fn parse_nodes(
    tokens: &mut impl Iterator<Item = (bool, String)>,
    template: &str,
    in_range: bool,
) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some((action, text)) = tokens.next() {
        if !action {
            nodes.push(Node::Text(text));
            continue;
        }
        if text == "end" {
            return if in_range { Ok(nodes) } else { Err(err(template, "unexpected {end}")) };
        }
        if let Some(path) = text.strip_prefix("range ") {
            let steps = parse_path(path.trim()).map_err(|e| err(template, e))?;
            let body = parse_nodes(tokens, template, true)?;
            nodes.push(Node::Range(steps, body));
            continue;
        }
        if let Some(lit) = literal(&text) {
            nodes.push(Node::Text(lit));
            continue;
        }
        nodes.push(Node::Path(parse_path(&text).map_err(|e| err(template, e))?));
    }
    if in_range { Err(err(template, "{range} without {end}")) } else { Ok(nodes) }
}

fn literal(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.replace("\\n", "\n").replace("\\t", "\t").replace("\\\"", "\""))
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let path = path.strip_prefix('$').unwrap_or(path);
    let chars: Vec<char> = path.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name == "*" {
                    steps.push(Step::All);
                } else if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let start = i + 1;
                let mut depth = 0;
                while i < chars.len() {
                    match chars[i] {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(format!("unterminated [ in {path:?}"));
                }
                let inner: String = chars[start..i].iter().collect();
                i += 1;
                steps.push(bracket(inner.trim())?);
            }
            c => return Err(format!("unrecognized character {c:?} in {path:?}")),
        }
    }
    Ok(steps)
}

fn bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let filter = filter.trim();
        for op in ["==", "!="] {
            if let Some((left, right)) = filter.split_once(op) {
                let path = parse_path(left.trim().strip_prefix('@').unwrap_or(left.trim()))?;
                let right = right.trim();
                let value = if let Some(s) = right.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                    Value::String(s.to_owned())
                } else if let Some(s) = right.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                    Value::String(s.to_owned())
                } else {
                    serde_json::from_str(right).map_err(|_| format!("bad filter value {right:?}"))?
                };
                return Ok(Step::Filter { path, op: Some((op.to_owned(), value)) });
            }
        }
        let path = parse_path(filter.strip_prefix('@').unwrap_or(filter))?;
        return Ok(Step::Filter { path, op: None });
    }
    if let Some(name) = inner.strip_prefix('\'').and_then(|n| n.strip_suffix('\'')) {
        return Ok(Step::Field(name.to_owned()));
    }
    if let Some(name) = inner.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        return Ok(Step::Field(name.to_owned()));
    }
    inner.parse::<i64>().map(Step::Index).map_err(|_| format!("unsupported index [{inner}]"))
}

fn eval<'a>(steps: &[Step], start: Vec<&'a Value>) -> Vec<&'a Value> {
    let mut current = start;
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => {
                    if let Some(x) = v.get(name) {
                        next.push(x);
                    }
                }
                Step::Index(i) => {
                    if let Some(items) = v.as_array() {
                        let idx = if *i < 0 { items.len() as i64 + i } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| items.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(items) => next.extend(items.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter { path, op } => {
                    for item in v.as_array().into_iter().flatten() {
                        let found = eval(path, vec![item]);
                        let keep = match op {
                            None => !found.is_empty(),
                            Some((op, want)) => {
                                let equal = found.first().is_some_and(|f| *f == want);
                                if op == "==" { equal } else { !equal }
                            }
                        };
                        if keep {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// How kubectl prints a selected value: strings bare, everything else as JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render(nodes: &[Node], value: &Value, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(steps) => {
                let found = eval(steps, vec![value]);
                let texts: Vec<String> = found.into_iter().map(text_of).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(steps, body) => {
                for item in eval(steps, vec![value]) {
                    render(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).expect("parses").render(v).expect("renders")
    }

    #[test]
    fn templates_render_like_kubectl() {
        let list = json!({"items": [
            {"metadata": {"name": "a", "labels": {"app": "x"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
        ]});
        assert_eq!(render("{.items[*].metadata.name}", &list), "a b");
        assert_eq!(render("{.items[0].metadata.labels}", &list), r#"{"app":"x"}"#);
        assert_eq!(render("{.items[-1].metadata.name}", &list), "b");
        assert_eq!(render(r#"{range .items[*]}{.metadata.name}{"\n"}{end}"#, &list), "a\nb\n");
        assert_eq!(render(r#"{.items[?(@.status.conditions[0].status=="True")].metadata.name}"#, &list), "a");
        assert_eq!(render("{.items[0].status.conditions[?(@.type==\"Ready\")].status}", &list), "True");
        assert_eq!(render("names: {.items[*].metadata.name}!", &list), "names: a b!");
        assert_eq!(render(".items[1].metadata.name", &list), "b");
        assert_eq!(render("{.nothing.here}", &list), "");
        assert_eq!(render("{.items[0]['metadata']['name']}", &list), "a");
        assert!(Template::parse("{.items[0}").is_err());
        assert!(Template::parse("{range .items[*]}x").is_err());
    }
}
