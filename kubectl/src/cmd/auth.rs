//! `auth whoami`: who the apiserver says the kubeconfig's credentials are (a
//! `SelfSubjectReview`); `auth can-i`: whether they may do something (a
//! `SelfSubjectAccessReview`), or with `--list` everything they may do in a namespace (a
//! `SelfSubjectRulesReview`); printed as stock kubectl prints them.

use serde_json::{Value, json};

use crate::client::{Ctx, Error, Result};

/// `kubectl auth ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Experimental: check self subject attributes.
    Whoami {
        /// Output format: json or yaml (default: a table).
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Check whether an action is allowed.
    CanI(CanIArgs),
}

/// `kubectl auth can-i VERB TYPE[/NAME] | VERB /PATH`.
#[derive(Debug, clap::Args)]
pub struct CanIArgs {
    /// The verb (get, list, create, ...), then the resource type (and name) or a path.
    args: Vec<String>,
    /// Ask about every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// The subresource (log, status, scale).
    #[arg(long)]
    subresource: Option<String>,
    /// List everything allowed in the namespace.
    #[arg(long)]
    list: bool,
    /// Print nothing; the exit code says.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Runs an `auth` command.
pub async fn run(ctx: &Ctx, command: &AuthCommand) -> Result<()> {
    match command {
        AuthCommand::Whoami { output } => whoami(ctx, output.as_deref()).await,
        AuthCommand::CanI(args) => can_i(ctx, args).await,
    }
}

async fn can_i(ctx: &Ctx, args: &CanIArgs) -> Result<()> {
    if args.list {
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": ctx.namespace}});
        let answer = ctx.post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", &review).await?;
        print!("{}", rules_table(&answer));
        return Ok(());
    }
    let (verb, what) = match args.args.as_slice() {
        [verb, what] => (verb.clone(), what.clone()),
        [verb, what, _] if what.starts_with('/') => (verb.clone(), what.clone()),
        _ => {
            return Err(Error::Other(anyhow::anyhow!(
                "you must specify two arguments: verb resource or verb resourcename"
            )));
        }
    };
    let spec = if what.starts_with('/') {
        json!({"nonResourceAttributes": {"verb": verb, "path": what}})
    } else {
        let (type_name, name) = what.split_once('/').map_or((what.as_str(), ""), |(t, n)| (t, n));
        let discovery = crate::discovery::Discovery::fetch(ctx).await?;
        let (group, resource) = match discovery.resolve(type_name) {
            Ok(r) => (r.group.clone(), r.plural.clone()),
            Err(_) => {
                eprintln!("Warning: the server doesn't have a resource type '{type_name}'");
                match type_name.split_once('.') {
                    Some((resource, group)) => (group.to_owned(), resource.to_owned()),
                    None => (String::new(), type_name.to_owned()),
                }
            }
        };
        let namespace = if args.all_namespaces { String::new() } else { ctx.namespace.clone() };
        json!({"resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": resource,
            "subresource": args.subresource.clone().unwrap_or_default(), "name": name}})
    };
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec});
    let answer = ctx.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", &review).await?;
    let status = answer.get("status").cloned().unwrap_or_default();
    let allowed = status.get("allowed").and_then(Value::as_bool).unwrap_or(false);
    if !args.quiet {
        if allowed {
            println!("yes");
        } else {
            let mut line = String::from("no");
            for key in ["reason", "evaluationError"] {
                if let Some(text) = status.get(key).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    line.push_str(&format!(" - {text}"));
                }
            }
            println!("{line}");
        }
    }
    if allowed { Ok(()) } else { Err(Error::Exit(1)) }
}

/// Stock kubectl's `can-i --list` table: one row per rule, resources as `name.group`.
fn rules_table(answer: &Value) -> String {
    let list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let brackets = |v: &[String]| format!("[{}]", v.join(" "));
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let status = answer.get("status").cloned().unwrap_or_default();
    for r in status.get("resourceRules").and_then(Value::as_array).into_iter().flatten() {
        let groups = list(r.get("apiGroups"));
        for resource in list(r.get("resources")) {
            for group in &groups {
                let name = if group.is_empty() { resource.clone() } else { format!("{resource}.{group}") };
                rows.push((
                    name,
                    "[]".into(),
                    brackets(&list(r.get("resourceNames"))),
                    brackets(&list(r.get("verbs"))),
                ));
            }
        }
    }
    for r in status.get("nonResourceRules").and_then(Value::as_array).into_iter().flatten() {
        rows.push((
            String::new(),
            brackets(&list(r.get("nonResourceURLs"))),
            "[]".into(),
            brackets(&list(r.get("verbs"))),
        ));
    }
    rows.sort();
    rows.dedup();
    let mut text = String::from("Resources\tNon-Resource URLs\tResource Names\tVerbs\n");
    for (a, b, c, d) in rows {
        text.push_str(&format!("{a}\t{b}\t{c}\t{d}\n"));
    }
    crate::tabwriter::format(&text, 0, 3)
}

async fn whoami(ctx: &Ctx, output: Option<&str>) -> Result<()> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}});
    let answer = ctx.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &review).await?;
    match output {
        Some("json") => println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default()),
        Some("yaml") => print!("{}", crate::yaml::to_string(&answer)),
        Some(other) => {
            return Err(Error::Other(anyhow::anyhow!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,yaml"
            )));
        }
        None => print!("{}", table(&answer)),
    }
    Ok(())
}

/// Stock kubectl's table: Username, UID, Groups, then each Extra.
fn table(answer: &Value) -> String {
    let user = answer.pointer("/status/userInfo").cloned().unwrap_or_default();
    let mut text = String::from("ATTRIBUTE\tVALUE\n");
    if let Some(name) = user.get("username").and_then(Value::as_str) {
        text.push_str(&format!("Username\t{name}\n"));
    }
    if let Some(uid) = user.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
        text.push_str(&format!("UID\t{uid}\n"));
    }
    let list = |v: &Value| -> String {
        let items: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        format!("[{}]", items.join(" "))
    };
    if let Some(groups) = user.get("groups") {
        text.push_str(&format!("Groups\t{}\n", list(groups)));
    }
    if let Some(extra) = user.get("extra").and_then(Value::as_object) {
        let mut keys: Vec<&String> = extra.keys().collect();
        keys.sort();
        for k in keys {
            text.push_str(&format!("Extra: {k}\t{}\n", list(&extra[k])));
        }
    }
    crate::tabwriter::format(&text, 0, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_stock_kubectls() {
        let answer = json!({"status": {"userInfo": {"username": "alice", "groups": ["devs", "system:authenticated"]}}});
        assert_eq!(table(&answer), "ATTRIBUTE   VALUE\nUsername    alice\nGroups      [devs system:authenticated]\n");
    }
}
